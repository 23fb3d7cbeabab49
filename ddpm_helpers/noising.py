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


def check_image_range(x0, name="x0"):
    """Raise a ValueError unless ``x0`` is a float tensor scaled to [-1, 1]."""
    if not torch.is_tensor(x0) or not x0.is_floating_point():
        raise TypeError(
            f"{name} must be a float tensor scaled to [-1, 1], got "
            f"{type(x0).__name__ if not torch.is_tensor(x0) else x0.dtype}. "
            "Convert images with ddpm_helpers.data.to_model_range(x.float() / 255)."
        )
    lo, hi = x0.min().item(), x0.max().item()
    if lo < -1.001 or hi > 1.001:
        raise ValueError(
            f"{name} must be scaled to [-1, 1], but its values span [{lo:.3g}, {hi:.3g}]. "
            "Scale [0, 1] images with ddpm_helpers.data.to_model_range(x), "
            "or [0, 255] images with to_model_range(x / 255)."
        )


def _check_timesteps(t, num_timesteps, batch_size):
    """Return ``t`` as a (B,) long tensor, or raise a ValueError that says the valid range."""
    t = torch.as_tensor(t)
    if t.is_floating_point():
        raise TypeError(f"timesteps must be integers in [0, {num_timesteps - 1}], got a float tensor.")
    if t.ndim == 0:
        t = t.expand(batch_size)
    if t.ndim != 1 or t.shape[0] != batch_size:
        raise ValueError(
            f"timesteps must be an int or a tensor of shape ({batch_size},), one per image; "
            f"got shape {tuple(t.shape)}."
        )
    if t.min() < 0 or t.max() >= num_timesteps:
        raise ValueError(
            f"timesteps must lie in [0, {num_timesteps - 1}] (0-indexed, T = {num_timesteps}); "
            f"got values from {t.min().item()} to {t.max().item()}."
        )
    return t.long()


def q_step(x_prev, beta_t, noise):
    """One forward step: x_t = sqrt(1 - beta_t) * x_{t-1} + sqrt(beta_t) * eps.

    ``beta_t`` is a float or a tensor broadcastable to ``x_prev``; ``noise`` has x_prev's shape.
    """
    beta_t = torch.as_tensor(beta_t, dtype=x_prev.dtype, device=x_prev.device)
    # Ho et al. 2020, eq. (2): q(x_t | x_{t-1}) = N(sqrt(1 - beta_t) x_{t-1}, beta_t I)
    return torch.sqrt(1 - beta_t) * x_prev + torch.sqrt(beta_t) * noise


def noise_step_by_step(x0, betas, keep, generator=None):
    """Run the forward process step by step, drawing fresh noise at every step.

    x0: (B, C, H, W) in [-1, 1]; betas: (T,); keep: the timesteps to return.
    Returns {t: x_t} for each t in ``keep``. Costs max(keep) + 1 steps, where ``q_sample``
    reaches the same distribution in one.
    """
    check_image_range(x0)
    keep = sorted(int(t) for t in keep)
    _check_timesteps(torch.tensor(keep), len(betas), len(keep))
    x_t, snapshots = x0, {}
    for t in range(keep[-1] + 1):
        noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype, device=x0.device)
        x_t = q_step(x_t, betas[t].item(), noise)
        if t in keep:
            snapshots[t] = x_t
    return snapshots


def q_sample(x0, t, alphas_cumprod, noise):
    """Jump straight to step t: x_t = sqrt(alpha_bar_t) * x0 + sqrt(1 - alpha_bar_t) * eps.

    x0: (B, ...) in [-1, 1]; t: an int or a (B,) long tensor in [0, T-1], one per image;
    alphas_cumprod: (T,); noise: eps ~ N(0, I), same shape as x0. Returns x_t, x0's shape.
    """
    check_image_range(x0)
    if noise.shape != x0.shape:
        raise ValueError(f"noise must have x0's shape {tuple(x0.shape)}, got {tuple(noise.shape)}.")
    t = _check_timesteps(t, len(alphas_cumprod), x0.shape[0]).to(alphas_cumprod.device)
    alpha_bar_t = alphas_cumprod[t].to(x0)
    alpha_bar_t = alpha_bar_t.view(-1, *([1] * (x0.ndim - 1)))  # (B, 1, 1, 1)
    # Ho et al. 2020, eq. (4): q(x_t | x_0) = N(sqrt(alpha_bar_t) x_0, (1 - alpha_bar_t) I)
    return alpha_bar_t.sqrt() * x0 + (1 - alpha_bar_t).sqrt() * noise
