"""The exercise checks of lesson 3: the residual block and the UNet's down/up path.

Imported into ``ddpm_helpers.exercises``; use them from there. Each check builds the package's
module, loads ITS weights into the learner's (by name, like ``load_state_dict``), runs both on
the same input and compares. Like every check it prints a first hint, returns True or False and
never raises (see ``ddpm_helpers._feedback``): a missing layer, a wrong shape, an error inside
the learner's code or a wrong order of operations each come back as a hint.

    check_residual_block(MyResidualBlock)      a class built as MyResidualBlock(in_ch, out_ch, time_dim,
                                               groups), forward(x, emb), against unet.ResidualBlock
    check_unet_forward(my_unet_forward, model) a function (model, sample, timestep) -> eps_pred that runs
                                               the model's parts by hand, against model(sample, timestep)
    check_bottom_shape(my_shape, model)        a predicted shape (B, C, H, W) after the middle block
"""

import inspect
import re

import torch
import torch.nn.functional as F

from ._feedback import Feedback, NotYet, _error_hints, _learner_line, exercise_check, expect_tensor, name, report

BLOCK = ("h = conv1(SiLU(norm1(x))) + time_emb_proj(SiLU(emb))[:, :, None, None]; "
         "h = conv2(dropout(SiLU(norm2(h)))); out = conv_shortcut(x) + h when in_ch != out_ch, x + h otherwise "
         "(diffusers' ResnetBlock2D)")
PATH = ("emb = model.time_embedding(t); h = model.conv_in(sample); skips = [h]; down: for each block, for each "
        "resnet h = resnet(h, emb) and skips.append(h), then if block.downsample: h = block.downsample(h) and "
        "skips.append(h); h = model.mid_block(h, emb); up: for each block, for each resnet h = resnet(torch.cat("
        "[h, skips.pop()], dim=1), emb), then if block.upsample: h = block.upsample(h); eps_pred = "
        "model.conv_out(F.silu(model.conv_norm_out(h)))")


# --- the residual block ---------------------------------------------------------------------


def _reference_block(in_ch, out_ch, time_dim, groups, seed):
    """The package's ResidualBlock with random weights, GroupNorm's scale and shift included (at their
    initial 1 and 0 a block that forgets them would still pass)."""
    from .unet import ResidualBlock

    g = torch.Generator().manual_seed(seed)
    block = ResidualBlock(in_ch, out_ch, time_dim, groups).eval()
    with torch.no_grad():
        for key, p in block.named_parameters():
            if key.startswith("norm"):
                p.copy_((1.0 if key.endswith("weight") else 0.0) + 0.3 * torch.randn(p.shape, generator=g))
            else:
                fan_in = p[0].numel() if p.ndim > 1 else 4
                p.copy_(torch.randn(p.shape, generator=g) / fan_in ** 0.5)
    return block


def _layer_list(block):
    return ", ".join(f"{key} {type(module).__name__}" for key, module in block.named_children()
                     if key != "dropout" and module is not None)


def _compare_weights(mine, ref, in_ch, out_ch):
    """Raise NotYet unless the learner's block has exactly the package block's parameters, by name and shape."""
    ours = {k: tuple(v.shape) for k, v in ref.state_dict().items()}
    theirs = {k: tuple(v.shape) for k, v in mine.state_dict().items()}
    layers = f"The package's block has: {_layer_list(ref)}."
    if ref.conv_shortcut is not None and not any(k.startswith("conv_shortcut.") for k in theirs):
        raise NotYet(f"your block has no layer for the shortcut, but here the channels change ({in_ch} -> {out_ch}): "
                     "the input x cannot be added to h as it is.",
                     "When in_ch != out_ch, x goes through a 1x1 convolution on its way to the sum; the package "
                     f"calls it conv_shortcut, Conv2d({in_ch}, {out_ch}, kernel_size=1).", BLOCK)
    if ref.conv_shortcut is None and any(k.startswith("conv_shortcut.") for k in theirs):
        raise NotYet(f"your block has a conv_shortcut although its channels do not change ({in_ch} -> {out_ch}).",
                     "With in_ch == out_ch the input is added back as it is; build conv_shortcut only when "
                     "in_ch != out_ch (and set it to None otherwise).", BLOCK)
    for key in ("norm1.weight", "norm2.weight"):
        if key in theirs and key in ours and theirs[key] != ours[key]:
            other = out_ch if key == "norm1.weight" else in_ch
            sees = "the block's input x" if key == "norm1.weight" else "h, the output of conv1"
            raise NotYet(f"your {key[:5]} normalises {theirs[key][0]} channels where the package's normalises "
                         f"{ours[key][0]}: it sits at another place in the block.",
                         f"Each GroupNorm comes *before* its convolution: {key[:5]} normalises {sees}"
                         + (f" ({ours[key][0]} channels, not {other})." if other != ours[key][0] else "."), BLOCK)
    missing = [k for k in ours if k not in theirs]
    unexpected = [k for k in theirs if k not in ours]
    if missing:
        layer = missing[0].rsplit(".", 1)[0]
        raise NotYet(f"the check loads the package block's weights into yours by name, and your block has no "
                     f"{missing[0]!r} (no layer called {layer}). {layers}",
                     "Give your layers the package's names (they are diffusers' names too), in __init__: "
                     "self.norm1 = nn.GroupNorm(groups, in_ch), self.conv1 = ..., and so on.", BLOCK)
    if unexpected:
        raise NotYet(f"your block has a parameter {unexpected[0]!r} that the package's block does not have. {layers}",
                     "The block needs exactly these layers; remove or rename the extra one.", BLOCK)
    for key, shape in ours.items():
        if theirs[key] != shape:
            raise NotYet(f"your {key} has shape {theirs[key]} where the package's has {shape}.",
                         f"Check the arguments of that layer: in_ch = {in_ch}, out_ch = {out_ch}.", BLOCK)


def _block_error_hints(error):
    """Hints for an error raised inside the learner's block, in the block's own terms."""
    message = str(error).split("\n")[0]
    first = f"your block raised {type(error).__name__}: {message}{_learner_line(error)}."
    size = re.search(r"size of tensor a \((\d+)\) must match the size of tensor b \((\d+)\) at non-singleton "
                     r"dimension (\d)", message)
    if size and size.group(3) == "1":
        return (first, "Two tensors with different channel counts are added. When the channels change, x "
                       "reaches the sum through conv_shortcut; is it used?", BLOCK)
    if size and size.group(3) in ("2", "3"):
        return (first, "time_emb_proj gives one number per channel, shape (B, out_ch); broadcasting lines shapes "
                       "up from the right, so it must become (B, out_ch, 1, 1) to be added to every pixel.", BLOCK)
    if "number of channels in input" in message or re.search(r"expected input\[.*\] to have \d+ channels", message):
        return (first, "A layer got a tensor with another channel count than it was built for: check the order "
                       "norm -> SiLU -> conv in each branch, and which tensor each layer receives.", BLOCK)
    if "mat1 and mat2" in message:
        return (first, "time_emb_proj is a Linear layer for the time embedding emb (B, time_dim), not for the "
                       "image.", BLOCK)
    return _error_hints(error)


def _run_block(block, x, emb):
    try:
        with torch.no_grad():
            return block(x.clone(), emb.clone())
    except Exception as error:  # noqa: BLE001 - a learner's error is a hint, never a crash
        raise NotYet(*_block_error_hints(error)) from None


def _block_mistakes(b, x, emb):
    """The outputs of classic wrong blocks (the package block's weights, the wrong order), with their hints."""
    s = F.silu
    x_short = x if b.conv_shortcut is None else b.conv_shortcut(x)
    temb = b.time_emb_proj(s(emb))[:, :, None, None]
    h1 = b.conv1(s(b.norm1(x)))

    def tail(h):
        return b.conv2(s(b.norm2(h)))

    middle = "The embedding is added between the two convolutions, so that conv2 mixes it with the image."
    order = "Each branch runs GroupNorm, then SiLU, then the convolution (the 'pre-activation' order)."
    mistakes = [
        (x_short + tail(h1) + temb, (
            "your block reacts to the time embedding, but only by shifting each output channel by one number, "
            "the same at every pixel: in the package's block the embedding changes the picture itself.",
            "Where does the embedding enter your block? " + middle, BLOCK)),
        (x_short + tail(h1 + b.time_emb_proj(emb)[:, :, None, None]), (
            "with a zero time embedding your block gives the package's output; with a real one it does not: "
            "the embedding takes another path in your block.",
            "Follow emb from the argument to time_emb_proj: the package passes it through a SiLU first.", BLOCK)),
        (x_short + tail(h1), (
            "your block's output does not change when the time embedding changes: the timestep would never "
            "reach the network.", "Add time_emb_proj(SiLU(emb)), one number per channel, to h. " + middle, BLOCK)),
        (tail(h1 + temb), (
            "when its second convolution outputs nothing, your block outputs nothing either; the package's block "
            "still passes its input on.",
            "A residual block adds its input back at the end: out = shortcut(x) + h.", BLOCK)),
        (x_short + b.conv2(F.relu(b.norm2(b.conv1(F.relu(b.norm1(x))) + temb))), (
            "close: the layers and their order are right, but negative values go through your block differently.",
            "The activation is SiLU, x * sigmoid(x) (F.silu), which lets small negative values through; ReLU "
            "cuts them to 0.", BLOCK)),
        (x_short + b.conv2(b.norm2(s(b.conv1(b.norm1(s(x))) + temb))), (
            "close: your block has the right layers, but in another order inside each branch.", order, BLOCK)),
        (x_short + tail(b.conv1(b.norm1(x)) + temb), ("close: one activation is missing.", order, BLOCK)),
        (x_short + b.conv2(b.norm2(h1 + temb)), ("close: one activation is missing.", order, BLOCK)),
        (x_short + tail(h1 * temb), (
            "the time embedding reaches your block, but not the way it does in the package's.",
            "It is *added* to h, one number per channel, not multiplied.", BLOCK)),
    ]
    if b.conv_shortcut is None:  # in_ch == out_ch: wrong orders that run without a shape error
        mistakes += [
            (x + s(b.norm2(b.conv2(s(b.norm1(b.conv1(x))) + temb))), (
                "close: your block has the right layers, but the GroupNorms sit at other places.",
                "Each GroupNorm comes *before* its convolution: norm1 sees the block's input x. " + order, BLOCK)),
            (x + tail(b.conv1(s(b.norm1(x + temb)))), (
                "your block reacts to the time embedding, but it enters at another place than in the package's.",
                middle, BLOCK)),
        ]
    return mistakes


def _diagnose_block(mine, ref, x, emb):
    expected = ref(x, emb)
    result = expect_tensor(_run_block(mine, x, emb), expected, "the block's output")
    if torch.allclose(result, expected, rtol=1e-4, atol=1e-5):
        return
    with torch.no_grad():
        for wrong, hints in _block_mistakes(ref, x, emb):
            if torch.allclose(result, wrong, rtol=1e-4, atol=1e-5):
                raise NotYet(*hints)
        other = torch.roll(emb, 1, dims=0) + 0.5  # another time embedding for each image
        changed = _run_block(mine, x, other) - result
        if torch.allclose(changed, torch.zeros_like(changed), atol=1e-6):
            raise NotYet("your block's output does not change when the time embedding changes: the timestep would "
                         "never reach the network.", "Add time_emb_proj(SiLU(emb)) to h between the convolutions.",
                         BLOCK)
        if torch.allclose(changed, changed.mean(dim=(2, 3), keepdim=True), atol=1e-5):
            raise NotYet("your block reacts to the time embedding, but only by shifting each output channel by one "
                         "number, the same at every pixel: in the package's block the embedding changes the "
                         "picture itself.", "Where does the embedding enter your block? It is added between the "
                         "two convolutions, so that conv2 mixes it with the image.", BLOCK)
        zero = torch.zeros_like(emb)
        if torch.allclose(_run_block(mine, x, zero), ref(x, zero), rtol=1e-4, atol=1e-5):
            raise NotYet("with a zero time embedding your block gives the package's output; with a real one it "
                         "does not: the embedding takes another path in your block.",
                         "Follow emb from the argument to time_emb_proj: SiLU first, then the projection, then "
                         "[:, :, None, None] to add it to every pixel.", BLOCK)
    worst = (result - expected).abs().max().item()
    raise NotYet(f"your block's output differs from the package's by up to {worst:.3g}.",
                 "Run the layers one at a time on the same x and emb and compare with the package's block "
                 "(block.norm1(x), block.conv1(...), ...) to find the first one that differs.", BLOCK)


def _build_block(block_class, in_ch, out_ch, time_dim, groups):
    shown = f"{block_class.__name__}({in_ch}, {out_ch}, {time_dim}, {groups})"
    try:
        inspect.signature(block_class).bind(in_ch, out_ch, time_dim, groups)
    except TypeError:
        raise NotYet(f"the check builds your block as {shown}, i.e. MyResidualBlock(in_ch, out_ch, time_dim, "
                     f"groups), but its __init__ takes ({_init_parameters(block_class)}).") from None
    except ValueError:
        pass
    try:
        block = block_class(in_ch, out_ch, time_dim, groups)
    except Exception as error:  # noqa: BLE001 - a learner's error is a hint, never a crash
        first, *more = _error_hints(error)
        raise NotYet(first.replace("your function raised", f"building {shown} raised", 1), *more) from None
    if not isinstance(block, torch.nn.Module):
        raise NotYet(f"{shown} gave {type(block).__name__}, not a torch.nn.Module: does your class start with "
                     "`class MyResidualBlock(nn.Module):` and call super().__init__()?")
    return block.eval()


def _init_parameters(cls):
    try:
        return ", ".join(list(inspect.signature(cls).parameters))
    except (TypeError, ValueError):
        return "?"


def check_residual_block(block_class=None, seed=0):
    """Check the learner's residual block class against ``unet.ResidualBlock`` holding the same weights.

    The check builds ``block_class(in_ch, out_ch, time_dim, groups)`` twice, once with a channel
    change (16 -> 32) and once without (32 -> 32), time_dim = 64, groups = 8; loads the package
    block's weights into it (``load_state_dict``: same layer names as the package, which are
    diffusers' ResnetBlock2D's: norm1, conv1, time_emb_proj, norm2, conv2, conv_shortcut); and
    compares ``forward(x, emb)`` on x float32 (2, in_ch, 8, 8) and emb float32 (2, 64), in eval
    mode. Prints "Correct!" or a first hint (``show_hint()`` for more); returns True or False.
    """
    try:
        if not (isinstance(block_class, type) and issubclass(block_class, torch.nn.Module)):
            got = getattr(block_class, "__name__", type(block_class).__name__)
            raise NotYet("check_residual_block needs your class itself, as in check_residual_block(MyResidualBlock): "
                         f"its name, without parentheses, so that the check can build it. It got {got!r}"
                         + (", an instance: drop the parentheses." if isinstance(block_class, torch.nn.Module)
                            else "."))
        g = torch.Generator().manual_seed(seed)
        for in_ch, out_ch in ((16, 32), (32, 32)):
            ref = _reference_block(in_ch, out_ch, 64, 8, seed)
            mine = _build_block(block_class, in_ch, out_ch, 64, 8)
            _compare_weights(mine, ref, in_ch, out_ch)
            mine.load_state_dict(ref.state_dict())
            x, emb = torch.randn(2, in_ch, 8, 8, generator=g), torch.randn(2, 64, generator=g)
            with torch.no_grad():
                _diagnose_block(mine, ref, x, emb)
        return report(Feedback(True), f"{block_class.__name__} computes the package's ResidualBlock (diffusers' "
                                      "ResnetBlock2D), with and without a channel change.")
    except NotYet as not_yet:
        return report(Feedback(False, not_yet.hints))
    except Exception as error:  # noqa: BLE001 - a check never raises
        return report(Feedback(False, (f"the check itself could not run: {type(error).__name__}: {error}.",)))


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
