import pytest
import torch

from ddkit.errors import DDKitError
from ddkit.models import ModelSpec, build_model
from ddkit.training import TrainRecipe, fit, hard_label_loss, lr_factor

RECIPE = TrainRecipe(epochs=3, batch_size=64, lr=0.05, augmentation="dsa")


def small_model():
    return build_model(ModelSpec("convnet-bn", {"width": 8}), 10, (1, 28, 28), (0.2861,), (0.353,), seed=0)


class Interrupt(Exception):
    pass


def test_interrupted_fit_resumes_to_the_same_weights(tiny, tmp_path):
    straight = fit(small_model(), tiny.train, RECIPE, seed=5)
    calls = {"n": 0}
    plain = hard_label_loss(tiny.train.labels)

    def dies_in_epoch_two(logits, batch):
        calls["n"] += 1
        if calls["n"] == 7:  # 5 batches per epoch: the 2nd batch of epoch 2
            raise Interrupt
        return plain(logits, batch)

    with pytest.raises(Interrupt):
        fit(small_model(), tiny.train, RECIPE, seed=5, loss_fn=dies_in_epoch_two, checkpoint=tmp_path / "resume.pt")
    assert (tmp_path / "resume.pt").exists()
    resumed = fit(small_model(), tiny.train, RECIPE, seed=5, checkpoint=tmp_path / "resume.pt")
    for key, value in straight.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key


def test_divergence_stops_with_the_fix(tiny):
    with pytest.raises(DDKitError, match="loss became (nan|inf).*lower the learning rate"):
        fit(small_model(), tiny.train, TrainRecipe(epochs=3, batch_size=64, lr=1e18, augmentation="none"), seed=0)


def test_schedules():
    assert lr_factor("step-half", 49, 100) == 1.0 and lr_factor("step-half", 50, 100) == 0.1
    assert lr_factor("cosine", 0, 100) == 1.0 and abs(lr_factor("cosine", 100, 100)) < 1e-9
    assert lr_factor("onecycle", 15, 100) == 1.0 and lr_factor("onecycle", 100, 100) == 0.0
