"""Argument checks, one rule per kind of argument, shared by every module.

Each check either returns the value (converted to its canonical type) or raises an error
whose message names the argument, says what was given and what is allowed, and, where a
``hint`` is passed, how to fix the call:

- ``TypeError``: the kind of value is wrong (a float where an int is needed, a list where
  a tensor is needed, a float timestep);
- ``ValueError``: the kind is right but the value is not allowed (out of range, NaN, wrong
  shape, unknown name).

NaN never passes a range check: every comparison with NaN is False, so ranges are checked
as ``not (low <= x <= high)`` and tensors are checked for NaN/inf first.
"""

import math
import numbers
import operator

import torch

IMAGE_RANGE_TOLERANCE = 1e-3  # [-1, 1] images may exceed the range by float rounding, no more


def _fail(error, name, problem, hint):
    return error(f"{name} {problem}" + (f"; {hint}" if hint else ""))


def _describe(value):
    if isinstance(value, torch.Tensor):
        return f"a {value.dtype} tensor of shape {tuple(value.shape)}"
    text = repr(value)
    return text if len(text) <= 60 else f"a {type(value).__name__}"


def integer(value, name, low=None, high=None, hint=""):
    """``value`` as an int in [low, high] (either bound may be None). Accepts Python and numpy
    ints and one-element integer tensors; refuses bools, floats (even 3.0) and strings."""
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
    return value


def positive_int(value, name, hint=""):
    """``value`` as an int >= 1."""
    return integer(value, name, low=1, hint=hint)


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


def _range_text(low, high, low_closed, high_closed):
    if low is not None and high is not None:
        return f"in {'[' if low_closed else '('}{low:g}, {high:g}{']' if high_closed else ')'}"
    if low is not None:
        return f"{'>=' if low_closed else '>'} {low:g}"
    if high is not None:
        return f"{'<=' if high_closed else '<'} {high:g}"
    return ""


def one_of(value, name, choices, hint=""):
    """``value`` if it is one of ``choices`` (compared with ==), else a ValueError listing them."""
    try:
        ok = value in choices
    except TypeError:  # unhashable value against a set
        ok = False
    if not ok:
        listed = ", ".join(repr(c) for c in choices)
        raise _fail(ValueError, name, f"must be one of {listed}; got {value!r}", hint)
    return value


def float_tensor(value, name, ndim=None, hint=""):
    """``value`` if it is a floating-point tensor with ``ndim`` dimensions (any if None) and
    no NaN or inf."""
    if not isinstance(value, torch.Tensor):
        raise _fail(TypeError, name, f"must be a float tensor, got {type(value).__name__}", hint)
    if not value.is_floating_point():
        raise _fail(TypeError, name, f"must be a float tensor, got dtype {value.dtype}",
                    hint or "convert it with .float()")
    if ndim is not None and value.ndim != ndim:
        raise _fail(ValueError, name, f"must have {ndim} dimensions, got shape {tuple(value.shape)}", hint)
    finite(value, name, hint)
    return value


def finite(value, name, hint=""):
    """``value`` (a tensor) if it holds no NaN or inf."""
    if value.numel() and not torch.isfinite(value).all():
        bad = "NaN" if torch.isnan(value).any() else "inf"
        raise _fail(ValueError, name, f"contains {bad}", hint or "check where it was computed")
    return value


def image_range(value, name="x0", hint=""):
    """``value`` if it is a finite float tensor scaled to [-1, 1] (up to float rounding)."""
    fix = hint or ("scale [0, 1] images with ddpm_helpers.data.to_model_range(x) = 2 x - 1, "
                   "or [0, 255] images with x / 127.5 - 1")
    if isinstance(value, torch.Tensor) and not value.is_floating_point():
        raise _fail(TypeError, name, f"must be a float tensor scaled to [-1, 1], got dtype {value.dtype}", fix)
    float_tensor(value, name, hint=hint)
    if value.numel():
        low, high = value.min().item(), value.max().item()
        if low < -1 - IMAGE_RANGE_TOLERANCE or high > 1 + IMAGE_RANGE_TOLERANCE:
            raise _fail(ValueError, name, f"must be scaled to [-1, 1], but its values span [{low:.3g}, {high:.3g}]",
                        fix)
    return value


def timesteps(value, num_train_timesteps, batch_size=None, name="timesteps", allow_float=False, hint=""):
    """Timesteps as a tensor: an int, a 0-d tensor, or a 1-d tensor of one value (broadcast over
    the batch) or of ``batch_size`` values, all in [0, num_train_timesteps).

    Returns a (batch_size,) tensor when ``batch_size`` is given, else the values as a 1-d tensor.
    Integer dtype unless ``allow_float`` (the UNet takes float timesteps, schedulers do not).
    """
    T = num_train_timesteps
    if isinstance(value, bool) or not isinstance(value, (numbers.Number, torch.Tensor)):
        raise _fail(TypeError, name, f"must be an int or an integer tensor, got {_describe(value)}",
                    hint or "use a python int or torch.randint(0, T, (B,))")
    t = torch.as_tensor(value)
    if t.dtype == torch.bool or t.is_complex() or (t.is_floating_point() and not allow_float):
        raise _fail(TypeError, name, f"must hold integers in [0, {T - 1}], got dtype {t.dtype}",
                    hint or "timesteps are 0-indexed integers, e.g. torch.randint(0, T, (B,)) or .long()")
    if t.ndim > 1 or (batch_size is not None and t.ndim == 1 and t.shape[0] not in (1, batch_size)):
        expected = f"a 0-d tensor or a tensor of shape (1,) or ({batch_size},)" if batch_size else "at most 1-d"
        raise _fail(ValueError, name, f"must be an int, {expected}; got shape {tuple(t.shape)}",
                    hint or "give one timestep per image")
    t = t.reshape(-1)
    if t.is_floating_point():
        finite(t, name, hint)
    if t.numel() and not bool(((t >= 0) & (t < T)).all()):
        raise _fail(ValueError, name, f"must be in [0, {T - 1}] (0-indexed, num_train_timesteps={T}); got values "
                    f"from {t.min().item():g} to {t.max().item():g}", hint)
    if batch_size is not None:
        t = t.expand(batch_size)
    return t
