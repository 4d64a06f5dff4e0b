import pytest
import torch

from ddkit.data.shifts import SHIFTS, shifted_sets
from ddkit.errors import DDKitError


def test_every_shift_changes_the_images_keeps_labels_and_is_seeded(tiny):
    test = tiny.test
    sets = shifted_sets(test, list(SHIFTS))
    again = shifted_sets(test, list(SHIFTS))
    for name, shifted in sets.items():
        assert shifted.images.shape == test.images.shape and torch.equal(shifted.labels, test.labels)
        assert 0 <= shifted.images.min() and shifted.images.max() <= 1
        assert (shifted.images - test.images).abs().mean() > 0.01, name
        assert torch.equal(shifted.images, again[name].images), name
    assert torch.allclose(sets["invert"].images, 1 - test.images)


def test_unknown_shifts_are_named():
    with pytest.raises(DDKitError, match="unknown shift.*'fog'.*rotate, blur"):
        shifted_sets(None, ["fog"])
