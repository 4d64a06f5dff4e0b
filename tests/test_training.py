import pytest
import torch

from ddkit.curves import CurveLog, read_rows
from ddkit.errors import DDKitError
from ddkit.models import ModelSpec, build_model
from ddkit.training import TrainRecipe, fit, hard_label_loss, lr_factor

RECIPE = TrainRecipe(epochs=3, batch_size=64, lr=0.05, augmentation="dsa")


def small_model():
    return build_model(ModelSpec("convnet-bn", {"width": 8}), 10, (1, 28, 28), (0.2861,), (0.353,), seed=0)


class Interrupt(Exception):
    pass


def loss_that_dies_at(batch_number: int, labels: torch.Tensor):
    """The hard-label loss, until it raises Interrupt at the `batch_number`-th batch (5 per epoch here)."""
    calls = {"n": 0}
    plain = hard_label_loss(labels)

    def loss(logits, batch):
        calls["n"] += 1
        if calls["n"] == batch_number:
            raise Interrupt
        return plain(logits, batch)

    return loss


def test_interrupted_fit_resumes_to_the_same_weights(tiny, tmp_path):
    straight = fit(small_model(), tiny.train, RECIPE, seed=5)
    with pytest.raises(Interrupt):  # in the 2nd batch of epoch 2
        fit(small_model(), tiny.train, RECIPE, seed=5, loss_fn=loss_that_dies_at(7, tiny.train.labels), checkpoint=tmp_path / "resume.pt")
    assert (tmp_path / "resume.pt").exists()
    resumed = fit(small_model(), tiny.train, RECIPE, seed=5, checkpoint=tmp_path / "resume.pt")
    for key, value in straight.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key


def test_fit_logs_each_epoch_to_csv_and_tensorboard_and_a_resume_does_not_repeat_epochs(tiny, tmp_path):
    curve = tmp_path / "curves"
    with pytest.raises(Interrupt):  # in the 2nd batch of epoch 3
        fit(small_model(), tiny.train, RECIPE, seed=5, loss_fn=loss_that_dies_at(12, tiny.train.labels), checkpoint=tmp_path / "resume.pt",
            curves=CurveLog(curve, "train"))
    fit(small_model(), tiny.train, RECIPE, seed=5, checkpoint=tmp_path / "resume.pt", curves=CurveLog(curve, "train"))
    rows = read_rows(curve / "train.csv")
    assert [r["step"] for r in rows] == [1, 2, 3] and rows[2]["loss"] < rows[0]["loss"]
    assert rows[0]["lr"] == RECIPE.lr and rows[2]["lr"] == pytest.approx(RECIPE.lr * 0.1)  # step-half: ×0.1 after half
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(curve / "train"))
    events.Reload()
    assert [(e.step, round(e.value, 4)) for e in events.Scalars("loss")] == [(r["step"], round(r["loss"], 4)) for r in rows]


def test_divergence_stops_with_the_fix(tiny):
    with pytest.raises(DDKitError, match="loss became (nan|inf).*lower the learning rate"):
        fit(small_model(), tiny.train, TrainRecipe(epochs=3, batch_size=64, lr=1e18, augmentation="none"), seed=0)


def test_schedules():
    assert lr_factor("step-half", 49, 100) == 1.0 and lr_factor("step-half", 50, 100) == 0.1
    assert lr_factor("cosine", 0, 100) == 1.0 and abs(lr_factor("cosine", 100, 100)) < 1e-9
    assert lr_factor("onecycle", 15, 100) == 1.0 and lr_factor("onecycle", 100, 100) == 0.0
