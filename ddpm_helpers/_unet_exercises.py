"""The UNet exercises of lesson 3: the down/up path and a predicted shape (the residual block's
check lives in ``_block_exercises``).

Imported into ``ddpm_helpers.exercises``; use them from there. Like every check they print a first
hint, return True or False and never raise (see ``ddpm_helpers._feedback``).

    check_unet_forward(my_unet_forward, model) a function (model, sample, timestep) -> eps_pred that runs
                                               the model's parts by hand, against model(sample, timestep)
                                               (the same weights, so the outputs must agree)
    check_bottom_shape(my_shape, model)        a predicted shape (B, C, H, W) after the middle block
"""

import re

import torch
import torch.nn.functional as F

from ._feedback import Feedback, NotYet, _error_hints, _learner_line, exercise_check, expect_tensor, name, report

PATH = ("emb = model.time_embedding(t); h = model.conv_in(sample); skips = [h]; down: for each block, for each "
        "resnet h = resnet(h, emb) and skips.append(h), then if block.downsample: h = block.downsample(h) and "
        "skips.append(h); h = model.mid_block(h, emb); up: for each block, for each resnet h = resnet(torch.cat("
        "[h, skips.pop()], dim=1), emb), then if block.upsample: h = block.upsample(h); eps_pred = "
        "model.conv_out(F.silu(model.conv_norm_out(h)))")


# --- the down/up path -----------------------------------------------------------------------


def unet_forward(model, sample, t, cat_skip_first=False, final_norm=True, final_act=True, mid=True):
    """The UNet's forward pass spelled out, block by block; the reference of ``check_unet_forward``.
    The flags make the classic wrong versions: skips joined before h, no final norm or SiLU, no middle."""
    emb = model.time_embedding(t)  # (B, time_dim)
    h = model.conv_in(sample)  # (B, C0, H, W)
    skips = [h]
    for block in model.down_blocks:
        for i, resnet in enumerate(block.resnets):
            h = resnet(h, emb)
            if block.attentions is not None:
                h = block.attentions[i](h)
            skips.append(h)
        if block.downsample is not None:
            h = block.downsample(h)  # (B, C, H/2, W/2)
            skips.append(h)
    if mid:
        h = model.mid_block(h, emb)
    for block in model.up_blocks:
        for i, resnet in enumerate(block.resnets):
            skip = skips.pop()  # the last skip saved is the first one used: a stack
            h = resnet(torch.cat([skip, h] if cat_skip_first else [h, skip], dim=1), emb)
            if block.attentions is not None:
                h = block.attentions[i](h)
        if block.upsample is not None:
            h = block.upsample(h)  # (B, C, 2H, 2W)
    h = model.conv_norm_out(h) if final_norm else h
    return model.conv_out(F.silu(h) if final_act else h)


def _path_error_hints(error):
    message = str(error).split("\n")[0]
    first = f"your function raised {type(error).__name__}: {message}{_learner_line(error)}."
    sizes = re.search(r"Expected size (\d+) but got size (\d+)", message)
    if "Sizes of tensors must match" in message and sizes:
        return (f"an up block tried to join h with a skip of another resolution ({sizes.group(1)} x "
                f"{sizes.group(1)} and {sizes.group(2)} x {sizes.group(2)} pixels): {first}",
                "Each up block needs a skip of its own resolution. The skips form a stack: the last one saved "
                "on the way down is the first one used on the way up; the down path saves conv_in's output, every "
                "ResidualBlock's and every Downsample's; and each up level upsamples only after its "
                "ResidualBlocks.", PATH)
    if "pop from empty list" in message or "list index out of range" in message:
        return (f"your up path ran out of skips: {first}",
                "The up path uses one skip per ResidualBlock: one more per level than the down path has "
                "ResidualBlocks. Save conv_in's output, every ResidualBlock's output and every Downsample's "
                "output.", PATH)
    if "number of channels in input" in message or re.search(r"expected input\[.*\] to have \d+ channels", message):
        return (f"a layer got another number of channels than it was built for: {first}",
                "On the way up, each ResidualBlock takes h and its skip side by side, concatenated along the "
                "channel axis (dim=1).", PATH)
    if "missing 1 required positional argument" in message:
        return (first, "Every ResidualBlock (and the middle block) takes the time embedding too: resnet(h, emb).",
                PATH)
    if "'NoneType' object is not callable" in message:
        return (first, "The lowest level has no Downsample and the top level no Upsample (they are None there): "
                       "check `if block.downsample is not None` first.", PATH)
    return _error_hints(error)


def _run_path(fn, model, sample, t):
    try:
        with torch.no_grad():
            out = fn(model, sample.clone(), t.clone())
    except Exception as error:  # noqa: BLE001
        raise NotYet(*_path_error_hints(error)) from None
    if hasattr(out, "sample") and not isinstance(out, torch.Tensor):
        raise NotYet("your function returned the model's output object: return the tensor eps_pred itself.")
    return out


def _default_model(seed):
    from .unet import UNet

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return UNet().eval()


@exercise_check("model", "sample", "timestep")
def check_unet_forward(fn, model=None, seed=0):
    """Check the learner's forward pass, ``fn(model, sample, timestep) -> eps_pred``, which runs the
    model's parts by hand (time_embedding, conv_in, down_blocks, mid_block, up_blocks with the skips,
    conv_norm_out, conv_out), against ``model(sample, timestep).sample``: the same weights, so the
    outputs must agree to float precision.

    fn receives model (default: the course's default UNet with seeded weights), sample float32
    (2, C, H, W) from the model's config, and timestep an int64 (2,) tensor. It returns eps_pred,
    float32 like sample. The model is put in eval mode for the check, then back.
    """
    model = _default_model(seed) if model is None else model
    cfg = getattr(model, "config", None)
    if not hasattr(model, "down_blocks") or cfg is None:
        raise NotYet("check_unet_forward(my_unet_forward, model) needs the course's UNet as model; it got "
                     f"{type(model).__name__}.")
    g = torch.Generator().manual_seed(seed)
    size = cfg.sample_size or 32
    sample = torch.randn(2, cfg.in_channels, size, size, generator=g)
    T = cfg.num_train_timesteps
    t = torch.tensor([T // 10, 3 * T // 4])
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            expected = model(sample, t).sample
        result = expect_tensor(_run_path(fn, model, sample, t), expected, "eps_pred")
        if not torch.allclose(result, expected, rtol=1e-4, atol=1e-5):
            with torch.no_grad():
                other = _run_path(fn, model, sample, T - 1 - t)
                if torch.allclose(other, result, atol=1e-6):
                    raise NotYet("your eps_pred does not change with the timestep.",
                                 "Compute emb = model.time_embedding(timestep) and give it to every ResidualBlock "
                                 "and to the middle block.", PATH)
                mistakes = [
                    (dict(cat_skip_first=True), (
                        "close: the shapes all fit, but the up blocks see their inputs in another order.",
                        "torch.cat([h, skip], dim=1): h first, then the skip, as the weights were trained.", PATH)),
                    (dict(final_norm=False), (
                        "close: everything is right up to the very end of the network.",
                        "Before conv_out comes a GroupNorm (model.conv_norm_out) and a SiLU.", PATH)),
                    (dict(final_act=False), (
                        "close: everything is right up to the very end of the network.",
                        "Between model.conv_norm_out and model.conv_out comes a SiLU.", PATH)),
                    (dict(mid=False), (
                        "the shapes all fit, but one stage of the U is missing.",
                        "At the lowest resolution, between the down path and the up path, runs model.mid_block(h, "
                        "emb).", PATH)),
                ]
                for flags, hints in mistakes:
                    if torch.allclose(result, unet_forward(model, sample, t, **flags), rtol=1e-4, atol=1e-5):
                        raise NotYet(*hints)
            worst = (result - expected).abs().max().item()
            raise NotYet(f"your eps_pred differs from model(sample, t).sample by up to {worst:.3g}.",
                         "Compare stage by stage: print h.shape after each block of your function and compare with "
                         "unet.trace_shapes(model, sample, t).", PATH)
    finally:
        if was_training:
            model.train()
    return f"{name(fn)} computes model(sample, t).sample: down, middle and up, with every skip in its place."


# --- predicting a shape -----------------------------------------------------------------------


def check_bottom_shape(answer, model, batch_size=2):
    """Check a predicted shape (B, C, H, W) of ``model``'s activations after its middle block, for a
    batch of ``batch_size`` images of the model's config size. Prints "Correct!" or a first hint
    (``show_hint()`` for more); returns True or False and never raises."""
    from .unet import trace_shapes

    try:
        cfg = getattr(model, "config", None)
        if cfg is None or not hasattr(cfg, "block_out_channels"):
            raise NotYet(f"check_bottom_shape(my_bottom_shape, model) needs the course's UNet as its second "
                         f"argument; it got {type(model).__name__}.")
        size = cfg.sample_size or 32
        x = torch.zeros(batch_size, cfg.in_channels, size, size)
        shape = dict(trace_shapes(model, x, 0))["mid_block.resnets.1"]  # the middle block's output
        if isinstance(answer, torch.Size):
            answer = tuple(answer)
        if not (isinstance(answer, (tuple, list)) and len(answer) == 4
                and all(isinstance(n, int) and not isinstance(n, bool) for n in answer)):
            raise NotYet(f"write the shape as four whole numbers (B, C, H, W), e.g. (2, 32, 64, 64); got {answer!r}.")
        if tuple(answer) == shape:
            return report(Feedback(True), f"{tuple(answer)} is the shape after the middle block.")
        widths, levels = cfg.block_out_channels, len(cfg.block_out_channels)
        chain = " -> ".join(str(size // 2 ** k) for k in range(levels))
        formula = (f"{levels} levels halve H and W {levels - 1} times: {chain}; the channels at the bottom are the "
                   f"lowest level's width, block_out_channels[-1] = {widths[-1]}; B = {batch_size} images.")
        B, C, H, W = answer
        if B != shape[0]:
            raise NotYet(f"{tuple(answer)} is not it: B is the number of images in the batch, {batch_size} here.",
                         "The network never changes the batch size.", formula)
        if C != shape[1]:
            raise NotYet(f"{tuple(answer)} is not it: the number of channels C is not right.",
                         f"The image's {cfg.in_channels} channels only reach conv_in; after it, each level has the "
                         "width of block_out_channels. Which level is the bottom?", formula)
        raise NotYet(f"{tuple(answer)} is not it: B and C are right; H and W are not.",
                     "How many times does the down path halve the image? Count the Downsample boxes in the "
                     "diagram of section 3.", formula)
    except NotYet as not_yet:
        return report(Feedback(False, not_yet.hints))
    except Exception as error:  # noqa: BLE001 - a check never raises
        return report(Feedback(False, (f"the check itself could not run: {type(error).__name__}: {error}.",)))
