import pytest
import torch

from ddkit.curves import CurveLog, read_rows
from ddkit.diffusion.features import find_layer, kernel_distance, layer_features
from ddkit.diffusion.guidance import KernelGuidance, ModeGuidance
from ddkit.diffusion.manifold import TangentProjection, noisy_neighbours, tangent_basis
from ddkit.diffusion.modes import Modes, bisecting_modes, kmeans_modes, matched_to
from ddkit.diffusion.prior import Condition
from ddkit.diffusion.sampler import GuidanceTerm, SamplerConfig, StepState, sample
from ddkit.errors import DDKitError

FAST = SamplerConfig(steps=8, cfg_scale=2.0)


def labels(count: int = 4, c: int = 3) -> Condition:
    return Condition(labels=torch.full((count,), c))


def test_sampling_is_seeded_and_cfg_changes_it(unet_prior):
    a = sample(unet_prior, labels(), torch.Generator().manual_seed(0), FAST)
    b = sample(unet_prior, labels(), torch.Generator().manual_seed(0), FAST)
    plain = sample(unet_prior, labels(), torch.Generator().manual_seed(0), SamplerConfig(steps=8, cfg_scale=1.0))
    assert a.shape == (4, 1, 8, 8) and torch.equal(a, b)
    assert not torch.allclose(a, plain)


def test_ddpm_scheduler_runs_too(unet_prior):
    out = sample(unet_prior, labels(), torch.Generator().manual_seed(0), SamplerConfig(scheduler="ddpm", steps=5))
    assert torch.isfinite(out).all()


def test_mode_guidance_moves_samples_toward_their_modes(unet_prior):
    modes = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(5))
    plain = sample(unet_prior, labels(), torch.Generator().manual_seed(1), FAST)
    guided = sample(unet_prior, labels(), torch.Generator().manual_seed(1), FAST, [ModeGuidance(modes, 0.5, (0, 1))])
    distance = lambda x: (x - modes).flatten(1).norm(dim=1)  # noqa: E731
    assert (distance(guided) < distance(plain)).all()


def test_a_term_acts_only_inside_its_window(unet_prior):
    modes = torch.randn(4, 1, 8, 8)
    plain = sample(unet_prior, labels(), torch.Generator().manual_seed(1), FAST)
    never = ModeGuidance(modes, 0.5, (0.99, 1.0))  # no step index of 8 falls in [7.92, 8)
    assert torch.equal(sample(unet_prior, labels(), torch.Generator().manual_seed(1), FAST, [never]), plain)


def test_guided_steps_log_the_size_of_each_active_term(unet_prior, tmp_path):
    modes = torch.randn(4, 1, 8, 8)
    terms = [ModeGuidance(modes, 0.5, (0, 0.5)), ModeGuidance(modes, 0.1, (0.25, 1))]
    sample(unet_prior, labels(), torch.Generator().manual_seed(1), FAST, terms, curves=CurveLog(tmp_path, "item"))
    rows = read_rows(tmp_path / "item.csv")
    assert [r["step"] for r in rows] == list(range(1, 9))
    assert [sorted(set(r) - {"step"}) for r in rows] == [["ModeGuidance"]] * 2 + [["ModeGuidance", "ModeGuidance-2"]] * 2 + [["ModeGuidance-2"]] * 4
    assert all(value > 0 for r in rows for key, value in r.items() if key != "step")
    projected = TangentProjection(terms[0], [modes[0]] * 4)
    assert projected.name == "ModeGuidance+projection"


def test_a_start_noised_to_a_quarter_of_the_schedule_runs_the_last_quarter_and_stays_near_it(unet_prior, tmp_path):
    start = torch.rand(4, 1, 8, 8) * 2 - 1
    terms = [ModeGuidance(torch.randn(4, 1, 8, 8), 0.5, (0, 0.5))]  # the first half of the steps that run
    edited = sample(unet_prior, labels(), torch.Generator().manual_seed(1), FAST, terms, curves=CurveLog(tmp_path, "item"),
                    start=start, strength=0.25)
    assert [r["step"] for r in read_rows(tmp_path / "item.csv")] == [1]  # 2 of the 8 steps run, the term guides the first
    plain = sample(unet_prior, labels(), torch.Generator().manual_seed(1), FAST, terms)
    assert (edited - start).norm() < 0.5 * (plain - start).norm()


def _state(prior, x, t=50, cond=None, generator=None):
    cond = cond or labels(len(x))
    output = prior.model_output(x, t, cond)
    eps, x0 = prior.predict_eps_x0(x, output, t)
    alpha, sigma = prior.schedule_at(t)
    return StepState(prior, x, t, 0, 10, x0, eps, alpha, sigma, sigma / 2, cond, generator or torch.Generator().manual_seed(0))


def test_dap_direction_lowers_the_kernel_distance(unet_prior):
    real = torch.randn(32, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    layer = find_layer(unet_prior.model, "mid_block")
    for kernel in ("linear", "rbf"):
        term = KernelGuidance(layer, real, kernel=kernel, per_step=8, normalise="none")
        x = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(3))
        state = _state(unet_prior, x)
        reference = term.reference(state)
        before = term.loss(state, x, reference)
        direction = term.direction(_state(unet_prior, x, generator=torch.Generator().manual_seed(0)))
        after = term.loss(state, x + 1e-3 * direction / direction.norm(), reference)
        assert after < before, kernel


def test_dap_with_a_pool_per_sample_draws_each_samples_references_from_its_own_pool(unet_prior):
    generator = torch.Generator().manual_seed(4)
    pools = [torch.randn(5, 1, 8, 8, generator=generator) + shift for shift in (-3.0, 3.0)]
    term = KernelGuidance(find_layer(unet_prior.model, "mid_block"), pools, per_step=6, normalise="none")
    x = torch.randn(2, 1, 8, 8, generator=generator)
    state = _state(unet_prior, x, t=1)  # nearly clean references, so the pools stay apart in feature space
    reference = term.reference(state)
    assert reference.shape[:2] == (2, 6)
    own = [KernelGuidance(term.layer, pool).reference(state).mean(0) for pool in pools]
    for row, centre, other in zip(reference.mean(1), own, reversed(own)):
        assert (row - centre).norm() < (row - other).norm()
    direction = term.direction(_state(unet_prior, x, t=1, generator=torch.Generator().manual_seed(0)))
    assert term.loss(state, x + 1e-3 * direction / direction.norm(), reference) < term.loss(state, x, reference)


def test_kernel_distance_to_own_references_matches_each_row_against_a_shared_set():
    features, references = torch.randn(3, 7), torch.randn(3, 4, 7)
    for kernel in ("linear", "rbf"):
        own = kernel_distance(features, references, kernel)
        rows = torch.cat([kernel_distance(features[b:b + 1], references[b], kernel) for b in range(3)])
        assert torch.allclose(own, rows, atol=1e-6), kernel


def test_rms_normalised_dap_step_has_the_size_of_the_noise(unet_prior):
    real = torch.randn(16, 1, 8, 8)
    term = KernelGuidance(find_layer(unet_prior.model, "mid_block"), real, per_step=4)
    state = _state(unet_prior, torch.randn(2, 1, 8, 8))
    rms = term.direction(state).flatten(1).pow(2).mean(1).sqrt()
    assert torch.allclose(rms, torch.full((2,), state.sigma), rtol=1e-4)


def test_features_stop_at_the_layer_and_unknown_layers_list_the_choices(unet_prior):
    x = torch.randn(2, 1, 8, 8)
    feats = layer_features(unet_prior, find_layer(unet_prior.model, "mid_block"), x, 10, labels(2))
    assert feats.shape[0] == 2 and feats.ndim == 2
    with pytest.raises(DDKitError, match="feature layer 'mid' is not in UNet2DModel; choose one of: .*mid_block"):
        find_layer(unet_prior.model, "mid")


def test_rbf_kernel_distance_is_bounded_and_zero_on_itself():
    a = torch.randn(5, 7)
    d = kernel_distance(a, a, "rbf")
    assert d.diagonal().abs().max() < 1e-5 and d.max() <= 2 ** 0.5 + 1e-6


def test_tangent_basis_recovers_a_plane():
    generator = torch.Generator().manual_seed(0)
    plane = torch.linalg.qr(torch.randn(6, 2, generator=generator)).Q  # orthonormal (6, 2)
    points = torch.randn(200, 2, generator=generator) @ plane.T + 1e-4 * torch.randn(200, 6, generator=generator)
    _, basis = tangent_basis(points, 2)
    assert torch.allclose(basis @ basis.T, plane @ plane.T, atol=1e-3)


def test_projected_direction_is_orthogonal_to_the_estimated_normal_space(unet_prior):
    members = [torch.randn(40, 1, 8, 8, generator=torch.Generator().manual_seed(j)) for j in range(3)]
    modes = torch.stack([m.mean(0) for m in members])
    projection = TangentProjection(ModeGuidance(modes, 1.0, (0, 1)), members, dims=3, neighbours=12, neighbours_final=12)
    x = torch.randn(3, 1, 8, 8)
    state = _state(unet_prior, x, generator=torch.Generator().manual_seed(9))
    projected = projection.direction(state).flatten(1)
    replay = _state(unet_prior, x, generator=torch.Generator().manual_seed(9))
    for j in range(3):  # the same neighbours again, from the same generator state
        _, basis = tangent_basis(noisy_neighbours(members[j].flatten(1), x[j].flatten(), 12, replay), 3)
        normal_part = projected[j] - basis @ (basis.T @ projected[j])
        assert normal_part.norm() < 1e-4 * projected[j].norm()
    raw = ModeGuidance(modes, 1.0).direction(state).flatten(1)
    assert (projected.norm(dim=1) < raw.norm(dim=1)).all()


def test_released_variant_differs_from_the_paper_projection(unet_prior):
    members = [torch.randn(30, 1, 8, 8) for _ in range(2)]
    inner = ModeGuidance(torch.zeros(2, 1, 8, 8), 1.0)
    x = torch.randn(2, 1, 8, 8)
    paper = TangentProjection(inner, members, 2, 10, 10, "paper").direction(_state(unet_prior, x))
    released = TangentProjection(inner, members, 2, 10, 10, "released").direction(_state(unet_prior, x))
    assert not torch.allclose(paper, released)


def test_nan_guidance_is_a_clear_error(unet_prior):
    class Broken(GuidanceTerm):
        def direction(self, state):
            return torch.full_like(state.x, float("nan"))

    with pytest.raises(DDKitError, match="Broken guidance became NaN/inf at step 1 of 8; lower its scale"):
        sample(unet_prior, labels(), torch.Generator().manual_seed(0), FAST, [Broken(1.0)])


def test_modes_matched_to_starts_put_each_start_with_its_nearest_free_mode():
    modes = Modes(torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]]), [torch.tensor([0]), torch.tensor([1]), torch.tensor([2])])
    starts = torch.tensor([[0.0, 9.0], [1.0, 1.0], [2.0, 1.0]])  # the last two both lie nearest mode 0
    matched = matched_to(modes, starts)
    assert matched.centres.tolist() == [[0.0, 10.0], [0.0, 0.0], [10.0, 0.0]]
    assert [int(m) for m in matched.members] == [2, 0, 1]


def test_kmeans_and_bisecting_modes():
    generator = torch.Generator().manual_seed(0)
    blobs = torch.cat([torch.randn(20, 3, generator=generator) + 10 * c for c in range(4)])
    flat = kmeans_modes(blobs, 4, seed=0)
    assert sorted(len(m) for m in flat.members) == [20] * 4
    leaves = bisecting_modes(blobs, 4, seed=0)
    assert sorted(len(m) for m in leaves.members) == [20] * 4
    assert torch.cat(leaves.members).sort().values.tolist() == list(range(80))
    with pytest.raises(DDKitError, match="5 modes asked of a class with only 4 real images"):
        kmeans_modes(blobs[:4], 5, seed=0)


def test_text_conditions_use_the_same_sampler():
    from diffusers import DDPMScheduler, UNet2DConditionModel

    from ddkit.diffusion.prior import Prior

    torch.manual_seed(0)
    model = UNet2DConditionModel(sample_size=8, in_channels=1, out_channels=1, layers_per_block=1, block_out_channels=(8, 16),
                                 down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                 up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=8,
                                 norm_num_groups=4, attention_head_dim=2)
    prior = Prior(model.eval().requires_grad_(False), DDPMScheduler(num_train_timesteps=100))
    prompts = Condition(text=torch.randn(2, 3, 8), null_text=torch.zeros(1, 3, 8))
    real = torch.randn(8, 1, 8, 8)
    dap = KernelGuidance(find_layer(model, "mid_block"), real, per_step=4)
    guided = sample(prior, prompts, torch.Generator().manual_seed(0), FAST, [dap])
    plain = sample(prior, prompts, torch.Generator().manual_seed(0), FAST)
    assert guided.shape == (2, 1, 8, 8) and not torch.allclose(guided, plain)
