"""One trainer for any device and any number of processes, through 🤗 accelerate.

``train()`` runs unchanged in a notebook, under ``torchrun`` and under ``accelerate launch``:

    python -m ddpm_helpers train ...                                  # one process
    torchrun --standalone --nproc_per_node 4 -m ddpm_helpers train ...  # four, one per GPU
    accelerate launch -m ddpm_helpers train ...                        # as `accelerate config` says

With several processes, accelerate sets up torch's DistributedDataParallel: every process
holds the whole model, trains on its own slice of each batch, and the gradients are averaged
over the processes before every optimizer step, so all copies stay identical.

Devices: CUDA when present, else Apple's MPS, else the CPU (``config.default_device``), or the
one you name. Mixed precision ``"auto"``: bf16 on GPUs and CPUs that compute it in hardware,
fp16 with a gradient scaler on older GPUs, float32 elsewhere (and on MPS).
"""

import os

import torch

from . import _checks
from .unet import cpu_has_native_bf16

MIXED_PRECISION = ("auto", "no", "bf16", "fp16")


def launched_processes():
    """How many processes the launcher started (torchrun and accelerate launch set WORLD_SIZE); 1 otherwise."""
    return int(os.environ.get("WORLD_SIZE", "1"))




def pick_mixed_precision(requested, device):
    """The precision to train in on ``device``: "no" (float32), "bf16" or "fp16".

    ``requested="auto"`` takes the launcher's choice when `accelerate launch` was told one
    (ACCELERATE_MIXED_PRECISION, from `accelerate config` or --mixed_precision); else bf16 on
    a CUDA GPU that has it and fp16 (with a gradient scaler) on one that does not, bf16 on a
    CPU that computes it in hardware (AVX512_BF16, AMX), float32 elsewhere.
    """
    _checks.one_of(requested, "mixed_precision", MIXED_PRECISION)
    if requested == "auto":
        launcher = os.environ.get("ACCELERATE_MIXED_PRECISION", "").lower()
        if launcher in ("no", "bf16", "fp16") and not (launcher == "fp16" and device.type == "cpu"):
            return launcher
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return "bf16" if device.type == "cpu" and cpu_has_native_bf16() else "no"
    if requested == "fp16" and device.type == "cpu":
        raise ValueError("mixed_precision 'fp16' needs a GPU (CUDA or MPS); on the CPU use 'bf16' or 'no'")
    return requested


def make_accelerator(device, mixed_precision):
    """(accelerator, device) for one training run. With several processes the device is the one
    accelerate gives this process (its own GPU, or the CPU); alone, it is ``device`` itself."""
    from accelerate import Accelerator

    if launched_processes() == 1:
        _forget_other_settings(device, mixed_precision)
    # cpu=True matters: without it, processes started by torchrun on a machine without a GPU
    # would each train alone instead of together (accelerate only sets up gloo when told cpu).
    accelerator = Accelerator(cpu=device.type == "cpu", mixed_precision=mixed_precision, device_placement=False)
    if accelerator.num_processes > 1:
        device = accelerator.device
    if accelerator.device.type != device.type:
        raise ValueError(f"device {str(device)!r} differs from the {accelerator.device.type!r} that accelerate was "
                         "set up with earlier in this process; restart the kernel, or pass that device")
    return accelerator, device


def _forget_other_settings(device, mixed_precision):
    """accelerate keeps one process-wide state; a notebook may train on the CPU, then on the GPU,
    or in bf16 and then in float32. Alone (no launcher), forget a state set up differently."""
    from accelerate.state import AcceleratorState, PartialState

    old_device = PartialState._shared_state.get("device")
    old_precision = AcceleratorState._shared_state.get("_mixed_precision", mixed_precision)
    if (old_device is not None and old_device.type != device.type) or old_precision != mixed_precision:
        AcceleratorState._reset_state(reset_partial_state=True)


_PREPARED_ATTRIBUTES = ("forward", "_original_forward", "_is_accelerate_prepared")


def prepare(accelerator, model, optimizer):
    """``accelerator.prepare`` plus a note of what it will set on ``model``, for ``release``."""
    before = {key for key in _PREPARED_ATTRIBUTES if key in model.__dict__}
    wrapped, accelerated = accelerator.prepare(model, optimizer)
    return wrapped, accelerated, before


def release(model, before):
    """Undo what ``prepare`` set on ``model`` itself (its mixed-precision forward, the 'prepared'
    mark), so that after training it is a plain module again: it samples in float32 and a later
    ``train()`` prepares it afresh."""
    for key in _PREPARED_ATTRIBUTES:
        if key not in before:
            model.__dict__.pop(key, None)
