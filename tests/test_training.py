import pytest
import torch

from ddkit.curves import CurveLog, read_rows
from ddkit.errors import DDKitError
from ddkit.models import ModelSpec, build_model
from ddkit.training import Batch, TrainRecipe, cutmix, fit, hard_label_loss, lr_factor

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
    assert lr_factor("multistep", 66, 100) == 1.0 and lr_factor("multistep", 67, 100) == 0.2
    assert lr_factor("multistep", 83, 100) == 0.2 and abs(lr_factor("multistep", 99, 100) - 0.04) < 1e-12


def test_epochs_follow_idcs_ipc_table_and_steps_win():
    recipe = TrainRecipe(epochs=300, epochs_by_ipc={1: 3000, 10: 2000, 50: 1500})
    assert [recipe.epochs_for(ipc * 10, 10) for ipc in (1, 2, 10, 11, 50, 51)] == [3000, 2000, 2000, 1500, 1500, 300]
    assert TrainRecipe(steps=10, batch_size=4, epochs_by_ipc={1: 3000}).epochs_for(10, 10) == 4
    with pytest.raises(ValueError, match="epochs_by_ipc maps images per class"):
        TrainRecipe(epochs_by_ipc={0: 10})


def test_cutmix_pastes_one_box_from_the_partner_and_reports_the_kept_share():
    x = torch.arange(6, dtype=torch.float32).view(6, 1, 1, 1).expand(6, 3, 20, 16).clone()  # image i is all i
    for seed in range(20):
        mixed, (partner, kept) = cutmix(x, torch.Generator().manual_seed(seed), 1.0, 1.0)
        for i in range(6):
            if partner[i] != i:  # a fixed point pastes its own pixels
                assert abs((mixed[i, 0] == i).float().mean().item() - kept) < 1e-6
            assert ((mixed[i] == i) | (mixed[i] == partner[i])).all()
    assert cutmix(x, torch.Generator(), 0.0, 1.0) == (x, None)
    shares = [cutmix(x, torch.Generator().manual_seed(s), 1.0, 1.0)[1][1] for s in range(400)]
    # Beta(1, 1) asks for a uniform box area (mean kept share 1/2); clipping at the border keeps more (~0.7)
    assert 0.6 < sum(shares) / len(shares) < 0.8 and min(shares) < 0.3 and max(shares) > 0.95


def test_a_cutmix_batch_weighs_both_labels_by_area():
    labels, logits = torch.tensor([0, 1, 2]), torch.randn(3, 4)
    mixed = hard_label_loss(labels)(logits, Batch(logits, torch.arange(3), 0, (torch.tensor([2, 0, 1]), 0.75)))
    ce = torch.nn.functional.cross_entropy
    assert torch.isclose(mixed, 0.75 * ce(logits, labels) + 0.25 * ce(logits, labels[[2, 0, 1]]))


def test_fit_with_cutmix_is_seeded(tiny):
    recipe = TrainRecipe(epochs=2, batch_size=64, lr=0.05, augmentation="rrc-flip", mix="cutmix")
    first, second = (fit(small_model(), tiny.train, recipe, seed=0) for _ in range(2))
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), second.state_dict().values()))
