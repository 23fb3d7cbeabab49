"""Argument checks, one rule per kind of argument, shared by every module.

Each check either returns the value (converted to its canonical type) or raises an error
whose message names the argument, says what was given and what is allowed, and, where a
``hint`` is passed, how to fix the call:

- ``TypeError``: the kind of value is wrong (a float where an int is needed, a list where
  a tensor is needed, an integer tensor where images are needed, a float timestep);
- ``ValueError``: the kind is right but the value is not allowed (out of range, NaN, wrong
  shape, unknown name, empty);
- ``FileNotFoundError``: a path that should exist does not.

NaN never passes a range check: every comparison with NaN is False, so ranges are checked
as ``not (low <= x <= high)`` and tensors are checked for NaN/inf first.

Images. Clean images x0 are scaled to [-1, 1]; one rule, ``image_range``, allows float
rounding (``IMAGE_RANGE_TOLERANCE``) and nothing more. Only display code takes noised images
x_t, which legitimately pass [-1, 1], and says so with ``noised=True``: by eq. 4 of Ho et al.
2020, x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) eps, so by Cauchy-Schwarz
|x_t| <= sqrt(x0^2 + eps^2) <= sqrt(1 + 6^2) unless a Gaussian eps passes 6 standard
deviations (2 pixels in 10^9). Beyond that bound the image has the wrong scale ([0, 255]).
"""

import math
import numbers
import operator
import os
from pathlib import Path

import numpy as np
import torch

IMAGE_RANGE_TOLERANCE = 1e-3  # [-1, 1] images may exceed the range by float rounding, no more
NOISED_IMAGE_BOUND = math.sqrt(1 + 6**2)  # |x_t| for |x0| <= 1 and |eps| <= 6 (see above): 6.08
SEED_RANGE = (0, 2**63 - 1)  # torch.Generator.manual_seed takes 64 bits; 2 * seed + 1 must fit
_SCALE_FIX = ("scale [0, 1] images with ddpm_helpers.data.to_model_range(x) = 2 x - 1, "
              "or [0, 255] images with x / 127.5 - 1")


def _fail(error, name, problem, hint):
    return error(f"{name} {problem}" + (f"; {hint}" if hint else ""))


def _describe(value):
    if isinstance(value, torch.Tensor):
        return f"a {value.dtype} tensor of shape {tuple(value.shape)}"
    text = repr(value)
    return text if len(text) <= 60 else f"a {type(value).__name__}"


def _num(x):
    return str(x) if isinstance(x, int) else f"{x:g}"


def _range_text(low, high, low_closed, high_closed):
    if low is not None and high is not None:
        return f"in {'[' if low_closed else '('}{_num(low)}, {_num(high)}{']' if high_closed else ')'}"
    if low is not None:
        return f"{'>=' if low_closed else '>'} {_num(low)}"
    if high is not None:
        return f"{'<=' if high_closed else '<'} {_num(high)}"
    return ""


def integer(value, name, low=None, high=None, multiple_of=None, hint=""):
    """``value`` as an int in [low, high] (either bound may be None), a multiple of
    ``multiple_of`` if given. Accepts Python and numpy ints and one-element integer tensors;
    refuses bools, floats (even 3.0) and strings."""
    if isinstance(value, bool) or (isinstance(value, torch.Tensor) and value.dtype == torch.bool):
        raise _fail(TypeError, name, f"must be an int, got {value!r}", hint)
    if isinstance(value, torch.Tensor):
        if value.numel() != 1 or value.is_floating_point() or value.is_complex():
            raise _fail(TypeError, name, f"must be an int, got {_describe(value)}", hint)
        value = int(value)
    try:
        value = operator.index(value)
    except TypeError:
        raise _fail(TypeError, name, f"must be an int, got {_describe(value)} ({type(value).__name__})",
                    hint) from None
    if (low is not None and value < low) or (high is not None and value > high):
        raise _fail(ValueError, name, f"must be {_range_text(low, high, True, True)}, got {value}", hint)
    if multiple_of is not None and value % multiple_of:
        raise _fail(ValueError, name, f"must be a multiple of {multiple_of}, got {value}", hint)
    return value


def positive_int(value, name, hint=""):
    """``value`` as an int >= 1."""
    return integer(value, name, low=1, hint=hint)


def seed(value, name="seed"):
    """``value`` as a random seed: an int in [0, 2**63 - 1]."""
    return integer(value, name, *SEED_RANGE, hint="e.g. seed=0")


def flag(value, name, hint=""):
    """``value`` if it is a bool (numpy's too); 0, 1, None and strings are refused."""
    if not isinstance(value, (bool, np.bool_)):
        raise _fail(TypeError, name, f"must be True or False, got {_describe(value)}", hint)
    return bool(value)


def real(value, name, low=None, high=None, low_open=False, high_open=False, hint=""):
    """``value`` as a finite float in the interval from ``low`` to ``high`` (closed unless
    ``low_open``/``high_open``; a None bound is unbounded). Refuses bools, strings, NaN, inf."""
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, torch.Tensor)):
        raise _fail(TypeError, name, f"must be a number, got {_describe(value)} ({type(value).__name__})", hint)
    if isinstance(value, torch.Tensor):
        if value.numel() != 1 or value.is_complex() or value.dtype == torch.bool:
            raise _fail(TypeError, name, f"must be a number, got {_describe(value)}", hint)
        value = value.item()
    value = float(value)
    allowed = _range_text(low, high, not low_open, not high_open)
    if not math.isfinite(value):
        raise _fail(ValueError, name, f"must be a finite number{' ' + allowed if allowed else ''}, got {value}", hint)
    too_low = low is not None and not (value > low if low_open else value >= low)
    too_high = high is not None and not (value < high if high_open else value <= high)
    if too_low or too_high:
        raise _fail(ValueError, name, f"must be {allowed}, got {value:g}", hint)
    return value


def one_of(value, name, choices, hint=""):
    """``value`` if it is one of ``choices`` (compared with ==), else a ValueError listing them."""
    try:
        ok = bool(value in choices)
    except (TypeError, ValueError):  # unhashable value against a set; an array compared elementwise
        ok = False
    if not ok:
        listed = ", ".join(repr(c) for c in choices)
        raise _fail(ValueError, name, f"must be one of {listed}; got {_describe(value)}", hint)
    return value


def instance(value, name, types, what, hint=""):
    """``value`` if it is an instance of ``types``; ``what`` says what is allowed, in words."""
    if not isinstance(value, types):
        raise _fail(TypeError, name, f"must be {what}, got {type(value).__name__}", hint)
    return value


def nonempty(value, name, what="a sequence", hint=""):
    """``value`` if it has a length >= 1 (a list, a tuple, a dataset)."""
    try:
        size = len(value)
    except TypeError:
        raise _fail(TypeError, name, f"must be {what} with a length, got {type(value).__name__}", hint) from None
    if size == 0:
        raise _fail(ValueError, name, f"is empty; it must be {what} of at least one item", hint)
    return value


def existing_path(value, name, kind="file", hint=""):
    """``value`` as a Path to an existing file (``kind="file"``) or folder (``kind="dir"``)."""
    if not isinstance(value, (str, os.PathLike)):
        raise _fail(TypeError, name, f"must be a path (str or pathlib.Path) to a {kind}, got {_describe(value)}",
                    hint)
    path = Path(value).expanduser()
    if not path.exists():
        raise _fail(FileNotFoundError, name, f"must be an existing {kind}; {str(path)!r} does not exist", hint)
    if not (path.is_file() if kind == "file" else path.is_dir()):
        raise _fail(ValueError, name, f"must be a {kind}; {str(path)!r} is not one", hint)
    return path


def _float(value, name, what, hint):
    if not isinstance(value, torch.Tensor) or not value.is_floating_point():
        got = f"dtype {value.dtype}" if isinstance(value, torch.Tensor) else type(value).__name__
        raise _fail(TypeError, name, f"must be {what}, got {got}", hint)
    return value


def _span(value):
    """(min, max) of a float tensor in one pass (one device sync); NaN in the tensor makes both NaN."""
    low, high = torch.aminmax(value.detach())
    return low.item(), high.item()


def float_tensor(value, name, ndim=None, hint=""):
    """``value`` if it is a floating-point tensor with ``ndim`` dimensions (an int, a tuple
    of allowed ints, or None for any) and no NaN or inf."""
    _float(value, name, "a float tensor", hint or "convert it with .float()")
    allowed = (ndim,) if isinstance(ndim, int) else ndim
    if allowed is not None and value.ndim not in allowed:
        dims = " or ".join(str(n) for n in allowed)
        raise _fail(ValueError, name, f"must have {dims} dimensions, got shape {tuple(value.shape)}", hint)
    return finite(value, name, hint)


def finite(value, name, hint=""):
    """``value`` (a float tensor) if it holds no NaN or inf."""
    return in_range(value, name, -math.inf, math.inf, nan_hint=hint)


def in_range(value, name, low, high, what="", hint="", nan_hint=""):
    """``value`` if it is a float tensor of finite values in [low, high]; ``what`` says what is
    allowed in words (default: "in [low, high]"); ``hint`` helps with the range, ``nan_hint``
    with a NaN or inf (default: "check where it was computed")."""
    _float(value, name, "a float tensor", hint or nan_hint or "convert it with .float()")
    if value.numel():
        lo, hi = _span(value)
        if not (math.isfinite(lo) and math.isfinite(hi)):
            bad = "NaN" if math.isnan(lo) else "inf"
            raise _fail(ValueError, name, f"contains {bad}; it must hold finite numbers",
                        nan_hint or "check where it was computed")
        if lo < low or hi > high:
            raise _fail(ValueError, name, f"must be {what or _range_text(low, high, True, True)}, but its "
                        f"values span [{lo:.3g}, {hi:.3g}]", hint)
    return value


def image_range(value, name="x0", noised=False, hint=""):
    """``value`` if it is a finite float tensor of images scaled to [-1, 1] (up to float
    rounding), or with ``noised=True`` of noised images x_t (|x_t| <= NOISED_IMAGE_BOUND)."""
    fix = hint or _SCALE_FIX
    _float(value, name, "a float tensor scaled to [-1, 1]", fix)
    if noised:
        what = f"images in [-1, 1] or noised images x_t (|x| <= {NOISED_IMAGE_BOUND:.2f})"
        return in_range(value, name, -NOISED_IMAGE_BOUND, NOISED_IMAGE_BOUND, what, fix)
    bound = 1 + IMAGE_RANGE_TOLERANCE
    return in_range(value, name, -bound, bound, "scaled to [-1, 1]", fix)


def images(value, name, channels=(1, 3), size=None, noised=False, hint="", range_hint=""):
    """``value`` if it is a batch (B, C, H, W) of B >= 1 images passing ``image_range``, with
    C in ``channels`` and, if ``size`` is given, H = W = size. ``hint`` helps with the shape,
    ``range_hint`` with the values (default: how to scale images to [-1, 1])."""
    shape_hint = hint or "a batch of images is (B, C, H, W); for one image use x[None]"
    _float(value, name, "a float tensor of images scaled to [-1, 1]", range_hint or _SCALE_FIX)
    if value.ndim != 4:
        raise _fail(ValueError, name, f"must have 4 dimensions (B, C, H, W), got shape {tuple(value.shape)}",
                    shape_hint)
    b, c, h, w = value.shape
    if b == 0:
        raise _fail(ValueError, name, "is an empty batch (0 images); pass at least one image", shape_hint)
    if c not in channels or (size is not None and (h, w) != (size, size)):
        wanted = f"C = {' or '.join(str(k) for k in channels)}" + (f", H = W = {size}" if size else "")
        raise _fail(ValueError, name, f"must be (B, C, H, W) with {wanted}; got shape {tuple(value.shape)}",
                    shape_hint)
    return image_range(value, name, noised=noised, hint=range_hint)


def timesteps(value, num_train_timesteps, batch_size=None, name="timesteps", allow_float=False, hint=""):
    """Timesteps as a tensor: an int, a 0-d tensor, or a 1-d tensor of one value (broadcast over
    the batch) or of ``batch_size`` values, all in [0, num_train_timesteps).

    Returns a (batch_size,) tensor when ``batch_size`` is given, else the values as a 1-d tensor,
    on the device it came on. int64 unless ``allow_float`` lets float timesteps through as they
    are (the UNet takes them; schedulers and q_sample do not).
    """
    T = num_train_timesteps
    if isinstance(value, bool) or not isinstance(value, (numbers.Number, torch.Tensor)):
        raise _fail(TypeError, name, f"must be an int or an integer tensor, got {_describe(value)}",
                    hint or "use a python int or torch.randint(0, T, (B,))")
    if isinstance(value, numbers.Integral):  # checked before a python int can overflow int64
        integer(value, name, 0, T - 1, hint=hint or f"0-indexed, num_train_timesteps={T}")
    t = torch.as_tensor(value)
    if t.dtype == torch.bool or t.is_complex() or (t.is_floating_point() and not allow_float):
        raise _fail(TypeError, name, f"must hold integers in [0, {T - 1}], got dtype {t.dtype}",
                    hint or "timesteps are 0-indexed integers, e.g. torch.randint(0, T, (B,)) or .long()")
    if t.ndim > 1 or (batch_size is not None and t.ndim == 1 and t.shape[0] not in (1, batch_size)):
        expected = f"a 0-d tensor or a tensor of shape (1,) or ({batch_size},)" if batch_size else "at most 1-d"
        raise _fail(ValueError, name, f"must be an int, {expected}; got shape {tuple(t.shape)}",
                    hint or "give one timestep per image")
    t = t.reshape(-1) if t.is_floating_point() else t.reshape(-1).long()
    if t.is_floating_point():
        finite(t, name, hint)
    if t.numel() and not bool(((t >= 0) & (t < T)).all()):
        raise _fail(ValueError, name, f"must be in [0, {T - 1}] (0-indexed, num_train_timesteps={T}); got values "
                    f"from {t.min().item():g} to {t.max().item():g}", hint)
    if batch_size is not None:
        t = t.expand(batch_size)
    return t
