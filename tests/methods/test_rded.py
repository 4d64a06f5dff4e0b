import pytest
import torch

from ddkit.errors import DDKitError
from ddkit.methods import SynthesisContext, synthesize
from ddkit.methods.rded import most_typical, on_canvas, random_square_crops, tile


def test_each_candidate_competes_with_its_best_crop_and_the_lowest_are_kept():
    losses = torch.tensor([[0.9, 0.2, 3.0, 0.5],
                           [0.1, 0.8, 2.0, 0.6]])  # (crops, candidates)
    chosen, crop = most_typical(losses, 3)
    assert chosen.tolist() == [0, 1, 3] and crop.tolist() == [1, 0, 0]
    least, _ = most_typical(losses, 2, band=1.0)
    middle, _ = most_typical(losses, 2, band=0.5)
    assert least.tolist() == [3, 2] and middle.tolist() == [1, 3]


def test_crops_are_squares_of_the_source_inside_the_image():
    images = torch.arange(2 * 28 * 28, dtype=torch.float32).view(2, 1, 28, 28)
    crops, boxes = random_square_crops(images, 3, 28, [0.08, 1.0], torch.Generator().manual_seed(0))
    assert crops.shape == (3, 2, 1, 28, 28)
    top, left, side = boxes.unbind(-1)
    assert (side >= 8).all() and (top + side <= 28).all() and (left + side <= 28).all()
    full, box = random_square_crops(images, 1, 28, [1.0, 1.0], torch.Generator().manual_seed(0))
    assert box.tolist() == [[[0, 0, 28], [0, 0, 28]]] and torch.allclose(full[0], images)


def test_tiles_lay_factor_squared_patches_row_by_row():
    patches = torch.stack([torch.full((1, 14, 14), v / 10) for v in range(8)])
    images = tile(patches, 2, (28, 28))
    assert images.shape == (2, 1, 28, 28)
    assert images[1, 0, 0, 0] == pytest.approx(0.4) and images[1, 0, 0, 27] == pytest.approx(0.5)
    assert images[1, 0, 27, 0] == pytest.approx(0.6) and images[1, 0, 27, 27] == pytest.approx(0.7)
    odd = tile(torch.rand(4, 1, 15, 15), 2, (29, 29))
    assert odd.shape == (1, 1, 29, 29)


def test_rded_keeps_crops_the_teacher_finds_typical(tiny, tiny_teacher_loader):
    ctx = SynthesisContext(tiny, ipc=2, seed=0, teacher=tiny_teacher_loader)
    result = synthesize("rded", {"candidates": 20, "crops": 3}, ctx)
    teacher = tiny_teacher_loader("convnet-bn")
    with torch.no_grad():
        picked = torch.nn.functional.cross_entropy(teacher.model(result.images), result.labels)
        drawn = torch.nn.functional.cross_entropy(teacher.model(tiny.train.images), tiny.train.labels)
    assert picked < drawn
    assert len(result.meta["crops"]) == 20 and all(tiny.train.labels[c[0]] == label for c, label in zip(result.meta["crops"], result.labels))
    tiled = synthesize("rded", {"candidates": 20, "crops": 1, "factor": 2}, ctx)
    assert tiled.images.shape == (20, 1, 28, 28) and len(tiled.meta["crops"]) == 80
    with pytest.raises(DDKitError, match="RDED needs 12 candidate images of class 'T-shirt/top' for IPC 3 at factor 2 and has 10; raise candidates"):
        synthesize("rded", {"candidates": 10, "factor": 2}, SynthesisContext(tiny, ipc=3, seed=0, teacher=tiny_teacher_loader))


def test_a_patch_is_scored_centred_on_a_canvas_of_the_data_mean():
    canvas = on_canvas(torch.ones(1, 1, 2, 2), (4, 4), torch.tensor([0.3]))
    assert canvas[0, 0, 1:3, 1:3].eq(1).all() and canvas[0, 0, 0].eq(0.3).all() and canvas[0, 0, :, 3].eq(0.3).all()
