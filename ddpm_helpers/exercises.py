"""Checks for the notebooks' "your turn" exercises.

Each ``check_*`` runs the learner's function on random inputs, compares it with the
package's version and, when it differs, recognises the classic mistakes and prints a hint.
It returns True or False and never raises, so a notebook still runs to the end.
"""

import torch

from .noising import q_sample


def _report(ok, hint):
    print("Correct: your function matches the package." if ok else f"Not yet. Hint: {hint}")
    return ok


def _call(fn, *args):
    """Run the learner's function; return (result, None) or (None, a hint about the error)."""
    try:
        result = fn(*args)
    except Exception as error:  # noqa: BLE001 - any error becomes a hint, never a crash
        hint = f"calling your function raised {type(error).__name__}: {error}"
        if "size of tensor" in str(error):
            hint += " -- alpha_bar_t has shape (B,): reshape it to (B, 1, 1, 1) to broadcast over each image."
        return None, hint
    if not torch.is_tensor(result):
        return None, f"return a tensor, not {type(result).__name__}."
    return result, None


def _closed_form_mistakes(x0, t, alphas_cumprod, noise):
    """Wrong closed forms that people write, each with the hint that fixes it."""
    shape = (-1,) + (1,) * (x0.ndim - 1)
    abar = alphas_cumprod[t].view(shape)
    abar_prev = alphas_cumprod[t - 1].view(shape)  # t - 1 = -1 wraps around, as in the learner's code
    abar_next = alphas_cumprod[(t + 1).clamp(max=len(alphas_cumprod) - 1)].view(shape)
    # one step's alpha_t = alpha_bar_t / alpha_bar_{t-1}
    alphas = alphas_cumprod / torch.cat([torch.ones(1), alphas_cumprod[:-1]])
    alpha = alphas[t].view(shape)
    sq = torch.sqrt
    return [
        (abar * x0 + (1 - abar) * noise,
         "both coefficients need a square root: x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) eps. "
         "alpha_bar_t is a variance; the mean is scaled by its square root."),
        (abar * x0 + sq(1 - abar) * noise,
         "the signal coefficient needs a square root: sqrt(alpha_bar_t) * x0, not alpha_bar_t * x0."),
        (sq(abar) * x0 + (1 - abar) * noise,
         "the noise coefficient needs a square root: sqrt(1 - alpha_bar_t) * eps (the noise's *variance* is 1 - alpha_bar_t)."),
        (sq(1 - abar) * x0 + sq(abar) * noise,
         "the coefficients are swapped: the signal gets sqrt(alpha_bar_t), the noise sqrt(1 - alpha_bar_t)."),
        (sq(abar_prev) * x0 + sq(1 - abar_prev) * noise,
         "off by one: use alphas_cumprod[t], not alphas_cumprod[t - 1] (timesteps are 0-indexed)."),
        (sq(abar_next) * x0 + sq(1 - abar_next) * noise,
         "off by one: use alphas_cumprod[t], not alphas_cumprod[t + 1]."),
        (sq(alpha) * x0 + sq(1 - alpha) * noise,
         "that is one step of noise (alpha_t); the closed form uses the cumulative product alpha_bar_t = alphas_cumprod[t]."),
        (sq(abar) * x0,
         "the noise term is missing: add sqrt(1 - alpha_bar_t) * noise."),
    ]


def check_q_sample(fn, seed=0):
    """Check ``fn(x0, t, alphas_cumprod, noise)`` against ``noising.q_sample`` (Ho et al. eq. 4).

    x0 is (6, 1, 8, 8) in [-1, 1], t a (6,) long tensor, alphas_cumprod a (1000,) tensor.
    """
    generator = torch.Generator().manual_seed(seed)
    x0 = torch.rand((6, 1, 8, 8), generator=generator) * 2 - 1
    noise = torch.randn(x0.shape, generator=generator)
    t = torch.tensor([0, 1, 100, 500, 800, 999])
    betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
    alphas_cumprod = torch.cumprod(1 - betas, dim=0).float()

    result, hint = _call(fn, x0.clone(), t.clone(), alphas_cumprod.clone(), noise.clone())
    if hint:
        return _report(False, hint)
    if result.shape != x0.shape:
        return _report(False, f"x_t must have x0's shape {tuple(x0.shape)}, got {tuple(result.shape)}. "
                              "Reshape alpha_bar_t to (B, 1, 1, 1) so it broadcasts over each image.")
    again, _ = _call(fn, x0.clone(), t.clone(), alphas_cumprod.clone(), noise.clone())
    if again is not None and not torch.equal(result, again):
        return _report(False, "two calls with the same inputs gave different results: use the "
                              "`noise` argument, do not draw new noise inside the function.")
    expected = q_sample(x0, t, alphas_cumprod, noise)
    if torch.allclose(result, expected, atol=1e-5):
        return _report(True, "")
    for wrong, hint in _closed_form_mistakes(x0, t, alphas_cumprod, noise):
        if torch.allclose(result, wrong, atol=1e-5):
            return _report(False, hint)
    worst = (result - expected).abs().max().item()
    return _report(False, f"the values differ from q_sample by up to {worst:.3g}. "
                          "Compute alpha_bar_t = alphas_cumprod[t], then sqrt(alpha_bar_t) * x0 + sqrt(1 - alpha_bar_t) * noise.")
