"""Course-wide settings: quick mode and the default device.

Quick mode is read here and nowhere else. The test suite sets ``DDPM_QUICK=1`` (in the
repository's root ``conftest.py``, which every way of running pytest loads) so that every
notebook finishes in seconds; learners never set it and get the real thing.
"""

import os

import torch

from . import _checks

_TRUE, _FALSE = ("1", "true", "yes", "on"), ("", "0", "false", "no", "off")


def _read_quick(value):
    """DDPM_QUICK as a bool; a value that is neither on nor off is an error, not a guess."""
    value = value.strip().lower()
    if value not in _TRUE + _FALSE:
        raise ValueError(f"DDPM_QUICK must be one of {', '.join(repr(v) for v in _TRUE + _FALSE)}, got "
                         f"{value!r}; unset it (learners never need it) or set DDPM_QUICK=1 for the test suite's "
                         "short runs.")
    return value in _TRUE


QUICK = _read_quick(os.environ.get("DDPM_QUICK", "0"))


def quick(full, quick_value):
    """Return ``quick_value`` in quick mode (under test), ``full`` otherwise."""
    return quick_value if QUICK else full


def default_device(device=None, name="device"):
    """The device to run on: ``device`` if given (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"`` or a
    ``torch.device``), else CUDA when present, else Apple's MPS, else the CPU. A device this machine
    does not have is refused here, not deep inside the first tensor operation."""
    if device is None:
        mps = getattr(torch.backends, "mps", None)
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if mps is not None and mps.is_available() else "cpu")
    if not isinstance(device, (str, torch.device)):
        raise TypeError(f"{name} must be a string such as 'cpu', 'cuda', 'cuda:1' or 'mps', or None; "
                        f"got {type(device).__name__}")
    try:
        device = torch.device(device)
    except RuntimeError:
        raise ValueError(f"{name} {device!r} is not a device; use 'cpu', 'cuda', 'cuda:1' or 'mps' "
                         "(or None for the best one here)") from None
    _checks.one_of(device.type, f"{name} type", ("cpu", "cuda", "mps"), hint="or None for the best device here")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"{name} {str(device)!r}: no CUDA GPU is visible here (torch.cuda.is_available() is "
                             "False); use 'cpu', or None for the best device here")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"{name} {str(device)!r}: only {torch.cuda.device_count()} GPU(s) here, so the index "
                             f"must be in [0, {torch.cuda.device_count() - 1}]")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError(f"{name} 'mps': Apple's MPS is not available here; use 'cpu', or None for the best "
                         "device here")
    return device
