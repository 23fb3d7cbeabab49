"""Checks for the notebooks' "your turn" exercises, one per central equation.

Each ``check_*(my_function, ...)`` calls the learner's function on inputs it makes itself,
compares the result with the package (or with the cited equation) and prints either
"Correct!" or "Not yet." with a first, gentle hint; ``show_hint()`` prints the next hint of the
last check, from a nudge to the formula. A check returns True or False and never raises: a
wrong formula, a list instead of a tensor, a wrong shape or dtype, an error inside the
learner's function, a non-function -- each comes back as a hint.

    lesson 1   check_q_sample       x_t from x0 in one jump (Ho et al. 2020, eq. 4)
               check_predict_x0     x0 back from x_t and the noise (eq. 4 solved for x0; eq. 15)
    lesson 2   check_add_noise      the scheduler's add_noise (eq. 4, diffusers' argument order)
               check_posterior_mean the mean of q(x_{t-1} | x_t, x0) (eq. 7)
               check_step           one DDPM reverse step (eqs. 15 and 7, Algorithm 2)
    lesson 3   check_answer         a number or a shape
    lesson 4   check_training_loss  the training loss (eq. 14, Algorithm 1)
               check_ema_update     one update of an exponential moving average
    lesson 5   check_sampling_loop  the whole DDPM sampling loop
               check_ddim_step      one deterministic DDIM step (Song et al. 2021, eq. 12, eta = 0)
    lesson 6   check_trailing_timesteps  "trailing" step spacing (Lin et al. 2024, Table 2)
    lesson 7   check_guidance       classifier-free guidance (Ho & Salimans 2022, eq. 6)

Timesteps are 0-indexed like diffusers: t = 0, ..., T-1, alpha_bar_t = alphas_cumprod[t],
and alpha_bar_{t-1} = 1 at t = 0 (nothing is noised before the first step).
"""

import torch

from ._feedback import (  # noqa: F401 - show_hint is part of the public API
    Feedback, NotYet, alphas_cumprod_of, call, diagnose, exercise_check, expect_tensor, name, per_image, report,
    same_again, show_hint,
)
from .noising import q_sample

EQ4 = "x_t = sqrt(alpha_bar_t) * x0 + sqrt(1 - alpha_bar_t) * noise, with alpha_bar_t = alphas_cumprod[t] (eq. 4)"
EQ15 = "x0 = (x_t - sqrt(1 - alpha_bar_t) * noise) / sqrt(alpha_bar_t), eq. 4 solved for x0 (eq. 15)"
EQ7 = ("mu = sqrt(alpha_bar_{t-1}) * beta_t / (1 - alpha_bar_t) * x0 + sqrt(alpha_t) * (1 - alpha_bar_{t-1}) "
       "/ (1 - alpha_bar_t) * x_t, with alpha_t = alpha_bar_t / alpha_bar_{t-1} = 1 - beta_t and "
       "alpha_bar_{-1} = 1 (eq. 7)")


def _linear_alphas_cumprod(T=1000):
    # Ho et al. 2020, sec. 4: beta from 1e-4 to 0.02; alpha_bar_t = prod_{s<=t} (1 - beta_s)
    return torch.cumprod(1 - torch.linspace(1e-4, 0.02, T, dtype=torch.float64), 0).float()


# --- lesson 1: eq. 4 and its inverse ---------------------------------------------------------


def _forward_inputs(alphas_cumprod, seed):
    g = torch.Generator().manual_seed(seed)
    x0 = torch.rand((6, 1, 8, 8), generator=g) * 2 - 1
    noise = torch.randn(x0.shape, generator=g)
    ac = _linear_alphas_cumprod() if alphas_cumprod is None else alphas_cumprod.detach().float()
    T = len(ac)
    t = torch.tensor([0, 1, T // 10, T // 4, T // 2, T - 1]).clamp(max=T - 1)
    return x0, noise, t, ac


def _eq4_mistakes(x0, t, ac, noise):
    """Wrong closed forms people write, each with hints from a nudge to the formula."""
    a, a_prev = per_image(ac[t], x0), per_image(ac[(t - 1) % len(ac)], x0)  # t - 1 wraps, as in python
    a_next = per_image(ac[(t + 1).clamp(max=len(ac) - 1)], x0)
    k = len(ac) // 4
    ak = ac[k].item()
    sq = torch.sqrt
    where = "Look at the two coefficients of eq. 4 once more."
    return [
        (a * x0 + (1 - a) * noise, (
            "both parts of your x_t, the signal and the noise, are too weak.",
            "alpha_bar_t and 1 - alpha_bar_t are the *variances* of the two parts of x_t; what multiplies "
            "x0 and the noise is a standard deviation.", EQ4)),
        (a * x0 + sq(1 - a) * noise, (
            f"the noise part of your x_t is right, but its signal part is too weak: at t = {k} your x_t "
            f"holds {ak:.2f} x0 where eq. 4 holds {ak ** 0.5:.2f} x0.",
            "alpha_bar_t is the *variance* of the signal part of x_t, not the number that multiplies x0.", EQ4)),
        (sq(a) * x0 + (1 - a) * noise, (
            f"the signal part of your x_t is right, but its noise part is too weak: at t = {k} your x_t "
            f"holds {1 - ak:.2f} noise where eq. 4 holds {(1 - ak) ** 0.5:.2f} noise.",
            "1 - alpha_bar_t is the *variance* of the noise part of x_t, not the number that multiplies it.", EQ4)),
        (sq(1 - a) * x0 + sq(a) * noise, (
            "your x_t is noisiest at t = 0 and cleanest at t = T - 1: the wrong way round.",
            "At t = 0, alpha_bar_t is almost 1. Which part of x_t should it keep: x0 or the noise?", EQ4)),
        (sq(a_prev) * x0 + sq(1 - a_prev) * noise, (
            "very close: your x_t looks one timestep off (and at t = 0 far off).",
            "Timesteps are 0-indexed: the noise level at step t is alphas_cumprod[t], with no shift.", EQ4)),
        (sq(a_next) * x0 + sq(1 - a_next) * noise, (
            "very close: your x_t looks one timestep too noisy.",
            "Timesteps are 0-indexed: the noise level at step t is alphas_cumprod[t], with no shift.", EQ4)),
        (sq(a) * x0, ("your x_t has no noise in it.", "Eq. 4 has two parts: " + where, EQ4)),
        (sq(a) * x0 + noise, (
            "the signal part of your x_t is right, but at small t it is buried under far too much noise.",
            "The noise needs a coefficient too, one that is near 0 at t = 0.", EQ4)),
        (x0 + sq(1 - a) * noise, (
            "the noise part of your x_t is right, but x0 never fades: at t = T - 1 the image should be gone.",
            "The signal needs a coefficient too, one that shrinks towards 0 as t grows.", EQ4)),
    ]


def _closed_form_check(fn_call, alphas_cumprod, seed, mistakes_extra=()):
    x0, noise, t, ac = _forward_inputs(alphas_cumprod, seed)
    x_t = expect_tensor(call(fn_call, x0, t, ac, noise), x0, "x_t")
    same_again(fn_call, (x0, t, ac, noise), x_t, "x_t")
    expected = q_sample(x0, t, ac, noise)
    if not torch.allclose(x_t, expected, rtol=1e-5, atol=1e-5):
        extra = [(wrong(x0, t, noise), hints) for wrong, hints in mistakes_extra]
        diagnose(x_t, expected, extra + _eq4_mistakes(x0, t, ac, noise), (
            "your x_t differs from eq. 4's by up to {worst:.3g}.",
            "Compute alpha_bar_t for each image first (one number per image, shape (B, 1, 1, 1)), then the "
            "two parts of x_t.", EQ4))
    return ", ".join(str(v) for v in t.tolist())


@exercise_check("x0", "t", "alphas_cumprod", "noise")
def check_q_sample(fn, alphas_cumprod=None, seed=0):
    """Check the learner's closed form, ``fn(x0, t, alphas_cumprod, noise) -> x_t`` (Ho et al. 2020, eq. 4).

    fn receives x0, float32 (6, 1, 8, 8) in [-1, 1]; t, an int64 (6,) tensor of timesteps, one per
    image (0, 1, T/10, T/4, T/2, T-1); alphas_cumprod, float32 (T,) (default: Ho et al.'s linear
    schedule, T = 1000); noise, float32 (6, 1, 8, 8) ~ N(0, 1). It returns x_t, float32 (6, 1, 8, 8).
    """
    times = _closed_form_check(fn, alphas_cumprod, seed)
    return f"{name(fn)} matches noising.q_sample (eq. 4) at t = {times}."


@exercise_check("original_samples", "noise", "timesteps")
def check_add_noise(fn, scheduler=None, seed=0):
    """Check the learner's ``add_noise``, ``fn(original_samples, noise, timesteps) -> x_t``: eq. 4
    with ``scheduler.alphas_cumprod``, in diffusers' argument order. Inputs as in ``check_q_sample``."""
    ac = alphas_cumprod_of(scheduler, "check_add_noise")
    linear = _linear_alphas_cumprod(len(ac))
    extra = []
    if not torch.allclose(linear, ac):
        extra = [(lambda x0, t, noise: q_sample(x0, t, linear, noise), (
            "your x_t follows another noise schedule than this scheduler's: Ho et al.'s linear one?",
            "Take alpha_bar_t from the scheduler you are writing add_noise for: noise_scheduler.alphas_cumprod.",
            EQ4))]
    times = _closed_form_check(lambda x0, t, ac_, noise: fn(x0, noise, t), ac, seed, extra)
    return f"{name(fn)} matches DDPMScheduler.add_noise (eq. 4) at t = {times}."


@exercise_check("x_t", "t", "alphas_cumprod", "noise")
def check_predict_x0(fn, alphas_cumprod=None, seed=0):
    """Check the learner's inverse of eq. 4, ``fn(x_t, t, alphas_cumprod, noise) -> x0``: the clean
    images back from the noisy ones and the noise that made them (Ho et al. 2020, eq. 15 with the
    true noise). Inputs as in ``check_q_sample``, with x_t = q_sample(x0, t, alphas_cumprod, noise);
    it returns x0, float32 (6, 1, 8, 8).
    """
    x0, noise, t, ac = _forward_inputs(alphas_cumprod, seed)
    x_t = q_sample(x0, t, ac, noise)
    result = expect_tensor(call(fn, x_t, t, ac, noise), x_t, "x0")
    same_again(fn, (x_t, t, ac, noise), result, "x0")
    a, a_prev = per_image(ac[t], x0), per_image(ac[(t - 1) % len(ac)], x0)
    sq = torch.sqrt
    expected = (x_t - sq(1 - a) * noise) / sq(a)
    if not torch.allclose(result, expected, rtol=1e-4, atol=5e-4):
        solve = "Solve eq. 4 for x0 in two moves: take away the noise part, then undo what multiplies x0."
        diagnose(result, expected, [
            (x_t, ("your function returns x_t unchanged.", solve, EQ15)),
            ((x_t - (1 - a) * noise) / sq(a), (
                "your x0 is right at small t but wrong at large t: the noise you take away has the wrong size.",
                "Take away exactly the noise part of eq. 4, coefficient included.", EQ15)),
            ((x_t - noise) / sq(a), (
                "your x0 is wrong everywhere, most at small t: the noise you take away is too large.",
                "x_t holds the noise times its coefficient in eq. 4, not the noise itself.", EQ15)),
            ((x_t + sq(1 - a) * noise) / sq(a), (
                "your x0 is noisier than x_t: you add the noise where it should be taken away.", solve, EQ15)),
            ((x_t - sq(1 - a) * noise) / a, (
                "after the noise is taken away, your x0 comes out too large at large t.",
                "Divide by exactly what multiplies x0 in eq. 4.", EQ15)),
            ((x_t - sq(1 - a) * noise) * sq(a), (
                "your x0 is far too faint at large t: you multiply where you should divide.", solve, EQ15)),
            (x_t - sq(1 - a) * noise, (
                "your x0 is too faint at large t: what is left after taking away the noise is still scaled.",
                solve, EQ15)),
            ((x_t - sq(1 - a_prev) * noise) / sq(a_prev), (
                "very close: your x0 looks one timestep off.",
                "Timesteps are 0-indexed: the noise level at step t is alphas_cumprod[t].", EQ15)),
        ], ("your x0 differs from the clean images that made x_t by up to {worst:.3g}.", solve, EQ15),
            rtol=1e-4, atol=5e-4)
    return f"{name(fn)} recovers x0 from x_t and the noise (eq. 15) at t = {', '.join(map(str, t.tolist()))}."


# --- lesson 2: the posterior (eq. 7) and one reverse step -------------------------------------


def _coefficients(ac, t):
    """alpha_bar_t, alpha_bar_{t-1} (1 at t = 0), alpha_t and beta_t between them, float32 like the scheduler."""
    abar = ac[t]
    abar_prev = ac[t - 1] if t > 0 else torch.tensor(1.0)
    alpha = abar / abar_prev
    return abar, abar_prev, alpha, 1 - alpha


def posterior_mean(x0, x_t, t, alphas_cumprod):
    """The mean of q(x_{t-1} | x_t, x0) at an int timestep t (Ho et al. 2020, eq. 7); the check's reference."""
    abar, abar_prev, alpha, beta = _coefficients(alphas_cumprod, t)
    # Ho et al. 2020, eq. (7)
    return abar_prev.sqrt() * beta / (1 - abar) * x0 + alpha.sqrt() * (1 - abar_prev) / (1 - abar) * x_t


def _posterior_mistakes(x0, x_t, t, ac):
    abar, abar_prev, alpha, beta = _coefficients(ac, t)
    wrap = ac[t - 1]  # at t = 0 this is alphas_cumprod[-1]: python counts from the end
    sq = torch.sqrt

    def mean(c0, ct):
        return c0 * x0 + ct * x_t

    good0, goodt = sq(abar_prev) * beta / (1 - abar), sq(alpha) * (1 - abar_prev) / (1 - abar)
    look_prev = "The x0 term looks one step back, to t - 1."
    return [
        (mean(good0, sq(abar) * (1 - abar_prev) / (1 - abar)), (
            f"close: the x0 term of your mean is right, but at t = {t} its x_t term is too small.",
            "The x_t term is about the single step from t - 1 to t: it uses that step's alpha_t, not the "
            "product alpha_bar_t of all steps.", EQ7)),
        (mean(sq(abar) * beta / (1 - abar), goodt), (
            f"close: the x_t term of your mean is right, but at t = {t} its x0 term is too small.", look_prev, EQ7)),
        (mean(abar_prev * beta / (1 - abar), goodt), (
            f"close: the x_t term of your mean is right, but at t = {t} its x0 term is too small.",
            "Check the square roots in the x0 term.", EQ7)),
        (mean(good0, alpha * (1 - abar_prev) / (1 - abar)), (
            f"close: the x0 term of your mean is right, but at t = {t} its x_t term is a little too small.",
            "Check the square roots in the x_t term.", EQ7)),
        (mean(goodt, good0), (
            "your mean weights x_t where eq. 7 weights x0, and the other way round.",
            "At t = 0 the mean must be x0 itself. Which coefficient becomes 1 there?", EQ7)),
        (mean(sq(wrap) * (1 - abar / wrap) / (1 - abar), sq(abar / wrap) * (1 - wrap) / (1 - abar)), (
            "right for t > 0, but at t = 0 (the last step of sampling) your mean is not x0.",
            "At t = 0, alphas_cumprod[t - 1] is alphas_cumprod[-1], which python reads from the *end* of the "
            "array. Before the first step nothing is noised yet: alpha_bar_{-1} = 1.", EQ7)),
        (x_t, (f"your mean is x_t itself: from t = {t} the step would go nowhere.",
               "alpha_bar_{t-1} is alphas_cumprod[t - 1], one step before t (and 1 at t = 0).", EQ7)),
        (mean(sq(abar_prev) * (1 - abar) / (1 - abar), sq(1 - abar) * (1 - abar_prev) / (1 - abar)), (
            f"at t = {t} both terms of your mean are off: is beta_t right?",
            "beta_t is the noise of the single step t: beta_t = 1 - alpha_t = 1 - alpha_bar_t / alpha_bar_{t-1}, "
            "not 1 - alpha_bar_t.", EQ7)),
        (mean(sq(abar_prev) * (1 - abar) / (1 - abar), sq(alpha) * (1 - abar_prev) / (1 - abar)), (
            f"close: the x_t term of your mean is right, but at t = {t} its x0 term is too large.",
            "beta_t is the noise of the single step t: beta_t = 1 - alpha_t = 1 - alpha_bar_t / alpha_bar_{t-1}, "
            "not 1 - alpha_bar_t.", EQ7)),
    ]


@exercise_check("x0", "x_t", "t", "alphas_cumprod")
def check_posterior_mean(fn, scheduler=None, seed=0):
    """Check the learner's posterior mean, ``fn(x0, x_t, t, alphas_cumprod) -> mu`` (Ho et al. 2020, eq. 7):

        mu = sqrt(alpha_bar_{t-1}) beta_t / (1 - alpha_bar_t) x0 + sqrt(alpha_t) (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) x_t

    with alpha_t = alpha_bar_t / alpha_bar_{t-1} = 1 - beta_t and alpha_bar_{-1} = 1. fn receives x0,
    float32 (4, 1, 8, 8) in [-1, 1]; x_t, float32 (4, 1, 8, 8), x0 noised to step t; t, a python int
    (T-1, T/2, T/10, 1 and 0 in turn); alphas_cumprod, the scheduler's float32 (T,) tensor (default
    scheduler: DDPMScheduler(beta_schedule="squaredcos_cap_v2")). It returns mu, float32 (4, 1, 8, 8).
    """
    if scheduler is None:
        from .scheduler import DDPMScheduler

        scheduler = DDPMScheduler(beta_schedule="squaredcos_cap_v2")
    ac = alphas_cumprod_of(scheduler, "check_posterior_mean")
    g = torch.Generator().manual_seed(seed)
    x0 = torch.rand((4, 1, 8, 8), generator=g) * 2 - 1
    T = len(ac)
    times = sorted({T - 1, T // 2, T // 10, min(1, T - 1), 0}, reverse=True)
    for t in times:
        x_t = q_sample(x0, t, ac, torch.randn(x0.shape, generator=g))
        mu = expect_tensor(call(fn, x0, x_t, t, ac), x0, "the mean mu")
        expected = posterior_mean(x0, x_t, t, ac)
        # float32 tolerance: beta_t from the ratio of two float32 alpha_bars is accurate to ~1e-3 near t = 0
        if not torch.allclose(mu, expected, rtol=2e-3, atol=1e-3):
            diagnose(mu, expected, _posterior_mistakes(x0, x_t, t, ac), (
                f"at t = {t} your mean differs from eq. 7 by up to {{worst:.3g}}.",
                "Compute in order: alpha_bar_t = alphas_cumprod[t]; alpha_bar_{t-1} (1 at t = 0); alpha_t = "
                "alpha_bar_t / alpha_bar_{t-1}; beta_t = 1 - alpha_t; then the two coefficients.", EQ7),
                rtol=2e-3, atol=1e-3)
    return f"{name(fn)} is the posterior mean of eq. 7 at t = {', '.join(map(str, times))}."


def reverse_step_parts(eps_pred, t, x_t, scheduler):
    """(x0_pred, mean, sigma) of one DDPM step over all T steps, as DDPMScheduler.step computes them:
    x_prev = mean + sigma * z. The reference of ``check_step``."""
    cfg = scheduler.config
    abar, abar_prev, alpha, beta = _coefficients(scheduler.alphas_cumprod, t)
    # Ho et al. 2020, eq. (15), then clip to the data range
    x0_pred = (x_t - (1 - abar).sqrt() * eps_pred) / abar.sqrt()
    if cfg.clip_sample:
        x0_pred = x0_pred.clamp(-cfg.clip_sample_range, cfg.clip_sample_range)
    if t == 0:
        sigma = torch.tensor(0.0)
    elif cfg.variance_type == "fixed_large":
        sigma = beta.sqrt()
    else:  # Ho et al. 2020, eq. (7): beta_tilde_t
        sigma = ((1 - abar_prev) / (1 - abar) * beta).clamp(min=1e-20).sqrt()
    return x0_pred, posterior_mean(x0_pred, x_t, t, scheduler.alphas_cumprod), sigma


STEP = ("x_prev = mu(x0_pred, x_t) + sigma_t * noise for t > 0, x_prev = mu at t = 0; mu from eq. 7 with x0_pred "
        "= eq. 15 clipped to [-1, 1]; sigma_t^2 = beta_tilde_t = (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) * beta_t")


def _check_noise_scale(scale, t, scheduler):
    abar, abar_prev, alpha, beta = _coefficients(scheduler.alphas_cumprod, t)
    tilde = ((1 - abar_prev) / (1 - abar) * beta).item()
    large = scheduler.config.variance_type == "fixed_large"
    target = beta.item() ** 0.5 if large else tilde ** 0.5
    if t == 0:
        if abs(scale) > 1e-6:
            raise NotYet("at t = 0, the last step, your step adds noise.",
                         "The output of the step at t = 0 is the finished image: noise added now stays in it. "
                         "Step 6 adds noise only while t > 0.", STEP)
        return
    if abs(scale / target - 1) < 1e-2:
        return
    chosen = ("beta_tilde_t", "beta_t") if not large else ("beta_t", "beta_tilde_t")
    named = {beta.item() ** 0.5: f"sqrt(beta_t): that is variance_type='fixed_large'; this scheduler uses "
                                 f"{chosen[0]}, the posterior variance of eq. 7",
             tilde ** 0.5: "sqrt(beta_tilde_t), the posterior variance of eq. 7; this scheduler uses beta_t",
             tilde: "beta_tilde_t itself: a variance, where the noise needs a standard deviation",
             beta.item(): "beta_t itself: a variance, where the noise needs a standard deviation",
             1.0: "1: the noise is added unscaled"}
    for value, text in named.items():
        if abs(value - target) > 1e-3 * target and abs(scale - value) < 1e-2 * value:
            raise NotYet(f"the noise your step adds at t = {t} has the wrong size: {scale:.3g} times `noise`, "
                         f"where step 6 says {target:.3g}.", f"Your scale is {text}.", STEP)
    if abs(scale) < 1e-8:
        raise NotYet(f"your step adds no noise at t = {t}.", "DDPM sampling adds fresh noise at every step but "
                     "the last one (step 6); without it the samples collapse to a blurry average.", STEP)
    raise NotYet(f"the noise your step adds at t = {t} has the wrong size: {scale:.3g} times `noise`, where "
                 f"step 6 says {target:.3g}.", f"Step 6 scales the noise by sqrt({chosen[0]}).", STEP)


def _step_mean_mistakes(eps, t, x_t, scheduler):
    ac = scheduler.alphas_cumprod
    abar = ac[t]
    clip = (lambda x: x.clamp(-1, 1)) if scheduler.config.clip_sample else (lambda x: x)
    raw = (x_t - (1 - abar).sqrt() * eps) / abar.sqrt()
    return [
        (posterior_mean(raw, x_t, t, ac), (
            f"at t = {t} the mean of your step (its value with noise = 0) is off where x0_pred is far outside "
            "[-1, 1].", "Step 3: the data lives in [-1, 1], and the scheduler clips x0_pred to it "
            "(clip_sample=True).", STEP)),
        (posterior_mean(clip((x_t - (1 - abar) * eps) / abar.sqrt()), x_t, t, ac), (
            f"at t = {t} the mean of your step is off: is x0_pred right?",
            "Step 2 takes away the noise part of x_t, coefficient included (eq. 15).", STEP)),
        (posterior_mean(clip((x_t - (1 - abar).sqrt() * eps) / abar), x_t, t, ac), (
            f"at t = {t} the mean of your step is off: is x0_pred right?",
            "Step 2 divides by exactly what multiplies x0 in eq. 4 (eq. 15).", STEP)),
    ]


@exercise_check("eps_pred", "t", "x_t", "noise")
def check_step(fn, scheduler=None, seed=0):
    """Check the learner's reverse step over all T steps, ``fn(eps_pred, t, x_t, noise) -> x_prev``,
    against ``scheduler.step`` (Ho et al. 2020, eqs. 15 and 7; Algorithm 2, line 4).

    fn receives eps_pred and x_t, float32 (4, 1, 8, 8); t, a python int (T/2, 10, 1, 0, T-1 in turn;
    the previous step is t - 1); noise, float32 (4, 1, 8, 8), the z to add (the check also passes
    zeros, to look at the mean alone). It returns x_prev, float32 (4, 1, 8, 8).
    """
    alphas_cumprod_of(scheduler, "check_step")
    g = torch.Generator().manual_seed(seed)
    x_t, eps = torch.randn((4, 1, 8, 8), generator=g), torch.randn((4, 1, 8, 8), generator=g)
    T = len(scheduler.alphas_cumprod)
    times = [t for t in dict.fromkeys((T // 2, min(10, T - 1), min(1, T - 1), 0, T - 1))]
    means = {}
    for t in times:  # first the noise of step 6 at every t: it does not depend on the mean
        z = torch.randn(x_t.shape, generator=g)
        means[t] = expect_tensor(call(fn, eps, t, x_t, torch.zeros_like(z)), x_t, "x_prev")
        added = expect_tensor(call(fn, eps, t, x_t, z), x_t, "x_prev") - means[t]
        scale = ((added * z).sum() / (z * z).sum()).item()
        if (added - scale * z).abs().max() > 1e-3 * max(1.0, abs(scale)):
            raise NotYet(f"at t = {t} the noise part of your x_prev is not a multiple of `noise`.",
                         "Step 6 adds the noise once, scaled by one number.", STEP)
        _check_noise_scale(scale, t, scheduler)
    for t in times:  # then the mean, steps 2-5
        _, expected, _ = reverse_step_parts(eps, t, x_t, scheduler)
        if not torch.allclose(means[t], expected, rtol=2e-3, atol=1e-3):
            diagnose(means[t], expected, _step_mean_mistakes(eps, t, x_t, scheduler), (
                f"at t = {t} the mean of your step (its value with noise = 0) differs from eq. 7's posterior "
                "mean by up to {worst:.3g}.",
                "Steps 2-5 make the mean: x0_pred (eq. 15), clipped to [-1, 1], then the posterior mean of eq. 7. "
                "If you call my_posterior_mean, does check_posterior_mean accept it?", STEP), rtol=2e-3, atol=1e-3)
    return f"{name(fn)} takes the same step as scheduler.step at t = {', '.join(map(str, times))}."


# --- lessons 3-5 -------------------------------------------------------------------------------


def _same(answer, expected):
    if isinstance(answer, torch.Tensor) or isinstance(expected, torch.Tensor):
        try:
            return bool(torch.equal(torch.as_tensor(answer), torch.as_tensor(expected)))
        except (TypeError, ValueError, RuntimeError):
            return False
    if isinstance(answer, (list, tuple, torch.Size)) and isinstance(expected, (list, tuple, torch.Size)):
        return len(answer) == len(expected) and all(_same(a, e) for a, e in zip(answer, expected))
    if isinstance(answer, float) or isinstance(expected, float):
        try:
            return abs(float(answer) - float(expected)) <= 1e-6 * max(1.0, abs(float(expected)))
        except (TypeError, ValueError):
            return False
    try:
        return bool(answer == expected)
    except Exception:  # noqa: BLE001 - an odd answer is simply not the expected one
        return False


def check_answer(answer, expected, hint):
    """Compare a learner's answer (a number, a shape, ...) with ``expected``; ``hint`` is a string or
    a tuple of hints (a nudge first). Prints and returns True or False; never raises."""
    hints = (hint,) if isinstance(hint, str) else tuple(str(h) for h in hint)
    if _same(answer, expected):
        return report(Feedback(True), f"{answer!r} is right.")
    shown = answer if not isinstance(answer, torch.Tensor) else f"a tensor of shape {tuple(answer.shape)}"
    return report(Feedback(False, (f"{shown!r} is not it: {hints[0]}",) + hints[1:]))


from ._reverse_exercises import (  # noqa: E402 - they use the helpers above
    check_ddim_step, check_ema_update, check_sampling_loop, check_training_loss,
)

__all__ = ["check_add_noise", "check_answer", "check_ddim_step", "check_ema_update", "check_posterior_mean",
           "check_predict_x0", "check_q_sample", "check_sampling_loop", "check_step", "check_training_loss",
           "show_hint"]


# --- lesson 3: the UNet's parts, against the package's modules holding the same weights -----------

from ._block_exercises import check_residual_block  # noqa: E402
from ._unet_exercises import check_bottom_shape, check_unet_forward  # noqa: E402

__all__ += ["check_bottom_shape", "check_residual_block", "check_unet_forward"]


# --- lesson 6: where the steps of a fast sampler fall ------------------------------------------

from ._sampler_exercises import check_trailing_timesteps  # noqa: E402

__all__ += ["check_trailing_timesteps"]


# --- lesson 7: classifier-free guidance ---------------------------------------------------------

from ._guidance_exercises import check_guidance  # noqa: E402

__all__ += ["check_guidance"]
