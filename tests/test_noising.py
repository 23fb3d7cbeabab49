"""The forward process against the equations of Ho et al. 2020 (eqs. 2 and 4)."""

import pytest
import torch

from ddpm_helpers.noising import noise_step_by_step, q_sample, q_step

T = 1000
BETAS = torch.linspace(1e-4, 0.02, T, dtype=torch.float64)
ALPHAS_CUMPROD = torch.cumprod(1 - BETAS, dim=0).float()


def image_batch(n, seed=0):
    """n copies of one fixed 8x8 'image' in [-1, 1], so moments can be taken over the batch."""
    g = torch.Generator().manual_seed(seed)
    return (torch.rand((1, 1, 8, 8), generator=g) * 2 - 1).expand(n, 1, 8, 8).clone()


def test_q_step_is_equation_2():
    x_prev, noise = image_batch(4), torch.randn(4, 1, 8, 8)
    expected = (1 - 0.3) ** 0.5 * x_prev + 0.3**0.5 * noise
    torch.testing.assert_close(q_step(x_prev, 0.3, noise), expected)


def test_q_step_preserves_unit_variance():
    # Var[sqrt(1 - beta) x + sqrt(beta) eps] = (1 - beta) Var[x] + beta = 1 when Var[x] = 1
    g = torch.Generator().manual_seed(1)
    x = torch.randn(200_000, generator=g)
    x_next = q_step(x, 0.2, torch.randn(200_000, generator=g))
    assert abs(x_next.var().item() - 1) < 0.01


def test_t0_leaves_the_image_almost_unchanged():
    x0 = image_batch(16)
    x_t = q_sample(x0, 0, ALPHAS_CUMPROD, torch.randn(x0.shape))
    # alpha_bar_0 = 1 - 1e-4: the noise has std 0.01
    assert (x_t - x0).abs().max() < 0.06
    assert (x_t - x0).std() == pytest.approx(0.01, rel=0.1)


def test_last_step_is_standard_normal():
    x0 = image_batch(4000)
    x_t = q_sample(x0, T - 1, ALPHAS_CUMPROD, torch.randn(x0.shape, generator=torch.Generator().manual_seed(2)))
    assert abs(x_t.mean().item()) < 0.01
    assert abs(x_t.var().item() - 1) < 0.02


@pytest.mark.parametrize("t", [5, 100, 400, 900])
def test_closed_form_moments_match_equation_4(t):
    x0 = image_batch(20_000)
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(t))
    x_t = q_sample(x0, t, ALPHAS_CUMPROD, noise)
    alpha_bar_t = ALPHAS_CUMPROD[t]
    # per-pixel mean sqrt(alpha_bar_t) x0 and variance 1 - alpha_bar_t, over the batch
    torch.testing.assert_close(x_t.mean(0), alpha_bar_t.sqrt() * x0[0], atol=0.03, rtol=0)
    torch.testing.assert_close(x_t.var(0), (1 - alpha_bar_t).expand(1, 8, 8), atol=0.04, rtol=0.05)


def test_step_by_step_agrees_with_closed_form_in_distribution():
    x0 = image_batch(4000)
    snapshots = noise_step_by_step(x0, BETAS.float(), keep=[0, 50, 300], generator=torch.Generator().manual_seed(3))
    assert sorted(snapshots) == [0, 50, 300]
    for t, x_t in snapshots.items():
        alpha_bar_t = ALPHAS_CUMPROD[t]
        torch.testing.assert_close(x_t.mean(0), alpha_bar_t.sqrt() * x0[0], atol=0.05, rtol=0)
        torch.testing.assert_close(x_t.var(0), (1 - alpha_bar_t).expand(1, 8, 8), atol=0.01, rtol=0.08)


def test_step_by_step_rejects_steps_past_the_schedule():
    with pytest.raises(ValueError, match=r"\[0, 999\]"):
        noise_step_by_step(image_batch(2), BETAS, keep=[10, 1000])


def test_per_image_timesteps_use_their_own_alpha_bar():
    x0, noise = image_batch(3), torch.randn(3, 1, 8, 8)
    t = torch.tensor([0, 500, 999])
    x_t = q_sample(x0, t, ALPHAS_CUMPROD, noise)
    for i in range(3):
        torch.testing.assert_close(x_t[i : i + 1], q_sample(x0[i : i + 1], int(t[i]), ALPHAS_CUMPROD, noise[i : i + 1]))


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"t": 1000}, ValueError, r"\[0, 999\]"),
        ({"t": -1}, ValueError, r"\[0, 999\]"),
        ({"t": torch.tensor([1, 2])}, ValueError, r"shape \(4,\)"),
        ({"t": 0.5}, TypeError, "integers"),
        ({"x0": image_batch(4) * 255}, ValueError, r"to_model_range"),
        ({"x0": (image_batch(4) * 100).to(torch.uint8)}, TypeError, "float tensor"),
        ({"noise": torch.randn(4, 1, 4, 4)}, ValueError, "noise must have x0's shape"),
    ],
)
def test_bad_input_says_how_to_fix_it(kwargs, error, match):
    args = {"x0": image_batch(4), "t": 3, "alphas_cumprod": ALPHAS_CUMPROD, "noise": torch.randn(4, 1, 8, 8)}
    args.update(kwargs)
    with pytest.raises(error, match=match):
        q_sample(**args)
