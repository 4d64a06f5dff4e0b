import pytest
import torch

from ddkit.data.augment import AUGMENTATIONS, DSA_GROUPS, colour_jitter, pca_lighting

STATS = ((0.2861,), (0.3530,))


@pytest.mark.parametrize("name", AUGMENTATIONS.names())
def test_augmentations_are_seeded_and_keep_shape(name, tiny):
    x = tiny.train.images[:16]
    first = AUGMENTATIONS.get(name)(x, STATS, torch.Generator().manual_seed(3))
    second = AUGMENTATIONS.get(name)(x, STATS, torch.Generator().manual_seed(3))
    assert first.shape == x.shape and torch.equal(first, second)
    if name != "none":
        assert not torch.equal(first, x)


def test_every_dsa_group_changes_images(tiny):
    x = tiny.train.images[:8]
    for group in DSA_GROUPS:
        assert not torch.allclose(group(x, torch.Generator().manual_seed(0)), x), group.__name__


def test_idc_colour_jitter_and_lighting():
    grey = torch.full((4, 3, 8, 8), 0.5)
    jittered = colour_jitter(grey, torch.Generator().manual_seed(0))
    # brightness scales a grey image, contrast and saturation leave it as it is: still grey, per image
    assert torch.allclose(jittered, jittered[:, :1].expand_as(jittered)) and not torch.allclose(jittered, grey)
    assert ((jittered - 0.5).abs() <= 0.5 * 0.4 + 1e-6).all()
    red = torch.zeros(64, 3, 4, 4)
    red[:, 0] = 1.0
    orders = colour_jitter(red, torch.Generator().manual_seed(1))
    assert len({round(v, 4) for v in orders[:, 1, 0, 0].tolist()}) > 32  # per-image factors and orders
    lit = pca_lighting(grey, torch.Generator().manual_seed(0))
    shift = lit - grey
    assert torch.allclose(shift, shift[:, :, :1, :1].expand_as(shift)) and shift.abs().max() < 0.2  # one RGB shift per image
    assert torch.equal(pca_lighting(grey[:, :1], torch.Generator()), grey[:, :1])  # RGB only


def test_siamese_dsa_gives_images_of_one_owner_one_transformation(tiny):
    from ddkit.data.augment import dsa, dsa_siamese

    x = tiny.train.images[:1].expand(6, -1, -1, -1)
    owner = torch.tensor([0, 0, 0, 1, 1, 1])
    outputs = [dsa_siamese(x, STATS, torch.Generator().manual_seed(s), owner) for s in range(12)]
    for out in outputs:
        assert torch.equal(out[0], out[2]) and torch.equal(out[3], out[5])
    assert any(not torch.allclose(out[0], out[3]) for out in outputs)
    # one owner per image is plain DSA, draw for draw
    y = tiny.train.images[:8]
    assert torch.equal(dsa_siamese(y, STATS, torch.Generator().manual_seed(5), torch.arange(8)),
                       dsa(y, STATS, torch.Generator().manual_seed(5)))


def test_idc_diffaug_cuts_out_every_image_where_dsa_picks_one_transformation(tiny):
    x = tiny.train.images[:32]
    mean = STATS[0][0]

    def holes(out: torch.Tensor) -> torch.Tensor:  # cutout fills with the mean: a 14 × 14 block, at least 7 × 7 inside the image
        return ((out - mean).abs() < 1e-6).flatten(1).sum(1)

    for seed in range(4):
        assert (holes(AUGMENTATIONS.get("diffaug-idc")(x, STATS, torch.Generator().manual_seed(seed))) >= 7 * 7).all()
    dsa_holes = [holes(AUGMENTATIONS.get("dsa")(x, STATS, torch.Generator().manual_seed(s))) for s in range(12)]
    assert any((h < 7 * 7).all() for h in dsa_holes)  # batches where DSA drew another transformation than cutout
