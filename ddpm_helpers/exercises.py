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


def check_q_sample(fn, alphas_cumprod=None, seed=0):
    """Check ``fn(x0, t, alphas_cumprod, noise)`` against ``noising.q_sample`` (Ho et al. eq. 4).

    x0 is (6, 1, 8, 8) in [-1, 1], t a (6,) long tensor, alphas_cumprod a (T,) tensor
    (default: Ho et al.'s linear schedule, T = 1000).
    """
    generator = torch.Generator().manual_seed(seed)
    x0 = torch.rand((6, 1, 8, 8), generator=generator) * 2 - 1
    noise = torch.randn(x0.shape, generator=generator)
    if alphas_cumprod is None:
        alphas_cumprod = torch.cumprod(1 - torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64), dim=0).float()
    T = len(alphas_cumprod)
    t = torch.tensor([0, 1, T // 10, T // 2, 4 * T // 5, T - 1])

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


def check_add_noise(fn, scheduler, seed=0):
    """Check ``fn(original_samples, noise, timesteps)``, the learner's ``scheduler.add_noise``."""
    return check_q_sample(lambda x0, t, alphas_cumprod, noise: fn(x0, noise, t), scheduler.alphas_cumprod, seed)


def _step_mistakes(eps, t, x_t, noise, alphas_cumprod, clip):
    """Wrong reverse steps that people write (all T steps, prev = t - 1), each with its hint."""
    abar, abar_prev = alphas_cumprod[t], (alphas_cumprod[t - 1] if t > 0 else torch.tensor(1.0))
    alpha, beta = abar / abar_prev, 1 - abar / abar_prev
    beta_tilde = (1 - abar_prev) / (1 - abar) * beta
    clamp = (lambda x: x.clamp(-1, 1)) if clip else (lambda x: x)

    def step(x0, variance, x_t_coef=alpha.sqrt() * (1 - abar_prev) / (1 - abar)):
        mean = abar_prev.sqrt() * beta / (1 - abar) * x0 + x_t_coef * x_t
        return mean + variance.sqrt() * noise if t > 0 else mean

    x0 = clamp((x_t - (1 - abar).sqrt() * eps) / abar.sqrt())
    return [
        (step(clamp((x_t - (1 - abar) * eps) / abar.sqrt()), beta_tilde),
         "predicting x0 (eq. 15) needs sqrt(1 - alpha_bar_t) * eps, not (1 - alpha_bar_t) * eps."),
        (step(clamp((x_t - (1 - abar).sqrt() * eps) / abar), beta_tilde),
         "predicting x0 (eq. 15) divides by sqrt(alpha_bar_t), not alpha_bar_t."),
        (step(x0, beta),
         "that variance is beta_t ('fixed_large'); the posterior variance is "
         "beta_tilde_t = (1 - alpha_bar_prev) / (1 - alpha_bar_t) * beta_t (eq. 7)."),
        (step(x0, beta_tilde**2),
         "the noise is scaled by the standard deviation sqrt(beta_tilde_t), not the variance."),
        (step(x0, beta_tilde, x_t_coef=abar.sqrt() * (1 - abar_prev) / (1 - abar)),
         "the x_t coefficient of the posterior mean uses sqrt(alpha_t) (one step), not sqrt(alpha_bar_t)."),
        (step((x_t - (1 - abar).sqrt() * eps) / abar.sqrt(), beta_tilde),
         "clip the predicted x0 to [-1, 1] before the posterior mean (the scheduler's clip_sample=True)."),
    ]


def check_step(fn, scheduler, seed=0):
    """Check ``fn(eps_pred, t, x_t, noise) -> x_prev``, one reverse step over all T steps,
    against ``scheduler.step`` (Ho et al. 2020, eqs. 7 and 15), at t = T-1, T/2, 10 and 0."""
    reference = type(scheduler).from_config(scheduler.config)  # no set_timesteps: prev = t - 1
    generator = torch.Generator().manual_seed(seed)
    x_t, eps = torch.randn((4, 1, 8, 8), generator=generator), torch.randn((4, 1, 8, 8), generator=generator)
    T = reference.num_train_timesteps
    for t in (T - 1, T // 2, 10, 0):
        noise = torch.randn(x_t.shape, generator=torch.Generator().manual_seed(seed + t))
        expected = reference.step(eps, t, x_t, generator=torch.Generator().manual_seed(seed + t)).prev_sample
        result, hint = _call(fn, eps.clone(), t, x_t.clone(), noise.clone())
        if hint:
            return _report(False, hint)
        if result.shape != x_t.shape:
            return _report(False, f"return x_prev with x_t's shape {tuple(x_t.shape)}, got {tuple(result.shape)}.")
        if torch.allclose(result, expected, atol=1e-4):
            continue
        clip = reference.config.clip_sample
        for wrong, wrong_hint in _step_mistakes(eps, t, x_t, noise, reference.alphas_cumprod, clip):
            if torch.allclose(result, wrong, atol=1e-4):
                return _report(False, f"(at t = {t}) {wrong_hint}")
        worst = (result - expected).abs().max().item()
        return _report(False, f"at t = {t} your x_prev differs from scheduler.step by up to {worst:.3g}. "
                              "Follow the numbered steps: alpha_bar_t, alpha_bar_prev; x0 (eq. 15); clip; "
                              "posterior mean (eq. 7); add sqrt(beta_tilde_t) * noise if t > 0.")
    return _report(True, "")


def check_answer(answer, expected, hint):
    """Compare a learner's answer (a number, a tuple, ...) with the expected value."""
    expected = tuple(expected) if isinstance(expected, (list, torch.Size)) else expected
    answer = tuple(answer) if isinstance(answer, (list, torch.Size)) else answer
    return _report(answer == expected, f"expected something else than {answer!r}: {hint}")


def check_ema_update(fn, seed=0):
    """Check ``fn(ema_param, param, decay) -> new ema_param``: ema <- decay * ema + (1 - decay) * param."""
    generator = torch.Generator().manual_seed(seed)
    ema, param = torch.randn(5, generator=generator), torch.randn(5, generator=generator)
    result, hint = _call(fn, ema.clone(), param.clone(), 0.9)
    if hint:
        return _report(False, hint)
    if torch.allclose(result, 0.9 * ema + 0.1 * param):
        return _report(True, "")
    if torch.allclose(result, 0.1 * ema + 0.9 * param):
        return _report(False, "the weights are swapped: the average keeps `decay` (0.9) of its old value "
                              "and takes only 1 - decay of the new parameters, so it moves slowly.")
    if torch.allclose(result, param):
        return _report(False, "that returns the parameters themselves; the EMA must remember its own past value.")
    return _report(False, "compute decay * ema_param + (1 - decay) * param.")


def _sampling_mistakes(model, scheduler, shape, seed):
    """The final samples of classic wrong loops, each with the hint that fixes it."""
    def loop(carry_x0=False, step_generator=True):
        generator = torch.Generator().manual_seed(seed)
        x = torch.randn(shape, generator=generator)
        for t in scheduler.timesteps:
            with torch.no_grad():
                out = scheduler.step(model(x, t).sample, t, x, generator=generator if step_generator else None)
            x = out.pred_original_sample if carry_x0 else out.prev_sample
        return x

    return [
        (loop(carry_x0=True), "carry `.prev_sample` from one step to the next; `.pred_original_sample` is "
                              "only the model's current guess of x0."),
        (loop(step_generator=False), "pass generator=generator to scheduler.step too, so its noise is reproducible."),
    ]


def check_sampling_loop(fn, model, scheduler, num_inference_steps=10, seed=0):
    """Check ``fn(model, scheduler, shape, generator) -> samples`` against ``sampling.denoising_steps``,
    with ``num_inference_steps`` set on a copy of ``scheduler`` and the same seed."""
    from .sampling import denoising_steps

    shape = (4, model.config.in_channels, model.config.sample_size, model.config.sample_size)
    fresh = lambda: type(scheduler).from_config(scheduler.config)  # noqa: E731
    *_, last = denoising_steps(model, fresh(), shape, num_inference_steps,
                               generator=torch.Generator().manual_seed(seed), progress=False)
    mine = fresh()
    mine.set_timesteps(num_inference_steps)
    result, hint = _call(fn, model, mine, shape, torch.Generator().manual_seed(seed))
    if hint:
        return _report(False, hint)
    if result.shape != last.x_t.shape:
        return _report(False, f"return the final samples, shape {shape}, not {tuple(result.shape)}.")
    if torch.allclose(result, last.x_t, atol=1e-4):
        return _report(True, "")
    mine.set_timesteps(num_inference_steps)
    for wrong, wrong_hint in _sampling_mistakes(model, mine, shape, seed):
        if torch.allclose(result, wrong, atol=1e-4):
            return _report(False, wrong_hint)
    return _report(False, "start from x = torch.randn(shape, generator=generator); loop `for t in "
                          "scheduler.timesteps`; predict the noise with model(x, t).sample; then x = scheduler.step("
                          "noise_pred, t, x, generator=generator).prev_sample.")
