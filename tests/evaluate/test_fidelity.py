import math

import pytest
import torch

from ddkit.data.distilled import DistilledSet
from ddkit.evaluate.fidelity import (
    class_sample,
    frechet_distance,
    kernel_distance,
    measure_fidelity,
    prdc,
    set_fidelity,
)
from ddkit.models import ModelSpec, build_model
from ddkit.models.teachers import Teacher, TeacherConfig
from ddkit.seeds import item_seed


def gaussian(n: int, dim: int, seed: int, shift: float = 0.0) -> torch.Tensor:
    return torch.randn(n, dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) + shift


def test_identical_sets_are_perfect_and_a_far_set_is_not():
    points = gaussian(200, 8, 0)
    same = prdc(points, points.clone(), k=5)
    assert same["precision"] == same["recall"] == same["coverage"] == 1.0
    assert same["density"] >= 1.0  # each point lies at least in its own ball
    assert abs(frechet_distance(points, points.clone())) < 1e-6
    # Against itself the unbiased MMD² is not exactly 0 but -2 (mean k(x,x) - mean k(x,y)) / n: small.
    kernel = (points @ points.T / 8 + 1) ** 3
    self_term, cross_term = kernel.diagonal().mean(), (kernel.sum() - kernel.diagonal().sum()) / (200 * 199)
    kid_mean, kid_std = kernel_distance(points, points.clone(), subsets=10)
    assert abs(kid_mean + 2 * (self_term - cross_term) / 200) < 1e-9 and kid_std < 1e-9 and abs(kid_mean) < 0.1
    far = prdc(points, points + 100, k=5)
    assert far["precision"] == far["coverage"] == far["recall"] == far["density"] == 0.0


def test_prdc_counts_balls_as_in_naeem_et_al():
    # 1-D, k=1: real 0,1,2,3 have radius 1; fake 0.5, 0.7 have radius 0.2 and the outlier 10 has 9.3.
    real = torch.tensor([[0.0], [1.0], [2.0], [3.0]])
    fake = torch.tensor([[0.5], [0.7], [10.0]])
    numbers = prdc(real, fake, k=1)
    assert numbers["precision"] == 2 / 3  # 0.5 and 0.7 lie in real balls, 10 in none
    assert abs(numbers["density"] - 4 / 3) < 1e-12  # each of 0.5 and 0.7 lies in two real balls
    assert numbers["coverage"] == 0.5  # only real 0 and 1 have a fake point within their radius
    assert numbers["recall"] == 0.75  # the outlier's wide ball holds real 1, 2, 3 (Naeem et al.'s point)
    assert math.isnan(prdc(real, fake[:1], k=1)["recall"])  # one fake point has no neighbour


def test_fid_of_shifted_gaussians_is_the_squared_mean_shift():
    real, fake = gaussian(1000, 4, 0), gaussian(1000, 4, 1, shift=1.0)
    assert abs(frechet_distance(real, fake) - 4.0) < 0.3  # |shift|² = 4 · 1²; covariances both ≈ I
    assert frechet_distance(real, gaussian(1000, 4, 2)) < 0.1


def test_kid_separates_a_shifted_set_from_a_resample():
    real = gaussian(600, 4, 0)
    resample_mean, resample_std = kernel_distance(real, gaussian(600, 4, 1), subsets=20)
    shifted_mean, _ = kernel_distance(real, gaussian(600, 4, 2, shift=0.5), subsets=20)
    assert abs(resample_mean) < 3 * resample_std + 1e-3 and shifted_mean > 10 * abs(resample_mean) + 0.01
    assert kernel_distance(real, gaussian(600, 4, 1), subsets=20, seed=3) != (resample_mean, resample_std)


def untrained(name: str, tiny) -> Teacher:
    spec = ModelSpec("convnet", {"width": 8})
    model = build_model(spec, tiny.train.num_classes, tiny.train.image_shape, tiny.train.mean, tiny.train.std)
    return Teacher(TeacherConfig(name, spec), model.eval(), {"key": name})


def test_measure_fidelity_on_real_images_writes_and_reuses_records(tiny, tmp_path):
    extractor = untrained("untrained-convnet", tiny)
    # A set made of exactly the real reference sample must score exactly like the reference.
    real = class_sample(tiny.train, [3] * 10, item_seed(0, "fidelity-reference"))
    as_real = DistilledSet(real.images, real.labels, real.class_names, real.mean, real.std)
    noise = DistilledSet(torch.rand_like(real.images), real.labels, real.class_names, real.mean, real.std)
    (record,) = measure_fidelity(as_real, tmp_path / "real", tiny.train, tiny.test, {"convnet": extractor})
    reference = record.pop("real_reference")
    assert reference == {"size": 30, **{k: record[k] for k in reference if k != "size"}}
    assert record["extractor"] == "untrained-convnet" and record["test_size"] == 400 and record["set_size"] == 30
    assert 0 < record["coverage"] <= 1 and record["fid"] > 0
    (noisy,) = measure_fidelity(noise, tmp_path / "noise", tiny.train, tiny.test, {"convnet": extractor})
    assert noisy["fid"] > 2 * reference["fid"] and noisy["precision"] < reference["precision"]
    assert noisy["real_reference"] == reference
    path = tmp_path / "noise" / "fidelity" / "convnet.json"
    stamp = path.stat().st_mtime_ns
    assert measure_fidelity(noise, tmp_path / "noise", tiny.train, tiny.test, {"convnet": extractor}) == [noisy]
    assert path.stat().st_mtime_ns == stamp
    other = untrained("other-convnet", tiny)
    (redone,) = measure_fidelity(noise, tmp_path / "noise", tiny.train, tiny.test, {"convnet": other})
    assert redone["extractor"] == "other-convnet" and path.stat().st_mtime_ns != stamp
    assert set_fidelity(noise, tiny.train, tiny.test, other) == {k: v for k, v in redone.items() if k != "name"}


# Cross-checks against the libraries on the same features: torchmetrics' FID and KID (fed the
# features through an identity "extractor") and the prdc package of Naeem et al.'s authors.
# Cases: overlapping clouds with full-rank covariances, and a distilled-set-sized fake side (10
# points in 32 dimensions) whose covariance is singular.
CASES = [(400, 300, 8, 0.3), (400, 10, 32, 0.5)]


class IdentityFeatures(torch.nn.Identity):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.num_features = dim


def two_clouds(n_real: int, n_fake: int, dim: int, shift: float) -> tuple[torch.Tensor, torch.Tensor]:
    return gaussian(n_real, dim, 10), gaussian(n_fake, dim, 11, shift) * 1.2


@pytest.mark.parametrize("n_real, n_fake, dim, shift", CASES)
def test_fid_agrees_with_torchmetrics(n_real, n_fake, dim, shift):
    from torchmetrics.image.fid import FrechetInceptionDistance

    real, fake = two_clouds(n_real, n_fake, dim, shift)
    metric = FrechetInceptionDistance(feature=IdentityFeatures(dim))
    metric.update(real, real=True)
    metric.update(fake, real=False)
    theirs = float(metric.compute())
    # Full rank: the same number up to rounding. Singular (fewer points than dimensions): our scipy
    # sqrtm needs a 1e-6 ridge where torchmetrics' eigenvalue route does not; it moves FID by ~1e-9.
    tolerance = 1e-9 if n_fake > dim else 1e-6
    assert theirs > 1 and abs(frechet_distance(real, fake) - theirs) <= tolerance * theirs


@pytest.mark.filterwarnings("ignore:Metric `Kernel Inception Distance` will save")
@pytest.mark.parametrize("n_real, n_fake, dim, shift", CASES)
def test_kid_agrees_with_torchmetrics_on_the_same_subsets(n_real, n_fake, dim, shift):
    from torchmetrics.image.kid import KernelInceptionDistance

    real, fake = two_clouds(n_real, n_fake, dim, shift)
    metric = KernelInceptionDistance(feature=IdentityFeatures(dim), subsets=20, subset_size=min(n_real, n_fake))
    metric.update(real, real=True)
    metric.update(fake, real=False)
    with torch.random.fork_rng():  # torchmetrics draws its subsets from the global generator, ours from one seeded alike
        torch.manual_seed(3)
        theirs_mean, theirs_std = (float(v) for v in metric.compute())
    ours_mean, ours_std = kernel_distance(real, fake, subsets=20, seed=3)
    assert theirs_std > 0 and abs(ours_mean - theirs_mean) < 1e-12 and abs(ours_std - theirs_std) < 1e-12


@pytest.mark.parametrize("n_real, n_fake, dim, shift", CASES)
def test_prdc_agrees_with_the_prdc_package(n_real, n_fake, dim, shift, capsys):
    from prdc import compute_prdc

    real, fake = two_clouds(n_real, n_fake, dim, shift)
    theirs = compute_prdc(real.numpy(), fake.numpy(), nearest_k=5)  # prints the sizes: captured
    ours = prdc(real, fake, k=5)
    assert 0 < ours["precision"] < 1 and 0 < ours["coverage"] < 1
    assert ours == pytest.approx({name: float(value) for name, value in theirs.items()}, abs=1e-12)
