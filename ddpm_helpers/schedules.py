"""Noise schedules: how much noise the forward process adds at each step (lesson 2).

A schedule is a list of betas, one per training timestep t = 0, ..., T-1 (0-indexed, as in
diffusers; t = 0 is the least noisy step). From the betas follow

    alpha_t     = 1 - beta_t
    alpha_bar_t = alpha_0 * alpha_1 * ... * alpha_t          (code: ``alphas_cumprod``)

and the closed form x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps (Ho et al. 2020,
eq. 4). Everything here is computed in float64; the scheduler stores float32 copies.
"""

import math

import torch

from . import _checks

BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")


def _check_linear(num_train_timesteps, beta_start, beta_end):
    """T as an int and the two betas as floats, with 0 < beta_start < beta_end < 1."""
    T = _checks.positive_int(num_train_timesteps, "num_train_timesteps", hint="Ho et al. 2020 use 1000")
    need = "need 0 < beta_start < beta_end < 1; Ho et al. 2020 use beta_start=1e-4, beta_end=0.02"
    beta_start = _checks.real(beta_start, "beta_start", 0, 1, low_open=True, high_open=True, hint=need)
    beta_end = _checks.real(beta_end, "beta_end", 0, 1, low_open=True, high_open=True, hint=need)
    if not beta_start < beta_end:
        raise ValueError(f"beta_end={beta_end:g} must be greater than beta_start={beta_start:g}: the noise grows "
                         f"with t; {need}.")
    return T, beta_start, beta_end


def linear_betas(num_train_timesteps, beta_start=1e-4, beta_end=0.02):
    """Betas evenly spaced from ``beta_start`` to ``beta_end``; shape (T,), float64."""
    num_train_timesteps, beta_start, beta_end = _check_linear(num_train_timesteps, beta_start, beta_end)
    # Ho et al. 2020, sec. 4: "linearly from beta_1 = 1e-4 to beta_T = 0.02"
    return torch.linspace(beta_start, beta_end, num_train_timesteps, dtype=torch.float64)


def scaled_linear_betas(num_train_timesteps, beta_start=1e-4, beta_end=0.02):
    """Square roots evenly spaced, then squared (Stable Diffusion's schedule); shape (T,), float64."""
    num_train_timesteps, beta_start, beta_end = _check_linear(num_train_timesteps, beta_start, beta_end)
    # Rombach et al. 2022 (latent diffusion), as in diffusers' "scaled_linear"
    sqrt_betas = torch.linspace(math.sqrt(beta_start), math.sqrt(beta_end), num_train_timesteps, dtype=torch.float64)
    return sqrt_betas**2


def cosine_alpha_bar(t_over_T, s=0.008):
    """alpha_bar as a function of the fraction of the way through the chain, t/T in [0, 1]."""
    # Nichol & Dhariwal 2021, eq. (17): alpha_bar(t) = cos^2(((t/T) + s) / (1 + s) * pi/2)
    return math.cos((t_over_T + s) / (1 + s) * math.pi / 2) ** 2


def cosine_betas(num_train_timesteps, max_beta=0.999):
    """The cosine schedule, diffusers' "squaredcos_cap_v2"; shape (T,), float64.

    beta_t is chosen so that alpha_bar_t follows the cos^2 curve; near t = T the curve reaches
    0 and the ratio blows up, so betas are capped at ``max_beta``.
    """
    T = _checks.positive_int(num_train_timesteps, "num_train_timesteps", hint="Ho et al. 2020 use 1000")
    max_beta = _checks.real(max_beta, "max_beta", 0, 1, low_open=True, hint="Nichol & Dhariwal use 0.999")
    # Nichol & Dhariwal 2021, sec. 3.2: beta_t = min(1 - alpha_bar(t+1) / alpha_bar(t), 0.999)
    betas = [min(1 - cosine_alpha_bar((t + 1) / T) / cosine_alpha_bar(t / T), max_beta) for t in range(T)]
    return torch.tensor(betas, dtype=torch.float64)


def make_betas(beta_schedule, num_train_timesteps, beta_start=1e-4, beta_end=0.02):
    """The betas of the schedule named ``beta_schedule`` (one of ``BETA_SCHEDULES``); float64.

    ``beta_start`` and ``beta_end`` are used by the linear schedules only.
    """
    _checks.one_of(beta_schedule, "beta_schedule", BETA_SCHEDULES,
                   hint="'squaredcos_cap_v2' is the cosine schedule of Nichol & Dhariwal 2021")
    if beta_schedule == "linear":
        return linear_betas(num_train_timesteps, beta_start, beta_end)
    if beta_schedule == "scaled_linear":
        return scaled_linear_betas(num_train_timesteps, beta_start, beta_end)
    return cosine_betas(num_train_timesteps)


def alphas_cumprod_from_betas(betas):
    """alpha_bar_t = prod_{s <= t} (1 - beta_s) for every t; same shape and dtype as ``betas``."""
    # Ho et al. 2020, eq. (4) notation: alpha_t = 1 - beta_t, alpha_bar_t = prod_{s=1}^{t} alpha_s
    alphas = 1.0 - betas
    return torch.cumprod(alphas, dim=0)


def snr(alphas_cumprod):
    """Signal-to-noise ratio of x_t: alpha_bar_t / (1 - alpha_bar_t); decreases with t."""
    # Kingma et al. 2021 (variational diffusion models), eq. (2): SNR(t) = alpha_t^2 / sigma_t^2
    return alphas_cumprod / (1.0 - alphas_cumprod)


def log_snr(alphas_cumprod):
    """log SNR = log(alpha_bar_t) - log(1 - alpha_bar_t), computed without forming the ratio."""
    # Kingma et al. 2021, sec. 3: lambda = log SNR
    return torch.log(alphas_cumprod) - torch.log1p(-alphas_cumprod)
