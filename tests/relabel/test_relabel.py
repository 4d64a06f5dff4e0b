import pytest
import torch

from ddkit.relabel import EnsembleModel, fkd_bytes_per_image_epoch, record_soft_labels, rescale_to_common_norm
from ddkit.relabel.stored import StoredLabels, bytes_per_image_epoch, pack_indices, unpack_indices
from ddkit.training import TrainRecipe, epoch_batches


def test_rescaling_puts_teachers_on_a_common_norm():
    base = torch.randn(4, 10)
    loud, quiet = base * 10, torch.randn(4, 10)
    mixed = rescale_to_common_norm([loud, quiet])
    centred = [z - z.mean(1, keepdim=True) for z in (loud, quiet)]
    target = (centred[0].norm(dim=1) + centred[1].norm(dim=1)) / 2
    scaled = [c / c.norm(dim=1, keepdim=True) * target[:, None] for c in centred]
    assert torch.allclose(mixed, (scaled[0] + scaled[1]) / 2, atol=1e-5)
    same = rescale_to_common_norm([base, base])
    assert torch.allclose(same, base - base.mean(1, keepdim=True), atol=1e-5)
    model = EnsembleModel([torch.nn.Linear(3, 10), torch.nn.Linear(3, 10)])
    assert model(torch.randn(2, 3)).shape == (2, 10)


@pytest.mark.parametrize("bits", [1, 4, 10])
def test_index_packing_round_trips(bits):
    values = torch.randint(0, 2**bits, (37,))
    packed = pack_indices(values, bits)
    assert len(packed) == (37 * bits + 7) // 8
    assert torch.equal(unpack_indices(packed, bits, 37), values)


def test_storage_is_under_a_tenth_of_fkd_at_10_and_1000_classes():
    assert bytes_per_image_epoch(10, 2) == 3.0 and fkd_bytes_per_image_epoch(10) == 37
    assert bytes_per_image_epoch(1000, 20) == 45.0 and fkd_bytes_per_image_epoch(1000) == 2017


def test_recorded_labels_replay_the_students_batches(tiny, tiny_teacher_loader, tmp_path):
    teacher = tiny_teacher_loader("convnet-bn").model
    data = tiny.train.subset(torch.arange(0, 300, 3))
    recipe = TrainRecipe(epochs=2, batch_size=32, augmentation="rrc-flip")
    stored = record_soft_labels(teacher, data, recipe, seed=7, temperature=4.0, top_k=3)
    assert stored.shape == (2, 100, 3) and stored.nbytes == 2 * 100 * 3 + (2 * 100 * 3 * 4 + 7) // 8
    stored.save(tmp_path / "labels.safetensors")
    loaded = StoredLabels.load(tmp_path / "labels.safetensors")
    generator = torch.Generator().manual_seed(7)
    for epoch in range(2):
        for index, x, _mix in epoch_batches(data, recipe, generator):
            with torch.no_grad():
                probs = torch.softmax(teacher(x) / 4.0, dim=1)
            target = loaded.target_log_probs(epoch, index).exp()
            assert torch.allclose(target.sum(1), torch.ones(len(index)), atol=1e-5)
            chosen = probs.gather(1, target.argmax(1, keepdim=True)).squeeze(1)
            assert (chosen >= probs.max(1).values - 0.005).all()  # top-1 up to quantisation ties
            top = probs.topk(3, dim=1)
            assert torch.allclose(target.gather(1, top.indices), top.values, atol=0.005)


def test_per_batch_rescale_is_prisms_released_relabel():
    logits = [torch.randn(6, 10) * 5, torch.randn(6, 10) + 2]
    stacked = torch.stack(logits)
    norm = torch.norm(stacked, dim=[1, 2], keepdim=True)  # generate_soft_label_r18.py, verbatim
    assert torch.allclose(rescale_to_common_norm(logits, "per-batch"), (stacked / norm * norm.mean(0, keepdim=True)).mean(0))
    # per-batch labels depend on the other images of the batch; per-image ones do not
    first = [z[:3] for z in logits]
    assert torch.allclose(rescale_to_common_norm(first), rescale_to_common_norm(logits)[:3])
    assert not torch.allclose(rescale_to_common_norm(first, "per-batch"), rescale_to_common_norm(logits, "per-batch")[:3])
