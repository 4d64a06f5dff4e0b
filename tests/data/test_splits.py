import torch

from ddkit.data.splits import carve_validation


def test_validation_split_is_stratified_disjoint_and_deterministic(fmnist):
    assert len(fmnist.val) == 5000 and fmnist.val.class_counts().tolist() == [500] * 10
    train, val = carve_validation(fmnist.train, 100, seed=0)
    again_train, again_val = carve_validation(fmnist.train, 100, seed=0)
    assert torch.equal(val.images, again_val.images) and torch.equal(train.labels, again_train.labels)
    assert len(train) + len(val) == len(fmnist.train)
    _, other = carve_validation(fmnist.train, 100, seed=1)
    assert not torch.equal(val.images, other.images)
