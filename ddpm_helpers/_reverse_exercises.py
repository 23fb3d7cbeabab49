"""The exercise checks of lessons 4 and 5: the training loss, the EMA, sampling, DDIM.

Imported into ``ddpm_helpers.exercises``; use them from there. Like every check they print a
first hint, return True or False and never raise (see ``ddpm_helpers._feedback``).
"""

from dataclasses import dataclass
from types import SimpleNamespace

import torch

from ._feedback import (
    NotYet, alphas_cumprod_of, call, diagnose, exercise_check, expect_tensor, name, per_image, predict_noise,
    same_again,
)

EQ14 = ("loss = mean((noise - eps_theta(x_t, t))^2), the mean over every pixel of every image, with "
        "x_t = sqrt(alpha_bar_t) * x0 + sqrt(1 - alpha_bar_t) * noise = scheduler.add_noise(x0, noise, t) (eq. 14)")
EQ12 = ("x0_pred = (x_t - sqrt(1 - alpha_bar_t) * eps_pred) / sqrt(alpha_bar_t), clipped to [-1, 1] when the "
        "scheduler clips; x_prev = sqrt(alpha_bar_prev) * x0_pred + sqrt(1 - alpha_bar_prev) * eps_pred, with "
        "alpha_bar_prev = alphas_cumprod[prev_t], or 1 when prev_t < 0 (Song et al. 2021, eq. 12, eta = 0)")
EMA = "ema_new = decay * ema_param + (1 - decay) * param"


@dataclass
class NoisePrediction:
    """What the checks' model returns, like diffusers' ``UNet2DOutput``: the predicted noise is ``.sample``."""

    sample: torch.Tensor


class TinyNoiseModel(torch.nn.Module):
    """A small fixed eps_theta(x_t, t) for the checks, called like diffusers' UNet2DModel:
    ``model(x_t, t).sample``, or ``model(x_t, t, return_dict=False)[0]``. Its output depends on
    both x_t and t, so a wrong image or a wrong timestep shows in the loss."""

    def __init__(self, in_channels=1, sample_size=8, num_train_timesteps=1000):
        super().__init__()
        self.config = SimpleNamespace(in_channels=in_channels, sample_size=sample_size,
                                      num_train_timesteps=num_train_timesteps)
        self.conv = torch.nn.Conv2d(in_channels, in_channels, 3, padding=1)
        g = torch.Generator().manual_seed(1234)
        with torch.no_grad():
            self.conv.weight.copy_(torch.randn(self.conv.weight.shape, generator=g) * 0.3)
            self.conv.bias.copy_(torch.randn(self.conv.bias.shape, generator=g) * 0.1)

    def forward(self, sample, timestep, return_dict=True):
        t = torch.as_tensor(timestep, dtype=sample.dtype).reshape(-1, 1, 1, 1)  # (B or 1, 1, 1, 1)
        eps_pred = self.conv(sample) * (0.5 + t / self.config.num_train_timesteps) + torch.sin(t / 50)
        return NoisePrediction(eps_pred) if return_dict else (eps_pred,)


def _image_shape(model, batch):
    cfg = getattr(model, "config", None)
    size = getattr(cfg, "sample_size", None)
    channels = getattr(cfg, "in_channels", None)
    if not isinstance(size, int) or not isinstance(channels, int):
        raise NotYet("the check reads the image shape from model.config (in_channels and sample_size); this "
                     f"model has none. Pass the course's UNet, or no model at all. It got {type(model).__name__}.")
    return (batch, channels, size, size)


def _default_scheduler(scheduler, check_name, cls_name="DDPMScheduler"):
    from . import scheduler as schedulers

    if scheduler is None:
        return getattr(schedulers, cls_name)(beta_schedule="squaredcos_cap_v2")
    alphas_cumprod_of(scheduler, check_name)
    return scheduler


def _loss_value(loss, model):
    """The learner's loss as a 0-d tensor, or NotYet saying what is wrong with it."""
    if isinstance(loss, (int, float)) and not isinstance(loss, bool):
        raise NotYet(f"your function returned a python number ({loss:.4g}); return the loss tensor itself, "
                     "without .item(): training calls loss.backward() on it.")
    if not isinstance(loss, torch.Tensor) or not loss.is_floating_point():
        expect_tensor(loss, torch.zeros(()), "the loss")  # raises, naming what came back
    if loss.numel() != 1:
        raise NotYet(f"your loss has shape {tuple(loss.shape)}: return one number, the mean over every pixel of "
                     "every image (a 0-d tensor, as F.mse_loss gives).")
    if not torch.isfinite(loss).all():
        raise NotYet("your loss is NaN or inf: a division by zero, or a square root of a negative number?")
    wants_grad = isinstance(model, torch.nn.Module) and any(p.requires_grad for p in model.parameters())
    if wants_grad and not loss.requires_grad:
        raise NotYet("your loss has no gradient, so loss.backward() could not train the model.",
                     "Was it computed under torch.no_grad(), or through .detach(), .item() or .numpy()?")
    return loss.reshape(())


def _loss_mistakes(model, x0, t, noise, ac):
    a = per_image(ac[t], x0)
    sq = torch.sqrt

    def eps(x, tt):
        return predict_noise(model, x, tt)

    def mse(p, q):
        return ((p - q) ** 2).mean()

    x_t = sq(a) * x0 + sq(1 - a) * noise
    e = eps(x_t, t)
    alphas = ac / torch.cat([torch.ones(1), ac[:-1]])  # one step's alpha_t = alpha_bar_t / alpha_bar_{t-1}
    one_step = per_image(alphas[t], x0)
    prev = per_image(ac[t - 1], x0)
    xs = "your noisy images x_t are wrong, so the model is asked about the wrong images."
    target = "The course's models predict the noise that was added (prediction_type='epsilon'). Which tensor is that?"
    return mse(e, noise), [
        (mse(e, x0), ("your loss compares the model's output with the wrong target.", target, EQ14)),
        (mse(e, x_t), ("your loss compares the model's output with the wrong target.", target, EQ14)),
        (mse(eps(x0, t), noise), ("the model is given the wrong image.", "The model must see the noisy x_t: at "
                                  "sampling time it is all the model has.", EQ14)),
        (mse(eps(a * x0 + (1 - a) * noise, t), noise), (
            xs, "Eq. 4's coefficients are square roots (alpha_bar_t is a variance).", EQ14)),
        (mse(eps(a * x0 + sq(1 - a) * noise, t), noise), (xs, "Look at the coefficient of x0 in eq. 4.", EQ14)),
        (mse(eps(sq(a) * x0 + (1 - a) * noise, t), noise), (xs, "Look at the coefficient of the noise in eq. 4.", EQ14)),
        (mse(eps(sq(1 - a) * x0 + sq(a) * noise, t), noise), (
            xs, "Which part of x_t should be almost all of it at small t: x0 or the noise?", EQ14)),
        (mse(eps(sq(one_step) * x0 + sq(1 - one_step) * noise, t), noise), (
            xs, "alpha_t (scheduler.alphas) is one step's; x_t after steps 0..t needs the product alpha_bar_t "
                "(scheduler.alphas_cumprod), or simply scheduler.add_noise.", EQ14)),
        (mse(eps(sq(prev) * x0 + sq(1 - prev) * noise, t), noise), (
            "very close: your x_t looks one timestep off.", "Timesteps are 0-indexed: x_t at step t uses "
            "alphas_cumprod[t], the same t the model is told.", EQ14)),
        (mse(eps(x_t, t - 1), noise), ("very close: the model is told a timestep one off.",
                                       "The model is told the same t that made x_t.", EQ14)),
        (mse(eps(x_t, (t + 1).clamp(max=len(ac) - 1)), noise), ("very close: the model is told a timestep one off.",
                                       "The model is told the same t that made x_t.", EQ14)),
        (((e - noise) ** 2).sum(), (
            f"your loss is {x0.numel():,} times too large: the number of pixels in the batch.",
            "Eq. 14's loss is a mean over every pixel of every image (F.mse_loss's default), not a sum.", EQ14)),
        (((e - noise) ** 2).mean(dim=tuple(range(1, x0.ndim))).sum(), (
            f"your loss is {len(x0)} times too large: the number of images in the batch.",
            "Eq. 14's loss is a mean over every pixel of every image, not a sum over the images.", EQ14)),
        ((e - noise).abs().mean(), ("your loss measures the error in another way than eq. 14.",
                                    "Eq. 14 is a mean *squared* error.", EQ14)),
        (mse(e, noise).sqrt(), ("your loss is the square root of eq. 14's.",
                                "Eq. 14 is a mean squared error, with no root.", EQ14)),
    ]


@exercise_check("model", "scheduler", "x0", "t", "noise")
def check_training_loss(fn, model=None, scheduler=None, seed=0):
    """Check the learner's training loss, ``fn(model, scheduler, x0, t, noise) -> loss`` (Ho et al.
    2020, eq. 14 and Algorithm 1, the "simple" loss):

        x_t = scheduler.add_noise(x0, noise, t)             # sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) noise
        loss = F.mse_loss(model(x_t, t).sample, noise)      # mean((noise - eps_theta(x_t, t))^2)

    fn receives: model, called as model(x_t, t), which returns an object whose ``.sample`` is the
    predicted noise (diffusers' convention; ``model(x_t, t, return_dict=False)[0]`` is the bare
    tensor); scheduler, a DDPMScheduler (``add_noise``, ``alphas_cumprod``); x0, float32 (B, C, H, W)
    in [-1, 1]; t, an int64 (B,) tensor of timesteps in [1, T-1]; noise, float32 like x0, ~ N(0, 1).
    It returns the loss: a 0-d float tensor with a gradient (so loss.backward() trains the model),
    the mean over every pixel of every image.

    model: default a small fixed network (``TinyNoiseModel``, B = 6 images of 1 x 8 x 8); the course's
    UNet or diffusers' UNet2DModel work too (B = 6 images of the model's config shape). The model is
    put in eval mode during the check (no dropout), then back. scheduler: default
    DDPMScheduler(beta_schedule="squaredcos_cap_v2").
    """
    scheduler = _default_scheduler(scheduler, "check_training_loss")
    ac = scheduler.alphas_cumprod.float()
    T = len(ac)
    if model is None:
        model = TinyNoiseModel(num_train_timesteps=T)
    if not callable(model):
        raise NotYet(f"check_training_loss(my_loss, model, scheduler) needs a model; it got {type(model).__name__}.")
    g = torch.Generator().manual_seed(seed)
    x0 = torch.rand(_image_shape(model, 6), generator=g) * 2 - 1
    noise = torch.randn(x0.shape, generator=g)
    t = torch.tensor([1, max(1, T // 100), T // 4, T // 2, 3 * T // 4, T - 1]).clamp(1, max(1, T - 1))
    was_training = isinstance(model, torch.nn.Module) and model.training
    if isinstance(model, torch.nn.Module):
        model.eval()
    try:
        raw = call(fn, model, scheduler, x0, t, noise)
        loss = _loss_value(raw, model)
        same_again(fn, (model, scheduler, x0, t, noise), raw, "losses")
        with torch.no_grad():
            expected, mistakes = _loss_mistakes(model, x0, t, noise, ac)
        loss = loss.detach()
        if not torch.allclose(loss, expected, rtol=1e-4, atol=1e-7):
            diagnose(loss, expected, mistakes, (
                f"your loss is {loss.item():.6g}; eq. 14 gives {expected.item():.6g} here (off by {{worst:.3g}}).",
                "Two lines: make the noisy images x_t from x0, noise and t; then compare the model's prediction "
                "for (x_t, t) with the noise.", EQ14), rtol=1e-4, atol=1e-7)
    finally:
        if was_training:
            model.train()
    return f"{name(fn)} computes the loss of eq. 14 ({loss.item():.4f} on the check's batch)."


@exercise_check("ema_param", "param", "decay")
def check_ema_update(fn, seed=0):
    """Check ``fn(ema_param, param, decay) -> the new ema_param``: ema <- decay * ema + (1 - decay) * param.
    fn receives two float32 (5,) tensors and decay = 0.9; it returns a float32 (5,) tensor."""
    g = torch.Generator().manual_seed(seed)
    ema, param = torch.randn(5, generator=g), torch.randn(5, generator=g)
    d = 0.9
    result = expect_tensor(call(fn, ema, param, d), ema, "the new ema_param")
    expected = d * ema + (1 - d) * param
    if not torch.allclose(result, expected, atol=1e-6):
        keep = "An average that moves slowly keeps most of its old value (`decay` of it) and takes a little of the new."
        diagnose(result, expected, [
            ((1 - d) * ema + d * param, (
                "your average moves too fast: after one update it is already 90% of the way to the new "
                "parameters.", keep, EMA)),
            (param, ("your function returns the new parameters themselves: the average forgets its past.", keep, EMA)),
            (ema, ("your average never changes.", keep, EMA)),
            ((ema + param) / 2, ("your average moves half of the way at every update: too fast.", keep, EMA)),
            (d * ema + param, ("your average grows at every update: its two weights do not add up to 1.", keep, EMA)),
        ], ("your new ema_param differs from the EMA update by up to {worst:.3g}.", keep, EMA), atol=1e-6)
    return f"{name(fn)} is the EMA update."


def _sampling_mistakes(model, scheduler, shape, seed):
    """The final samples of classic wrong loops, each with its hints."""
    def loop(carry_x0=False, step_generator=True):
        generator = torch.Generator().manual_seed(seed)
        x = torch.randn(shape, generator=generator)
        for t in scheduler.timesteps:
            with torch.no_grad():
                out = scheduler.step(predict_noise(model, x, t), t, x, generator=generator if step_generator else None)
            x = out.pred_original_sample if carry_x0 else out.prev_sample
        return x

    loop_text = ("x = torch.randn(shape, generator=generator); for t in scheduler.timesteps: x = scheduler.step("
                 "model(x, t).sample, t, x, generator=generator).prev_sample")
    return [
        (loop(carry_x0=True), ("your loop carries the wrong tensor from one step to the next.",
                               "`.pred_original_sample` is only the model's current guess of x0; the chain "
                               "continues from the step's sample.", loop_text)),
        (loop(step_generator=False), ("the start is right, but the noise of each step is not reproducible.",
                                      "Pass generator=generator to scheduler.step too.", loop_text)),
    ], loop_text


@exercise_check("model", "scheduler", "shape", "generator")
def check_sampling_loop(fn, model=None, scheduler=None, num_inference_steps=10, seed=0):
    """Check ``fn(model, scheduler, shape, generator) -> samples`` against ``sampling.denoising_steps``.

    fn receives the model (``model(x, t).sample`` is eps_pred), a copy of ``scheduler`` on which
    ``set_timesteps(num_inference_steps)`` has been called, shape = (4, C, H, W) from the model's
    config, and a ``torch.Generator`` seeded with ``seed`` (for x_T and for every step's noise).
    It returns the final samples, float32 (4, C, H, W).
    """
    from .sampling import denoising_steps

    if model is None or not callable(model):
        raise NotYet("check_sampling_loop(my_sampling_loop, model, scheduler) needs the model; it got "
                     f"{type(model).__name__}.")
    scheduler = _default_scheduler(scheduler, "check_sampling_loop")
    shape = _image_shape(model, 4)

    def fresh():
        return type(scheduler).from_config(scheduler.config)

    *_, last = denoising_steps(model, fresh(), shape, num_inference_steps,
                               generator=torch.Generator().manual_seed(seed), progress=False)
    runs = []
    for _ in range(2):
        mine = fresh()
        mine.set_timesteps(num_inference_steps)
        runs.append(expect_tensor(call(fn, model, mine, shape, torch.Generator().manual_seed(seed)), last.x_t,
                                  "the samples"))
    result = runs[0]
    if not torch.equal(runs[0], runs[1]):
        raise NotYet("two runs with the same seed gave different samples: some random numbers do not come "
                     "from `generator`.", "Draw x_T with torch.randn(shape, generator=generator) and pass "
                     "generator=generator to every scheduler.step.")
    if not torch.allclose(result, last.x_t, atol=1e-4):
        mine = fresh()
        mine.set_timesteps(num_inference_steps)
        mistakes, loop_text = _sampling_mistakes(model, mine, shape, seed)
        diagnose(result, last.x_t, mistakes, (
            "your samples differ from the reference loop's by up to {worst:.3g}.",
            "Start from pure noise drawn with the generator; loop over scheduler.timesteps; at each t predict "
            "the noise and take one scheduler.step.", loop_text), atol=1e-4)
    return f"{name(fn)} gives the same samples as sampling.denoising_steps ({num_inference_steps} steps)."


def _ddim_mistakes(eps, t, prev_t, x_t, ac, final, clip):
    sq = torch.sqrt
    abar = ac[t]
    abar_prev = ac[prev_t] if prev_t >= 0 else final
    clamp = (lambda x: x.clamp(-clip, clip)) if clip else (lambda x: x)
    raw = (x_t - sq(1 - abar) * eps) / sq(abar)
    x0 = clamp(raw)

    def ddim(x0_, ap, noise_coef=None):
        return sq(ap) * x0_ + (sq(1 - ap) if noise_coef is None else noise_coef) * eps

    alpha = abar / abar_prev
    ddpm_mean = sq(abar_prev) * (1 - alpha) / (1 - abar) * x0 + sq(alpha) * (1 - abar_prev) / (1 - abar) * x_t
    prev = "The second line re-noises x0_pred to the level of the step you go *to*: alpha_bar_prev."
    out = [
        (ddim(x0, abar), ("your x_prev is (almost) x_t: the step goes nowhere.", prev, EQ12)),
        (ddim(x0, abar_prev, sq(1 - abar)), (
            "close: the x0_pred term is right, but the noise term of your x_prev is too large.",
            "Both terms of the second line use alpha_bar_prev.", EQ12)),
        (sq(abar) * x0 + sq(1 - abar_prev) * eps, (
            "close: the noise term is right, but the x0_pred term of your x_prev is too small.",
            "Both terms of the second line use alpha_bar_prev.", EQ12)),
        (abar_prev * x0 + (1 - abar_prev) * eps, (
            "both terms of your x_prev are too weak.", "alpha_bar_prev and 1 - alpha_bar_prev are variances: "
            "what multiplies x0_pred and eps_pred are their square roots.", EQ12)),
        (abar_prev * x0 + sq(1 - abar_prev) * eps, ("the x0_pred term of your x_prev is too weak.",
                                                    "Check the square roots of the second line.", EQ12)),
        (sq(abar_prev) * x0 + (1 - abar_prev) * eps, ("the noise term of your x_prev is too weak.",
                                                      "Check the square roots of the second line.", EQ12)),
        (ddim(raw, abar_prev), (
            "right where x0_pred lies inside [-1, 1], off where it lies outside.",
            "This scheduler clips x0_pred to [-1, 1] (clip_sample=True) before the second line.", EQ12)),
        (ddim(raw.clamp(-1, 1), abar_prev), (
            "right where x0_pred lies inside [-1, 1], off where it lies outside.",
            "This scheduler does not clip x0_pred (clip_sample=False).", EQ12)),
        (ddim(clamp((x_t - (1 - abar) * eps) / sq(abar)), abar_prev), (
            "your x0_pred is off.", "The first line takes away the noise part of x_t, coefficient included.", EQ12)),
        (ddim(clamp((x_t - sq(1 - abar) * eps) / abar), abar_prev), (
            "your x0_pred is off.", "The first line divides by exactly what multiplies x0 in eq. 4.", EQ12)),
        (ddim(x0, ac[t - 1]), (
            "your step is far too short: x_prev is barely less noisy than x_t.",
            "The step goes to prev_t (t minus T / num_inference_steps), not to t - 1.", EQ12)),
        (ddpm_mean, ("your x_prev mixes x0_pred with x_t; DDIM's mixes x0_pred with eps_pred.",
                     "That is DDPM's posterior mean (eq. 7) without its noise. DDIM's eq. 12 re-noises x0_pred "
                     "with the predicted noise itself.", EQ12)),
    ]
    if prev_t < 0:
        out.insert(0, (ddim(x0, ac[prev_t]), (
            f"right until the last step; there (prev_t = {prev_t}) your x_prev is still noisy.",
            f"alphas_cumprod[{prev_t}] is read by python from the *end* of the array. After the last step no "
            "noise is left: alpha_bar_prev = 1.", EQ12)))
    return out


@exercise_check("eps_pred", "t", "prev_t", "x_t", "alphas_cumprod")
def check_ddim_step(fn, scheduler=None, num_inference_steps=10, seed=0):
    """Check the learner's deterministic DDIM step, ``fn(eps_pred, t, prev_t, x_t, alphas_cumprod) -> x_prev``
    (Song et al. 2021, eq. 12 with eta = 0), against ``DDIMScheduler.step(..., eta=0)``:

        x0_pred = (x_t - sqrt(1 - alpha_bar_t) eps_pred) / sqrt(alpha_bar_t)      # clipped to [-1, 1] if clip_sample
        x_prev  = sqrt(alpha_bar_prev) x0_pred + sqrt(1 - alpha_bar_prev) eps_pred

    with alpha_bar_t = alphas_cumprod[t] and alpha_bar_prev = alphas_cumprod[prev_t], or 1 when prev_t < 0
    (after the last step; set_alpha_to_one=True, the default). No noise is added.

    fn receives eps_pred and x_t, float32 (4, 1, 8, 8); t and prev_t, python ints: pairs of
    successive timesteps of ``set_timesteps(num_inference_steps)``, prev_t = t - T // num_inference_steps
    (for T = 1000 and 10 steps: (900, 800), (500, 400), (0, -100)); alphas_cumprod, the scheduler's
    float32 (T,) tensor. It returns x_prev, float32 (4, 1, 8, 8). The reference is
    DDIMScheduler.from_config(scheduler.config) (default: DDIMScheduler(beta_schedule="squaredcos_cap_v2"),
    which clips x0_pred: clip_sample=True); a DDPMScheduler's config works too.
    """
    from .scheduler import DDIMScheduler

    scheduler = _default_scheduler(scheduler, "check_ddim_step", "DDIMScheduler")
    reference = DDIMScheduler.from_config(scheduler.config)
    reference.set_timesteps(num_inference_steps)
    ac, cfg = reference.alphas_cumprod, reference.config
    gap = reference.num_train_timesteps // num_inference_steps
    timesteps = reference.timesteps.tolist()
    pairs = [(t, t - gap) for t in dict.fromkeys((timesteps[0], timesteps[len(timesteps) // 2], timesteps[-1]))]
    g = torch.Generator().manual_seed(seed)
    for t, prev_t in pairs:
        x_t, eps = torch.randn((4, 1, 8, 8), generator=g), torch.randn((4, 1, 8, 8), generator=g)
        result = expect_tensor(call(fn, eps, t, prev_t, x_t, ac), x_t, "x_prev")
        again = call(fn, eps, t, prev_t, x_t, ac)
        if isinstance(again, torch.Tensor) and again.shape == result.shape and not torch.equal(again, result):
            raise NotYet("two calls with the same inputs gave different x_prev: your step adds random noise.",
                         "DDIM with eta = 0 is deterministic: eq. 12's third term, the random noise, is 0.", EQ12)
        expected = reference.step(eps, t, x_t, eta=0.0).prev_sample
        if not torch.allclose(result, expected, rtol=1e-4, atol=1e-4):
            clip = cfg.clip_sample_range if cfg.clip_sample else None
            diagnose(result, expected, _ddim_mistakes(eps, t, prev_t, x_t, ac, reference.final_alpha_cumprod, clip), (
                f"at t = {t} -> {prev_t} your x_prev differs from DDIMScheduler.step (eta = 0) by up to {{worst:.3g}}.",
                "Two lines: x0_pred from x_t and eps_pred (as in eq. 15), clipped if the scheduler clips; then "
                "re-noise x0_pred to the level alpha_bar_prev, with eps_pred as the noise.", EQ12),
                rtol=1e-4, atol=1e-4)
    return f"{name(fn)} takes DDIMScheduler's step (eta = 0) at t = " + ", ".join(f"{t} -> {p}" for t, p in pairs) + "."
