"""DDPMScheduler and DDIMScheduler: properties that follow from the equations, and bad input."""

import copy
import json
import pickle
import re

import pytest
import torch

from ddpm_helpers.dpm_solver import DPMSolverMultistepScheduler
from ddpm_helpers.scheduler import DDIMScheduler, DDPMScheduler, SchedulerConfig, SchedulerOutput, randn_tensor

SHAPE = (2, 1, 8, 8)


def randn(*shape, seed=0):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def images(*shape, seed=0):
    """Stand-in images in [-1, 1], as add_noise requires."""
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed)) * 2 - 1


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
def test_add_noise_variance_and_correlation(t):
    scheduler = DDPMScheduler()
    x0, noise = images(64, 1, 32, 32, seed=1), randn(64, 1, 32, 32, seed=2)
    x_t = scheduler.add_noise(x0, noise, torch.full((64,), t))
    alpha_bar_t = scheduler.alphas_cumprod[t].item()
    # Var[x_t] = alpha_bar_t Var[x0] + (1 - alpha_bar_t): x0 uniform on [-1, 1] has variance 1/3
    assert abs(x_t.var().item() - (alpha_bar_t / 3 + 1 - alpha_bar_t)) < 0.02
    # Cov[x_t, x0] = sqrt(alpha_bar_t) Var[x0]
    assert abs((x_t * x0).mean().item() - alpha_bar_t**0.5 / 3) < 0.01


def test_add_noise_accepts_int_0d_1_element_and_per_sample_timesteps():
    scheduler = DDPMScheduler()
    x0, noise = images(*SHAPE), randn(*SHAPE, seed=1)
    expected = scheduler.add_noise(x0, noise, torch.tensor([123, 123]))
    # one timestep for the whole batch, as diffusers broadcasts it
    for t in (123, torch.tensor(123), torch.tensor([123])):
        torch.testing.assert_close(scheduler.add_noise(x0, noise, t), expected, rtol=0, atol=0)


def test_add_noise_is_lesson_ones_q_sample():
    from ddpm_helpers.noising import q_sample

    scheduler = DDPMScheduler(beta_schedule="squaredcos_cap_v2")
    x0, noise, t = images(*SHAPE), randn(*SHAPE, seed=1), torch.tensor([5, 900])
    torch.testing.assert_close(scheduler.add_noise(x0, noise, t), q_sample(x0, t, scheduler.alphas_cumprod, noise),
                               rtol=0, atol=0)


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
    x0, noise = images(*SHAPE), randn(*SHAPE, seed=1)
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
    x0, noise = images(*SHAPE), randn(*SHAPE, seed=1)
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



def test_ddpm_custom_timesteps_step_to_the_next_one_in_the_list():
    """Custom timesteps (diffusers' DDPM has them): each step goes to the next timestep in the list,
    so a 3-step schedule equals three DDPM steps with those alpha_bars."""
    custom, regular = DDPMScheduler(clip_sample=False), DDPMScheduler(clip_sample=False)
    custom.set_timesteps(timesteps=[900, 600, 300, 0])
    regular.set_timesteps(4)  # 750, 500, 250, 0: other timesteps, same code path
    assert custom.timesteps.tolist() == [900, 600, 300, 0] and custom.num_inference_steps == 4
    assert [custom.previous_timestep(t) for t in custom.timesteps.tolist()] == [600, 300, 0, -1]
    x_t, eps = randn(*SHAPE), randn(*SHAPE, seed=1)
    out = custom.step(eps, 600, x_t, generator=torch.Generator().manual_seed(0))
    # the posterior mean of Ho et al. eq. (7) between t = 600 and t_prev = 300, plus sigma z
    abar_t, abar_prev = custom.alphas_cumprod[600], custom.alphas_cumprod[300]
    beta_t = 1 - abar_t / abar_prev
    x0 = (x_t - (1 - abar_t).sqrt() * eps) / abar_t.sqrt()
    mean = abar_prev.sqrt() * beta_t / (1 - abar_t) * x0 + (1 - beta_t).sqrt() * (1 - abar_prev) / (1 - abar_t) * x_t
    z = torch.randn(SHAPE, generator=torch.Generator().manual_seed(0))
    expected = mean + ((1 - abar_prev) / (1 - abar_t) * beta_t).sqrt() * z
    torch.testing.assert_close(out.prev_sample, expected, rtol=1e-5, atol=1e-5)
    # back to evenly spaced steps
    custom.set_timesteps(4)
    assert not custom.custom_timesteps and torch.equal(custom.timesteps, regular.timesteps)


def test_scale_model_input_is_the_identity_and_public_api():
    for scheduler in (DDPMScheduler(), DDIMScheduler(), DPMSolverMultistepScheduler()):
        x = randn(*SHAPE)
        assert scheduler.scale_model_input(x) is x and scheduler.scale_model_input(x, 500) is x
        assert scheduler.init_noise_sigma == 1.0 and scheduler.order == 1 and len(scheduler) == 1000


def test_randn_tensor_draws_on_the_generator_device():
    a = randn_tensor((2, 3), torch.Generator().manual_seed(0))
    torch.testing.assert_close(a, torch.randn((2, 3), generator=torch.Generator().manual_seed(0)), rtol=0, atol=0)
    assert randn_tensor((2, 3), dtype=torch.float64).dtype == torch.float64


# ---- config: a read-only dict, like diffusers' FrozenDict ----

def test_config_attribute_and_mapping_access():
    scheduler = DDPMScheduler(num_train_timesteps=100, beta_schedule="squaredcos_cap_v2")
    assert scheduler.num_train_timesteps == scheduler.config.num_train_timesteps == 100
    assert scheduler.config["beta_schedule"] == "squaredcos_cap_v2"
    assert isinstance(scheduler.config, SchedulerConfig) and isinstance(scheduler.config, dict)
    assert dict(scheduler.config)["clip_sample"] is True
    assert json.loads(json.dumps(scheduler.config))["num_train_timesteps"] == 100
    with pytest.raises(AttributeError, match="read-only"):
        scheduler.config.num_train_timesteps = 5
    for mutate in (lambda c: c.__setitem__("clip_sample", False), lambda c: c.update(clip_sample=False),
                   lambda c: c.pop("clip_sample"), lambda c: c.setdefault("x", 1), lambda c: c.clear()):
        with pytest.raises(TypeError, match="read-only"):
            mutate(scheduler.config)
    assert scheduler.config.clip_sample is True
    clone = DDPMScheduler.from_config(scheduler.config)
    assert dict(clone.config) == dict(scheduler.config)
    torch.testing.assert_close(clone.alphas_cumprod, scheduler.alphas_cumprod, rtol=0, atol=0)


@pytest.mark.parametrize("make", [DDPMScheduler, DDIMScheduler, DPMSolverMultistepScheduler])
def test_scheduler_and_config_copy_and_pickle(make):
    """copy.deepcopy(DDPMScheduler()) used to recurse forever (issue 11)."""
    scheduler = make(beta_schedule="squaredcos_cap_v2")
    scheduler.set_timesteps(10)
    for clone in (copy.deepcopy(scheduler), pickle.loads(pickle.dumps(scheduler)), copy.copy(scheduler)):
        assert type(clone.config) is SchedulerConfig and dict(clone.config) == dict(scheduler.config)
        assert torch.equal(clone.timesteps, scheduler.timesteps)
    for config in (copy.deepcopy(scheduler.config), pickle.loads(pickle.dumps(scheduler.config))):
        assert type(config) is SchedulerConfig and config == scheduler.config
        with pytest.raises(TypeError, match="read-only"):
            config["clip_sample"] = False
    with pytest.raises(AttributeError, match="no field 'nope'"):
        scheduler.config.nope


def test_scheduler_output_is_like_diffusers_base_output():
    prev, x0 = randn(*SHAPE), randn(*SHAPE, seed=1)
    out = SchedulerOutput(prev_sample=prev, pred_original_sample=x0)
    assert out.prev_sample is prev and out["prev_sample"] is prev and out[0] is prev
    assert out.pred_original_sample is x0 and out["pred_original_sample"] is x0 and out[1] is x0 and out[-1] is x0
    assert out.to_tuple() == (prev, x0) and out[:1] == (prev,) and list(out) == ["prev_sample", "pred_original_sample"]
    clone = pickle.loads(pickle.dumps(out))
    assert type(clone) is SchedulerOutput and torch.equal(clone.prev_sample, prev)
    scheduler = DDPMScheduler()
    step = scheduler.step(randn(*SHAPE), 10, randn(*SHAPE, seed=2), generator=torch.Generator().manual_seed(0))
    assert isinstance(step, SchedulerOutput) and step[0] is step.prev_sample


# ---- from_config: ours, diffusers', siblings ----

def test_from_config_overrides_and_skips_private_keys():
    ddim = DDIMScheduler.from_config({**DDIMScheduler().config, "_class_name": "DDIMScheduler", "_x": 1},
                                     timestep_spacing="trailing", num_train_timesteps=500)
    assert ddim.config.timestep_spacing == "trailing" and ddim.num_train_timesteps == 500


def test_from_config_diffusers_options_at_their_defaults_are_accepted():
    diffusers_defaults = dict(trained_betas=None, thresholding=False, dynamic_thresholding_ratio=0.995,
                              sample_max_value=1.0, rescale_betas_zero_snr=False, timestep_spacing="leading",
                              steps_offset=0)
    ddpm = DDPMScheduler.from_config({**DDPMScheduler().config, **diffusers_defaults})
    assert dict(ddpm.config) == dict(DDPMScheduler().config)
    # the thresholding sub-options do nothing without thresholding
    DDPMScheduler.from_config({"dynamic_thresholding_ratio": 0.5, "sample_max_value": 3.0})


@pytest.mark.parametrize("option, value, named", [
    ("trained_betas", [0.1, 0.2], "trained_betas=[0.1, 0.2]"),
    ("rescale_betas_zero_snr", True, "rescale_betas_zero_snr=True"),
    ("timestep_spacing", "trailing", "timestep_spacing='trailing'"), ("steps_offset", 1, "steps_offset=1"),
    ("thresholding", True, "sample_max_value=2.0; it supports sample_max_value=1.0 with thresholding=True")])
def test_from_config_refuses_unsupported_values_by_name(option, value, named):
    config = {option: value, "sample_max_value": 2.0}
    with pytest.raises(ValueError, match="does not support " + re.escape(named)) as error:
        DDPMScheduler.from_config(config)
    assert "from_config(config," in str(error.value)  # says how to override it


def test_from_config_thresholding_at_one_is_clip_sample():
    """diffusers' dynamic thresholding with sample_max_value=1 clips x_0 to [-1, 1]: our clip_sample."""
    for cls in (DDPMScheduler, DDIMScheduler, DPMSolverMultistepScheduler):
        scheduler = cls.from_config({"thresholding": True, "sample_max_value": 1.0, "clip_sample": False,
                                     "clip_sample_range": 3.0})
        assert scheduler.config.clip_sample is True and scheduler.config.clip_sample_range == 1.0


def test_from_config_sibling_options_warn_only_when_not_default():
    ddpm = DDPMScheduler(variance_type="fixed_large")
    with pytest.warns(UserWarning, match="ignores variance_type='fixed_large'"):
        ddim = DDIMScheduler.from_config(ddpm.config)
    assert "variance_type" not in ddim.config
    with pytest.warns(UserWarning, match="ignores set_alpha_to_one=False, solver_order=1"):
        DDPMScheduler.from_config({"set_alpha_to_one": False, "solver_order": 1})
    with pytest.warns(UserWarning, match="algorithm_type='sde-dpmsolver\\+\\+'"):
        DDIMScheduler.from_config(DPMSolverMultistepScheduler(algorithm_type="sde-dpmsolver++").config)
    # at their defaults: no warning
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        DDIMScheduler.from_config(DDPMScheduler().config)
        DDPMScheduler.from_config(DDIMScheduler().config)
        DDPMScheduler.from_config(DPMSolverMultistepScheduler().config)
        # DPM-Solver++ has diffusers' variance_type, where fixed_* make no difference
        DPMSolverMultistepScheduler.from_config(ddpm.config)


def test_from_config_unknown_option_is_a_type_error():
    with pytest.raises(TypeError, match="unknown option 'beta_shedule'"):
        DDPMScheduler.from_config({"beta_shedule": "squaredcos_cap_v2"})


def test_ddim_from_a_ddpm_config_keeps_the_shared_options():
    ddpm = DDPMScheduler(num_train_timesteps=500, beta_schedule="squaredcos_cap_v2", clip_sample=False)
    ddim = DDIMScheduler.from_config(ddpm.config)  # DDPM's variance_type is not a DDIM option
    assert ddim.config.num_train_timesteps == 500 and ddim.config.beta_schedule == "squaredcos_cap_v2"
    assert ddim.config.clip_sample is False
    torch.testing.assert_close(ddim.alphas_cumprod, ddpm.alphas_cumprod)


# ---- save_config / from_pretrained: diffusers' scheduler_config.json ----

@pytest.mark.parametrize("make", [lambda: DDPMScheduler(beta_schedule="squaredcos_cap_v2", variance_type="fixed_large"),
                                  lambda: DDIMScheduler(steps_offset=1, timestep_spacing="trailing"),
                                  lambda: DPMSolverMultistepScheduler(algorithm_type="sde-dpmsolver++")],
                         ids=["DDPM", "DDIM", "DPM"])
def test_save_config_and_from_pretrained_round_trip(make, tmp_path):
    scheduler = make()
    path = scheduler.save_config(tmp_path / "pipe" / "scheduler")
    assert path == tmp_path / "pipe" / "scheduler" / "scheduler_config.json"
    data = json.loads(path.read_text())
    assert data["_class_name"] == type(scheduler).__name__ and data["_diffusers_version"]
    assert {k: v for k, v in data.items() if not k.startswith("_")} == dict(scheduler.config)
    for loaded in (type(scheduler).from_pretrained(tmp_path / "pipe" / "scheduler"),
                   type(scheduler).from_pretrained(str(tmp_path / "pipe"), subfolder="scheduler"),
                   type(scheduler).from_pretrained(path)):
        assert type(loaded) is type(scheduler) and loaded.config == scheduler.config
    assert [p.name for p in (tmp_path / "pipe" / "scheduler").iterdir()] == ["scheduler_config.json"]  # no temp files


def test_another_samplers_default_spacing_is_not_a_request():
    """DDIM's default 'leading' spacing is DDIM's; DPM-Solver++ built from its config spaces 'linspace'.
    A spacing chosen on purpose (or of unknown origin) that DPM-Solver++ cannot do is refused."""
    dpm = DPMSolverMultistepScheduler.from_config(DDIMScheduler(beta_schedule="squaredcos_cap_v2").config)
    dpm.set_timesteps(20)
    assert dpm.config.beta_schedule == "squaredcos_cap_v2" and dpm.timesteps[0] == 999
    for config in (DDIMScheduler(timestep_spacing="trailing").config, {"timestep_spacing": "leading"},
                   {"timestep_spacing": "leading", "_class_name": "DPMSolverMultistepScheduler"}):
        with pytest.raises(ValueError, match="does not support timestep_spacing="):
            DPMSolverMultistepScheduler.from_config(config)
    assert DDIMScheduler().config._class_name == "DDIMScheduler"


def test_options_after_beta_schedule_are_keyword_only():
    with pytest.raises(TypeError):
        DDPMScheduler(1000, 1e-4, 0.02, "linear", False)
