"""DDPMScheduler and DDIMScheduler: properties that follow from the equations, and bad input."""

import pytest
import torch

from ddpm_helpers.scheduler import DDIMScheduler, DDPMScheduler, SchedulerConfig

SHAPE = (2, 1, 8, 8)


def randn(*shape, seed=0):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


# ---- add_noise: Ho et al. 2020, eq. (4) ----

def test_add_noise_coefficients_are_sqrt_alpha_bar_and_sqrt_one_minus():
    scheduler = DDPMScheduler(beta_schedule="squaredcos_cap_v2")
    t = torch.tensor([0, 10, 500, 999])
    alpha_bar_t = scheduler.alphas_cumprod[t].reshape(-1, 1, 1, 1)
    ones, zeros = torch.ones(4, 1, 2, 2), torch.zeros(4, 1, 2, 2)
    signal = scheduler.add_noise(ones, zeros, t)
    noise = scheduler.add_noise(zeros, ones, t)
    torch.testing.assert_close(signal, alpha_bar_t.sqrt().expand_as(signal))
    torch.testing.assert_close(noise, (1 - alpha_bar_t).sqrt().expand_as(noise))
    # variance preserving: signal^2 + noise^2 = 1 at every t
    torch.testing.assert_close(signal**2 + noise**2, ones)


@pytest.mark.parametrize("t", [0, 300, 999])
def test_add_noise_keeps_unit_variance(t):
    scheduler = DDPMScheduler()
    x0, noise = randn(64, 1, 32, 32, seed=1), randn(64, 1, 32, 32, seed=2)
    x_t = scheduler.add_noise(x0, noise, torch.full((64,), t))
    alpha_bar_t = scheduler.alphas_cumprod[t]
    assert abs(x_t.var().item() - 1.0) < 0.02
    # correlation with x0 is sqrt(alpha_bar_t)
    assert abs((x_t * x0).mean().item() - alpha_bar_t.sqrt().item()) < 0.02


def test_add_noise_accepts_int_0d_and_per_sample_timesteps():
    scheduler = DDPMScheduler()
    x0, noise = randn(*SHAPE), randn(*SHAPE, seed=1)
    expected = scheduler.add_noise(x0, noise, torch.tensor([123, 123]))
    torch.testing.assert_close(scheduler.add_noise(x0, noise, 123), expected, rtol=0, atol=0)
    torch.testing.assert_close(scheduler.add_noise(x0, noise, torch.tensor(123)), expected, rtol=0, atol=0)


# ---- set_timesteps ----

def test_timesteps_before_and_after_set_timesteps():
    scheduler = DDPMScheduler(num_train_timesteps=1000)
    assert scheduler.num_inference_steps is None
    assert scheduler.timesteps.tolist() == list(range(999, -1, -1))
    scheduler.set_timesteps(50)
    assert scheduler.num_inference_steps == 50
    assert scheduler.timesteps.dtype == torch.int64
    assert scheduler.timesteps.tolist() == list(range(980, -1, -20))


def test_ddim_trailing_starts_at_the_last_training_step():
    scheduler = DDIMScheduler(timestep_spacing="trailing")
    scheduler.set_timesteps(10)
    assert scheduler.timesteps.tolist() == list(range(999, 0, -100))


# ---- step: Ho et al. 2020, Algorithm 2; Song et al. 2021, eq. (12) ----

@pytest.mark.parametrize("cls", [DDPMScheduler, DDIMScheduler])
@pytest.mark.parametrize("t", [0, 1, 500, 999])
def test_pred_original_sample_recovers_x0_from_true_noise(cls, t):
    scheduler = cls(clip_sample=False)
    scheduler.set_timesteps(1000)
    x0, noise = randn(*SHAPE), randn(*SHAPE, seed=1)
    x_t = scheduler.add_noise(x0, noise, t)
    x0_pred = scheduler.step(noise, t, x_t).pred_original_sample
    torch.testing.assert_close(x0_pred, x0, rtol=0, atol=1e-4)


@pytest.mark.parametrize("make, step_kwargs", [
    (DDPMScheduler, {}),
    # with fixed_large, sigma_0^2 = beta_0 > 0: only the t > 0 test keeps the last step noise-free
    (lambda: DDPMScheduler(variance_type="fixed_large"), {}),
    (DDIMScheduler, {"eta": 1.0}),
], ids=["DDPM", "DDPM-fixed_large", "DDIM-eta1"])
def test_final_step_adds_no_noise(make, step_kwargs):
    scheduler = make()
    scheduler.set_timesteps(50)
    x_t, eps = randn(*SHAPE), randn(*SHAPE, seed=1)
    a = scheduler.step(eps, 0, x_t, generator=torch.Generator().manual_seed(0), **step_kwargs).prev_sample
    b = scheduler.step(eps, 0, x_t, generator=torch.Generator().manual_seed(1), **step_kwargs).prev_sample
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    # ... while earlier steps do add noise
    a = scheduler.step(eps, 20, x_t, generator=torch.Generator().manual_seed(0), **step_kwargs).prev_sample
    b = scheduler.step(eps, 20, x_t, generator=torch.Generator().manual_seed(1), **step_kwargs).prev_sample
    assert (a - b).abs().max() > 1e-3


def test_ddim_eta0_is_deterministic_and_follows_the_noised_path():
    scheduler = DDIMScheduler(clip_sample=False)
    scheduler.set_timesteps(50)
    x0, noise = randn(*SHAPE), randn(*SHAPE, seed=1)
    for t in (980, 500, 20):
        x_t = scheduler.add_noise(x0, noise, t)
        a = scheduler.step(noise, t, x_t, generator=torch.Generator().manual_seed(0)).prev_sample
        b = scheduler.step(noise, t, x_t, generator=torch.Generator().manual_seed(1)).prev_sample
        torch.testing.assert_close(a, b, rtol=0, atol=0)
        # Song et al. 2021, eq. (12) with sigma = 0 and the true noise lands on x_{t-20} of the same path
        torch.testing.assert_close(a, scheduler.add_noise(x0, noise, t - 20), rtol=0, atol=1e-5)


@pytest.mark.parametrize("schedule", ["linear", "squaredcos_cap_v2"])
@pytest.mark.parametrize("n", [1000, 50, 10])
def test_ddim_with_eta_one_is_ddpm(schedule, n):
    # Song et al. 2021, sec. 4.1: eta = 1 gives the DDPM posterior (Ho et al. eq. 7), mean and variance
    ddpm = DDPMScheduler(beta_schedule=schedule, clip_sample=False)
    ddim = DDIMScheduler(beta_schedule=schedule, clip_sample=False)
    ddpm.set_timesteps(n), ddim.set_timesteps(n)
    x_t, eps = randn(*SHAPE), 0.5 * randn(*SHAPE, seed=1)
    for t in ddpm.timesteps[:: max(1, n // 5)]:
        a = ddpm.step(eps, t, x_t, generator=torch.Generator().manual_seed(int(t))).prev_sample
        b = ddim.step(eps, t, x_t, eta=1.0, generator=torch.Generator().manual_seed(int(t))).prev_sample
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_ddpm_step_before_set_timesteps_uses_all_training_steps():
    x_t, eps = randn(*SHAPE), randn(*SHAPE, seed=1)
    fresh = DDPMScheduler()
    full = DDPMScheduler()
    full.set_timesteps(1000)
    for t in (999, 1):
        a = fresh.step(eps, t, x_t, generator=torch.Generator().manual_seed(0)).prev_sample
        b = full.step(eps, t, x_t, generator=torch.Generator().manual_seed(0)).prev_sample
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_step_accepts_tensor_timestep_and_return_dict_false():
    scheduler = DDPMScheduler()
    scheduler.set_timesteps(10)
    x_t, eps = randn(*SHAPE), randn(*SHAPE, seed=1)
    t = scheduler.timesteps[3]
    out = scheduler.step(eps, t, x_t, generator=torch.Generator().manual_seed(0))
    prev, x0_pred = scheduler.step(eps, int(t), x_t, generator=torch.Generator().manual_seed(0), return_dict=False)
    torch.testing.assert_close(prev, out.prev_sample, rtol=0, atol=0)
    torch.testing.assert_close(x0_pred, out.pred_original_sample, rtol=0, atol=0)


def test_clip_sample_bounds_pred_original_sample():
    scheduler = DDPMScheduler(clip_sample_range=0.5)
    x0_pred = scheduler.step(randn(*SHAPE), 999, 3 * randn(*SHAPE, seed=1)).pred_original_sample
    assert x0_pred.abs().max() == 0.5


# ---- config ----

def test_config_attribute_and_mapping_access():
    scheduler = DDPMScheduler(num_train_timesteps=100, beta_schedule="squaredcos_cap_v2")
    assert scheduler.num_train_timesteps == scheduler.config.num_train_timesteps == 100
    assert scheduler.config["beta_schedule"] == "squaredcos_cap_v2"
    assert isinstance(scheduler.config, SchedulerConfig) and dict(scheduler.config)["clip_sample"] is True
    with pytest.raises(AttributeError, match="read-only"):
        scheduler.config.num_train_timesteps = 5
    clone = DDPMScheduler.from_config(scheduler.config)
    assert dict(clone.config) == dict(scheduler.config)
    torch.testing.assert_close(clone.alphas_cumprod, scheduler.alphas_cumprod, rtol=0, atol=0)
    with pytest.raises(TypeError, match="thresholding"):
        DDPMScheduler.from_config({**scheduler.config, "thresholding": True})


def test_options_after_beta_schedule_are_keyword_only():
    with pytest.raises(TypeError):
        DDPMScheduler(1000, 1e-4, 0.02, "linear", False)


# ---- bad input gets a ValueError that names the fix ----

@pytest.mark.parametrize("cls", [DDPMScheduler, DDIMScheduler])
def test_bad_constructor_arguments(cls):
    with pytest.raises(ValueError, match="choose one of 'linear'"):
        cls(beta_schedule="cosine")
    with pytest.raises(ValueError, match="prediction_type='epsilon'"):
        cls(prediction_type="v_prediction")
    with pytest.raises(ValueError, match="0 < beta_start < beta_end < 1"):
        cls(beta_start=0.02, beta_end=1e-4)


def test_bad_ddpm_and_ddim_options():
    with pytest.raises(ValueError, match="variance_type='learned' is not supported"):
        DDPMScheduler(variance_type="learned")
    with pytest.raises(ValueError, match="use 'leading' or 'trailing'"):
        DDIMScheduler(timestep_spacing="linspace")


@pytest.mark.parametrize("cls", [DDPMScheduler, DDIMScheduler])
def test_num_inference_steps_out_of_range(cls):
    scheduler = cls(num_train_timesteps=100)
    with pytest.raises(ValueError, match="between 1 and num_train_timesteps=100"):
        scheduler.set_timesteps(101)
    with pytest.raises(ValueError, match="between 1 and"):
        scheduler.set_timesteps(0)


def test_ddim_steps_offset_cannot_leave_the_range():
    scheduler = DDIMScheduler(num_train_timesteps=100, steps_offset=1)
    with pytest.raises(ValueError, match=r"timesteps must be in \[0, 99\]"):
        scheduler.set_timesteps(100)


def test_ddim_step_before_set_timesteps():
    with pytest.raises(ValueError, match="you need to run 'set_timesteps'"):
        DDIMScheduler().step(randn(*SHAPE), 999, randn(*SHAPE))


@pytest.mark.parametrize("cls", [DDPMScheduler, DDIMScheduler])
@pytest.mark.parametrize("t", [-1, 1000])
def test_step_timestep_out_of_range(cls, t):
    scheduler = cls()
    scheduler.set_timesteps(10)
    with pytest.raises(ValueError, match=r"timesteps must be in \[0, 999\]"):
        scheduler.step(randn(*SHAPE), t, randn(*SHAPE))


@pytest.mark.parametrize("cls", [DDPMScheduler, DDIMScheduler])
def test_step_shape_mismatch(cls):
    scheduler = cls()
    scheduler.set_timesteps(10)
    with pytest.raises(ValueError, match="must have the same shape"):
        scheduler.step(randn(2, 3, 8, 8), 900, randn(*SHAPE))
    with pytest.raises(ValueError, match="one integer timestep"):
        scheduler.step(randn(*SHAPE), torch.tensor([900, 800]), randn(*SHAPE))


def test_ddim_eta_out_of_range():
    scheduler = DDIMScheduler()
    scheduler.set_timesteps(10)
    with pytest.raises(ValueError, match=r"eta must be in \[0, 1\]"):
        scheduler.step(randn(*SHAPE), 900, randn(*SHAPE), eta=-0.1)


def test_add_noise_bad_arguments():
    scheduler = DDPMScheduler()
    x0 = randn(*SHAPE)
    with pytest.raises(ValueError, match="same shape"):
        scheduler.add_noise(x0, randn(2, 3, 8, 8), torch.tensor([1, 2]))
    with pytest.raises(ValueError, match=r"timesteps must be in \[0, 999\]"):
        scheduler.add_noise(x0, randn(*SHAPE), torch.tensor([0, 1000]))
    with pytest.raises(ValueError, match=r"timesteps must be in \[0, 999\]"):
        scheduler.add_noise(x0, randn(*SHAPE), -1)
    with pytest.raises(ValueError, match=r"one per sample: shape \(2,\)"):
        scheduler.add_noise(x0, randn(*SHAPE), torch.tensor([1, 2, 3]))
    with pytest.raises(TypeError, match="must be integers"):
        scheduler.add_noise(x0, randn(*SHAPE), torch.tensor([0.5, 1.0]))


def test_ddim_from_a_ddpm_config_keeps_the_shared_options():
    from ddpm_helpers.scheduler import DDIMScheduler, DDPMScheduler

    ddpm = DDPMScheduler(num_train_timesteps=500, beta_schedule="squaredcos_cap_v2", clip_sample=False)
    ddim = DDIMScheduler.from_config(ddpm.config)  # DDPM's variance_type is not a DDIM option
    assert (ddim.config.num_train_timesteps, ddim.config.beta_schedule, ddim.config.clip_sample) == (500, "squaredcos_cap_v2", False)
    torch.testing.assert_close(ddim.alphas_cumprod, ddpm.alphas_cumprod)
