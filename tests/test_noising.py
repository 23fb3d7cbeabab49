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


# --- one formula, every timestep form (scheduler.add_noise calls q_sample) -------------------

@pytest.mark.parametrize("t", [7, torch.tensor(7), torch.tensor([7]), torch.tensor([7, 7, 7]),
                               torch.tensor([7], dtype=torch.int32), torch.tensor([7, 7, 7], dtype=torch.uint8)],
                         ids=["int", "0-d", "(1,)", "(B,)", "int32", "uint8"])
def test_every_timestep_form_gives_eq_4_for_each_image(t):
    x0, noise = image_batch(3), torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(4))
    alpha_bar_t = ALPHAS_CUMPROD[7]
    expected = alpha_bar_t.sqrt() * x0 + (1 - alpha_bar_t).sqrt() * noise  # Ho et al. eq. (4), written out
    torch.testing.assert_close(q_sample(x0, t, ALPHAS_CUMPROD, noise), expected, rtol=0, atol=0)


def test_alphas_cumprod_moves_to_x0s_dtype():
    x0, noise = image_batch(2), torch.randn(2, 1, 8, 8)
    cumprod64 = torch.cumprod(1 - BETAS, dim=0)  # float64
    out = q_sample(x0, 500, cumprod64, noise)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, q_sample(x0, 500, cumprod64.float(), noise), rtol=0, atol=0)
    out64 = q_sample(x0.double(), 500, ALPHAS_CUMPROD, noise.double())
    assert out64.dtype == torch.float64
    out16 = q_sample(x0.bfloat16(), torch.tensor([500]), ALPHAS_CUMPROD, noise.bfloat16())
    assert out16.dtype == torch.bfloat16


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else []) + (
    ["mps"] if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
def test_any_device_for_x0_with_timesteps_and_schedule_on_the_cpu(device):
    x0, noise = image_batch(3), torch.randn(3, 1, 8, 8)
    t = torch.tensor([0, 500, 999])  # on the CPU, like alphas_cumprod
    out = q_sample(x0.to(device), t, ALPHAS_CUMPROD, noise.to(device))
    assert out.device.type == device
    torch.testing.assert_close(out.cpu(), q_sample(x0, t, ALPHAS_CUMPROD, noise), rtol=1e-6, atol=1e-6)
    if device != "cpu":  # timesteps on the device, schedule on the CPU
        torch.testing.assert_close(q_sample(x0.to(device), t.to(device), ALPHAS_CUMPROD, noise.to(device)), out)


def test_same_numbers_as_diffusers_add_noise():
    diffusers = pytest.importorskip("diffusers")
    scheduler = diffusers.DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2")
    g = torch.Generator().manual_seed(5)
    x0 = torch.rand(4, 3, 8, 8, generator=g) * 2 - 1
    noise = torch.randn(x0.shape, generator=g)
    for t in (torch.tensor([0, 10, 500, 999]), torch.tensor([250])):  # (B,) and diffusers' (1,) broadcast
        expected = scheduler.add_noise(x0, noise, t)
        torch.testing.assert_close(q_sample(x0, t, scheduler.alphas_cumprod, noise), expected, rtol=0, atol=0)
