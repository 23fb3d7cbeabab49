"""The "your turn" checks: they accept a right answer and name the classic mistakes."""

import pytest
import torch

from ddpm_helpers.exercises import check_add_noise, check_answer, check_q_sample, check_step
from ddpm_helpers.scheduler import DDPMScheduler

SCHEDULER = DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2")


def _closed_form(x0, t, alphas_cumprod, noise):
    a = alphas_cumprod[t].view(-1, 1, 1, 1)
    return a.sqrt() * x0 + (1 - a).sqrt() * noise


def test_exercise_accepts_a_correct_answer(capsys):
    assert check_q_sample(_closed_form) is True
    assert "Correct" in capsys.readouterr().out


@pytest.mark.parametrize(
    "wrong, hint",
    [
        (lambda x0, t, ac, n: ac[t].view(-1, 1, 1, 1) * x0 + (1 - ac[t].view(-1, 1, 1, 1)).sqrt() * n, "signal coefficient needs a square root"),
        (lambda x0, t, ac, n: ac[t].view(-1, 1, 1, 1).sqrt() * x0 + (1 - ac[t].view(-1, 1, 1, 1)) * n, "noise coefficient needs a square root"),
        (lambda x0, t, ac, n: _closed_form(x0, t - 1, ac, n), "off by one"),
        (lambda x0, t, ac, n: _closed_form(x0, t, ac, torch.randn_like(n)), "do not draw new noise"),
        (lambda x0, t, ac, n: ac[t].sqrt() * x0 + (1 - ac[t]).sqrt() * n, "reshape it to (B, 1, 1, 1)"),
        (lambda x0, t, ac, n: (ac[t].view(-1, 1, 1, 1).sqrt() * x0).numpy(), "return a tensor"),
    ],
)
def test_exercise_recognises_the_classic_mistakes(wrong, hint, capsys):
    assert check_q_sample(wrong) is False
    assert hint in capsys.readouterr().out


def test_add_noise_exercise_uses_the_schedulers_alphas_cumprod(capsys):
    right = lambda x0, noise, t: SCHEDULER.add_noise(x0, noise, t)
    assert check_add_noise(right, SCHEDULER) is True
    linear = torch.cumprod(1 - torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64), 0).float()
    wrong_schedule = lambda x0, noise, t: _closed_form(x0, t, linear, noise)
    assert check_add_noise(wrong_schedule, SCHEDULER) is False


def _step(eps, t, x_t, noise, variance="posterior", clip=True, sqrt_in_x0=True):
    """A reverse step over all T steps, written out; the flags plant the classic mistakes."""
    ac = SCHEDULER.alphas_cumprod
    abar, abar_prev = ac[t], (ac[t - 1] if t > 0 else torch.tensor(1.0))
    alpha, beta = abar / abar_prev, 1 - abar / abar_prev
    x0 = (x_t - ((1 - abar).sqrt() if sqrt_in_x0 else (1 - abar)) * eps) / abar.sqrt()
    x0 = x0.clamp(-1, 1) if clip else x0
    mean = abar_prev.sqrt() * beta / (1 - abar) * x0 + alpha.sqrt() * (1 - abar_prev) / (1 - abar) * x_t
    var = (1 - abar_prev) / (1 - abar) * beta if variance == "posterior" else beta
    return mean + var.sqrt() * noise if t > 0 else mean


def test_step_exercise_accepts_a_correct_step(capsys):
    assert check_step(_step, SCHEDULER) is True
    assert "Correct" in capsys.readouterr().out


@pytest.mark.parametrize(
    "kwargs, hint",
    [
        ({"variance": "beta"}, "fixed_large"),
        ({"clip": False}, "clip the predicted x0"),
        ({"sqrt_in_x0": False}, "needs sqrt(1 - alpha_bar_t) * eps"),
    ],
)
def test_step_exercise_names_the_mistake(kwargs, hint, capsys):
    assert check_step(lambda *args: _step(*args, **kwargs), SCHEDULER) is False
    assert hint in capsys.readouterr().out


def test_check_answer_compares_shapes_and_gives_the_hint(capsys):
    assert check_answer((2, 128, 16, 16), torch.Size([2, 128, 16, 16]), hint="h") is True
    assert check_answer([2, 128, 8, 8], (2, 128, 16, 16), hint="halve twice") is False
    assert "halve twice" in capsys.readouterr().out


def test_ema_exercise_accepts_the_update_and_names_the_swap(capsys):
    from ddpm_helpers.exercises import check_ema_update
    from ddpm_helpers.training import EMA

    assert check_ema_update(lambda ema, p, d: d * ema + (1 - d) * p) is True
    assert check_ema_update(lambda ema, p, d: (1 - d) * ema + d * p) is False
    assert "swapped" in capsys.readouterr().out
    # the package's EMA (without warm-up) does the same update
    model = torch.nn.Linear(2, 1)
    ema = EMA(model, decay=0.9, warmup=False)
    old = {k: v.clone() for k, v in ema.shadow.items()}
    with torch.no_grad():
        model.weight.add_(1.0)
    ema.update(model)
    torch.testing.assert_close(ema.shadow["weight"], 0.9 * old["weight"] + 0.1 * model.weight.detach())


def _loop(model, scheduler, shape, generator, carry="prev_sample"):
    x = torch.randn(shape, generator=generator)
    for t in scheduler.timesteps:
        with torch.no_grad():
            x = getattr(scheduler.step(model(x, t).sample, t, x, generator=generator), carry)
    return x


def test_sampling_loop_exercise(capsys):
    from ddpm_helpers.exercises import check_sampling_loop
    from ddpm_helpers.unet import UNet

    torch.manual_seed(0)
    model = UNet(block_out_channels=(8, 16), norm_num_groups=8, sample_size=8).eval()
    assert check_sampling_loop(_loop, model, SCHEDULER, num_inference_steps=5) is True
    assert check_sampling_loop(lambda *a: _loop(*a, carry="pred_original_sample"), model, SCHEDULER, 5) is False
    assert "prev_sample" in capsys.readouterr().out
