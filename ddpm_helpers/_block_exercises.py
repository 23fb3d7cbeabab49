"""The residual-block exercise of lesson 3: ``check_residual_block(MyResidualBlock)``.

Imported into ``ddpm_helpers.exercises``; use it from there. The check builds the package's
``unet.ResidualBlock``, loads ITS weights into the learner's block (by name, like
``load_state_dict``), runs both on the same input and compares. Like every check it prints a first
hint, returns True or False and never raises (see ``ddpm_helpers._feedback``): a missing layer, a
wrong shape, an error inside the learner's code or a wrong order of operations each come back as a
hint, from the symptom to the formula.
"""

import inspect
import re

import torch
import torch.nn.functional as F

from ._feedback import Feedback, NotYet, _error_hints, _learner_line, expect_tensor, report

BLOCK = ("h = conv1(SiLU(norm1(x))) + time_emb_proj(SiLU(emb))[:, :, None, None]; "
         "h = conv2(dropout(SiLU(norm2(h)))); out = conv_shortcut(x) + h when in_ch != out_ch, x + h otherwise "
         "(diffusers' ResnetBlock2D)")


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
