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
tests/test_scheduler_vs_diffusers.py).
"""

import inspect
from collections.abc import Mapping
from dataclasses import dataclass

import torch

from .schedules import alphas_cumprod_from_betas, make_betas


@dataclass
class SchedulerOutput:
    """What ``step()`` returns: x_{t-1} and the x_0 it was built from, both like ``sample``."""

    prev_sample: torch.Tensor
    pred_original_sample: torch.Tensor


class SchedulerConfig(Mapping):
    """The constructor arguments, read-only; ``config.num_train_timesteps`` or ``config["..."]``."""

    def __init__(self, **values):
        object.__setattr__(self, "_values", dict(values))

    def __getitem__(self, key):
        return self._values[key]

    def __iter__(self):
        return iter(self._values)

    def __len__(self):
        return len(self._values)

    def __getattr__(self, name):
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(f"config has no field {name!r}; fields: {', '.join(self._values)}") from None

    def __setattr__(self, name, value):
        raise AttributeError("config is read-only; build a new scheduler with the values you want.")

    def __repr__(self):
        return "SchedulerConfig(" + ", ".join(f"{k}={v!r}" for k, v in self._values.items()) + ")"


class _Scheduler:
    """What DDPM and DDIM share: the schedule, add_noise, and argument checks."""

    def _setup(self, config):
        self.config = SchedulerConfig(**config)
        if config["prediction_type"] != "epsilon":
            raise ValueError(
                f"prediction_type={config['prediction_type']!r} is not supported; this course's models predict "
                "the noise, so use prediction_type='epsilon'."
            )
        self.num_train_timesteps = T = config["num_train_timesteps"]
        # computed in float64, stored in float32 as the model sees it
        betas = make_betas(config["beta_schedule"], T, config["beta_start"], config["beta_end"])
        self.betas = betas.float()
        self.alphas = (1.0 - betas).float()
        self.alphas_cumprod = alphas_cumprod_from_betas(betas).float()
        self.init_noise_sigma = 1.0
        self.num_inference_steps = None
        self.timesteps = torch.arange(T - 1, -1, -1, dtype=torch.int64)

    @classmethod
    def from_config(cls, config):
        """A new scheduler with the arguments in ``config``. Keys starting with "_" and the options
        of the course's other scheduler are skipped, so ``DDIMScheduler.from_config(ddpm.config)``
        works; any other unknown option (e.g. diffusers' ``thresholding``) raises a TypeError."""
        own = set(inspect.signature(cls.__init__).parameters)
        siblings = {name for sub in _Scheduler.__subclasses__() for name in inspect.signature(sub.__init__).parameters}
        return cls(**{key: value for key, value in config.items()
                      if not key.startswith("_") and (key in own or key not in siblings)})

    def add_noise(self, original_samples, noise, timesteps):
        """Sample x_t ~ q(x_t | x_0) in closed form: sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps.

        original_samples, noise: (B, ...) tensors of the same shape.
        timesteps: an int, a 0-d tensor, or a (B,) integer tensor with values in [0, T).
        """
        if original_samples.shape != noise.shape:
            raise ValueError(f"original_samples {tuple(original_samples.shape)} and noise {tuple(noise.shape)} "
                             "must have the same shape; draw noise with torch.randn_like(original_samples).")
        timesteps = torch.as_tensor(timesteps, device=original_samples.device)
        if timesteps.is_floating_point():
            raise TypeError(f"timesteps must be integers, got dtype {timesteps.dtype}; use torch.randint.")
        if timesteps.dim() > 1 or (timesteps.dim() == 1 and len(timesteps) != original_samples.shape[0]):
            raise ValueError(f"timesteps must be one int or one per sample: shape ({original_samples.shape[0]},), "
                             f"got {tuple(timesteps.shape)}.")
        self._check_range(timesteps)
        alphas_cumprod = self.alphas_cumprod.to(device=original_samples.device, dtype=original_samples.dtype)
        # one coefficient per sample, broadcast over the other dims: (B,) -> (B, 1, 1, 1)
        coef_shape = (-1,) + (1,) * (original_samples.dim() - 1) if timesteps.dim() == 1 else ()
        sqrt_alpha_bar_t = (alphas_cumprod[timesteps] ** 0.5).reshape(coef_shape)
        sqrt_one_minus_alpha_bar_t = ((1 - alphas_cumprod[timesteps]) ** 0.5).reshape(coef_shape)
        # Ho et al. 2020, eq. (4)
        return sqrt_alpha_bar_t * original_samples + sqrt_one_minus_alpha_bar_t * noise

    def _check_range(self, timesteps):
        T = self.num_train_timesteps
        if timesteps.numel() and (timesteps.min() < 0 or timesteps.max() >= T):
            raise ValueError(f"timesteps must be in [0, {T - 1}] (0-indexed, num_train_timesteps={T}); "
                             f"got values from {timesteps.min().item()} to {timesteps.max().item()}.")

    def _check_num_inference_steps(self, num_inference_steps):
        T = self.num_train_timesteps
        if not 1 <= num_inference_steps <= T:
            raise ValueError(f"num_inference_steps={num_inference_steps} must be between 1 and "
                             f"num_train_timesteps={T}: the model only knows {T} noise levels.")

    def _check_timesteps_set(self):
        """For samplers that only run on the timesteps ``set_timesteps`` picks (DDIM, DPM-Solver++)."""
        if self.num_inference_steps is None:
            raise ValueError("Number of inference steps is 'None', you need to run 'set_timesteps' after "
                             "creating the scheduler: call scheduler.set_timesteps(num_inference_steps) first.")

    def _check_step_args(self, model_output, timestep, sample):
        """Return ``timestep`` as an int after checking it and the shapes."""
        if model_output.shape != sample.shape:
            raise ValueError(f"model_output {tuple(model_output.shape)} and sample {tuple(sample.shape)} must have "
                             "the same shape: the model predicts one noise value per pixel of the sample.")
        timestep = torch.as_tensor(timestep)
        if timestep.numel() != 1 or timestep.is_floating_point():
            raise ValueError(f"step() takes one integer timestep, got {timestep!r}; loop over scheduler.timesteps.")
        self._check_range(timestep)
        return int(timestep)

    def _predict_x0(self, eps_pred, x_t, alpha_bar_t):
        """x_0 from x_t and the predicted noise, clipped if ``clip_sample``."""
        # Ho et al. 2020, eq. (15): x_0 = (x_t - sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_bar_t)
        x0_pred = (x_t - (1 - alpha_bar_t) ** 0.5 * eps_pred) / alpha_bar_t**0.5
        if self.config.clip_sample:
            # Ho et al. 2020, sec. 3.3: data lives in [-1, 1]
            x0_pred = x0_pred.clamp(-self.config.clip_sample_range, self.config.clip_sample_range)
        return x0_pred


def _randn(like, generator):
    """Standard normal noise shaped like ``like``, drawn as diffusers' ``randn_tensor`` draws it.

    A CPU generator draws on the CPU even when ``like`` lives on a GPU, so a seed gives the same
    noise on every device (and the same noise as diffusers).
    """
    draw_device = generator.device if generator is not None else like.device
    noise = torch.randn(like.shape, generator=generator, device=draw_device, dtype=like.dtype)
    return noise.to(like.device)


class DDPMScheduler(_Scheduler):
    """Ancestral sampling of Ho et al. 2020 (arXiv 2006.11239); diffusers' DDPMScheduler for
    ``prediction_type="epsilon"``, ``variance_type`` "fixed_small" or "fixed_large", "leading" spacing.
    """

    def __init__(self, num_train_timesteps=1000, beta_start=0.0001, beta_end=0.02, beta_schedule="linear", *,
                 clip_sample=True, clip_sample_range=1.0, prediction_type="epsilon", variance_type="fixed_small"):
        if variance_type not in ("fixed_small", "fixed_large"):
            raise ValueError(f"variance_type={variance_type!r} is not supported; use 'fixed_small' "
                             "(posterior variance, Ho et al. eq. 7) or 'fixed_large' (beta_t).")
        self._setup(dict(num_train_timesteps=num_train_timesteps, beta_start=beta_start, beta_end=beta_end,
                         beta_schedule=beta_schedule, clip_sample=clip_sample, clip_sample_range=clip_sample_range,
                         prediction_type=prediction_type, variance_type=variance_type))

    def set_timesteps(self, num_inference_steps, device=None):
        """Sample with ``num_inference_steps`` evenly spaced steps: T//n * (n-1, ..., 1, 0) ("leading")."""
        self._check_num_inference_steps(num_inference_steps)
        self.num_inference_steps = num_inference_steps
        step_ratio = self.num_train_timesteps // num_inference_steps
        self.timesteps = (torch.arange(num_inference_steps - 1, -1, -1, dtype=torch.int64) * step_ratio).to(device)

    def previous_timestep(self, timestep):
        """The step after ``timestep`` in sampling order; -1 after the last one."""
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
        t = self._check_step_args(model_output, timestep, sample)
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
            x_prev = x_prev + variance**0.5 * _randn(model_output, generator)

        if not return_dict:
            return (x_prev, x0_pred)
        return SchedulerOutput(prev_sample=x_prev, pred_original_sample=x0_pred)


class DDIMScheduler(_Scheduler):
    """Denoising diffusion implicit models (Song et al. 2021, arXiv 2010.02502); diffusers'
    DDIMScheduler for ``prediction_type="epsilon"`` and "leading" or "trailing" spacing.

    Same training schedule as DDPM, so a DDPM-trained model samples with fewer steps;
    ``eta=0`` is deterministic, ``eta=1`` has DDPM's noise level.
    """

    def __init__(self, num_train_timesteps=1000, beta_start=0.0001, beta_end=0.02, beta_schedule="linear", *,
                 clip_sample=True, clip_sample_range=1.0, set_alpha_to_one=True, steps_offset=0,
                 prediction_type="epsilon", timestep_spacing="leading"):
        if timestep_spacing not in ("leading", "trailing"):
            raise ValueError(f"timestep_spacing={timestep_spacing!r} is not supported; use 'leading' or 'trailing'.")
        self._setup(dict(num_train_timesteps=num_train_timesteps, beta_start=beta_start, beta_end=beta_end,
                         beta_schedule=beta_schedule, clip_sample=clip_sample, clip_sample_range=clip_sample_range,
                         set_alpha_to_one=set_alpha_to_one, steps_offset=steps_offset,
                         prediction_type=prediction_type, timestep_spacing=timestep_spacing))
        # alpha_bar "before" t = 0: 1 (clean data) or, as in the original DDIM code, alpha_bar_0
        self.final_alpha_cumprod = torch.tensor(1.0) if set_alpha_to_one else self.alphas_cumprod[0]

    def set_timesteps(self, num_inference_steps, device=None):
        """Sample with ``num_inference_steps`` steps, spaced T//n apart ("leading": ..., T//n, 0, plus
        ``steps_offset``; "trailing": T-1, ..., counted back from the end)."""
        self._check_num_inference_steps(num_inference_steps)
        T, n = self.num_train_timesteps, num_inference_steps
        if self.config.timestep_spacing == "leading":
            timesteps = torch.arange(n - 1, -1, -1, dtype=torch.int64) * (T // n) + self.config.steps_offset
        else:
            timesteps = torch.arange(T, 0, -T / n, dtype=torch.float64).round().to(torch.int64) - 1
        self._check_range(timesteps)
        self.num_inference_steps = n
        self.timesteps = timesteps.to(device)

    def step(self, model_output, timestep, sample, eta=0.0, generator=None, return_dict=True):
        """One DDIM step x_t -> x_{t_prev}; Song et al. 2021, eq. (12).

        model_output: eps_pred, shaped like ``sample`` (x_t). timestep: int or 0-d tensor in [0, T).
        eta in [0, 1] scales the noise: 0 is deterministic DDIM, 1 matches DDPM's variance.
        Returns ``SchedulerOutput(prev_sample, pred_original_sample)`` (a tuple if ``return_dict=False``).
        """
        self._check_timesteps_set()
        if not 0 <= eta <= 1:
            raise ValueError(f"eta must be in [0, 1] (0: DDIM, 1: DDPM-like noise), got {eta}.")
        t = self._check_step_args(model_output, timestep, sample)
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
            x_prev = x_prev + sigma_t * _randn(model_output, generator)

        if not return_dict:
            return (x_prev, x0_pred)
        return SchedulerOutput(prev_sample=x_prev, pred_original_sample=x0_pred)
