import pytest
import torch

from ddkit.data.images import ImageSet
from ddkit.errors import DDKitError
from ddkit.methods import METHODS, SynthesisContext, synthesize
from ddkit.methods.base import start_images_from_set
from ddkit.methods.herding import herding_order, kernel_herding_order, rbf_gram
from ddkit.methods.kcenter import kcenter_order


@pytest.mark.parametrize("method", METHODS.names())
def test_every_method_returns_a_class_balanced_set(method, tiny, tiny_teacher_loader):
    options = METHODS.get(method).smoke_options
    result = synthesize(method, options, SynthesisContext(tiny, ipc=3, seed=0, teacher=tiny_teacher_loader))
    assert result.images.shape == (30, 1, 28, 28)
    assert torch.bincount(result.labels, minlength=10).tolist() == [3] * 10
    assert result.meta["method"] == method and result.meta["ipc"] == 3
    again = synthesize(method, options, SynthesisContext(tiny, ipc=3, seed=0, teacher=tiny_teacher_loader))
    assert torch.equal(result.images, again.images)


@pytest.mark.parametrize("method", ["random", "herding", "kcenter"])
def test_coresets_pick_real_training_images_of_their_class(method, tiny, tiny_teacher_loader):
    result = synthesize(method, {}, SynthesisContext(tiny, ipc=2, seed=0, teacher=tiny_teacher_loader))
    index = torch.tensor(result.meta["source_indices"])
    assert torch.equal(tiny.train.images[index], result.images)
    assert torch.equal(tiny.train.labels[index], result.labels)


def test_random_depends_on_seed(tiny, tiny_teacher_loader):
    a = synthesize("random", {}, SynthesisContext(tiny, 2, 0, tiny_teacher_loader))
    b = synthesize("random", {}, SynthesisContext(tiny, 2, 1, tiny_teacher_loader))
    assert not torch.equal(a.images, b.images)


def test_ipc_beyond_smallest_class_is_a_clear_error(tiny, tiny_teacher_loader):
    with pytest.raises(DDKitError, match="IPC 31 is not possible: the smallest class has 30 training images"):
        synthesize("random", {}, SynthesisContext(tiny, 31, 0, tiny_teacher_loader))


def test_unknown_method_and_option(tiny, tiny_teacher_loader):
    with pytest.raises(DDKitError, match="unknown method 'kip'; choose one of: dap, dc, diffusion, dm, herding, idm, kcenter, manifoldgd, "
                                         "mgd3, prism, prism-dfkd, random, rded, sre2l, text-diffusion"):
        synthesize("kip", {}, SynthesisContext(tiny, 1, 0, tiny_teacher_loader))
    with pytest.raises(DDKitError, match="unknown key 'herding.teachr'; valid keys: bandwidth, factor, kernel, space, teacher, temperature"):
        synthesize("herding", {"teachr": "x"}, SynthesisContext(tiny, 1, 0, tiny_teacher_loader))


def test_herding_matches_mean_greedily():
    features = torch.tensor([[0.0, 0.0], [10.0, 0.0], [-10.0, 0.0], [1.0, 0.0]])
    # mean 0.25: pick 0 (nearest), then 1.0 (average 0.5), then -10 (average -3, nearer than 3.67).
    assert herding_order(features, 3) == [0, 3, 2]


def test_kernel_herding_with_a_linear_gram_is_herding():
    features = torch.randn(50, 4, generator=torch.Generator().manual_seed(0))
    assert kernel_herding_order(features @ features.T, 8) == herding_order(features, 8)


def test_kernel_herding_matches_a_bimodal_class_better_than_mean_herding():
    generator = torch.Generator().manual_seed(0)
    features = torch.cat([torch.randn(150, 2, generator=generator) - 4, torch.randn(50, 2, generator=generator) + 4])
    gram = rbf_gram(features)

    def mmd2(picks: list[int]) -> float:
        return float(gram.mean() - 2 * gram[picks].mean() + gram[picks][:, picks].mean())

    picks = kernel_herding_order(gram, 4)
    assert mmd2(picks) < mmd2(herding_order(features, 4))
    assert sum(p >= 150 for p in picks) == 1  # the minor mode gets its share of the four picks


@pytest.mark.parametrize("options", [{"kernel": "rbf"}, {"space": "soft-labels"}])
def test_herding_variants_pick_other_real_images(tiny, tiny_teacher_loader, options):
    plain = synthesize("herding", {}, SynthesisContext(tiny, 3, 0, tiny_teacher_loader))
    variant = synthesize("herding", options, SynthesisContext(tiny, 3, 0, tiny_teacher_loader))
    assert torch.equal(tiny.train.images[torch.tensor(variant.meta["source_indices"])], variant.images)
    assert variant.meta["source_indices"] != plain.meta["source_indices"]


def test_kcenter_takes_the_farthest_point_each_time():
    features = torch.tensor([[0.0], [1.0], [10.0], [4.0]])
    assert kcenter_order(features, 3, first=0) == [0, 2, 3]


def test_a_set_records_the_versions_and_device_it_was_made_with(tiny, tiny_teacher_loader):
    from ddkit.runs import environment

    made = synthesize("random", {}, SynthesisContext(tiny, 1, 0, tiny_teacher_loader))
    recorded = made.meta["environment"]
    assert recorded["device"] == "cpu" and recorded["timm"] and recorded["diffusers"]
    assert {k: v for k, v in recorded.items() if k != "device"} == environment()


def test_diffusion_from_a_set_edits_its_images_and_refuses_a_set_too_small(tiny, tiny_teacher_loader, tmp_path):
    ctx = SynthesisContext(tiny, ipc=2, seed=0, teacher=tiny_teacher_loader)
    herded = synthesize("herding", {}, ctx)
    herded.save(tmp_path / "herded")
    options = {**METHODS.get("diffusion").smoke_options, "sampler": {"steps": 4}}
    edited = synthesize("diffusion", {**options, "init_set": str(tmp_path / "herded"), "init_strength": 0.25}, ctx)
    plain = synthesize("diffusion", options, ctx)
    assert edited.meta["init_set"] and "init_set" not in plain.meta
    assert (edited.images - herded.images).norm() < 0.5 * (plain.images - herded.images).norm()
    guided = synthesize("dap", {**METHODS.get("dap").smoke_options, "init_set": str(tmp_path / "herded")}, ctx)  # modes matched to starts
    assert guided.meta["init_set"] == edited.meta["init_set"]
    with pytest.raises(DDKitError, match="holds 2 images of class 'T-shirt/top' and IPC 3 starts from 3"):
        synthesize("diffusion", {**options, "init_set": str(tmp_path / "herded")}, SynthesisContext(tiny, 3, 0, tiny_teacher_loader))


def test_a_start_set_of_other_classes_is_refused(tiny, tiny_teacher_loader, tmp_path):
    synthesize("herding", {}, SynthesisContext(tiny, 1, 0, tiny_teacher_loader)).save(tmp_path / "herded")
    keep = tiny.train.labels < 3
    three = ImageSet(tiny.train.images[keep], tiny.train.labels[keep], tiny.train.class_names[:3], tiny.train.mean, tiny.train.std)
    with pytest.raises(DDKitError, match=r"holds 10 classes of \(1, 28, 28\) images, the data 3 of \(1, 28, 28\); start from a set made"):
        start_images_from_set(str(tmp_path / "herded"), three, 1)
