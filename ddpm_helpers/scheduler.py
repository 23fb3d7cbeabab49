"""DDPMScheduler and DDIMScheduler: diffusers' names outside, the papers' symbols inside.

Timesteps are 0-indexed, as in diffusers: t in {0, ..., T-1}, t = 0 is the least noisy
step and T = ``num_train_timesteps``. (The papers count 1..T; our t is their t - 1.)

Notation, code name -> symbol (Ho et al. 2020; Song et al. 2021):

    x_t             sample             x_t, the noisy sample at step t
    x0_pred         pred_original_sample   x_0 predicted from (x_t, eps_pred)
    eps_pred        model_output       eps_theta(x_t, t), the predicted noise
    alphas_cumprod  alpha_bar          alpha_bar_t = prod_{s<=t} (1 - beta_s)
    alpha_bar_prev                     alpha_bar at the previous sampling step (1 before t=0)
    alpha_t, beta_t                    alpha_bar_t / alpha_bar_prev and 1 - alpha_t: the
                                       per-step alpha and beta between two sampling steps
    sigma_t                            DDIM's noise scale (Song et al. 2021, eq. 16)

For the options they support, both classes give the same numbers as diffusers (tested in
tests/test_scheduler_vs_diffusers.py), and they read and write diffusers' configs:
``from_config``, ``save_config``, ``from_pretrained`` (rules in ``_scheduler_config``).
"""

import torch

from . import _checks
from ._scheduler_config import ConfigMixin, SchedulerConfig, SchedulerOutput
from .noising import q_sample
from .schedules import alphas_cumprod_from_betas, make_betas

__all__ = ["DDIMScheduler", "DDPMScheduler", "SchedulerConfig", "SchedulerOutput", "randn_tensor"]


def randn_tensor(shape, generator=None, device=None, dtype=None):
    """Standard normal noise of ``shape``, drawn as diffusers' ``randn_tensor`` draws it: on the
    generator's device, then moved to ``device``, so a seed gives the same noise on every device
    (and the same noise as diffusers). Every random draw of the package goes through here."""
    check_generator(generator)
    draw_device = generator.device if generator is not None else device
    return torch.randn(shape, generator=generator, device=draw_device, dtype=dtype).to(device)


def check_generator(generator):
    """``generator`` if it is a ``torch.Generator`` or None, else a TypeError that says how to seed."""
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {generator!r}; for a seed, pass "
                        "generator=torch.Generator().manual_seed(seed).")
    return generator


class _Scheduler(ConfigMixin):
    """What DDPM and DDIM share: the schedule, add_noise, and the checks of set_timesteps and step."""

    order = 1  # model evaluations per step, diffusers' name
    init_noise_sigma = 1.0  # x_T ~ N(0, init_noise_sigma^2 I)

    def _setup(self, config):
        _checks.one_of(config["prediction_type"], "prediction_type", ("epsilon",),
                       hint="the course's models predict the noise eps")
        _checks.one_of(config["clip_sample"], "clip_sample", (True, False))
        _checks.real(config["clip_sample_range"], "clip_sample_range", low=0, low_open=True)
        self.config = SchedulerConfig(config, class_name=type(self).__name__)
        # computed in float64 (checking T and the betas), stored in float32 as the model sees it
        betas = make_betas(config["beta_schedule"], config["num_train_timesteps"], config["beta_start"],
                           config["beta_end"])
        self.num_train_timesteps = T = len(betas)
        self.betas = betas.float()
        self.alphas = (1.0 - betas).float()
        self.alphas_cumprod = alphas_cumprod_from_betas(betas).float()
        self.num_inference_steps = None
        self.timesteps = torch.arange(T - 1, -1, -1, dtype=torch.int64)

    def __len__(self):
        return self.num_train_timesteps

    def add_noise(self, original_samples, noise, timesteps):
        """Sample x_t ~ q(x_t | x_0) in closed form (Ho et al. 2020, eq. 4): lesson 1's
        ``noising.q_sample`` with diffusers' names and argument order.

        original_samples: x_0, (B, ...) in [-1, 1]; noise: eps, the same shape.
        timesteps: an int, a 0-d or (1,) tensor (one t for the whole batch) or a (B,) tensor, in [0, T).
        """
        _checks.image_range(original_samples, "original_samples")
        t = _checks.timesteps(timesteps, self.num_train_timesteps, batch_size=len(original_samples))  # (B,)
        return q_sample(original_samples, t, self.alphas_cumprod, noise)

    def scale_model_input(self, sample, timestep=None):
        """The model's input at ``timestep``: ``sample`` itself for DDPM, DDIM and DPM-Solver++ (diffusers'
        samplers that work in sigma units rescale it here, so its loops call this)."""
        return sample

    def _check_set_timesteps(self, num_inference_steps, timesteps):
        """The number of steps as an int, or None when custom ``timesteps`` are given instead."""
        if timesteps is not None:
            if num_inference_steps is not None:
                raise ValueError("set_timesteps takes num_inference_steps or timesteps, not both.")
            return None
        if num_inference_steps is None:
            raise ValueError("set_timesteps needs num_inference_steps, e.g. scheduler.set_timesteps(50).")
        T = self.num_train_timesteps
        return _checks.integer(num_inference_steps, "num_inference_steps", 1, T,
                               hint=f"the model was trained on {T} noise levels (num_train_timesteps={T})")

    def _check_custom_timesteps(self, timesteps):
        """Custom ``timesteps``, a sequence of ints in [0, T), strictly decreasing, as an int64 tensor."""
        if not isinstance(timesteps, torch.Tensor):
            if not hasattr(timesteps, "__len__") or isinstance(timesteps, str):
                raise TypeError(f"timesteps must be a list of ints such as [999, 500, 0], got {timesteps!r}; "
                                "for a number of steps pass num_inference_steps.")
            try:
                timesteps = torch.as_tensor(timesteps)
            except (TypeError, ValueError, RuntimeError):
                raise TypeError(f"timesteps must be a list of ints such as [999, 500, 0], got {timesteps!r}.") from None
        if timesteps.numel() == 0:
            raise ValueError("timesteps is empty; give at least one, e.g. [999, 500, 0].")
        t = _checks.timesteps(timesteps, self.num_train_timesteps).clone().to(torch.int64)
        if not bool((t[1:] < t[:-1]).all()):
            raise ValueError(f"timesteps must be strictly decreasing (noisiest first), got {t.tolist()}.")
        return t

    def _index_of(self, t):
        """The position of timestep ``t`` in ``self.timesteps``."""
        matches = (self.timesteps.cpu() == t).nonzero()
        if len(matches) == 0:
            raise ValueError(f"timestep {t} is not in scheduler.timesteps; loop over scheduler.timesteps.")
        return int(matches[0])

    def _check_timesteps_set(self):
        """For samplers that only run on the timesteps ``set_timesteps`` picks (DDIM, DPM-Solver++)."""
        if self.num_inference_steps is None:
            raise ValueError("Number of inference steps is 'None', you need to run 'set_timesteps' after "
                             "creating the scheduler: call scheduler.set_timesteps(num_inference_steps) first.")

    def _check_step(self, model_output, timestep, sample):
        """step()'s arguments checked; returns the timestep as an int."""
        _checks.float_tensor(sample, "sample")
        _checks.float_tensor(model_output, "model_output")
        if model_output.shape != sample.shape:
            raise ValueError(f"model_output {tuple(model_output.shape)} and sample {tuple(sample.shape)} must have "
                             "the same shape: the model predicts one noise value per pixel of the sample.")
        t = _checks.timesteps(timestep, self.num_train_timesteps, name="timestep",
                              hint="take it from scheduler.timesteps: for t in scheduler.timesteps: ...")
        if t.numel() != 1:
            raise ValueError(f"timestep must be one timestep, got {t.numel()} of them; step() takes one at a time: "
                             "loop over scheduler.timesteps.")
        return int(t)

    def _predict_x0(self, eps_pred, x_t, alpha_bar_t):
        """x_0 from x_t and the predicted noise, clipped if ``clip_sample``."""
        # Ho et al. 2020, eq. (15): x_0 = (x_t - sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_bar_t)
        x0_pred = (x_t - (1 - alpha_bar_t) ** 0.5 * eps_pred) / alpha_bar_t**0.5
        if self.config.clip_sample:
            # Ho et al. 2020, sec. 3.3: data lives in [-1, 1]
            x0_pred = x0_pred.clamp(-self.config.clip_sample_range, self.config.clip_sample_range)
        return x0_pred


class DDPMScheduler(_Scheduler):
    """Ancestral sampling of Ho et al. 2020 (arXiv 2006.11239); diffusers' DDPMScheduler for
    ``prediction_type="epsilon"``, ``variance_type`` "fixed_small" or "fixed_large", "leading" spacing
    or custom timesteps.
    """

    _diffusers_only = {"trained_betas": (None,), "rescale_betas_zero_snr": (False,),
                       "timestep_spacing": ("leading",), "steps_offset": (0,)}

    def __init__(self, num_train_timesteps=1000, beta_start=0.0001, beta_end=0.02, beta_schedule="linear", *,
                 clip_sample=True, clip_sample_range=1.0, prediction_type="epsilon", variance_type="fixed_small"):
        _checks.one_of(variance_type, "variance_type", ("fixed_small", "fixed_large"),
                       hint="'fixed_small' is the posterior variance (Ho et al. eq. 7), 'fixed_large' is beta_t")
        self._setup(dict(num_train_timesteps=num_train_timesteps, beta_start=beta_start, beta_end=beta_end,
                         beta_schedule=beta_schedule, clip_sample=clip_sample, clip_sample_range=clip_sample_range,
                         prediction_type=prediction_type, variance_type=variance_type))
        self.custom_timesteps = False

    def set_timesteps(self, num_inference_steps=None, device=None, timesteps=None):
        """Sample with ``num_inference_steps`` evenly spaced steps, T//n * (n-1, ..., 1, 0) ("leading"),
        or on your own ``timesteps``: a strictly decreasing list in [0, T), as in diffusers."""
        n = self._check_set_timesteps(num_inference_steps, timesteps)
        if n is None:
            self.timesteps = self._check_custom_timesteps(timesteps).to(device)
        else:
            step_ratio = self.num_train_timesteps // n
            self.timesteps = (torch.arange(n - 1, -1, -1, dtype=torch.int64) * step_ratio).to(device)
        self.custom_timesteps = n is None
        self.num_inference_steps = len(self.timesteps)

    def previous_timestep(self, timestep):
        """The step after ``timestep`` in sampling order; -1 after the last one."""
        if self.custom_timesteps:
            i = self._index_of(timestep)
            return int(self.timesteps[i + 1]) if i + 1 < len(self.timesteps) else -1
        # before set_timesteps, sample with all T steps, as diffusers does
        num_inference_steps = self.num_inference_steps or self.num_train_timesteps
        return timestep - self.num_train_timesteps // num_inference_steps

    def step(self, model_output, timestep, sample, generator=None, return_dict=True):
        """One reverse step x_t -> x_{t_prev}: sample from p(x_{t_prev} | x_t) (Ho et al. 2020, Algorithm 2).

        model_output: eps_pred, the predicted noise, shaped like ``sample`` (x_t).
        timestep: int or 0-d tensor in [0, T), usually taken from ``self.timesteps``.
        Returns ``SchedulerOutput(prev_sample, pred_original_sample)``, or that pair as a tuple
        when ``return_dict=False``. No noise is added at the final step (t = 0).
        """
        t = self._check_step(model_output, timestep, sample)
        x_t, eps_pred = sample, model_output
        prev_t = self.previous_timestep(t)

        # 1. alpha_bar at t and at the previous sampling step; the per-step alpha_t and beta_t
        alpha_bar_t = self.alphas_cumprod[t]
        alpha_bar_prev = self.alphas_cumprod[prev_t] if prev_t >= 0 else torch.tensor(1.0)
        alpha_t = alpha_bar_t / alpha_bar_prev
        beta_t = 1 - alpha_t

        # 2.-3. predict x_0 from the noise (eq. 15), clip it to the data range
        x0_pred = self._predict_x0(eps_pred, x_t, alpha_bar_t)

        # 4. coefficients of the posterior mean mu_tilde(x_t, x_0); Ho et al. 2020, eq. (7)
        x0_coef = alpha_bar_prev**0.5 * beta_t / (1 - alpha_bar_t)
        x_t_coef = alpha_t**0.5 * (1 - alpha_bar_prev) / (1 - alpha_bar_t)

        # 5. the posterior mean; Ho et al. 2020, eq. (7)
        x_prev = x0_coef * x0_pred + x_t_coef * x_t

        # 6. add noise sigma_t z, except at the final step where the sample is returned as is
        if t > 0:
            if self.config.variance_type == "fixed_small":
                # Ho et al. 2020, eq. (7): beta_tilde_t = (1 - alpha_bar_prev) / (1 - alpha_bar_t) beta_t
                variance = ((1 - alpha_bar_prev) / (1 - alpha_bar_t) * beta_t).clamp(min=1e-20)
            else:
                # Ho et al. 2020, sec. 3.2: sigma_t^2 = beta_t
                variance = beta_t
            z = randn_tensor(model_output.shape, generator, model_output.device, model_output.dtype)
            x_prev = x_prev + variance**0.5 * z

        if not return_dict:
            return (x_prev, x0_pred)
        return SchedulerOutput(prev_sample=x_prev, pred_original_sample=x0_pred)


class DDIMScheduler(_Scheduler):
    """Denoising diffusion implicit models (Song et al. 2021, arXiv 2010.02502); diffusers'
    DDIMScheduler for ``prediction_type="epsilon"`` and "leading" or "trailing" spacing.

    Same training schedule as DDPM, so a DDPM-trained model samples with fewer steps;
    ``eta=0`` is deterministic, ``eta=1`` has DDPM's noise level.
    """

    _diffusers_only = {"trained_betas": (None,), "rescale_betas_zero_snr": (False,)}

    def __init__(self, num_train_timesteps=1000, beta_start=0.0001, beta_end=0.02, beta_schedule="linear", *,
                 clip_sample=True, clip_sample_range=1.0, set_alpha_to_one=True, steps_offset=0,
                 prediction_type="epsilon", timestep_spacing="leading"):
        _checks.one_of(timestep_spacing, "timestep_spacing", ("leading", "trailing"))
        _checks.one_of(set_alpha_to_one, "set_alpha_to_one", (True, False))
        _checks.integer(steps_offset, "steps_offset", low=0)
        self._setup(dict(num_train_timesteps=num_train_timesteps, beta_start=beta_start, beta_end=beta_end,
                         beta_schedule=beta_schedule, clip_sample=clip_sample, clip_sample_range=clip_sample_range,
                         set_alpha_to_one=set_alpha_to_one, steps_offset=steps_offset,
                         prediction_type=prediction_type, timestep_spacing=timestep_spacing))
        # alpha_bar "before" t = 0: 1 (clean data) or, as in the original DDIM code, alpha_bar_0
        self.final_alpha_cumprod = torch.tensor(1.0) if set_alpha_to_one else self.alphas_cumprod[0]

    def set_timesteps(self, num_inference_steps=None, device=None, timesteps=None):
        """Sample with ``num_inference_steps`` steps, spaced T//n apart ("leading": ..., T//n, 0, plus
        ``steps_offset``; "trailing": T-1, ..., counted back from the end)."""
        if timesteps is not None:
            raise ValueError("DDIMScheduler takes no custom timesteps (neither does diffusers'): each step goes "
                             "T // num_inference_steps back. Use timestep_spacing='trailing', or custom timesteps "
                             "with DDPMScheduler or DPMSolverMultistepScheduler.")
        n = self._check_set_timesteps(num_inference_steps, timesteps)
        T = self.num_train_timesteps
        if self.config.timestep_spacing == "leading":
            timesteps = torch.arange(n - 1, -1, -1, dtype=torch.int64) * (T // n) + self.config.steps_offset
        else:
            timesteps = torch.arange(T, 0, -T / n, dtype=torch.float64).round().to(torch.int64) - 1
        _checks.timesteps(timesteps, T, hint=f"steps_offset={self.config.steps_offset} moves the first one past T-1")
        self.num_inference_steps = n
        self.timesteps = timesteps.to(device)

    def step(self, model_output, timestep, sample, eta=0.0, generator=None, return_dict=True):
        """One DDIM step x_t -> x_{t_prev}; Song et al. 2021, eq. (12).

        model_output: eps_pred, shaped like ``sample`` (x_t). timestep: int or 0-d tensor in [0, T).
        eta in [0, 1] scales the noise: 0 is deterministic DDIM, 1 matches DDPM's variance.
        Returns ``SchedulerOutput(prev_sample, pred_original_sample)`` (a tuple if ``return_dict=False``).
        """
        self._check_timesteps_set()
        eta = _checks.real(eta, "eta", 0, 1, hint="0 is deterministic DDIM, 1 is DDPM's noise level")
        t = self._check_step(model_output, timestep, sample)
        x_t, eps_pred = sample, model_output
        prev_t = t - self.num_train_timesteps // self.num_inference_steps

        # 1. alpha_bar at t and at the previous sampling step
        alpha_bar_t = self.alphas_cumprod[t]
        alpha_bar_prev = self.alphas_cumprod[prev_t] if prev_t >= 0 else self.final_alpha_cumprod

        # 2.-3. predict x_0 from the noise (eq. 15 of Ho et al.; Song et al. eq. 12, first term), clip it
        x0_pred = self._predict_x0(eps_pred, x_t, alpha_bar_t)

        # 4. the noise scale; Song et al. 2021, eq. (16)
        variance = (1 - alpha_bar_prev) / (1 - alpha_bar_t) * (1 - alpha_bar_t / alpha_bar_prev)
        sigma_t = eta * variance**0.5

        # 5. "direction pointing to x_t"; Song et al. 2021, eq. (12), second term
        direction = (1 - alpha_bar_prev - sigma_t**2) ** 0.5 * eps_pred

        # 6. x_{t_prev}; Song et al. 2021, eq. (12)
        x_prev = alpha_bar_prev**0.5 * x0_pred + direction

        # 7. random noise, third term of eq. (12); at the final step sigma_t = 0 when set_alpha_to_one
        if eta > 0:
            z = randn_tensor(model_output.shape, generator, model_output.device, model_output.dtype)
            x_prev = x_prev + sigma_t * z

        if not return_dict:
            return (x_prev, x0_pred)
        return SchedulerOutput(prev_sample=x_prev, pred_original_sample=x0_pred)
