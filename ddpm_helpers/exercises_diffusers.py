"""The check of lesson 8's exercise: one attention layer's weights, from diffusers' names to ours.

diffusers' ``UNet2DModel`` keeps an attention layer's query, key and value projections as three
Linear layers, ``to_q``, ``to_k``, ``to_v`` (weights (C, C)), and its output projection as
``to_out.0``. The course's ``SelfAttention`` computes q, k and v with ONE 1x1 convolution,
``to_qkv`` (weight (3C, C, 1, 1): the three matrices stacked, q first), and projects back with
the 1x1 convolution ``to_out`` (C, C, 1, 1). ``check_attention_weights(fn)`` runs the learner's
converter on the weights of a random layer and compares the result with the package's own
mapping (``pipeline.from_diffusers_state_dict``). Like every check it prints "Correct!" or
"Not yet." with a first, gentle hint, returns True or False, and never raises. No diffusers needed.
"""

import itertools
from collections.abc import Mapping

import torch

from .pipeline import from_diffusers_state_dict, to_diffusers_state_dict
from .unet import SelfAttention

CHANNELS, HEADS = 32, 2  # the random layer the check converts: C = 32 channels, 2 heads of 16
PREFIX = "mid_block.attentions.0."  # where such a layer sits in a UNet, for the package's mapping
SOURCES = {"group_norm.weight": "group_norm.weight", "group_norm.bias": "group_norm.bias",
           "to_qkv.weight": "to_q, to_k and to_v weights", "to_qkv.bias": "to_q, to_k and to_v biases",
           "to_out.weight": "to_out.0.weight", "to_out.bias": "to_out.0.bias"}  # ours -> where diffusers keeps it


class _NotYet(Exception):
    """Stops the check at the first problem; the message is the hint."""


def _report(ok, hint=""):
    print("Correct! Your converter gives our SelfAttention exactly diffusers' weights: same layer, same outputs."
          if ok else f"Not yet. Hint: {hint}")
    return ok


def _layer():
    return SelfAttention(CHANNELS, HEADS, groups=8)


def random_attention_weights(seed=0):
    """(diffusers' state dict of one attention layer, ours) for a random SelfAttention with C = 32.

    Keys, diffusers': group_norm.weight/.bias, to_q/to_k/to_v.weight (C, C) and .bias (C,),
    to_out.0.weight (C, C) and .bias; ours: group_norm.*, to_qkv.weight (3C, C, 1, 1) and .bias
    (3C,), to_out.weight (C, C, 1, 1) and .bias.
    """
    with torch.random.fork_rng(devices=[]):  # the learner's random state is left as it was
        torch.manual_seed(seed)
        layer = _layer()
        with torch.no_grad():  # norms away from 1 and 0, so that a swapped or dropped weight shows
            for p in layer.parameters():
                p.add_(0.1 * torch.randn_like(p))
    ours = {k: v.detach().clone() for k, v in layer.state_dict().items()}
    return _through(to_diffusers_state_dict, ours), ours


def _through(mapping, weights):
    """One layer's ``weights`` through a whole-UNet mapping of pipeline.py, as the layer at PREFIX."""
    return {k[len(PREFIX):]: v for k, v in mapping({PREFIX + k: v for k, v in weights.items()}).items()}


def _check_keys(result, expected):
    if not isinstance(result, Mapping):
        what = "None" if result is None else f"a {type(result).__name__}"
        raise _NotYet(f"your function returned {what}; return a dict that maps our names "
                      f"({', '.join(expected)}) to tensors.")
    missing = [k for k in expected if k not in result]
    extra = [k for k in result if k not in expected]
    if missing:
        raise _NotYet(f"your dict has no {missing[0]!r}. Our layer has exactly these weights: {', '.join(expected)}.")
    if extra:
        raise _NotYet(f"your dict has {extra[0]!r}, a name our layer does not have (diffusers' names stay behind); "
                      f"ours are {', '.join(expected)}.")
    for key in expected:
        if result[key] is Ellipsis:
            raise _NotYet(f"{key} is still the placeholder `...`: build it from diffusers' {SOURCES[key]}, "
                          "arranged as the one equation of this lesson says.")
        if not isinstance(result[key], torch.Tensor):
            raise _NotYet(f"{key!r} holds a {type(result[key]).__name__}; every value must be a torch tensor.")


def _check_shape(key, got, want):
    C = CHANNELS
    if got.shape == want.shape:
        return
    if key.endswith(".weight") and want.dim() == 4 and got.shape == want.shape[:2]:
        raise _NotYet(f"{key} has shape {tuple(got.shape)}, and our layer wants {tuple(want.shape)}. "
                      f"{key.split('.')[0]} is a 1x1 convolution, not a Linear layer: how many dimensions "
                      "does a convolution's weight have?")
    if key == "to_qkv.weight" and tuple(got.shape[:2]) == (C, 3 * C):
        raise _NotYet(f"to_qkv.weight has shape {tuple(got.shape)}: you stacked the three matrices side by "
                      "side. Each one maps C inputs to C outputs; stacked, they map C inputs to 3C outputs.")
    raise _NotYet(f"{key} has shape {tuple(got.shape)}; our layer wants {tuple(want.shape)}.")


def _check_qkv_order(key, got, theirs, want):
    """Hints for a to_qkv that holds the right numbers in the wrong places."""
    leaf = key.split(".")[1]
    parts = {name: theirs[f"{name}.{leaf}"] for name in ("to_q", "to_k", "to_v")}
    shape = want.shape
    for order in itertools.permutations(parts):
        if torch.equal(got, torch.cat([parts[name] for name in order]).reshape(shape)):
            raise _NotYet(f"to_qkv.{leaf} holds {', '.join(order)} in that order. Our forward splits to_qkv's "
                          "output into three equal parts and reads them as q, k, v, in that order.")
    if leaf == "weight" and torch.equal(got, torch.cat([parts[n].T for n in parts]).reshape(shape)):
        raise _NotYet("to_qkv.weight holds the transposed matrices. A Linear weight and a 1x1 conv weight "
                      "are both (out_channels, in_channels): no transpose is needed.")


def _check_outputs(result, expected, seed):
    """Our SelfAttention with the learner's weights computes what it computes with the reference ones."""
    with torch.random.fork_rng(devices=[]):
        layers = [_layer(), _layer()]
    layers[0].load_state_dict(expected)
    layers[1].load_state_dict({k: v.to(expected[k].dtype) for k, v in result.items()})
    x = torch.randn(2, CHANNELS, 4, 4, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        if not torch.allclose(layers[0](x), layers[1](x), atol=1e-6):
            raise _NotYet("your tensors hold the right numbers, but a layer built from them computes something "
                          "else: return plain float32 tensors, one per name.")


def check_attention_weights(fn, seed=0):
    """Check ``fn(theirs) -> ours``: one attention layer's state dict from diffusers' names and shapes
    to the course's (see the module docstring), against ``pipeline.from_diffusers_state_dict``."""
    if not callable(fn):
        return _report(False, f"pass your function itself, check_attention_weights(my_function), not {fn!r}.")
    theirs, _ = random_attention_weights(seed)
    expected = _through(from_diffusers_state_dict, theirs)  # the package's own mapping is the reference
    try:
        result = fn({k: v.clone() for k, v in theirs.items()})
    except Exception as error:  # noqa: BLE001 - the learner's error becomes a hint
        first_line = (str(error).splitlines() or [""])[0]
        return _report(False, f"your function raised {type(error).__name__}: {first_line}. It receives a dict "
                              f"with diffusers' names ({', '.join(theirs)}) and returns one with ours.")
    try:
        _check_keys(result, expected)
        for key, want in expected.items():
            got = result[key]
            _check_shape(key, got, want)
            if torch.equal(got.to(want.dtype), want):
                continue
            if key.startswith("to_qkv."):
                _check_qkv_order(key, got, theirs, want)
            worst = (got.to(want.dtype) - want).abs().max().item()
            raise _NotYet(f"{key} holds other numbers than diffusers' {SOURCES[key]} (largest difference "
                          f"{worst:.3g}). The numbers are only moved and reshaped, never changed.")
        _check_outputs(result, expected, seed)
    except _NotYet as not_yet:
        return _report(False, str(not_yet))
    except Exception as error:  # noqa: BLE001 - tensors of an odd kind: still a hint, never a traceback
        return _report(False, f"the check could not use your dict ({type(error).__name__}: {error}); return "
                              "float tensors, shaped as our layer's weights.")
    return _report(True)
