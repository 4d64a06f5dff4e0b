from dataclasses import replace

import pytest
import torch

from ddkit.data.images import ImageSet
from ddkit.errors import DDKitError
from ddkit.methods import SynthesisContext, gradient_matching, synthesize
from ddkit.methods.gradient_matching import gradient_distance, mean_loss_gradient
from ddkit.models.classifier import build_model, parse_model_spec

SMALL_NET = "convnet(width=16,depth=2,norm=instance)"
FAST = {"network": SMALL_NET, "real_batch": 16, "outer_loop": 2, "inner_loop": 1, "augmentation": "none"}


def small_net(tiny, seed: int):
    train = tiny.train
    return build_model(parse_model_spec(SMALL_NET), 10, train.image_shape, train.mean, train.std, seed=seed)


def test_gradient_distance_is_one_minus_cosine_per_output_unit_and_skips_biases():
    real = [torch.tensor([[1.0, 0.0], [0.0, 2.0]]), torch.tensor([5.0, 5.0])]
    synthetic = [torch.tensor([[3.0, 0.0], [2.0, 0.0]]), torch.tensor([-5.0, 1.0])]
    assert gradient_distance(real, synthetic).item() == pytest.approx(0 + 1, abs=1e-5)  # rows: cos 1, cos 0
    assert gradient_distance(real, [2 * g for g in real]).item() == pytest.approx(0, abs=1e-5)  # scale-free


def test_the_real_gradient_in_chunks_is_the_gradient_of_one_pass(tiny):
    net = small_net(tiny, 0)
    parameters = list(net.parameters())
    images = tiny.train.images[tiny.train.indices_of(4)][:20]
    whole, chunked = (mean_loss_gradient(net, parameters, images, 4, chunk) for chunk in (20, 6))
    # float32 sums taken in another order (chunks, the number of threads) differ by ~1e-5 of the value
    assert all(torch.allclose(a, b, rtol=1e-4, atol=1e-6) for a, b in zip(whole, chunked))


def mean_distance(images: torch.Tensor, tiny, seeds: range) -> float:
    """The matching objective under networks the optimisation never saw (no inner-loop training)."""
    train, total = tiny.train, 0.0
    for seed in seeds:
        net = small_net(tiny, seed)
        parameters = list(net.parameters())
        for c in range(10):
            real = mean_loss_gradient(net, parameters, train.images[train.indices_of(c)], c, 64)
            mine = mean_loss_gradient(net, parameters, images[images_of(c, len(images) // 10)], c, 64)
            total += float(gradient_distance(real, mine))
    return total / len(seeds)


def images_of(c: int, ipc: int) -> slice:
    return slice(c * ipc, (c + 1) * ipc)


def test_gradient_matching_brings_the_sets_gradients_toward_the_real_ones_under_fresh_networks(tiny):
    ctx = SynthesisContext(tiny, ipc=2, seed=0, teacher=None)
    start = synthesize("dc", {**FAST, "iterations": 1, "lr": 1e-9}, ctx)
    done = synthesize("dc", {**FAST, "iterations": 25, "lr": 0.5, "init": "real"}, ctx)
    before, after = mean_distance(start.images, tiny, range(1000, 1004)), mean_distance(done.images, tiny, range(1000, 1004))
    assert after < 0.85 * before
    assert done.images.min() >= 0 and done.images.max() <= 1 and done.labels.tolist() == [c for c in range(10) for _ in range(2)]


def test_an_interrupted_run_resumes_from_its_checkpoint_and_makes_the_same_set(tiny, tmp_path, monkeypatch):
    options = {**FAST, "iterations": 4, "checkpoint_every": 2, "augmentation": "dsa"}
    whole = synthesize("dc", options, SynthesisContext(tiny, 1, 0, None, workdir=tmp_path / "whole"))
    save = gradient_matching._save_checkpoint

    def save_then_stop(*args):
        save(*args)
        raise KeyboardInterrupt

    monkeypatch.setattr(gradient_matching, "_save_checkpoint", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        synthesize("dc", options, SynthesisContext(tiny, 1, 0, None, workdir=tmp_path / "stopped"))
    assert (tmp_path / "stopped" / "item-all-classes.checkpoint.safetensors").exists()
    monkeypatch.setattr(gradient_matching, "_save_checkpoint", lambda *args: pytest.fail("resumed at 2: no checkpoint due"))
    resumed = synthesize("dc", options, SynthesisContext(tiny, 1, 0, None, workdir=tmp_path / "stopped"))
    assert torch.equal(resumed.images, whole.images)
    assert not (tmp_path / "stopped" / "item-all-classes.checkpoint.safetensors").exists()


def test_gradient_matching_stops_with_a_clear_error_when_the_loss_is_not_finite(tiny):
    images = tiny.train.images.clone()
    images[tiny.train.indices_of(3)] = float("nan")
    broken = replace(tiny, train=ImageSet(images, tiny.train.labels, tiny.train.class_names, tiny.train.mean, tiny.train.std))
    with pytest.raises(DDKitError, match="gradient matching loss became nan at iteration 1; check the training images"):
        synthesize("dc", {**FAST, "iterations": 2}, SynthesisContext(broken, 1, 0, None))
