"""Lesson 1: the forward process q(x_t | x_0), one step at a time and in closed form.

Timestep convention (used everywhere in the course, as in diffusers): timesteps are
0-indexed, t in {0, ..., T-1}. ``betas[t]`` is the noise added by step t, and x_t is the
image after steps 0..t, so ``alphas_cumprod[t] = prod_{s=0..t} (1 - betas[s])``.
The paper counts from 1: our t is the paper's t - 1 (the paper's x_t is our x_{t-1}).

Notation (code name -> symbol in Ho et al. 2020):
    x0              x_0, a clean image scaled to [-1, 1]
    x_t             x_t, the noised image
    beta_t          beta_t, the variance of the noise added at step t
    alphas_cumprod  alpha_bar_t = prod_{s<=t} (1 - beta_s), one value per t
    noise           eps ~ N(0, I)
"""

import torch

from . import _checks


def _check_schedule(values, name, cumulative=False):
    """``betas`` or ``alphas_cumprod``: a (T,) float tensor of values in [0, 1]; a cumulative
    product of (1 - beta_t) is also non-increasing."""
    hint = ("build it with schedules.make_betas / schedules.alphas_cumprod_from_betas, or take "
            "scheduler.betas / scheduler.alphas_cumprod")
    _checks.in_range(values, name, 0.0, 1.0, hint=hint)
    if values.ndim != 1 or len(values) == 0:
        raise ValueError(f"{name} must be a (T,) tensor, one value per timestep; got shape {tuple(values.shape)}")
    if cumulative and bool((values[1:] > values[:-1]).any()):
        raise ValueError(f"{name} must be non-increasing, as a cumulative product of (1 - beta_t) is; "
                         f"did you pass betas? {hint}")
    return values


def _check_noise(noise, x, x_name):
    """``noise``: a float tensor of the shape of ``x``, a batch (B, ...) of images."""
    _checks.float_tensor(noise, "noise", hint=f"draw it with torch.randn_like({x_name})")
    if x.ndim == 0 or noise.shape != x.shape:
        raise ValueError(f"noise must have {x_name}'s shape, a batch (B, ...); got {x_name} {tuple(x.shape)} and "
                         f"noise {tuple(noise.shape)}; draw it with torch.randn_like({x_name})")


def _check_beta_t(beta_t, x_prev):
    """``beta_t``: a float in [0, 1], or a tensor of them that broadcasts to x_prev's shape."""
    if not isinstance(beta_t, torch.Tensor):
        return _checks.real(beta_t, "beta_t", 0.0, 1.0)
    _checks.in_range(beta_t, "beta_t", 0.0, 1.0)
    if beta_t.ndim > x_prev.ndim or any(b not in (1, x) for b, x in zip(beta_t.shape[::-1], x_prev.shape[::-1])):
        raise ValueError(f"beta_t must be a float or a tensor that broadcasts to x_prev's shape {tuple(x_prev.shape)}, "
                         f"got shape {tuple(beta_t.shape)}; e.g. betas[t].view(-1, 1, 1, 1)")


def q_step(x_prev, beta_t, noise):
    """One forward step: x_t = sqrt(1 - beta_t) * x_{t-1} + sqrt(beta_t) * eps.

    ``beta_t`` is a float in [0, 1] (or a tensor of them broadcastable to ``x_prev``);
    ``noise`` has x_prev's shape.
    """
    _checks.float_tensor(x_prev, "x_prev")
    _check_noise(noise, x_prev, "x_prev")
    _check_beta_t(beta_t, x_prev)
    beta_t = torch.as_tensor(beta_t, dtype=x_prev.dtype, device=x_prev.device)
    # Ho et al. 2020, eq. (2): q(x_t | x_{t-1}) = N(sqrt(1 - beta_t) x_{t-1}, beta_t I)
    return torch.sqrt(1 - beta_t) * x_prev + torch.sqrt(beta_t) * noise


def noise_step_by_step(x0, betas, keep, generator=None):
    """Run the forward process step by step, drawing fresh noise at every step.

    x0: (B, C, H, W) in [-1, 1]; betas: (T,) in [0, 1]; keep: the timesteps to return (ints).
    Returns {t: x_t} for each t in ``keep``. Costs max(keep) + 1 steps, where ``q_sample``
    reaches the same distribution in one.
    """
    _checks.image_range(x0)
    _check_schedule(betas, "betas")
    _checks.nonempty(keep, "keep", "a list of timesteps", "e.g. keep=[0, 100, 999]")
    keep = sorted({_checks.integer(t, "keep", 0, len(betas) - 1, hint="timesteps are 0-indexed") for t in keep})
    _checks.instance(generator, "generator", (torch.Generator, type(None)), "a torch.Generator or None")
    x_t, snapshots = x0, {}
    for t in range(keep[-1] + 1):
        noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype, device=x0.device)
        x_t = q_step(x_t, betas[t].item(), noise)
        if t in keep:
            snapshots[t] = x_t
    return snapshots


def q_sample(x0, t, alphas_cumprod, noise):
    """Jump straight to step t: x_t = sqrt(alpha_bar_t) * x0 + sqrt(1 - alpha_bar_t) * eps.

    x0: (B, ...) in [-1, 1], on any device; t: a python int, a 0-d or (1,) integer tensor
    (the same t for every image, as diffusers' add_noise broadcasts it) or a (B,) one, values
    in [0, T-1]; alphas_cumprod: (T,), moved to x0's device and dtype; noise: eps ~ N(0, I),
    x0's shape. Returns x_t, x0's shape and dtype. ``scheduler.add_noise`` calls this.
    """
    _checks.image_range(x0)
    _check_noise(noise, x0, "x0")
    _check_schedule(alphas_cumprod, "alphas_cumprod", cumulative=True)
    t = _checks.timesteps(t, len(alphas_cumprod), batch_size=x0.shape[0], name="t").to(x0.device)
    alphas_cumprod = alphas_cumprod.to(device=x0.device, dtype=x0.dtype)
    alpha_bar_t = alphas_cumprod[t].view(-1, *([1] * (x0.ndim - 1)))  # (B, 1, 1, 1)
    # Ho et al. 2020, eq. (4): q(x_t | x_0) = N(sqrt(alpha_bar_t) x_0, (1 - alpha_bar_t) I)
    return alpha_bar_t.sqrt() * x0 + (1 - alpha_bar_t).sqrt() * noise
