import pytest
import torch

from ddkit.data.augment import AUGMENTATIONS, DSA_GROUPS

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
