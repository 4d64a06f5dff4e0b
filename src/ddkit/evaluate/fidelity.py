"""Distribution fidelity of a distilled set against real test images: PRDC, FID and KID.

- Precision, recall, density and coverage follow Naeem et al. 2020, "Reliable Fidelity and
  Diversity Metrics for Generative Models" (k-nearest-neighbour balls around real and fake points).
- FID is the Fréchet distance between Gaussians fitted to the two feature sets (Heusel et al. 2017,
  "GANs Trained by a Two Time-Scale Update Rule Converge to a Local Nash Equilibrium").
- KID is the unbiased squared MMD under the cubic polynomial kernel, averaged over random subsets
  (Bińkowski et al. 2018, "Demystifying MMD GANs").

The tests check all three against the libraries on the same features: torchmetrics' FID and KID
(KID to 1e-12 on the same subsets) and the authors' `prdc` package (to 1e-12). The one deliberate
difference: where a covariance is singular (fewer images than feature dimensions, as in small
sets) a 1e-6 ridge makes scipy's matrix square root exist; it moves FID by about 1e-9 relative.

Features are the penultimate layer of a ddkit classifier, not Inception: Inception weights are not
available offline, and an ImageNet network says little about 28-pixel greyscale images. Numbers are
therefore only comparable under the same extractor (its label is stored with each record).

FID and KID depend on sample size and distilled sets are small, so each record also holds the same
numbers for a real reference: a seeded sample of training images with the set's class counts,
against the same test sample. "FID 12.3 (real subset of the same size: 9.8)" is the honest reading.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Iterable, Iterator, Optional

import numpy as np
import torch
from scipy import linalg

from ddkit.data.distilled import DistilledSet
from ddkit.data.images import ImageSet
from ddkit.devices import module_device
from ddkit.evaluate.diversity import cached_per_extractor
from ddkit.models.teachers import Teacher
from ddkit.seeds import item_seed

TEST_SAMPLE = 2000  # test images (class-balanced) every set is compared against
NEIGHBOURS = 5  # k of Naeem et al.'s k-NN balls
CHUNK = 2048  # rows of a distance matrix held at once
KID_SUBSET = 1000  # Bińkowski et al.'s subset size for KID
FEATURE_BATCH = 500  # images per forward pass of the extractor


def prdc(real: torch.Tensor, fake: torch.Tensor, k: int = NEIGHBOURS) -> dict[str, float]:
    """Precision, recall, density and coverage of `fake` with respect to `real` (Naeem et al. 2020).

    Recall needs k-NN balls around fake points, so it is nan when `fake` has k points or fewer.
    """
    real, fake = real.flatten(1).double(), fake.flatten(1).double()
    real_radii = kth_neighbour_distance(real, k)
    fake_radii = kth_neighbour_distance(fake, k) if len(fake) > k else None
    real_balls_holding = torch.zeros(len(fake), dtype=torch.float64)  # per fake point
    recalled = torch.zeros(len(real), dtype=torch.bool)
    nearest_fake = torch.full((len(real),), float("inf"), dtype=torch.float64)
    for start in range(0, len(fake), CHUNK):
        distances = torch.cdist(real, fake[start:start + CHUNK])  # (real, chunk)
        real_balls_holding[start:start + CHUNK] = (distances < real_radii[:, None]).sum(0).double()
        nearest_fake = torch.minimum(nearest_fake, distances.min(1).values)
        if fake_radii is not None:
            recalled |= (distances < fake_radii[None, start:start + CHUNK]).any(1)
    return {
        "precision": float((real_balls_holding > 0).double().mean()),
        "recall": float(recalled.double().mean()) if fake_radii is not None else float("nan"),
        "density": float(real_balls_holding.mean() / k),
        "coverage": float((nearest_fake < real_radii).double().mean()),
    }


def kth_neighbour_distance(points: torch.Tensor, k: int) -> torch.Tensor:
    """Distance from each point to its k-th nearest other point (each point is its own 0-th)."""
    return torch.cat([torch.cdist(points[start:start + CHUNK], points).kthvalue(k + 1, dim=1).values
                      for start in range(0, len(points), CHUNK)])


def frechet_distance(real: torch.Tensor, fake: torch.Tensor) -> float:
    """FID between Gaussians fitted to the two feature sets (Heusel et al. 2017)."""
    real, fake = real.flatten(1).double().numpy(), fake.flatten(1).double().numpy()
    mu_real, mu_fake = real.mean(0), fake.mean(0)
    cov_real, cov_fake = np.atleast_2d(np.cov(real, rowvar=False)), np.atleast_2d(np.cov(fake, rowvar=False))
    with warnings.catch_warnings():  # small sets (IPC 1-10) always have singular covariances; handled below
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        root = linalg.sqrtm(cov_real @ cov_fake)
    if not np.isfinite(root).all():
        # Fewer samples than dimensions make a covariance singular; a tiny ridge makes the root exist.
        ridge = np.eye(len(cov_real)) * 1e-6
        root = linalg.sqrtm((cov_real + ridge) @ (cov_fake + ridge))
    shift = mu_real - mu_fake
    return float(shift @ shift + np.trace(cov_real) + np.trace(cov_fake) - 2 * np.trace(root.real))


def kernel_distance(
    real: torch.Tensor, fake: torch.Tensor, subsets: int = 100, subset_size: Optional[int] = None, seed: int = 0,
) -> tuple[float, float]:
    """KID (Bińkowski et al. 2018): mean and population std of the unbiased MMD² over random subsets.

    `subset_size` defaults to min(KID_SUBSET, len(real), len(fake)); subsets are drawn without replacement.
    """
    real, fake = real.flatten(1).double(), fake.flatten(1).double()
    size = subset_size or min(KID_SUBSET, len(real), len(fake))
    generator = torch.Generator().manual_seed(seed)
    estimates = torch.tensor([
        polynomial_mmd2(real[torch.randperm(len(real), generator=generator)[:size]],
                        fake[torch.randperm(len(fake), generator=generator)[:size]])
        for _ in range(subsets)
    ], dtype=torch.float64)
    return float(estimates.mean()), float(estimates.std(unbiased=False))


def polynomial_mmd2(x: torch.Tensor, y: torch.Tensor) -> float:
    """Unbiased MMD² under k(a, b) = (a·b / d + 1)³; the diagonals are left out of the within-set terms."""
    d = x.shape[1]
    kxx, kyy, kxy = (x @ x.T / d + 1) ** 3, (y @ y.T / d + 1) ** 3, (x @ y.T / d + 1) ** 3
    m, n = len(x), len(y)
    within_x = (kxx.sum() - kxx.diagonal().sum()) / (m * (m - 1))
    within_y = (kyy.sum() - kyy.diagonal().sum()) / (n * (n - 1))
    return float(within_x + within_y - 2 * kxy.mean())


@torch.no_grad()
def extract_features(extractor: Teacher, chunks: Iterable[torch.Tensor]) -> torch.Tensor:
    """Penultimate features of `chunks` (images, batch by batch) on the extractor's device, returned on the CPU."""
    model = extractor.model.eval()
    device = module_device(model)
    return torch.cat([model.features(chunk.to(device)).flatten(1).cpu() for chunk in chunks])


def set_chunks(images: ImageSet) -> Iterator[torch.Tensor]:
    return (chunk for _, chunk, _ in images.batches(FEATURE_BATCH))


def class_sample(images: ImageSet, counts: list[int], seed: int) -> ImageSet:
    """A seeded random sample with counts[c] images of class c (all of them where a class has fewer)."""
    generator = torch.Generator().manual_seed(seed)
    picks = []
    for c, count in enumerate(counts):
        members = images.indices_of(c)
        picks.append(members[torch.randperm(len(members), generator=generator)[:count]])
    return images.subset(torch.cat(picks))


def fidelity_numbers(test_features: torch.Tensor, features: torch.Tensor, k: int) -> dict[str, float]:
    kid_mean, kid_std = kernel_distance(test_features, features)
    numbers = prdc(test_features, features, k) | {
        "fid": frechet_distance(test_features, features), "kid_mean": kid_mean, "kid_std": kid_std,
    }
    # Significant digits, not decimals: KID in these feature spaces is of order 1e-4.
    return {name: float(f"{value:.4g}") for name, value in numbers.items()}


def set_fidelity(
    distilled: DistilledSet, train: ImageSet, test: ImageSet, extractor: Teacher,
    k: int = NEIGHBOURS, real_size: int = TEST_SAMPLE,
) -> dict:
    """PRDC, FID and KID of the set and of a same-sized real training sample, against a test sample."""
    training = distilled.decoded()  # the images students train on, against as many real ones
    seed = item_seed(0, "fidelity-reference")
    test_sample = class_sample(test, [real_size // test.num_classes] * test.num_classes, seed)
    counts = torch.bincount(training.labels, minlength=train.num_classes).tolist()
    real = class_sample(train, counts, seed)
    test_features = extract_features(extractor, set_chunks(test_sample))
    return {
        "extractor": extractor.label, "k": k, "ipc": distilled.ipc, "set_size": len(training),
        "test_size": len(test_sample),
        **fidelity_numbers(test_features, extract_features(extractor, training.images.split(FEATURE_BATCH)), k),
        "real_reference": {"size": len(real), **fidelity_numbers(test_features, extract_features(extractor, set_chunks(real)), k)},
    }


def measure_fidelity(
    distilled: DistilledSet, set_dir: Path, train: ImageSet, test: ImageSet, extractors: dict[str, Teacher],
) -> list[dict]:
    """Compute (or reuse) the fidelity record of a set for each named extractor."""
    return cached_per_extractor(set_dir, "fidelity", extractors, lambda e: set_fidelity(distilled, train, test, e))
