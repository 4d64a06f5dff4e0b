import pytest

from ddkit.data.class_lists import imagenet_indices, imagenet_names, load_class_list
from ddkit.errors import DDKitError


def test_imagenet_list_is_the_sorted_thousand_ids_with_names():
    full = load_class_list("imagenet1k")
    assert len(full.wnids) == len(set(full.wnids)) == 1000
    assert full.wnids == sorted(full.wnids)
    assert full.names[0].startswith("tench") and full.wnids[0] == "n01440764"


@pytest.mark.parametrize("name, size", [("imagenette", 10), ("imagewoof", 10), ("imagenet100", 100)])
def test_subsets_are_sorted_imagenet_classes(name, size):
    subset = load_class_list(name)
    assert len(subset.wnids) == size and subset.wnids == sorted(subset.wnids)
    indices = imagenet_indices(subset.wnids)
    assert indices == sorted(indices) and all(0 <= i < 1000 for i in indices)


def test_imagenette_maps_to_its_known_imagenet_indices():
    # tench 0, English springer 217, cassette player 482, chain saw 491, church 497, French horn 566,
    # garbage truck 569, gas pump 571, golf ball 574, parachute 701
    assert imagenet_indices(load_class_list("imagenette").wnids) == [0, 217, 482, 491, 497, 566, 569, 571, 574, 701]
    assert imagenet_names(["n01440764"]) == ["tench"]


def test_unknown_id_names_the_fix(tmp_path):
    with pytest.raises(DDKitError, match="not an ImageNet-1k class id"):
        imagenet_indices(["cat"])
    bad = tmp_path / "mine.yaml"
    bad.write_text("names: [a]\n")
    with pytest.raises(DDKitError, match="wnids"):
        load_class_list(str(bad))
