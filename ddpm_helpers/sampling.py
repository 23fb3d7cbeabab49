"""Generation: start from pure noise x_T and remove a little of it at every step.

The sampling loop is written as a generator that yields every state of the reverse process,
so a plot or a slider simply collects the steps; no callbacks. With ``DDPMScheduler`` it is
ancestral sampling (Ho et al. 2020, Algorithm 2); with ``DDIMScheduler`` it is DDIM
(Song et al. 2021, eq. 12), deterministic when ``eta=0``; with ``DPMSolverMultistepScheduler``
it is DPM-Solver++ (Lu et al. 2022).

A class-conditional model (``model.config.num_class_embeds = K + 1``, label K meaning "no
label") samples the digits asked for in ``class_labels``; with ``guidance_scale`` w it follows
them more or less closely, by classifier-free guidance (Ho & Salimans 2022, arXiv 2207.12598).

Timesteps are 0-indexed like diffusers (t = 0 is the least noisy step). Each yielded
``SampleStep`` is one state: the sample ``x_t`` at noise level ``t`` and the model's guess of
the clean image made from it. The first state is the pure noise x_T; the last one (``t = -1``)
is the finished sample, after the final step, which adds no noise.
"""

import inspect
from contextlib import nullcontext
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from . import _checks
from .scheduler import check_generator, randn_tensor
from .unet import autocast_context


@dataclass
class SampleStep:
    """One state of the reverse process, as yielded by ``denoising_steps``.

    With n inference steps, n + 1 states are yielded: states 0..n-1 are the samples the model
    sees, at t = scheduler.timesteps[0], ..., scheduler.timesteps[-1]; state n is the result.
    """

    t: int  # noise level of x_t: a timestep from scheduler.timesteps, or -1 for the finished sample
    x_t: torch.Tensor  # the sample at t, (B, C, H, W); state 0 is the pure noise x_T
    pred_x0: torch.Tensor  # x_0 predicted from x_t (scheduler's pred_original_sample); x_t itself at t = -1


def default_num_inference_steps(scheduler):
    """What ``num_inference_steps=None`` means: each sampler's usual number of steps.

    DDPM: all T training steps (diffusers' DDPMPipeline); DDIM: 50 (DDIMPipeline's default);
    DPM-Solver++: 20, what it is made for. The same for diffusers' schedulers of these names;
    never more than the scheduler allows. Any other scheduler needs an explicit number.
    """
    T = scheduler.config.num_train_timesteps
    usual = {"DDPMScheduler": T, "DDIMScheduler": min(50, T), "DPMSolverMultistepScheduler": min(20, T - 1)}
    name = type(scheduler).__name__
    if name not in usual:
        raise ValueError(f"num_inference_steps=None has no default for {name}; pass a number of steps.")
    return usual[name]


def _model_device(model):
    """The device of the model's parameters, or None for a plain function or a parameterless module."""
    if isinstance(model, torch.nn.Module):
        param = next(model.parameters(), None)
        return None if param is None else param.device
    return None


def _check_model(model):
    if isinstance(model, tuple):  # model = load_pretrained(), the easy slip
        raise TypeError("model is a tuple; load_pretrained() returns (model, scheduler_config): write "
                        "model, scheduler_config = load_pretrained()")
    if not callable(model):
        raise TypeError(f"model must be callable as model(x_t, t), got {type(model).__name__}.")


def _check_scheduler(scheduler):
    if not all(hasattr(scheduler, name) for name in ("set_timesteps", "step", "timesteps")):
        raise TypeError(f"scheduler must be a scheduler object, got {scheduler!r} ({type(scheduler).__name__}); "
                        "pass e.g. DDIMScheduler.from_config(scheduler_config) or DDPMScheduler(), not a name.")


def _check_labels(model, class_labels, guidance_scale, batch_size):
    """(labels as a (batch_size,) long tensor or None for an unconditional model, the null label, w).

    A conditional model has ``model.config.num_class_embeds = K + 1``: labels 0..K-1 are classes,
    K is "no label". ``class_labels=None`` on it samples unconditionally (every label K).
    """
    num_class_embeds = getattr(getattr(model, "config", None), "num_class_embeds", None)
    w = None if guidance_scale is None else _checks.real(
        guidance_scale, "guidance_scale", low=0, hint="0 is unconditional, 1 plain conditional, 2-5 typical")
    if class_labels is None and w is not None:
        raise ValueError(f"guidance_scale={guidance_scale} needs class_labels, the digits to draw: e.g. "
                         "class_labels=7 or class_labels=torch.arange(10).")
    if num_class_embeds is None:
        if class_labels is not None:
            raise ValueError("class_labels were given, but the model is unconditional (model.config.num_class_embeds "
                             "is None); sample it without class_labels, or use a class-conditional model.")
        return None, None, None
    null = _checks.integer(num_class_embeds, "model.config.num_class_embeds", low=2) - 1
    if class_labels is None:
        return torch.full((batch_size,), null), null, None
    allowed = f"labels 0..{null - 1} are classes and {null} means 'no label'"
    if isinstance(class_labels, torch.Tensor) and class_labels.ndim > 0:
        if class_labels.is_floating_point() or class_labels.is_complex() or class_labels.dtype == torch.bool:
            raise TypeError(f"class_labels must hold integers ({allowed}), got dtype {class_labels.dtype}; "
                            "use .long().")
        if class_labels.shape != (batch_size,):
            raise ValueError(f"class_labels must be one int or a tensor of shape ({batch_size},), one label per "
                             f"image; got shape {tuple(class_labels.shape)}.")
        if not bool(((class_labels >= 0) & (class_labels <= null)).all()):
            raise ValueError(f"class_labels must be in [0, {null}] ({allowed}); got values from "
                             f"{class_labels.min().item()} to {class_labels.max().item()}.")
        return class_labels.long(), null, w
    label = _checks.integer(class_labels, "class_labels", 0, null,
                            hint=f"give one int or a ({batch_size},) tensor of ints; {allowed}")
    return torch.full((batch_size,), label), null, w


def _predict_noise(model, x_t, t, labels, null, w, mixed_precision, device):
    """eps_pred for x_t at t in x_t's dtype, without gradients; for our UNet, diffusers' models or any function.

    With labels and a guidance scale w, both predictions of Ho & Salimans 2022 come from one batched
    forward pass, and eps_pred = eps(x_t, null) + w (eps(x_t, y) - eps(x_t, null)).
    """
    with torch.no_grad(), (autocast_context(device) if mixed_precision else nullcontext()):
        if labels is None:
            eps_pred = model(x_t, t)
            eps_pred = getattr(eps_pred, "sample", eps_pred)  # diffusers' UNet2DModel returns an output object
        elif w is None:
            eps_pred = model(x_t, t, class_labels=labels, return_dict=False)[0]
        else:
            # (2B, ...): the batch twice, first with the null label, then with the labels asked for
            eps_both = model(torch.cat([x_t, x_t]), t, class_labels=torch.cat([torch.full_like(labels, null), labels]),
                             return_dict=False)[0]
            eps_null, eps_cond = eps_both.float().chunk(2)  # each (B, ...)
            eps_pred = guided_noise(eps_null, eps_cond, w)
    return eps_pred.to(x_t.dtype)


def guided_noise(eps_uncond, eps_cond, w):
    """Classifier-free guidance: the unconditional guess, moved w times as far as the label moves it."""
    # Ho & Salimans 2022, eq. (6) with our w = their w + 1 (diffusers' guidance_scale)
    return eps_uncond + w * (eps_cond - eps_uncond)


def denoising_steps(model, scheduler, shape, num_inference_steps=None, generator=None, device=None, eta=None,
                    progress=True, mixed_precision=False, class_labels=None, guidance_scale=None):
    """Run the reverse process from x_T ~ N(0, I) and yield a ``SampleStep`` for every state.

    model: ``model(x_t, t) -> eps_pred`` (our ``UNet``, a diffusers ``UNet2DModel`` or any function);
        a class-conditional one is called ``model(x_t, t, class_labels=y, return_dict=False)[0]``.
    scheduler: a ``DDPMScheduler`` or ``DDIMScheduler`` (ours or diffusers'), or our
        ``DPMSolverMultistepScheduler``; its timesteps are set here, so use one scheduler per
        running loop.
    shape: (B, C, H, W) of the samples.
    num_inference_steps: None means the sampler's usual count (``default_num_inference_steps``:
        DDPM all T steps, DDIM 50, DPM-Solver++ 20).
    generator: a ``torch.Generator`` for x_T and every step's noise; same seed, same samples.
    device: where to sample; defaults to the model's device. eta: DDIM only (default 0.0).
    mixed_precision: run the model under ``unet.autocast_context`` (bf16 where it is fast).
        Off by default: fp32 sampling gives the same samples on every machine.
    class_labels: for a class-conditional model, the label of every sample: an int (all the same)
        or a (B,) tensor, in [0, K] with K = ``num_class_embeds - 1`` meaning "no label"; None
        samples it unconditionally. guidance_scale: w >= 0 for classifier-free guidance (needs
        class_labels): 0 is unconditional, 1 plain conditional, larger follows the labels more
        closely; None is plain conditional with one forward pass per step instead of two.

    Arguments are checked when called; the loop itself runs as you iterate. The model is put
    in eval mode while the loop runs and back in training mode afterwards if it was.
    """
    _check_model(model)
    _check_scheduler(scheduler)
    if not isinstance(shape, (tuple, list, torch.Size)) or len(shape) != 4:
        raise TypeError(f"shape must be (B, C, H, W), e.g. (16, 1, 32, 32); got {shape!r}.")
    shape = tuple(_checks.positive_int(n, f"shape={tuple(shape)!r}: every size", hint="e.g. (16, 1, 32, 32)")
                  for n in shape)
    device = _sampling_device(model, device)
    step_kwargs = {}
    if "eta" in inspect.signature(scheduler.step).parameters:
        step_kwargs["eta"] = 0.0 if eta is None else _checks.real(eta, "eta", 0, 1, hint="0 is deterministic DDIM")
    elif eta is not None:
        raise ValueError(f"eta={eta} only applies to DDIMScheduler; {type(scheduler).__name__} draws its noise "
                         "its own way. Drop eta, or sample with DDIMScheduler.from_config(scheduler.config).")
    labels, null, w = _check_labels(model, class_labels, guidance_scale, shape[0])
    check_generator(generator)
    if num_inference_steps is None:
        num_inference_steps = default_num_inference_steps(scheduler)
    scheduler.set_timesteps(_checks.positive_int(num_inference_steps, "num_inference_steps"))
    guidance = (None if labels is None else labels.to(device), null, w)
    return _run(model, scheduler, shape, generator, device, step_kwargs, progress, mixed_precision, guidance)


def _sampling_device(model, device):
    model_device = _model_device(model)
    try:
        device = torch.device(device) if device is not None else (model_device or torch.device("cpu"))
    except (RuntimeError, TypeError):
        raise ValueError(f"device={device!r} is not a device; use 'cpu', 'cuda' or 'mps', or leave it None.") from None
    if model_device is not None and model_device.type != device.type:
        raise ValueError(f"The model is on {model_device} but device={device}; move it first with "
                         f"model.to('{device}') or leave device=None.")
    return device


def _run(model, scheduler, shape, generator, device, step_kwargs, progress, mixed_precision, guidance):
    was_training = isinstance(model, torch.nn.Module) and model.training
    if isinstance(model, torch.nn.Module):
        model.eval()
    try:
        x_t = randn_tensor(shape, generator, device) * scheduler.init_noise_sigma  # x_T ~ N(0, I)
        for t in tqdm(scheduler.timesteps, desc="sampling", disable=not progress):
            eps_pred = _predict_noise(model, x_t, t, *guidance, mixed_precision, device)
            # Ho et al. 2020, Algorithm 2, line 4 (DDPM), Song et al. 2021, eq. (12) (DDIM), or DPM-Solver++
            out = scheduler.step(eps_pred, t, x_t, generator=generator, **step_kwargs)
            yield SampleStep(t=int(t), x_t=x_t, pred_x0=out.pred_original_sample)
            x_t = out.prev_sample
        yield SampleStep(t=-1, x_t=x_t, pred_x0=x_t)
    finally:
        if was_training:
            model.train()


def sample(model, scheduler, num_images, num_inference_steps=None, generator=None, device=None, progress=True,
           eta=None, mixed_precision=False, batch_size=64, class_labels=None, guidance_scale=None):
    """Generate ``num_images`` images (N, C, H, W) in [-1, 1] (with the scheduler's clip_sample=True).

    The shape comes from ``model.config`` (``in_channels`` and ``image_size`` or diffusers'
    ``sample_size``); the rest is as in ``denoising_steps``, which this runs to the end,
    ``batch_size`` images at a time: on a CPU, batches of 64 run 2-3x faster per image than one
    batch of 512, which spills out of the caches. The batches draw from ``generator`` one after
    another, so a seed still fixes every image. ``class_labels``: an int or an (N,) tensor.
    Show the images with ``plotting.show_images``.
    """
    num_images = _checks.positive_int(num_images, "num_images", hint="e.g. 16")
    batch_size = _checks.positive_int(batch_size, "batch_size", hint="e.g. 64")
    _check_scheduler(scheduler)
    _check_model(model)
    config = getattr(model, "config", None)
    if config is None or not hasattr(config, "in_channels"):
        raise TypeError("sample() reads the image shape from model.config (in_channels, image_size); for a model "
                        "without one, iterate denoising_steps(model, scheduler, shape=(N, C, H, W)).")
    size = getattr(config, "image_size", None) or config.sample_size  # ours, or diffusers' name
    labels, _, _ = _check_labels(model, class_labels, guidance_scale, num_images)
    batches, one_batch = [], num_images <= batch_size
    # one bar: over the steps for a single batch, over the images for several
    with tqdm(total=num_images, desc="images", disable=not progress or one_batch) as bar:
        for start in range(0, num_images, batch_size):
            shape = (min(batch_size, num_images - start), config.in_channels, size, size)
            batch_labels = None if class_labels is None else labels[start:start + shape[0]]
            for step in denoising_steps(model, scheduler, shape, num_inference_steps, generator, device, eta,
                                        progress and one_batch, mixed_precision, batch_labels, guidance_scale):
                pass
            batches.append(step.x_t)
            bar.update(len(step.x_t))
    return torch.cat(batches)
