import math

import pytest
import torch
from torch import nn

from ddkit.diffusion.energy import EnergyGuidance, energy_objective, free_energy, keep_lowest_energy
from ddkit.diffusion.prior import Condition
from ddkit.diffusion.sampler import SamplerConfig, sample
from ddkit.errors import DDKitError


def test_free_energy_and_its_gradient_match_the_hand_computed_case():
    logits = torch.tensor([[1.0, 2.0, 3.0]], requires_grad=True)
    energy = free_energy(logits, temperature=2.0)
    expected = -2.0 * math.log(math.exp(0.5) + math.exp(1.0) + math.exp(1.5))
    assert energy.item() == pytest.approx(expected, abs=1e-6)
    energy.sum().backward()
    softmax = torch.softmax(torch.tensor([0.5, 1.0, 1.5]), 0)
    assert torch.allclose(logits.grad[0], -softmax, atol=1e-6)  # dE/df = −softmax(f/T)


def test_class_aware_objectives():
    logits = torch.tensor([[1.0, 2.0, 3.0]])
    label = torch.tensor([0])
    assert energy_objective(logits, label, "logit", 1.0).item() == pytest.approx(-1.0)
    ce = -math.log(math.exp(1) / (math.exp(1) + math.exp(2) + math.exp(3)))
    assert energy_objective(logits, label, "energy+ce", 1.0).item() == pytest.approx(free_energy(logits).item() + ce, abs=1e-5)


class PixelClassifier(nn.Module):
    """A fixed 'teacher' whose logits grow with brightness: low energy means bright images."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([4 * x.mean((1, 2, 3)), torch.zeros(len(x))], 1)


def test_eda_guidance_lowers_teacher_energy_against_the_same_seed_unguided(unet_prior):
    teacher, labels, shape = PixelClassifier(), torch.zeros(4, dtype=torch.long), (1, 8, 8)
    cond = Condition(labels=torch.tensor([1, 2, 3, 4]))

    def energies(terms):
        x = sample(unet_prior, cond, torch.Generator().manual_seed(0), SamplerConfig(steps=8), terms)
        return free_energy(teacher(unet_prior.decode(x, shape)))

    plain = energies([])
    guided = energies([EnergyGuidance(teacher, labels, shape, scale=0.5)])
    assert (guided < plain).all()


def test_the_energy_filter_keeps_the_lowest_and_refuses_to_empty_a_class():
    energies = torch.tensor([3.0, -1.0, 2.0, 0.0])
    kept, report = keep_lowest_energy(energies, 2, None, "class 'bag'")
    assert kept.tolist() == [1, 3] and report.rejection_rate == 0.5 and report.threshold == 0.0
    with pytest.raises(DDKitError, match="rejects every sample of class 'bag'.*raise max_energy"):
        keep_lowest_energy(energies, 2, -5.0, "class 'bag'")
    with pytest.raises(DDKitError, match="keeps only 1 of the 2"):
        keep_lowest_energy(energies, 2, -0.5, "class 'bag'")
