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
