import json

import pytest
import torch

from ddkit.data import formation
from ddkit.data.distilled import DistilledSet
from ddkit.errors import DDKitError


def constant_images(values, size=4):
    return torch.tensor(list(values), dtype=torch.float32).view(-1, 1, 1, 1).expand(-1, 1, size, size).clone()


def test_encode_tiles_groups_row_major_and_decode_gives_them_back_in_order():
    stored = formation.encode(constant_images(range(8)), 2)
    assert stored.shape == (2, 1, 4, 4)
    assert stored[0, 0].tolist() == [[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 3, 3], [2, 2, 3, 3]]
    assert torch.equal(formation.decode(stored, 2), constant_images(range(8)))


def test_decode_upsamples_each_tile_alone_and_passes_gradients_to_its_own_pixels():
    stored = torch.rand(1, 3, 28, 28, requires_grad=True)
    decoded = formation.decode(stored, 2)
    assert decoded.shape == (4, 3, 28, 28)
    decoded[1].sum().backward()  # the top-right tile
    touched = stored.grad[0, 0] != 0
    assert touched[:14, 14:].all() and not touched[14:].any() and not touched[:, :14].any()
    # a real image survives the round trip as its blurred copy
    image = torch.rand(4, 1, 28, 28)
    assert (formation.decode(formation.encode(image, 2), 2) - image).abs().mean() < 0.35
    assert formation.decode(image, 1) is image


def test_a_factor_that_does_not_divide_the_image_is_refused_with_the_fix():
    with pytest.raises(DDKitError, match="formation factor 3 does not divide the 28×28 images; choose a factor that divides both sides"):
        formation.check_factor(3, 28, 28)
    with pytest.raises(DDKitError, match="formation factor 0 is not possible"):
        formation.check_factor(0, 28, 28)


def factor_two_set():
    images = formation.encode(torch.rand(12, 1, 28, 28, generator=torch.Generator().manual_seed(0)), 2)
    soft = torch.softmax(torch.randn(3, 2, generator=torch.Generator().manual_seed(1)), 1)
    return DistilledSet(images, torch.tensor([0, 1, 1]), ("a", "b"), (0.5,), (0.5,), soft, factor=2)


def test_a_factor_two_set_counts_stored_images_and_trains_on_its_decoded_tiles(tmp_path):
    distilled = factor_two_set()
    distilled.save(tmp_path / "set")
    loaded = DistilledSet.load(tmp_path / "set")
    assert loaded.factor == 2 and loaded.ipc == 2 and len(loaded) == 3
    decoded = loaded.decoded()
    assert decoded.factor == 1 and decoded.labels.tolist() == [0] * 4 + [1] * 8
    assert torch.equal(decoded.soft_labels, distilled.soft_labels.repeat_interleave(4, 0))
    assert torch.equal(loaded.as_image_set().images, formation.decode(distilled.images, 2))


def test_a_manifest_without_factor_is_a_factor_one_set_and_a_bad_factor_is_refused(tmp_path):
    factor_two_set().save(tmp_path / "set")
    path = tmp_path / "set" / "manifest.json"
    manifest = json.loads(path.read_text())
    path.write_text(json.dumps({k: v for k, v in manifest.items() if k != "factor"}))
    assert DistilledSet.load(tmp_path / "set").factor == 1  # sets written before the key existed
    path.write_text(json.dumps(manifest | {"factor": "2"}))
    with pytest.raises(DDKitError, match="malformed 'factor'"):
        DistilledSet.load(tmp_path / "set")
    path.write_text(json.dumps(manifest | {"factor": 3}))
    with pytest.raises(DDKitError, match="formation factor 3 does not divide the 28×28 images; re-create the set"):
        DistilledSet.load(tmp_path / "set")
