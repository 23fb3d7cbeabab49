"""Beta schedules: properties that follow from their equations."""

import math

import pytest
import torch

from ddpm_helpers.schedules import (
    BETA_SCHEDULES,
    alphas_cumprod_from_betas,
    cosine_betas,
    linear_betas,
    log_snr,
    make_betas,
    scaled_linear_betas,
    snr,
)


@pytest.mark.parametrize("schedule", BETA_SCHEDULES)
@pytest.mark.parametrize("T", [1000, 100, 10])
def test_alphas_cumprod_strictly_decreasing_in_unit_interval(schedule, T):
    betas = make_betas(schedule, T)
    assert betas.shape == (T,) and betas.dtype == torch.float64
    assert ((betas > 0) & (betas < 1)).all()
    alphas_cumprod = alphas_cumprod_from_betas(betas)
    assert ((alphas_cumprod > 0) & (alphas_cumprod < 1)).all()
    assert (alphas_cumprod[1:] < alphas_cumprod[:-1]).all()


def test_linear_endpoints_and_spacing():
    betas = linear_betas(1000, 1e-4, 0.02)
    torch.testing.assert_close(betas[[0, -1]], torch.tensor([1e-4, 0.02], dtype=torch.float64))
    steps = betas.diff()
    torch.testing.assert_close(steps, torch.full_like(steps, (0.02 - 1e-4) / 999))


def test_scaled_linear_is_linear_in_sqrt_beta():
    sqrt_betas = scaled_linear_betas(1000, 8.5e-4, 0.012).sqrt()
    torch.testing.assert_close(sqrt_betas[[0, -1]], torch.tensor([8.5e-4, 0.012], dtype=torch.float64).sqrt())
    steps = sqrt_betas.diff()
    torch.testing.assert_close(steps, torch.full_like(steps, steps.mean().item()))


@pytest.mark.parametrize("T", [1000, 50])
def test_cosine_alpha_bar_follows_cos_squared(T):
    s = 0.008
    alphas_cumprod = alphas_cumprod_from_betas(cosine_betas(T))
    # Nichol & Dhariwal 2021, eq. (17), normalised by f(0); exact wherever beta is below the cap
    f = [math.cos(((t / T) + s) / (1 + s) * math.pi / 2) ** 2 for t in range(T + 1)]
    expected = torch.tensor([f[t + 1] / f[0] for t in range(T)], dtype=torch.float64)
    torch.testing.assert_close(alphas_cumprod[:-1], expected[:-1], rtol=1e-10, atol=1e-12)
    assert cosine_betas(T)[-1] == 0.999  # the last beta is capped


def test_snr_matches_definition_and_decreases():
    alphas_cumprod = alphas_cumprod_from_betas(linear_betas(1000))
    ratio = snr(alphas_cumprod)
    torch.testing.assert_close(ratio, alphas_cumprod / (1 - alphas_cumprod))
    assert (ratio[1:] < ratio[:-1]).all()
    torch.testing.assert_close(log_snr(alphas_cumprod), ratio.log())


def test_unknown_schedule_lists_valid_names():
    with pytest.raises(ValueError, match="'linear', 'scaled_linear', 'squaredcos_cap_v2'"):
        make_betas("cosine", 1000)


@pytest.mark.parametrize("start, end", [(0.0, 0.02), (0.02, 1e-4), (1e-4, 1.0), (-1e-4, 0.02)])
def test_beta_range_is_checked(start, end):
    with pytest.raises(ValueError, match="0 < beta_start < beta_end < 1"):
        linear_betas(1000, start, end)
    with pytest.raises(ValueError, match="0 < beta_start < beta_end < 1"):
        scaled_linear_betas(1000, start, end)


def test_num_train_timesteps_is_checked():
    with pytest.raises(ValueError, match=">= 1"):
        make_betas("linear", 0)
    with pytest.raises(TypeError, match="must be an int"):
        make_betas("squaredcos_cap_v2", 1000.0)
