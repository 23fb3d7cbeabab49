"""Generation: start from pure noise x_T and remove a little of it at every step.

The sampling loop is written as a generator that yields every state of the reverse process,
so a plot or a slider simply collects the steps; no callbacks. With ``DDPMScheduler`` it is
ancestral sampling (Ho et al. 2020, Algorithm 2); with ``DDIMScheduler`` it is DDIM
(Song et al. 2021, eq. 12), deterministic when ``eta=0``.

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


def _model_device(model):
    """The device of the model's parameters, or None for a plain function or a parameterless module."""
    if isinstance(model, torch.nn.Module):
        param = next(model.parameters(), None)
        return None if param is None else param.device
    return None


def _predict_noise(model, x_t, t, mixed_precision, device):
    """eps_pred = model(x_t, t) as float32, without gradients; accepts diffusers' models too."""
    with torch.no_grad(), (autocast_context(device) if mixed_precision else nullcontext()):
        eps_pred = model(x_t, t)
    eps_pred = getattr(eps_pred, "sample", eps_pred)  # diffusers' UNet2DModel returns an output object
    return eps_pred.to(x_t.dtype)


def denoising_steps(model, scheduler, shape, num_inference_steps=None, generator=None, device=None, eta=None,
                    progress=True, mixed_precision=False):
    """Run the reverse process from x_T ~ N(0, I) and yield a ``SampleStep`` for every state.

    model: ``model(x_t, t) -> eps_pred`` (our ``UNet``, a diffusers ``UNet2DModel`` or any function).
    scheduler: a ``DDPMScheduler`` or ``DDIMScheduler`` (ours or diffusers'), or our
        ``DPMSolverMultistepScheduler``; its timesteps are set here, so use one scheduler per
        running loop.
    shape: (B, C, H, W) of the samples. num_inference_steps: None means all T training steps.
    generator: a ``torch.Generator`` for x_T and every step's noise; same seed, same samples.
    device: where to sample; defaults to the model's device. eta: DDIM only (default 0.0).
    mixed_precision: run the model under ``unet.autocast_context`` (bf16 where it is fast).
        Off by default: fp32 sampling gives the same samples on every machine.

    Arguments are checked when called; the loop itself runs as you iterate. The model is put
    in eval mode while the loop runs and back in training mode afterwards if it was.
    """
    model_device = _model_device(model)
    device = torch.device(device) if device is not None else (model_device or torch.device("cpu"))
    if model_device is not None and model_device.type != device.type:
        raise ValueError(f"The model is on {model_device} but device={device}; move it first with "
                         f"model.to('{device}') or leave device=None.")
    step_kwargs = {}
    if "eta" in inspect.signature(scheduler.step).parameters:
        step_kwargs["eta"] = 0.0 if eta is None else eta
    elif eta is not None:
        raise ValueError(f"eta={eta} only applies to DDIMScheduler; {type(scheduler).__name__} draws its noise "
                         "from variance_type. Drop eta, or sample with DDIMScheduler.from_config(scheduler.config).")
    if num_inference_steps is None:
        num_inference_steps = scheduler.config.num_train_timesteps
    scheduler.set_timesteps(num_inference_steps)
    return _run(model, scheduler, tuple(shape), generator, device, step_kwargs, progress, mixed_precision)


def _run(model, scheduler, shape, generator, device, step_kwargs, progress, mixed_precision):
    was_training = isinstance(model, torch.nn.Module) and model.training
    if isinstance(model, torch.nn.Module):
        model.eval()
    try:
        # x_T ~ N(0, I), drawn on the generator's device so a seed gives the same noise everywhere
        draw_device = generator.device if generator is not None else device
        x_t = torch.randn(shape, generator=generator, device=draw_device).to(device) * scheduler.init_noise_sigma
        for t in tqdm(scheduler.timesteps, desc="sampling", disable=not progress):
            eps_pred = _predict_noise(model, x_t, t, mixed_precision, device)
            # Ho et al. 2020, Algorithm 2, line 4 (DDPM), Song et al. 2021, eq. (12) (DDIM), or DPM-Solver++
            out = scheduler.step(eps_pred, t, x_t, generator=generator, **step_kwargs)
            yield SampleStep(t=int(t), x_t=x_t, pred_x0=out.pred_original_sample)
            x_t = out.prev_sample
        yield SampleStep(t=-1, x_t=x_t, pred_x0=x_t)
    finally:
        if was_training:
            model.train()


def sample(model, scheduler, num_images, num_inference_steps=50, generator=None, device=None, progress=True,
           eta=None, mixed_precision=False, batch_size=64):
    """Generate ``num_images`` images (N, C, H, W) in [-1, 1] (with the scheduler's clip_sample=True).

    The shape comes from ``model.config`` (``in_channels``, ``image_size``); the rest is as in
    ``denoising_steps``, which this runs to the end, ``batch_size`` images at a time: on a CPU,
    batches of 64 run 2-3x faster per image than one batch of 512, which spills out of the caches.
    The batches draw from ``generator`` one after another, so a seed still fixes every image.
    Show them with ``plotting.show_images``.
    """
    for name, value in (("num_images", num_images), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"{name}={value!r} must be a positive int, e.g. 16.")
    config = getattr(model, "config", None)
    if config is None or not hasattr(config, "in_channels"):
        raise TypeError("sample() reads the image shape from model.config (in_channels, image_size); for a model "
                        "without one, iterate denoising_steps(model, scheduler, shape=(N, C, H, W)).")
    size = getattr(config, "image_size", None) or config.sample_size  # ours, or diffusers' name
    batches, one_batch = [], num_images <= batch_size
    # one bar: over the steps for a single batch, over the images for several
    with tqdm(total=num_images, desc="images", disable=not progress or one_batch) as bar:
        for start in range(0, num_images, batch_size):
            shape = (min(batch_size, num_images - start), config.in_channels, size, size)
            for step in denoising_steps(model, scheduler, shape, num_inference_steps, generator, device, eta,
                                        progress and one_batch, mixed_precision):
                pass
            batches.append(step.x_t)
            bar.update(len(step.x_t))
    return torch.cat(batches)
