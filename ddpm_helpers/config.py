"""Course-wide settings: quick mode and the default device.

Quick mode is read here and nowhere else. The test suite sets ``DDPM_QUICK=1`` (in the
repository's root ``conftest.py``, which every way of running pytest loads) so that every
notebook finishes in seconds; learners never set it and get the real thing.
"""

import os

import torch

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


def default_device(device=None):
    """The device to run on: ``device`` if given (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``
    or a ``torch.device``), else CUDA when present, else Apple's MPS, else the CPU. A device this machine
    does not have is refused here, not deep inside the first tensor operation."""
    mps = getattr(torch.backends, "mps", None)
    available = {"cpu": True, "cuda": torch.cuda.is_available(), "mps": mps is not None and mps.is_available()}
    if device is None:
        return torch.device(next(kind for kind in ("cuda", "mps", "cpu") if available[kind]))
    if not isinstance(device, (str, torch.device)):
        raise TypeError(f"device must be a str such as 'cpu' or 'cuda', a torch.device or None, "
                        f"got {type(device).__name__}.")
    try:
        device = torch.device(device)
    except RuntimeError:
        raise ValueError(f"device must be 'cpu', 'cuda', 'cuda:N', 'mps', a torch.device or None (the best one "
                         f"here), got {device!r}.") from None
    if not available.get(device.type, True):
        raise ValueError(f"device={str(device)!r}, but this machine has no {device.type.upper()} device; "
                         "use device='cpu', or device=None to take the best device present.")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"device={str(device)!r}, but this machine has {torch.cuda.device_count()} CUDA "
                         f"device(s): use an index below that, or device='cuda'.")
    return device
