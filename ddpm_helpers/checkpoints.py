"""Checkpoints: atomic writes, loading without executing pickled code, compact exports.

A training checkpoint (``save_checkpoint``) is one ``torch.save`` file holding only tensors,
numbers, strings, lists and dicts: model, EMA and optimizer state, the step, the loss
history, and the train/model/scheduler configs as plain dicts. So ``torch.load(path,
weights_only=True)`` reads it without running any code from the file, and training resumes
from it exactly where it stopped (see training.py).

``export_weights`` keeps only the EMA weights (what we sample with) in a ``.safetensors``
file with the configs as JSON metadata; ``load_pretrained`` rebuilds the model from it.
"""

import json
from dataclasses import asdict
from pathlib import Path

import torch

from ._io import atomic_write
from .config import default_device
from .pipeline import upgrade_legacy_checkpoint, upgrade_legacy_config, upgrade_legacy_state_dict
from .unet import UNet, UNetConfig

FORMAT = "ddpm_helpers.checkpoint.v1"
PRETRAINED_PATH = Path(__file__).parent / "weights" / "digits_unet.safetensors"


def _plain(value):
    """Config values as plain lists/dicts/numbers/strings, which weights_only loading accepts."""
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return str(value) if isinstance(value, torch.device) else value


def _model_config(model):
    config = getattr(model, "config", None)
    return _plain(asdict(config)) if isinstance(config, UNetConfig) else None


def portable_scheduler_config(scheduler):
    """The scheduler settings both DDPMScheduler and DDIMScheduler accept."""
    keys = ("num_train_timesteps", "beta_start", "beta_end", "beta_schedule", "clip_sample")
    return {key: _plain(scheduler.config[key]) for key in keys}


def save_checkpoint(path, state):
    """Write a resumable checkpoint of ``state`` (a TrainState) to ``path``, atomically."""
    checkpoint = {
        "format": FORMAT, "step": state.step, "images_seen": state.images_seen,
        "elapsed": state.elapsed, "losses": list(state.losses),
        "bucket_sums": list(state.bucket_sums), "bucket_counts": list(state.bucket_counts),
        "model": state.model.state_dict(), "ema": state.ema.state_dict(), "optimizer": state.optimizer.state_dict(),
        "train_config": _plain(asdict(state.config)), "model_config": _model_config(state.model),
        "scheduler_config": portable_scheduler_config(state.scheduler),
    }
    atomic_write(path, lambda tmp: torch.save(checkpoint, tmp))


def _missing(path):
    return FileNotFoundError(
        f"No checkpoint at {str(path)!r}. Train first with `python -m ddpm_helpers train --out runs/digits` "
        "(writes runs/digits/checkpoint.pt), or load the shipped weights with load_pretrained().")


def _check_model_config(checkpoint, model, path):
    stored, current = checkpoint.get("model_config"), _model_config(model)
    if stored is None or current is None or stored == current:
        return
    diffs = [f"{k}={stored.get(k)!r} in the checkpoint but {current.get(k)!r} in this model"
             for k in sorted(set(stored) | set(current)) if stored.get(k) != current.get(k)]
    raise ValueError(f"checkpoint {str(path)!r} was trained with a different model: {'; '.join(diffs)}. "
                     "Build the matching model with UNet(**checkpoint['model_config']) or use load_model(path).")


def load_checkpoint(path, model=None, map_location="cpu"):
    """Read a checkpoint without executing pickled code (``torch.load(weights_only=True)``).

    Returns the checkpoint dict. With ``model``, first checks that its config matches the
    stored one (ValueError naming the fields otherwise) and loads the training weights into it.
    """
    if not Path(path).is_file():
        raise _missing(path)
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:
        if "weights only" in str(error).lower() or "weights_only" in str(error):
            raise ValueError(f"checkpoint {str(path)!r} holds pickled Python objects, not just tensors and "
                             "numbers; refusing to run its code. Re-save it with save_checkpoint().") from error
        raise ValueError(f"checkpoint {str(path)!r} is corrupt or truncated (interrupted write or download?); "
                         "delete it and train again, or re-download it.") from error
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != FORMAT:
        raise ValueError(f"{str(path)!r} is not a ddpm_helpers training checkpoint (written by save_checkpoint).")
    checkpoint = upgrade_legacy_checkpoint(checkpoint)  # written before the UNet took diffusers' names?
    if model is not None:
        _check_model_config(checkpoint, model, path)
        model.load_state_dict(checkpoint["model"])
    return checkpoint


def _build_model(model_config, device):
    return UNet(**upgrade_legacy_config(model_config)).to(default_device(device))


def load_model(path, device=None):
    """(model with the EMA weights, in eval mode, scheduler_config dict) from a training checkpoint.
    Sample with ``DDIMScheduler(**scheduler_config)`` or ``DDPMScheduler(**scheduler_config)``."""
    checkpoint = load_checkpoint(path)
    model = _build_model(checkpoint["model_config"], device)
    model.load_state_dict(checkpoint["ema"]["shadow"])
    return model.eval(), checkpoint["scheduler_config"]


def export_weights(checkpoint_path, out_path, dtype="auto"):
    """Write a checkpoint's EMA weights alone to a ``.safetensors`` file, the model and scheduler
    configs as JSON in its metadata. ``dtype``: "fp32", "fp16", or "auto" (fp16 above 8 MB)."""
    from safetensors.torch import save_file

    checkpoint = load_checkpoint(checkpoint_path)
    weights = checkpoint["ema"]["shadow"]
    if dtype == "auto":
        dtype = "fp16" if sum(w.numel() for w in weights.values()) * 4 > 8e6 else "fp32"
    if dtype not in ("fp16", "fp32"):
        raise ValueError(f"dtype={dtype!r}: use 'fp32', 'fp16' or 'auto'.")
    torch_dtype = torch.float16 if dtype == "fp16" else torch.float32
    tensors = {name: w.to(torch_dtype).contiguous() for name, w in weights.items()}
    metadata = {"model_config": json.dumps(checkpoint["model_config"]),
                "scheduler_config": json.dumps(checkpoint["scheduler_config"]),
                "step": str(checkpoint["step"]), "images_seen": str(checkpoint["images_seen"])}
    atomic_write(out_path, lambda tmp: save_file(tensors, tmp, metadata=metadata))
    return Path(out_path)


def load_pretrained(path=None, device=None):
    """(model in eval mode, scheduler_config dict) from an ``export_weights`` file; by default
    the weights shipped with the course, ``ddpm_helpers/weights/digits_unet.safetensors``."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(path) if path is not None else PRETRAINED_PATH
    if not path.is_file():
        raise FileNotFoundError(
            f"No weights at {str(path)!r}. Create them with `python -m ddpm_helpers train --out runs/digits && "
            f"python -m ddpm_helpers export runs/digits/checkpoint.pt {path}`.")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
        weights = load_file(str(path))
    except Exception as error:
        raise ValueError(f"weights file {str(path)!r} is corrupt or truncated; delete it and export it again "
                         "(python -m ddpm_helpers export ...), or re-download it.") from error
    if "model_config" not in metadata:
        raise ValueError(f"{str(path)!r} has no model_config metadata; write it with export_weights().")
    model = _build_model(json.loads(metadata["model_config"]), device)
    model.load_state_dict({name: w.float() for name, w in upgrade_legacy_state_dict(weights).items()})
    return model.eval(), json.loads(metadata["scheduler_config"])
