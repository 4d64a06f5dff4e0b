from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from ddkit.data.images import ImageSet
from ddkit.errors import DDKitError
from ddkit.methods import SynthesisContext, synthesize
from ddkit.methods.base import resolve_config
from ddkit.methods.distribution_matching import DMConfig, matching_loss, rows_of, trained_pool
from ddkit.models.classifier import build_model, parse_model_spec
from ddkit.seeds import item_seed

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


def test_rows_of_the_class_pools_are_the_rows_of_their_concatenation_in_the_order_asked():
    pools = [torch.arange(3.0).view(3, 1), 10 + torch.arange(5.0).view(5, 1), 20 + torch.arange(2.0).view(2, 1)]
    picks = torch.tensor([9, 0, 3, 7, 8, 2, 3])
    assert torch.equal(rows_of(pools, picks), torch.cat(pools)[picks])


def test_the_network_pool_keeps_each_network_at_its_steps_and_its_later_snapshots_fit_the_data_better(tiny):
    cfg = DMConfig(network=SMALL_NET, pool_networks=2, pool_steps=[0, 5, 20], pool_batch=32, pool_lr=0.05)
    train = tiny.train
    snapshots = trained_pool(cfg, parse_model_spec(SMALL_NET), train, SynthesisContext(tiny, 1, 0, None), torch.Generator().manual_seed(0))
    assert len(snapshots) == 6 and [s.accuracy for s in snapshots][::3] == [0.0, 0.0]  # untrained: no accuracy to weigh by
    assert all(s.accuracy > 0 for i, s in enumerate(snapshots) if i % 3)
    net = build_model(parse_model_spec(SMALL_NET), 10, train.image_shape, train.mean, train.std, seed=0)

    def train_loss(snapshot) -> float:
        net.load_state_dict(snapshot.state)
        with torch.no_grad():
            return float(F.cross_entropy(net(train.images), train.labels))

    assert any(not torch.equal(a, b) for a, b in zip(snapshots[0].state.values(), snapshots[3].state.values()))  # two networks
    for first in (0, 3):
        assert train_loss(snapshots[first + 2]) < train_loss(snapshots[first + 1]) < train_loss(snapshots[first])


def test_idm_s_class_aware_term_lowers_the_pool_networks_cross_entropy_on_the_decoded_set(tiny):
    options = {"network": SMALL_NET, "real_batch": 16, "augmentation": "none", "iterations": 30, "lr": 0.2,
               "pool_networks": 1, "pool_steps": [0, 20], "pool_batch": 32, "pool_lr": 0.05}
    ctx = SynthesisContext(tiny, ipc=1, seed=0, teacher=None)
    plain, weighted = (synthesize("idm", {**options, "ce_weight": weight}, ctx) for weight in (0.0, 0.5))
    assert plain.factor == weighted.factor == 2 and plain.images.shape == (10, 1, 28, 28)
    snapshot = trained_pool(resolve_config("idm", options), parse_model_spec(SMALL_NET), tiny.train, ctx,
                            torch.Generator().manual_seed(item_seed(0, "dm-pool")))[-1]
    net = build_model(parse_model_spec(SMALL_NET), 10, tiny.train.image_shape, tiny.train.mean, tiny.train.std, seed=0)
    net.load_state_dict(snapshot.state)

    def cross_entropy(distilled) -> float:
        decoded = distilled.decoded()
        with torch.no_grad():
            return float(F.cross_entropy(net(decoded.images), decoded.labels))

    assert cross_entropy(weighted) < 0.8 * cross_entropy(plain)


@pytest.mark.parametrize(("options", "message"), [({"ce_weight": 0.5}, "needs pool_networks > 0"),
                                                  ({"pool_networks": 2, "embedding": "convnet-bn"}, "embedding: random"),
                                                  ({"pool_networks": 2, "pool_steps": []}, "pool_steps")])
def test_dm_refuses_a_pool_setting_it_cannot_honour(options, message):
    with pytest.raises(ValueError, match=message):
        DMConfig(**options)
