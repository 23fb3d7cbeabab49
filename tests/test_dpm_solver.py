"""DPM-Solver++ checked against the equations; tests/test_scheduler_vs_diffusers.py compares it with diffusers.

For data x_0 ~ N(MU, S^2) everything is known in closed form: the ideal noise predictor is
E[eps | x_t] = sigma_t (x_t - alpha_t MU) / (alpha_t^2 S^2 + sigma_t^2), and along the probability
flow ODE (x_t - alpha_t MU) / sqrt(alpha_t^2 S^2 + sigma_t^2) stays constant, so the exact end
point of a deterministic sampler is x_0 = MU + S * k.
"""

import pytest
import torch

from ddpm_helpers.dpm_solver import DPMSolverMultistepScheduler
from ddpm_helpers.sampling import denoising_steps
from ddpm_helpers.scheduler import DDIMScheduler, DDPMScheduler

MU, S = 0.3, 0.5


def gaussian_eps(scheduler):
    """The exact noise predictor for data ~ N(MU, S^2), as a model(x_t, t)."""
    alpha_bars = scheduler.alphas_cumprod.double()

    def eps(x_t, t):
        alpha_bar = alpha_bars[int(t)]
        variance = alpha_bar * S**2 + 1 - alpha_bar  # of x_t
        return ((1 - alpha_bar).sqrt() * (x_t.double() - alpha_bar.sqrt() * MU) / variance).float()
    return eps


def run(scheduler, n, shape=(4, 1, 8, 8), seed=0, model=None):
    """(x_T, x_0) of one loop with the Gaussian-data model."""
    model = model or gaussian_eps(scheduler)
    generator = torch.Generator().manual_seed(seed)
    states = list(denoising_steps(model, scheduler, shape, n, generator=generator, progress=False))
    return states[0].x_t, states[-1].x_t


def ode_error(order, n, schedule="squaredcos_cap_v2"):
    """Largest |x_0 - exact ODE end point| after n steps."""
    scheduler = DPMSolverMultistepScheduler(beta_schedule=schedule, solver_order=order, clip_sample=False)
    x_T, x_0 = run(scheduler, n)
    alpha_bar_T = scheduler.alphas_cumprod.double()[scheduler.timesteps[0]]
    k = (x_T.double() - alpha_bar_T.sqrt() * MU) / (alpha_bar_T * S**2 + 1 - alpha_bar_T).sqrt()
    return (x_0.double() - (MU + S * k)).abs().max().item()


@pytest.mark.parametrize("schedule", ["linear", "squaredcos_cap_v2"])
def test_first_order_converges_at_order_one(schedule):
    errors = [ode_error(1, n, schedule) for n in (10, 20, 40, 80)]
    ratios = [a / b for a, b in zip(errors, errors[1:])]
    assert all(1.7 < r < 2.2 for r in ratios), ratios  # twice the steps, half the error
    assert errors[-1] < 0.07


@pytest.mark.parametrize("schedule", ["linear", "squaredcos_cap_v2"])
def test_second_order_is_far_more_accurate(schedule):
    first = [ode_error(1, n, schedule) for n in (20, 40)]
    second = [ode_error(2, n, schedule) for n in (20, 40)]
    assert second[0] < first[0] / 2.5 and second[1] < first[1] / 10, (first, second)
    assert second[1] < 0.01


def test_samples_have_the_data_distribution():
    """With the exact model, the SDE turns N(0, 1) noise into samples of N(MU, S^2), closer with more
    steps; the ODE maps the noise's spread onto the data's."""
    def spread(algorithm, n):
        scheduler = DPMSolverMultistepScheduler(beta_schedule="squaredcos_cap_v2", algorithm_type=algorithm,
                                                clip_sample=False)
        x_0 = run(scheduler, n, shape=(64, 1, 32, 32))[1]
        return x_0.mean().item(), x_0.std().item() / S - 1

    for algorithm, n, tolerance in [("sde-dpmsolver++", 50, 0.02), ("sde-dpmsolver++", 200, 0.01),
                                    ("dpmsolver++", 20, 0.01)]:
        mean, std_error = spread(algorithm, n)
        assert abs(mean - MU) < 0.01 and abs(std_error) < tolerance, (algorithm, n, mean, std_error)


@pytest.mark.parametrize("algorithm, eta", [("dpmsolver++", 0.0), ("sde-dpmsolver++", 1.0)])
def test_first_order_step_is_ddim(algorithm, eta):
    """Order 1 is DDIM (eta 0 for the ODE, eta 1 for the SDE), here on the same every-step timesteps."""
    T = 50
    dpm = DPMSolverMultistepScheduler(T, beta_schedule="squaredcos_cap_v2", solver_order=1, algorithm_type=algorithm,
                                      clip_sample=False)
    ddim = DDIMScheduler(T, beta_schedule="squaredcos_cap_v2", timestep_spacing="trailing", clip_sample=False)
    dpm.set_timesteps(T - 1)
    ddim.set_timesteps(T)
    assert torch.equal(dpm.timesteps, ddim.timesteps[:-1])
    model = gaussian_eps(dpm)
    x_dpm = x_ddim = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    g_dpm, g_ddim = torch.Generator().manual_seed(2), torch.Generator().manual_seed(2)
    for t in dpm.timesteps[:-1]:  # the last DPM step jumps to clean data, DDIM's goes to t = 0
        out_dpm = dpm.step(model(x_dpm, t), t, x_dpm, generator=g_dpm)
        out_ddim = ddim.step(model(x_ddim, t), t, x_ddim, eta=eta, generator=g_ddim)
        torch.testing.assert_close(out_dpm.pred_original_sample, out_ddim.pred_original_sample)
        torch.testing.assert_close(out_dpm.prev_sample, out_ddim.prev_sample, rtol=1e-5, atol=1e-5)
        x_dpm, x_ddim = out_dpm.prev_sample, out_ddim.prev_sample


def test_seeded_and_clipped():
    scheduler = DPMSolverMultistepScheduler(beta_schedule="squaredcos_cap_v2", algorithm_type="sde-dpmsolver++")
    model = gaussian_eps(scheduler)
    a, b, c = (run(scheduler, 10, seed=s, model=lambda x, t: 3 * model(x, t))[1] for s in (5, 5, 6))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.abs().max() <= 1.0  # the last step returns the clipped x_0 prediction
    states = list(denoising_steps(model, scheduler, (2, 1, 8, 8), 10, progress=False))
    assert len(states) == 11 and states[-1].t == -1
    assert all(s.pred_x0.abs().max() <= 1.0 for s in states)


def test_from_config_of_the_course_checkpoint():
    ddpm = DDPMScheduler(beta_schedule="squaredcos_cap_v2", variance_type="fixed_large")
    dpm = DPMSolverMultistepScheduler.from_config({**ddpm.config, "algorithm_type": "sde-dpmsolver++"})
    assert dpm.config.algorithm_type == "sde-dpmsolver++" and dpm.config.beta_schedule == "squaredcos_cap_v2"
    assert torch.equal(dpm.alphas_cumprod, ddpm.alphas_cumprod)


def test_bad_input_says_what_to_do():
    with pytest.raises(ValueError, match="solver_order"):
        DPMSolverMultistepScheduler(solver_order=3)
    with pytest.raises(ValueError, match="algorithm_type"):
        DPMSolverMultistepScheduler(algorithm_type="dpmsolver")
    with pytest.raises(ValueError, match="prediction_type"):
        DPMSolverMultistepScheduler(prediction_type="v_prediction")
    scheduler = DPMSolverMultistepScheduler()
    x = torch.zeros(1, 1, 4, 4)
    with pytest.raises(ValueError, match="set_timesteps"):
        scheduler.step(x, 999, x)
    with pytest.raises(ValueError, match="at most 999"):
        scheduler.set_timesteps(1000)
    scheduler.set_timesteps(10)
    with pytest.raises(ValueError, match="not in scheduler.timesteps"):
        scheduler.step(x, 998, x)
    scheduler.step(x, 999, x)
    with pytest.raises(ValueError, match="in order"):
        scheduler.step(x, 999, x)
    for t in scheduler.timesteps[1:]:
        scheduler.step(x, t, x)
    with pytest.raises(ValueError, match="set_timesteps"):
        scheduler.step(x, 0, x)
