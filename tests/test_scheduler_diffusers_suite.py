"""diffusers' own scheduler tests, pointed at the course's schedulers.

Ported from huggingface/diffusers, tests/schedulers/test_schedulers.py (SchedulerCommonTest),
test_scheduler_ddpm.py, test_scheduler_ddim.py and test_scheduler_dpm_multi.py: the same dummy
samples, dummy model, loops and published result sums. Where diffusers' test needs what the
course does not support, the port says so and asserts the clear refusal instead:

- options ours lack (``thresholding``, ``lower_order_final``, ...) are passed through
  ``from_config``, which accepts diffusers' configs; our constructors take only our options;
- ``prediction_type`` other than "epsilon", dynamic thresholding other than a clip to [-1, 1],
  ``trained_betas``, ``beta_end`` >= 1 (diffusers' test uses 2, which makes alphas negative),
  unknown ``variance_type`` ("other"), DPM-Solver's "heun" solver and order 3: refused;
- DPM-Solver++ steps only on its own timesteps, in order (diffusers' test steps at t = 0, 1, 2
  after planting ``model_outputs``, an internal): the port steps along ``scheduler.timesteps``;
- ``_get_variance`` (private in diffusers) is not ported.
"""

import inspect
import tempfile

import pytest
import torch

from ddpm_helpers.dpm_solver import DPMSolverMultistepScheduler
from ddpm_helpers.scheduler import DDIMScheduler, DDPMScheduler


class SchedulerCommonTest:
    scheduler_classes = ()
    forward_default_kwargs = ()

    @property
    def dummy_sample(self):
        return torch.rand((4, 3, 8, 8))

    @property
    def dummy_sample_deter(self):
        num_elems = 4 * 3 * 8 * 8
        return (torch.arange(num_elems).reshape(3, 8, 8, 4) / num_elems).permute(3, 0, 1, 2)

    @property
    def dummy_noise_deter(self):
        num_elems = 4 * 3 * 8 * 8
        return (torch.arange(num_elems).flip(-1).reshape(3, 8, 8, 4) / num_elems).permute(3, 0, 1, 2)

    def dummy_model(self):
        def model(sample, t, *args):
            if isinstance(t, torch.Tensor):
                t = t.reshape(-1, *(1,) * (len(sample.shape) - 1)).to(sample.device).to(sample.dtype)
            return sample * t / (t + 1)

        return model

    def make(self, scheduler_class, **config):
        # diffusers constructs from the config dict; ours take diffusers' extra options through from_config
        return scheduler_class.from_config(self.get_scheduler_config(**config))

    def step_kwargs(self, scheduler, kwargs):
        if "generator" in inspect.signature(scheduler.step).parameters:
            kwargs["generator"] = torch.manual_seed(0)
        return kwargs

    def check_over_configs(self, time_step=0, **config):
        self._check_saved_and_reloaded(time_step, config, dict(self.forward_default_kwargs), scale_input=True)

    def check_over_forward(self, time_step=0, **forward_kwargs):
        self._check_saved_and_reloaded(time_step, {}, {**dict(self.forward_default_kwargs), **forward_kwargs})

    def _check_saved_and_reloaded(self, time_step, config, kwargs, scale_input=False):
        """diffusers' check_over_configs / check_over_forward: a scheduler saved with save_config and
        reloaded with from_pretrained steps exactly like the original."""
        num_inference_steps = kwargs.pop("num_inference_steps", None)
        for scheduler_class in self.scheduler_classes:
            scheduler = self.make(scheduler_class, **config)
            sample = self.dummy_sample
            residual = 0.1 * sample
            with tempfile.TemporaryDirectory() as tmpdirname:
                scheduler.save_config(tmpdirname)
                new_scheduler = scheduler_class.from_pretrained(tmpdirname)
            if num_inference_steps is not None:
                scheduler.set_timesteps(num_inference_steps)
                new_scheduler.set_timesteps(num_inference_steps)
            if scale_input:
                _ = scheduler.scale_model_input(sample, 0)
                _ = new_scheduler.scale_model_input(sample, 0)
            output = scheduler.step(residual, time_step, sample, **self.step_kwargs(scheduler, kwargs)).prev_sample
            new_output = new_scheduler.step(residual, time_step, sample,
                                            **self.step_kwargs(scheduler, kwargs)).prev_sample
            assert torch.sum(torch.abs(output - new_output)) < 1e-5, "Scheduler outputs are not identical"

    def test_from_save_pretrained(self):
        self.check_over_forward(time_step=1)

    def test_from_pretrained(self, tmp_path):
        for scheduler_class in self.scheduler_classes:
            scheduler = self.make(scheduler_class)
            scheduler.save_pretrained(tmp_path)
            new_scheduler = scheduler_class.from_pretrained(tmp_path)
            assert dict(scheduler.config) == new_scheduler.config

    def test_compatibles(self):
        # diffusers: every compatible class reads the config, and the round trip gives it back
        compatibles = (DDPMScheduler, DDIMScheduler, DPMSolverMultistepScheduler)
        for scheduler_class in self.scheduler_classes:
            scheduler = self.make(scheduler_class)
            for comp_scheduler_cls in compatibles:
                comp_scheduler = comp_scheduler_cls.from_config(scheduler.config)
                assert comp_scheduler is not None
            new_scheduler = scheduler_class.from_config(comp_scheduler.config)
            new_scheduler_config = {k: v for k, v in new_scheduler.config.items() if k in scheduler.config}
            assert new_scheduler_config == dict(scheduler.config)
            assert set(new_scheduler.config) == set(scheduler.config)

    def test_step_shape(self):
        kwargs = dict(self.forward_default_kwargs)
        num_inference_steps = kwargs.pop("num_inference_steps", None)
        for scheduler_class in self.scheduler_classes:
            scheduler = self.make(scheduler_class)
            sample = self.dummy_sample
            residual = 0.1 * sample
            if num_inference_steps is not None:
                scheduler.set_timesteps(num_inference_steps)
            timestep_0, timestep_1 = self.two_timesteps(scheduler)
            output_0 = scheduler.step(residual, timestep_0, sample, **kwargs).prev_sample
            output_1 = scheduler.step(residual, timestep_1, sample, **kwargs).prev_sample
            assert output_0.shape == sample.shape
            assert output_0.shape == output_1.shape

    def two_timesteps(self, scheduler):
        return 0, 1

    def test_scheduler_outputs_equivalence(self):
        kwargs = dict(self.forward_default_kwargs)
        num_inference_steps = kwargs.pop("num_inference_steps", 50)
        for scheduler_class in self.scheduler_classes:
            scheduler = self.make(scheduler_class)
            sample = self.dummy_sample
            residual = 0.1 * sample
            scheduler.set_timesteps(num_inference_steps)
            timestep = scheduler.timesteps[0]
            outputs_dict = scheduler.step(residual, timestep, sample, **self.step_kwargs(scheduler, kwargs))
            scheduler.set_timesteps(num_inference_steps)
            outputs_tuple = scheduler.step(residual, timestep, sample, return_dict=False,
                                           **self.step_kwargs(scheduler, kwargs))
            for tuple_value, dict_value in zip(outputs_tuple, outputs_dict.values()):
                assert torch.allclose(tuple_value, dict_value, atol=1e-5)
            assert torch.equal(outputs_dict["prev_sample"], outputs_dict[0])

    def test_scheduler_public_api(self):
        for scheduler_class in self.scheduler_classes:
            scheduler = self.make(scheduler_class)
            assert hasattr(scheduler, "init_noise_sigma"), f"{scheduler_class} lacks `init_noise_sigma`"
            assert hasattr(scheduler, "scale_model_input"), f"{scheduler_class} lacks `scale_model_input`"
            assert hasattr(scheduler, "step"), f"{scheduler_class} lacks `step(...)`"
            sample = self.dummy_sample
            scaled_sample = scheduler.scale_model_input(sample, 0.0)
            assert sample.shape == scaled_sample.shape

    def test_add_noise_device(self):
        for scheduler_class in self.scheduler_classes:
            scheduler = self.make(scheduler_class)
            scheduler.set_timesteps(100)
            sample = self.dummy_sample
            scaled_sample = scheduler.scale_model_input(sample, 0.0)
            assert sample.shape == scaled_sample.shape
            noise = torch.randn_like(scaled_sample)
            t = scheduler.timesteps[5][None]  # one timestep, shape (1,), for a batch of 4
            noised = scheduler.add_noise(scaled_sample, noise, t)
            assert noised.shape == scaled_sample.shape

    def test_trained_betas(self):
        # diffusers builds a scheduler from trained_betas=[0.1, 0.3]; ours compute betas from beta_schedule
        for scheduler_class in self.scheduler_classes:
            with pytest.raises(ValueError, match=r"does not support trained_betas=\[0.1, 0.3\]"):
                self.make(scheduler_class, trained_betas=[0.1, 0.3])
            self.make(scheduler_class, trained_betas=None)

    def test_getattr_is_correct(self):
        for scheduler_class in self.scheduler_classes:
            scheduler = self.make(scheduler_class)
            scheduler.dummy_attribute = 5
            assert getattr(scheduler, "dummy_attribute") == 5
            assert getattr(scheduler, "save_pretrained") == scheduler.save_pretrained
            with pytest.raises(AttributeError) as error:
                scheduler.does_not_exist
            assert str(error.value) == f"'{type(scheduler).__name__}' object has no attribute 'does_not_exist'"

    def test_prediction_types_other_than_epsilon_are_refused(self):
        for scheduler_class in self.scheduler_classes:
            for prediction_type in ("sample", "v_prediction"):
                with pytest.raises(ValueError, match="prediction_type must be one of 'epsilon'"):
                    self.make(scheduler_class, prediction_type=prediction_type)


class TestDDPMScheduler(SchedulerCommonTest):
    scheduler_classes = (DDPMScheduler,)

    def get_scheduler_config(self, **kwargs):
        config = {"num_train_timesteps": 1000, "beta_start": 0.0001, "beta_end": 0.02, "beta_schedule": "linear",
                  "variance_type": "fixed_small", "clip_sample": True}
        config.update(**kwargs)
        return config

    def test_timesteps(self):
        for timesteps in [1, 5, 100, 1000]:
            self.check_over_configs(num_train_timesteps=timesteps)

    def test_betas(self):
        for beta_start, beta_end in zip([0.0001, 0.001, 0.01], [0.002, 0.02, 0.2]):
            self.check_over_configs(beta_start=beta_start, beta_end=beta_end)
        with pytest.raises(ValueError, match="beta_end must be in"):
            self.check_over_configs(beta_start=0.1, beta_end=2)

    def test_schedules(self):
        for schedule in ["linear", "squaredcos_cap_v2"]:
            self.check_over_configs(beta_schedule=schedule)

    def test_variance_type(self):
        for variance in ["fixed_small", "fixed_large"]:
            self.check_over_configs(variance_type=variance)
        with pytest.raises(ValueError, match="variance_type must be one of"):
            self.check_over_configs(variance_type="other")

    def test_clip_sample(self):
        for clip_sample in [True, False]:
            self.check_over_configs(clip_sample=clip_sample)

    def test_thresholding(self):
        self.check_over_configs(thresholding=False)
        self.check_over_configs(thresholding=True, prediction_type="epsilon", sample_max_value=1.0)
        for threshold in [0.5, 2.0]:
            with pytest.raises(ValueError, match=f"does not support sample_max_value={threshold}"):
                self.check_over_configs(thresholding=True, sample_max_value=threshold)

    def test_time_indices(self):
        for t in [0, 500, 999]:
            self.check_over_forward(time_step=t)

    def test_full_loop_no_noise(self):
        scheduler = self.make(DDPMScheduler)
        num_trained_timesteps = len(scheduler)
        model = self.dummy_model()
        sample = self.dummy_sample_deter
        generator = torch.manual_seed(0)
        for t in reversed(range(num_trained_timesteps)):
            residual = model(sample, t)
            sample = scheduler.step(residual, t, sample, generator=generator).prev_sample
        assert abs(torch.sum(torch.abs(sample)).item() - 258.9606) < 1e-2
        assert abs(torch.mean(torch.abs(sample)).item() - 0.3372) < 1e-3

    def test_full_loop_with_noise(self):
        scheduler = self.make(DDPMScheduler)
        t_start = len(scheduler) - 2
        model = self.dummy_model()
        sample = self.dummy_sample_deter
        generator = torch.manual_seed(0)
        noise = self.dummy_noise_deter
        timesteps = scheduler.timesteps[t_start * scheduler.order:]
        sample = scheduler.add_noise(sample, noise, timesteps[:1])  # one timestep broadcast over the batch
        for t in timesteps:
            residual = model(sample, t)
            sample = scheduler.step(residual, t, sample, generator=generator).prev_sample
        assert abs(torch.sum(torch.abs(sample)).item() - 387.9466) < 1e-2
        assert abs(torch.mean(torch.abs(sample)).item() - 0.5051) < 1e-3

    def test_custom_timesteps(self):
        scheduler = self.make(DDPMScheduler)
        timesteps = [100, 87, 50, 1, 0]
        scheduler.set_timesteps(timesteps=timesteps)
        for i, timestep in enumerate(scheduler.timesteps):
            expected_prev_t = -1 if i == len(timesteps) - 1 else timesteps[i + 1]
            assert int(scheduler.previous_timestep(timestep)) == expected_prev_t

    def test_custom_timesteps_increasing_order(self):
        with pytest.raises(ValueError, match="strictly decreasing"):
            self.make(DDPMScheduler).set_timesteps(timesteps=[100, 87, 50, 51, 0])

    def test_custom_timesteps_passing_both_num_inference_steps_and_timesteps(self):
        with pytest.raises(ValueError, match="not both"):
            self.make(DDPMScheduler).set_timesteps(num_inference_steps=5, timesteps=[100, 87, 50, 1, 0])

    def test_custom_timesteps_too_large(self):
        scheduler = self.make(DDPMScheduler)
        with pytest.raises(ValueError, match=r"timesteps must be in \[0, 999\]"):
            scheduler.set_timesteps(timesteps=[scheduler.config.num_train_timesteps])


class TestDDIMScheduler(SchedulerCommonTest):
    scheduler_classes = (DDIMScheduler,)
    forward_default_kwargs = (("eta", 0.0), ("num_inference_steps", 50))

    def get_scheduler_config(self, **kwargs):
        config = {"num_train_timesteps": 1000, "beta_start": 0.0001, "beta_end": 0.02, "beta_schedule": "linear",
                  "clip_sample": True}
        config.update(**kwargs)
        return config

    def full_loop(self, **config):
        scheduler = self.make(DDIMScheduler, **config)
        num_inference_steps, eta = 10, 0.0
        model = self.dummy_model()
        sample = self.dummy_sample_deter
        scheduler.set_timesteps(num_inference_steps)
        for t in scheduler.timesteps:
            residual = model(sample, t)
            sample = scheduler.step(residual, t, sample, eta).prev_sample
        return sample

    def test_timesteps(self):
        for timesteps in [100, 500, 1000]:
            self.check_over_configs(num_train_timesteps=timesteps)

    def test_steps_offset(self):
        for steps_offset in [0, 1]:
            self.check_over_configs(steps_offset=steps_offset)
        scheduler = self.make(DDIMScheduler, steps_offset=1)
        scheduler.set_timesteps(5)
        assert torch.equal(scheduler.timesteps, torch.LongTensor([801, 601, 401, 201, 1]))

    def test_schedules(self):
        for schedule in ["linear", "squaredcos_cap_v2"]:
            self.check_over_configs(beta_schedule=schedule)

    def test_clip_sample(self):
        for clip_sample in [True, False]:
            self.check_over_configs(clip_sample=clip_sample)

    def test_timestep_spacing(self):
        for timestep_spacing in ["trailing", "leading"]:
            self.check_over_configs(timestep_spacing=timestep_spacing)

    def test_rescale_betas_zero_snr(self):
        self.check_over_configs(rescale_betas_zero_snr=False)
        with pytest.raises(ValueError, match="does not support rescale_betas_zero_snr=True"):
            self.check_over_configs(rescale_betas_zero_snr=True)

    def test_time_indices(self):
        for t in [1, 10, 49]:
            self.check_over_forward(time_step=t)

    def test_inference_steps(self):
        for t, num_inference_steps in zip([1, 10, 50], [10, 50, 500]):
            self.check_over_forward(time_step=t, num_inference_steps=num_inference_steps)

    def test_eta(self):
        for t, eta in zip([1, 10, 49], [0.0, 0.5, 1.0]):
            self.check_over_forward(time_step=t, eta=eta)

    def test_full_loop_no_noise(self):
        sample = self.full_loop()
        assert abs(torch.sum(torch.abs(sample)).item() - 172.0067) < 1e-2
        assert abs(torch.mean(torch.abs(sample)).item() - 0.223967) < 1e-3

    def test_full_loop_with_set_alpha_to_one(self):
        sample = self.full_loop(set_alpha_to_one=True, beta_start=0.01)
        assert abs(torch.sum(torch.abs(sample)).item() - 149.8295) < 1e-2
        assert abs(torch.mean(torch.abs(sample)).item() - 0.1951) < 1e-3

    def test_full_loop_with_no_set_alpha_to_one(self):
        sample = self.full_loop(set_alpha_to_one=False, beta_start=0.01)
        assert abs(torch.sum(torch.abs(sample)).item() - 149.0784) < 1e-2
        assert abs(torch.mean(torch.abs(sample)).item() - 0.1941) < 1e-3

    def test_full_loop_with_noise(self):
        scheduler = self.make(DDIMScheduler)
        num_inference_steps, eta, t_start = 10, 0.0, 8
        model = self.dummy_model()
        sample = self.dummy_sample_deter
        scheduler.set_timesteps(num_inference_steps)
        noise = self.dummy_noise_deter
        timesteps = scheduler.timesteps[t_start * scheduler.order:]
        sample = scheduler.add_noise(sample, noise, timesteps[:1])
        for t in timesteps:
            residual = model(sample, t)
            sample = scheduler.step(residual, t, sample, eta).prev_sample
        assert abs(torch.sum(torch.abs(sample)).item() - 354.5418) < 1e-2
        assert abs(torch.mean(torch.abs(sample)).item() - 0.4616) < 1e-3

    def test_num_inference_steps_zero_raises(self):
        with pytest.raises(ValueError):
            self.make(DDIMScheduler).set_timesteps(num_inference_steps=0)


class TestDPMSolverMultistepScheduler(SchedulerCommonTest):
    scheduler_classes = (DPMSolverMultistepScheduler,)
    forward_default_kwargs = (("num_inference_steps", 25),)

    def get_scheduler_config(self, **kwargs):
        config = {"num_train_timesteps": 1000, "beta_start": 0.0001, "beta_end": 0.02, "beta_schedule": "linear",
                  "solver_order": 2, "prediction_type": "epsilon", "thresholding": False, "sample_max_value": 1.0,
                  "algorithm_type": "dpmsolver++", "solver_type": "midpoint", "lower_order_final": False}
        config.update(**kwargs)
        return config

    def two_timesteps(self, scheduler):
        return scheduler.timesteps[5], scheduler.timesteps[6]

    def check_over_configs(self, time_step=0, **config):
        # steps along the scheduler's own timesteps, solver_order + 1 of them (see the module docstring)
        num_inference_steps = dict(self.forward_default_kwargs)["num_inference_steps"]
        sample = self.dummy_sample
        residual = 0.1 * sample
        scheduler = self.make(DPMSolverMultistepScheduler, **config)
        scheduler.set_timesteps(num_inference_steps)
        with tempfile.TemporaryDirectory() as tmpdirname:
            scheduler.save_config(tmpdirname)
            new_scheduler = DPMSolverMultistepScheduler.from_pretrained(tmpdirname)
            new_scheduler.set_timesteps(num_inference_steps)
        output, new_output = sample, sample
        for t in scheduler.timesteps[:scheduler.config.solver_order + 1]:
            output = scheduler.step(residual, t, output).prev_sample
            new_output = new_scheduler.step(residual, t, new_output).prev_sample
            assert torch.sum(torch.abs(output - new_output)) < 1e-5, "Scheduler outputs are not identical"

    def check_over_forward(self, time_step=0, **forward_kwargs):
        kwargs = dict(self.forward_default_kwargs)
        kwargs.update(forward_kwargs)
        num_inference_steps = kwargs.pop("num_inference_steps")
        sample = self.dummy_sample
        residual = 0.1 * sample
        scheduler = self.make(DPMSolverMultistepScheduler)
        scheduler.set_timesteps(num_inference_steps)
        with tempfile.TemporaryDirectory() as tmpdirname:
            scheduler.save_config(tmpdirname)
            new_scheduler = DPMSolverMultistepScheduler.from_pretrained(tmpdirname)
            new_scheduler.set_timesteps(num_inference_steps)
        t = scheduler.timesteps[time_step]
        output = scheduler.step(residual, t, sample, **kwargs).prev_sample
        new_output = new_scheduler.step(residual, t, sample, **kwargs).prev_sample
        assert torch.sum(torch.abs(output - new_output)) < 1e-5, "Scheduler outputs are not identical"

    def test_from_save_pretrained(self):
        pass  # as in diffusers

    def full_loop(self, scheduler=None, **config):
        scheduler = scheduler or self.make(DPMSolverMultistepScheduler, **config)
        num_inference_steps = 10
        model = self.dummy_model()
        sample = self.dummy_sample_deter
        scheduler.set_timesteps(num_inference_steps)
        for t in scheduler.timesteps:
            residual = model(sample, t)
            sample = scheduler.step(residual, t, sample).prev_sample
        return sample

    def test_timesteps(self):
        for timesteps in [50, 100, 999, 1000]:
            self.check_over_configs(num_train_timesteps=timesteps)
        # T = 25 with diffusers' 25 steps would repeat a timestep: refused here, 24 is the most
        with pytest.raises(ValueError, match="at most 24 steps"):
            self.check_over_configs(num_train_timesteps=25)

    def test_thresholding(self):
        self.check_over_configs(thresholding=False)
        for order in [1, 2]:
            self.check_over_configs(thresholding=True, prediction_type="epsilon", sample_max_value=1.0,
                                    algorithm_type="dpmsolver++", solver_order=order, solver_type="midpoint")
        with pytest.raises(ValueError, match="does not support sample_max_value=0.5"):
            self.check_over_configs(thresholding=True, sample_max_value=0.5)

    def test_solver_order_and_type(self):
        for order in [1, 2]:
            self.check_over_configs(solver_order=order, solver_type="midpoint", algorithm_type="dpmsolver++")
            sample = self.full_loop(solver_order=order, solver_type="midpoint", algorithm_type="dpmsolver++")
            assert not torch.isnan(sample).any(), "Samples have nan numbers"
        with pytest.raises(ValueError, match="does not support solver_type='heun'"):
            self.check_over_configs(solver_type="heun")
        with pytest.raises(ValueError, match=r"solver_order must be in \[1, 2\], got 3"):
            self.check_over_configs(solver_order=3)
        with pytest.raises(ValueError, match="algorithm_type must be one of"):
            self.check_over_configs(algorithm_type="dpmsolver")

    def test_lower_order_final(self):
        self.check_over_configs(lower_order_final=True)
        self.check_over_configs(lower_order_final=False)

    def test_inference_steps(self):
        for num_inference_steps in [1, 2, 3, 5, 10, 50, 100, 999]:
            self.check_over_forward(num_inference_steps=num_inference_steps, time_step=0)
        with pytest.raises(ValueError, match="at most 999 steps"):
            self.check_over_forward(num_inference_steps=1000, time_step=0)

    # diffusers' test file expects 0.3301 here, from an older diffusers; 0.42.1, which the course tests
    # against, gives 0.2409 on this loop (checked live below), and so do ours
    FULL_LOOP_MEAN = 0.2409

    def test_full_loop_no_noise(self):
        assert abs(torch.mean(torch.abs(self.full_loop())).item() - self.FULL_LOOP_MEAN) < 1e-3
        diffusers = pytest.importorskip("diffusers")
        reference = self.full_loop(scheduler=diffusers.DPMSolverMultistepScheduler(**self.get_scheduler_config()))
        torch.testing.assert_close(self.full_loop(), reference, rtol=0, atol=1e-5)

    def test_full_loop_no_noise_thres(self):
        with pytest.raises(ValueError, match="does not support sample_max_value=0.5"):
            self.full_loop(thresholding=True, dynamic_thresholding_ratio=0.87, sample_max_value=0.5)

    def test_switch(self):
        # the same numbers after going round the course's samplers with from_config
        scheduler = DPMSolverMultistepScheduler.from_config(self.get_scheduler_config())
        assert abs(torch.mean(torch.abs(self.full_loop(scheduler=scheduler))).item() - self.FULL_LOOP_MEAN) < 1e-3
        scheduler = DDPMScheduler.from_config(scheduler.config)
        scheduler = DDIMScheduler.from_config(scheduler.config)
        scheduler = DPMSolverMultistepScheduler.from_config(scheduler.config)
        assert abs(torch.mean(torch.abs(self.full_loop(scheduler=scheduler))).item() - self.FULL_LOOP_MEAN) < 1e-3

    def test_fp16_support(self):
        scheduler = self.make(DPMSolverMultistepScheduler, thresholding=True, dynamic_thresholding_ratio=0)
        model = self.dummy_model()
        sample = self.dummy_sample_deter.half()
        scheduler.set_timesteps(10)
        for t in scheduler.timesteps:
            residual = model(sample, t)
            sample = scheduler.step(residual, t, sample).prev_sample
        assert sample.dtype == torch.float16
