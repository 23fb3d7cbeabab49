"""Course-wide settings: quick mode and the default device.

Quick mode is read here and nowhere else. The test suite sets ``DDPM_QUICK=1`` so that
every notebook finishes in seconds; learners never set it and get the real thing.
"""

import os

import torch

QUICK = os.environ.get("DDPM_QUICK", "0").strip().lower() not in ("", "0", "false", "no")


def quick(full, quick_value):
    """Return ``quick_value`` in quick mode (under test), ``full`` otherwise."""
    return quick_value if QUICK else full


def default_device(device=None):
    """The device to run on: ``device`` if given, else CUDA when present, else Apple's MPS, else the CPU."""
    if device is not None:
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")
