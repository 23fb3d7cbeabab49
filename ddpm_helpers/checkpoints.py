"""Checkpoints: atomic writes, loading without executing pickled code, compact exports.

A training checkpoint (``save_checkpoint``) is one ``torch.save`` file holding only tensors,
numbers, strings, lists and dicts: model, EMA and optimizer state, the step, the loss
history, and the train/model/scheduler configs as plain dicts. So ``torch.load(path,
weights_only=True)`` reads it without running any code from the file, and training resumes
from it exactly where it stopped (see training.py).

``export_weights`` keeps only the EMA weights (what we sample with) in a ``.safetensors``
file with the configs as JSON metadata; ``load_pretrained`` rebuilds the model from it.
Both rebuild our UNet and diffusers' UNet2DModel; a checkpoint of any other model holds
its weights, which you load into a model you build yourself.
"""

import json
import pickletools
import zipfile
from dataclasses import asdict
from pathlib import Path

import torch

from ._io import atomic_write, check_output_path
from .config import default_device
from .pipeline import upgrade_legacy_checkpoint, upgrade_legacy_config, upgrade_legacy_state_dict
from .unet import UNet, UNetConfig

FORMAT = "ddpm_helpers.checkpoint.v1"
RANDOM_STREAM = 2  # how training draws its random numbers (2: exact 63-bit seeds, whole-batch draws)
PRETRAINED_PATH = Path(__file__).parent / "weights" / "digits_unet.safetensors"
EXPORT_DTYPES = ("auto", "fp32", "fp16")


def _plain(value):
    """Config values as plain lists/dicts/numbers/strings, which weights_only loading accepts."""
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return str(value) if isinstance(value, torch.device) else value


def _is_diffusers_model(model):
    return type(model).__module__.startswith("diffusers.") and hasattr(getattr(model, "config", None), "keys")


def _model_config(model):
    """Our UNet's config, or diffusers' config with its ``_class_name`` (as in its config.json); else None."""
    config = getattr(model, "config", None)
    if isinstance(config, UNetConfig):
        return _plain(asdict(config))
    if _is_diffusers_model(model):
        return {"_class_name": type(model).__name__,
                **{k: _plain(v) for k, v in config.items() if not k.startswith("_")}}
    return None


def portable_scheduler_config(scheduler):
    """The scheduler settings both DDPMScheduler and DDIMScheduler accept."""
    keys = ("num_train_timesteps", "beta_start", "beta_end", "beta_schedule", "clip_sample")
    return {key: _plain(scheduler.config[key]) for key in keys}


def save_checkpoint(path, state):
    """Write a resumable checkpoint of ``state`` (a TrainState) to ``path``, atomically."""
    model = state.model
    checkpoint = {
        "format": FORMAT, "random_stream": RANDOM_STREAM, "step": state.step, "images_seen": state.images_seen,
        "elapsed": state.elapsed, "losses": list(state.losses), "num_processes": state.num_processes,
        "bucket_sums": list(state.bucket_sums), "bucket_counts": list(state.bucket_counts),
        "model": model.state_dict(), "ema": state.ema.state_dict(), "optimizer": state.optimizer.state_dict(),
        "train_config": _plain(asdict(state.config)), "model_config": _model_config(model),
        "model_class": f"{type(model).__module__}.{type(model).__qualname__}",
        "scheduler_config": portable_scheduler_config(state.scheduler),
    }
    atomic_write(path, lambda tmp: torch.save(checkpoint, tmp))


def _missing(path):
    path = Path(path)
    if path.is_dir():
        inside = path / "checkpoint.pt"
        return ValueError(f"{str(path)!r} is a folder, not a checkpoint file"
                          + (f"; did you mean {str(inside)!r}?" if inside.is_file() else "."))
    return FileNotFoundError(
        f"No checkpoint at {str(path)!r}. Train first with `python -m ddpm_helpers train --out runs/digits` "
        "(writes runs/digits/checkpoint.pt), or load the shipped weights with load_pretrained().")


_MAGIC = {b"\x89PNG": "a PNG image", b"\xff\xd8\xff": "a JPEG image", b"GIF8": "a GIF image",
          b"%PDF": "a PDF document", b"\x1f\x8b": "a gzip archive", b"{": "a JSON/text file"}


def _sniff(path):
    """What the file's first bytes say it is: 'zip' (torch.save), 'safetensors', another known kind, or None."""
    with open(path, "rb") as f:
        head = f.read(16)
    if head.startswith(b"PK\x03\x04"):
        return "zip"
    if len(head) >= 9 and head[8:9] == b"{" and 0 < int.from_bytes(head[:8], "little") < 100_000_000:
        return "safetensors"
    return next((kind for magic, kind in _MAGIC.items() if head.startswith(magic)), "empty" if not head else None)


def _pickled_objects(path):
    """The classes and functions (other than torch's tensor plumbing) named in the pickle inside
    a torch.save zip file; None when the zip or the pickle is damaged."""
    try:
        with zipfile.ZipFile(path) as archive:
            name = next((n for n in archive.namelist() if n.endswith("/data.pkl") or n == "data.pkl"), None)
            if name is None or archive.testzip() is not None:
                return None
            data = archive.read(name)
        strings, found = [], set()
        for opcode, arg, _ in pickletools.genops(data):
            if opcode.name in ("GLOBAL", "INST"):
                found.add(tuple(arg.split(" ", 1)))
            elif opcode.name == "STACK_GLOBAL" and len(strings) >= 2:
                found.add(tuple(strings[-2:]))
            elif isinstance(arg, str):
                strings.append(arg)
    except Exception:  # zipfile, zlib and pickletools raise many kinds of errors on damaged data
        return None
    # what torch.save writes for tensors and state_dicts: storages, dtypes, rebuild helpers, containers
    plumbing = ("torch", "torch._utils", "torch._tensor", "torch.serialization", "collections")
    containers = {("builtins", name) for name in ("set", "frozenset", "bytearray", "slice", "complex")}
    containers |= {("__builtin__", name) for _, name in containers}
    return sorted(f"{module}.{name}" for module, name in found if module not in plumbing and (module, name)
                  not in containers)


def _unreadable(path, kind_wanted):
    """The ValueError for a file torch.load (weights_only) or safetensors could not read: says
    what the file is, and only calls it corrupt when it is one of ours that got damaged."""
    p = repr(str(path))
    kind = _sniff(path)
    if kind == "empty":
        return ValueError(f"{p} is empty (0 bytes): an interrupted copy or download? Train or download it again.")
    if kind == "safetensors" and kind_wanted == "checkpoint":
        return ValueError(f"{p} is a .safetensors weights file (what export writes), not a training checkpoint; "
                          f"load it with load_pretrained({p}).")
    if kind == "zip" and kind_wanted == "weights":
        return ValueError(f"{p} is a training checkpoint (torch.save), not an exported .safetensors weights file; "
                          f"load it with load_model({p}), or export it first: python -m ddpm_helpers export "
                          f"{str(path)} weights.safetensors")
    if kind == "zip":
        objects = _pickled_objects(path)
        if objects:
            return ValueError(f"{p} holds pickled Python objects ({', '.join(objects[:3])}), not only tensors and "
                              "numbers; refusing to run code from it. Only if you trust its source, read it with "
                              "torch.load(path, weights_only=False) and re-save what you need with save_checkpoint().")
    if kind in ("zip", "safetensors"):
        return ValueError(f"{p} is corrupt or truncated (an interrupted write or download?); it cannot be read. "
                          "Train again from an earlier checkpoint, or download it again.")
    what = f"it is {kind}" if kind else "its bytes are in neither torch.save's nor safetensors' format"
    wanted = "training checkpoint (save_checkpoint)" if kind_wanted == "checkpoint" else \
        ".safetensors weights file (export_weights)"
    return ValueError(f"{p} is not a ddpm_helpers {wanted}: {what}. Check the path.")


def _check_model_config(checkpoint, model, path):
    stored, current = checkpoint.get("model_config"), _model_config(model)
    if stored is None or current is None:
        return
    stored, current = ({k: v for k, v in c.items() if not k.startswith("_")} for c in (stored, current))
    if stored == current:
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
    if _sniff(path) != "zip":  # torch.load would read a .safetensors file too, as a bare state_dict
        raise _unreadable(path, "checkpoint")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:
        raise _unreadable(path, "checkpoint") from error
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != FORMAT:
        bare = isinstance(checkpoint, dict) and checkpoint and all(isinstance(v, torch.Tensor)
                                                                   for v in checkpoint.values())
        raise ValueError(f"{str(path)!r} is not a ddpm_helpers training checkpoint (written by save_checkpoint)"
                         + ("; it looks like a bare state_dict: model.load_state_dict(torch.load(path, "
                            "weights_only=True))" if bare else "."))
    checkpoint = upgrade_legacy_checkpoint(checkpoint)  # written before the UNet took diffusers' names?
    if model is not None:
        _check_model_config(checkpoint, model, path)
        model.load_state_dict(checkpoint["model"])
    return checkpoint


def _build_model(model_config, device):
    return UNet(**upgrade_legacy_config(model_config)).to(default_device(device))


def _rebuild(model_config, device, path, model_class=None):
    """The model a checkpoint or export was trained with: our UNet or diffusers' UNet2DModel."""
    if model_config is None:
        raise ValueError(f"{str(path)!r} was trained with a model that ddpm_helpers cannot rebuild ("
                         f"{model_class or 'not our UNet or a diffusers UNet2DModel'}); build that model yourself "
                         "and load the weights: model.load_state_dict(load_checkpoint(path)['ema']['shadow'])")
    name = model_config.get("_class_name")
    if name is None:
        return _build_model(model_config, device)
    if name != "UNet2DModel":
        raise ValueError(f"{str(path)!r} holds a diffusers {name}; ddpm_helpers rebuilds only UNet2DModel. Build it "
                         f"with diffusers.{name}.from_config(checkpoint['model_config']) and load the weights.")
    from diffusers import UNet2DModel

    return UNet2DModel.from_config(model_config).to(default_device(device))


def load_model(path, device=None):
    """(model with the EMA weights, in eval mode, scheduler_config dict) from a training checkpoint.
    Sample with ``DDIMScheduler(**scheduler_config)`` or ``DDPMScheduler(**scheduler_config)``."""
    checkpoint = load_checkpoint(path)
    model = _rebuild(checkpoint["model_config"], device, path, checkpoint.get("model_class"))
    model.load_state_dict(checkpoint["ema"]["shadow"])
    return model.eval(), checkpoint["scheduler_config"]


def export_weights(checkpoint_path, out_path, dtype="auto"):
    """Write a checkpoint's EMA weights alone to a ``.safetensors`` file, the model and scheduler
    configs as JSON in its metadata. ``dtype``: "fp32", "fp16", or "auto" (fp16 above 8 MB)."""
    from safetensors.torch import save_file

    if dtype not in EXPORT_DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(map(repr, EXPORT_DTYPES))}; got {dtype!r}")
    check_output_path(out_path, "out_path")
    checkpoint = load_checkpoint(checkpoint_path)
    weights = checkpoint["ema"]["shadow"]
    if dtype == "auto":
        dtype = "fp16" if sum(w.numel() for w in weights.values()) * 4 > 8e6 else "fp32"
    torch_dtype = torch.float16 if dtype == "fp16" else torch.float32
    tensors = {name: w.to(torch_dtype).contiguous() for name, w in weights.items()}
    metadata = {"model_config": json.dumps(checkpoint["model_config"]),
                "scheduler_config": json.dumps(checkpoint["scheduler_config"]),
                "model_class": checkpoint.get("model_class", ""),
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
        raise _unreadable(path, "weights") from error
    if "model_config" not in metadata:
        raise ValueError(f"{str(path)!r} has no model_config metadata; write it with export_weights().")
    model = _rebuild(json.loads(metadata["model_config"]), device, path, metadata.get("model_class"))
    model.load_state_dict({name: w.float() for name, w in upgrade_legacy_state_dict(weights).items()})
    return model.eval(), json.loads(metadata["scheduler_config"])
