"""DPMSolverMultistepScheduler: DPM-Solver++, a sampler that reuses the previous step's x_0.

DDIM takes big steps by trusting one x_0 prediction per step. DPM-Solver++ (Lu et al. 2022,
arXiv 2211.01095) sees sampling as solving an ODE in the log signal-to-noise ratio and uses
the last two x_0 predictions, like a second-order (Adams-Bashforth) method: the same cost per
step as DDIM, a smaller error per step. Its SDE variant ("sde-dpmsolver++") also injects fresh
noise at every step, as DDPM does; with the course's model it is the sampler that comes closest
to DDPM with 1000 steps in 20 steps (``benchmarks/bench_sampling.py``).

Symbols, for a noise level t (0-indexed like the rest of the package):

    alpha_t = sqrt(alpha_bar_t)          how much signal x_t holds
    sigma_t = sqrt(1 - alpha_bar_t)      how much noise
    lambda_t = log(alpha_t / sigma_t)    half the log signal-to-noise ratio; grows as t falls
    h = lambda_next - lambda_t           the step size, in lambda

The first-order step is DDIM (with ``eta=0`` for "dpmsolver++", with ``eta=1`` for
"sde-dpmsolver++"; tests/test_dpm_solver.py checks both). Same numbers as diffusers'
DPMSolverMultistepScheduler with ``solver_type="midpoint"``, ``timestep_spacing="linspace"``,
``final_sigmas_type="zero"``; our ``clip_sample=True`` is its ``thresholding=True,
sample_max_value=1.0`` (which clips x_0 to [-1, 1]).
"""

import math

import torch

from . import _checks
from ._scheduler_config import ANY
from .scheduler import SchedulerOutput, _Scheduler, randn_tensor

ALGORITHMS = ("dpmsolver++", "sde-dpmsolver++")


class DPMSolverMultistepScheduler(_Scheduler):
    """DPM-Solver++ of order 1 or 2 (2M: multistep), deterministic or with noise (SDE).

    Keep ``clip_sample=True`` for pixel models: with the cosine schedule, alpha at the first
    step is tiny and an unclipped x_0 prediction can throw the whole sample off. diffusers'
    DPMSolverMultistepScheduler has no ``clip_sample`` (and does not clip by default): for our
    numbers build it as ``diffusers.DPMSolverMultistepScheduler.from_config(ours.config,
    thresholding=True, sample_max_value=1.0)``; built from one of its configs, ours does not clip.
    """

    _diffusers_has_no_clip_sample = True
    # diffusers' options that it has and this class lacks -> the values that mean what this class does
    # (lower_order_final and euler_at_final only change a final step that is first order here anyway;
    # variance_type matters only for models that predict a variance)
    _diffusers_only = {
        "trained_betas": (None,), "rescale_betas_zero_snr": (False,), "timestep_spacing": ("linspace",),
        "steps_offset": (0,), "solver_type": ("midpoint",), "lower_order_final": ANY, "euler_at_final": ANY,
        "use_karras_sigmas": (False,), "use_exponential_sigmas": (False,), "use_beta_sigmas": (False,),
        "use_lu_lambdas": (False,), "use_flow_sigmas": (False,), "flow_shift": ANY, "final_sigmas_type": ("zero",),
        "lambda_min_clipped": (-math.inf,), "use_dynamic_shifting": (False,), "time_shift_type": ANY,
        "variance_type": (None, "fixed_small", "fixed_large", "fixed_small_log", "fixed_large_log"),
    }

    def __init__(self, num_train_timesteps=1000, beta_start=0.0001, beta_end=0.02, beta_schedule="linear", *,
                 solver_order=2, algorithm_type="dpmsolver++", clip_sample=True, clip_sample_range=1.0,
                 prediction_type="epsilon"):
        _checks.integer(solver_order, "solver_order", 1, 2, hint="2 is DPM-Solver++(2M), 1 is DDIM")
        _checks.one_of(algorithm_type, "algorithm_type", ALGORITHMS)
        self._setup(dict(num_train_timesteps=num_train_timesteps, beta_start=beta_start, beta_end=beta_end,
                         beta_schedule=beta_schedule, solver_order=solver_order, algorithm_type=algorithm_type,
                         clip_sample=clip_sample, clip_sample_range=clip_sample_range,
                         prediction_type=prediction_type))
        alpha_bars = self.alphas_cumprod.double()
        # alpha_t, sigma_t and lambda_t for every training step, in float64
        self._alpha = alpha_bars.sqrt()
        self._sigma = (1 - alpha_bars).sqrt()
        self._lambda = self._alpha.log() - self._sigma.log()
        self._step_index = None  # where the loop is in self.timesteps
        self._x0_prev = None  # the previous step's x_0 prediction

    def set_timesteps(self, num_inference_steps=None, device=None, timesteps=None):
        """``num_inference_steps`` timesteps evenly spaced from T-1 down to about T/n ("linspace"), or
        your own ``timesteps``, strictly decreasing in [0, T), as in diffusers."""
        T, n = self.num_train_timesteps, self._check_set_timesteps(num_inference_steps, timesteps)
        if n is None:
            timesteps = self._check_custom_timesteps(timesteps)
        elif n >= T:
            # T - 1 gaps between 0 and T - 1: more steps would repeat a timestep, a step of size 0
            raise ValueError(f"num_inference_steps={n}: DPM-Solver++ takes at most {T - 1} steps here; it is "
                             f"made for 10-50. For all {T} steps use DDPMScheduler.")
        else:
            # k (T - 1) / n for k = n, ..., 1, rounded half to even (computed as numpy.linspace does, so
            # ties such as 499.5 round as in diffusers)
            points = torch.arange(n, 0, -1, dtype=torch.float64) * ((T - 1) / n)
            points[0] = T - 1
            timesteps = points.round().to(torch.int64)
        self.timesteps = timesteps.to(device)
        self.num_inference_steps = len(timesteps)
        self._step_index = None  # a multistep solver starts over: no previous x_0 yet
        self._x0_prev = None

    def _next_index(self, t):
        """The position of ``t`` in ``self.timesteps``; steps must come in order."""
        if self._step_index is None:
            self._step_index = self._index_of(t)
        expected = int(self.timesteps[self._step_index]) if self._step_index < len(self.timesteps) else None
        if t != expected:
            raise ValueError(f"got timestep {t}, expected {expected}: a multistep solver must step through "
                             "scheduler.timesteps in order; call set_timesteps() again to start a new sample.")
        return self._step_index

    def step(self, model_output, timestep, sample, generator=None, return_dict=True):
        """One step x_t -> x_next of DPM-Solver++; returns ``SchedulerOutput(prev_sample, pred_original_sample)``.

        model_output: eps_pred, shaped like ``sample`` (x_t). timestep: the next one in ``self.timesteps``.
        The solver remembers the previous x_0 prediction, so one scheduler runs one loop at a time.
        """
        self._check_timesteps_set()
        t = self._check_step(model_output, timestep, sample)
        i = self._next_index(t)
        x_t = sample
        x0_pred = self._predict_x0(model_output, x_t, self.alphas_cumprod[t])
        sde = self.config.algorithm_type == "sde-dpmsolver++"
        # drawn at every step, the last included, so the generator advances as in diffusers
        noise = randn_tensor(model_output.shape, generator, model_output.device, model_output.dtype) if sde else None

        if i == len(self.timesteps) - 1:
            # the last step goes to clean data (sigma = 0, alpha = 1): x_0 itself
            x_next = x0_pred
        else:
            s = int(self.timesteps[i + 1])
            alpha_next, sigma_next, sigma_t = self._alpha[s].item(), self._sigma[s].item(), self._sigma[t].item()
            h = (self._lambda[s] - self._lambda[t]).item()
            # the x_0 estimate the step integrates: x0_pred, or with order 2 (Lu et al. 2022, Algorithm 2)
            # x0_pred + (x0_pred - x0_prev) / (2 r), r = h_prev / h, a linear extrapolation in lambda
            data = x0_pred
            if self.config.solver_order == 2 and self._x0_prev is not None:
                h_prev = (self._lambda[t] - self._lambda[int(self.timesteps[i - 1])]).item()
                data = x0_pred + (x0_pred - self._x0_prev) * (h / h_prev / 2)
            if sde:
                # the exact solution of the reverse SDE's linear part; order 1 is DDIM with eta = 1
                x_next = ((sigma_next / sigma_t * math.exp(-h)) * x_t + (alpha_next * -math.expm1(-2 * h)) * data
                          + (sigma_next * math.sqrt(-math.expm1(-2 * h))) * noise)
            else:
                # Lu et al. 2022, DPM-Solver++ update: sigma_next / sigma_t x_t + alpha_next (1 - e^-h) D;
                # order 1 is DDIM with eta = 0
                x_next = (sigma_next / sigma_t) * x_t + (alpha_next * -math.expm1(-h)) * data
            x_next = x_next.to(x_t.dtype)
        self._x0_prev = x0_pred
        self._step_index = i + 1

        if not return_dict:
            return (x_next, x0_pred)
        return SchedulerOutput(prev_sample=x_next, pred_original_sample=x0_pred)
