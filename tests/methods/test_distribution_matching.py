from dataclasses import replace

import pytest
import torch

from ddkit.data.images import ImageSet
from ddkit.errors import DDKitError
from ddkit.methods import SynthesisContext, synthesize
from ddkit.methods.distribution_matching import matching_loss
from ddkit.models.classifier import build_model, parse_model_spec

SMALL_NET = "convnet(width=16,depth=2,norm=instance)"


def mean_matching_loss(images: torch.Tensor, tiny, seeds: range) -> float:
    """DM's objective under networks the optimisation never saw: real class means against the set's."""
    train = tiny.train
    real = torch.cat([train.images[train.indices_of(c)] for c in range(10)])
    losses = []
    with torch.no_grad():
        for seed in seeds:
            net = build_model(parse_model_spec(SMALL_NET), 10, train.image_shape, train.mean, train.std, seed=seed)
            losses.append(float(matching_loss(net.features(real), net.features(images), 10)))
    return sum(losses) / len(losses)


def test_dm_moves_class_means_toward_the_real_ones_under_fresh_networks(tiny):
    ctx = SynthesisContext(tiny, ipc=2, seed=0, teacher=None)
    options = {"network": SMALL_NET, "real_batch": 30, "augmentation": "none", "lr": 1.0}
    start = synthesize("dm", {**options, "iterations": 1, "lr": 1e-9}, ctx)
    done = synthesize("dm", {**options, "iterations": 40}, ctx)
    before, after = mean_matching_loss(start.images, tiny, range(1000, 1008)), mean_matching_loss(done.images, tiny, range(1000, 1008))
    assert after < 0.5 * before
    assert done.images.min() >= 0 and done.images.max() <= 1


def test_dm_work_items_of_some_classes_each_make_the_same_set_shape(tiny):
    ctx = SynthesisContext(tiny, ipc=1, seed=0, teacher=None)
    grouped = synthesize("dm", {"network": SMALL_NET, "real_batch": 4, "iterations": 2, "classes_per_item": 3}, ctx)
    assert len(grouped.meta["items"]) == 4 and grouped.labels.tolist() == list(range(10))


def test_dm_stops_with_a_clear_error_when_the_loss_is_not_finite(tiny):
    images = tiny.train.images.clone()
    images[tiny.train.indices_of(3)] = float("nan")  # e.g. a corrupt array file
    broken = replace(tiny, train=ImageSet(images, tiny.train.labels, tiny.train.class_names, tiny.train.mean, tiny.train.std))
    with pytest.raises(DDKitError, match="distribution matching loss became nan at step 1 of item-c0000-0009; check the training images"):
        synthesize("dm", {"network": SMALL_NET, "real_batch": 4, "iterations": 3}, SynthesisContext(broken, 1, 0, None))


@pytest.mark.parametrize(("method", "init", "kernel"), [("dm", "herding", "linear"), ("dc", "herding", "linear"), ("dm", "kernel-herding", "rbf")])
def test_matching_from_a_herding_init_starts_at_the_herding_coreset(tiny, tiny_teacher_loader, method, init, kernel):
    ctx = SynthesisContext(tiny, ipc=2, seed=0, teacher=tiny_teacher_loader)
    herded = synthesize("herding", {"kernel": kernel}, ctx)
    options = {"network": SMALL_NET, "real_batch": 4, "iterations": 1, "lr": 1e-9, "init": init}
    started = synthesize(method, options | ({"classes_per_item": 3} if method == "dm" else {}), ctx)
    assert torch.allclose(started.images, herded.images, atol=1e-5)


def test_the_rbf_matching_loss_is_zero_for_the_real_sample_and_grows_as_the_synthetic_one_moves_away():
    real = torch.randn(2 * 50, 8, generator=torch.Generator().manual_seed(0))
    assert float(matching_loss(real, real, 2, "rbf")) == pytest.approx(0, abs=1e-6)
    # a synthetic sample of one point per class at the class mean is close in mean, far in distribution
    at_means = real.view(2, 50, 8).mean(1)
    assert float(matching_loss(real, at_means, 2, "linear")) == pytest.approx(0, abs=1e-6)
    shifts = [float(matching_loss(real, real + shift, 2, "rbf")) for shift in (0.1, 0.5, 2.0)]
    assert 0 < float(matching_loss(real, at_means, 2, "rbf")) and shifts == sorted(shifts) and shifts[0] > 0


def test_dm_in_a_frozen_teacher_s_features_lowers_that_teacher_s_mmd_and_leaves_the_teacher_as_it_was(tiny, tiny_teacher_loader):
    ctx = SynthesisContext(tiny, ipc=2, seed=0, teacher=tiny_teacher_loader)
    teacher = tiny_teacher_loader("convnet-bn").model
    weights = {k: v.clone() for k, v in teacher.state_dict().items()}
    needs_grad = [p.requires_grad for p in teacher.parameters()]
    grads = [None if p.grad is None else p.grad.clone() for p in teacher.parameters()]
    options = {"embedding": "convnet-bn", "kernel": "rbf", "real_batch": 30, "augmentation": "none", "init": "kernel-herding"}
    start = synthesize("dm", {**options, "iterations": 1, "lr": 1e-9}, ctx)
    done = synthesize("dm", {**options, "iterations": 30, "lr": 10.0}, ctx)  # MMD under an RBF kernel has small gradients
    train = tiny.train
    real = torch.cat([train.images[train.indices_of(c)] for c in range(10)])
    with torch.no_grad():
        teacher.eval()
        before, after = (float(matching_loss(teacher.features(real), teacher.features(s.images), 10, "rbf")) for s in (start, done))
    assert after < 0.6 * before
    assert all(torch.equal(weights[k], v) for k, v in teacher.state_dict().items())
    assert [p.requires_grad for p in teacher.parameters()] == needs_grad
    assert all((g is None and p.grad is None) or torch.equal(g, p.grad) for g, p in zip(grads, teacher.parameters()))
