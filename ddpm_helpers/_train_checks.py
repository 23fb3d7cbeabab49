"""The checks of train()'s arguments, kept apart so that training.py reads as the algorithm.

Each error names the argument, what was given and what is allowed (see _checks.py)."""

import inspect
from pathlib import Path

import torch

from . import _checks, parallel
from .schedules import BETA_SCHEDULES


OPTIONAL = ("num_steps", "grad_clip", "checkpoint_every_s", "time_budget_s", "min_snr_gamma",
            "timestep_logit_std", "lr_cooldown")  # None allowed


def check_config(config):
    """Refuse TrainConfig values that cannot train; store numpy numbers and such as Python's."""
    c = _checks
    for name, rule, kwargs in [
            ("batch_size", c.integer, dict(low=1)),
            ("learning_rate", c.real, dict(low=0, low_open=True, hint="e.g. 1e-3")),
            ("warmup_steps", c.integer, dict(low=0, hint="0 turns warmup off")),
            ("weight_decay", c.real, dict(low=0)),
            ("ema_decay", c.real, dict(low=0, high=1, high_open=True, hint="e.g. 0.999")),
            ("seed", c.integer, dict(low=0)),
            ("num_train_timesteps", c.integer, dict(low=2)),
            ("label_dropout", c.real, dict(low=0, high=1, high_open=True, hint="Ho & Salimans use 0.1 or 0.2")),
            ("checkpoint_every", c.integer, dict(low=1)),
            ("log_every", c.integer, dict(low=1)),
            ("num_steps", c.integer, dict(low=1, hint="or None to train until time_budget_s runs out")),
            ("grad_clip", c.real, dict(low=0, low_open=True, hint="None turns clipping off")),
            ("checkpoint_every_s", c.real, dict(low=0, low_open=True, hint="or None")),
            ("time_budget_s", c.real, dict(low=0, low_open=True, hint="or None")),
            ("min_snr_gamma", c.real, dict(low=0, low_open=True, hint="Hang et al. use 5; None turns it off")),
            ("timestep_logit_std", c.real, dict(low=0, low_open=True, hint="e.g. 1; None draws t uniformly")),
            ("lr_cooldown", c.real, dict(low=0, high=1, low_open=True, hint="e.g. 1; None keeps the lr constant"))]:
        value = getattr(config, name)
        if value is not None or name not in OPTIONAL:
            setattr(config, name, rule(value, name, **kwargs))
    c.one_of(config.beta_schedule, "beta_schedule", BETA_SCHEDULES)
    c.one_of(config.mixed_precision, "mixed_precision", parallel.MIXED_PRECISION)
    c.one_of(config.bf16, "bf16", (None, True, False, "auto"), hint="or use mixed_precision")
    if config.bf16 in (True, False):
        config.mixed_precision = "bf16" if config.bf16 else "no"
    if config.device is not None and not isinstance(config.device, (str, torch.device)):
        raise TypeError(f"device must be a string such as 'cpu' or 'cuda', or None; got {config.device!r}")
    if config.num_steps is None and config.time_budget_s is None:
        raise ValueError("give num_steps or time_budget_s (or both), or training never stops.")


def call_kwargs(model):
    """return_dict=False for models called the diffusers way; nothing for a plain ``forward(x, t)``."""
    parameters = inspect.signature(model.forward).parameters
    takes = "return_dict" in parameters or any(p.kind is p.VAR_KEYWORD for p in parameters.values())
    return {"return_dict": False} if takes else {}


def null_label(model):
    """The "no label" index K of a class-conditional model (num_class_embeds = K + 1), else None."""
    num_class_embeds = getattr(getattr(model, "config", None), "num_class_embeds", None)
    if num_class_embeds is None:
        return None
    parameters = inspect.signature(model.forward).parameters
    if "class_labels" not in parameters:
        raise TypeError(f"model.config.num_class_embeds={num_class_embeds} makes the model class-conditional, but "
                        "its forward() takes no class_labels; call signature: model(x_t, t, class_labels=y)")
    return _checks.integer(num_class_embeds, "model.config.num_class_embeds", low=2,
                           hint="K classes need K + 1 embeddings: the last one means 'no label'") - 1


def check_arguments(model, dataset, config, checkpoint_path, callbacks):
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module (our UNet, diffusers' UNet2DModel ...), "
                        f"got {type(model).__name__}")
    if type(config).__name__ != "TrainConfig":
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}; e.g. TrainConfig(num_steps=100)")
    if not hasattr(dataset, "__getitem__") or not hasattr(dataset, "__len__"):
        raise TypeError(f"dataset must be indexable with a length (e.g. data.load_dataset('digits')), "
                        f"got {type(dataset).__name__}")
    if len(dataset) == 0:
        raise ValueError("dataset is empty (0 images); check the folder or the split, or use "
                         "data.load_dataset('digits')")
    if checkpoint_path is not None and Path(checkpoint_path).is_dir():
        raise ValueError(f"checkpoint_path {str(checkpoint_path)!r} is a folder; name the file, e.g. "
                         f"{str(Path(checkpoint_path) / 'checkpoint.pt')!r}")
    if callable(callbacks) or not all(callable(cb) for cb in callbacks):
        raise TypeError("callbacks must be a list of functions cb(state), e.g. callbacks=[LiveLossPlot()]")


def check_labels(labels, null_label):
    """A class-conditional model's labels must exist and lie in [0, K - 1]; K = null_label means 'no label'."""
    K = null_label
    if labels is None or (labels < 0).any():
        raise ValueError("a class-conditional model needs labelled images, but this dataset has no labels (or "
                         "-1 for 'none'); use a dataset with labels, e.g. the digits or a folder with one "
                         "subfolder per class, or train a model without num_class_embeds")
    if labels.max().item() >= K:
        raise ValueError(f"labels must be in [0, {K - 1}] for num_class_embeds={K + 1} (label {K} means 'no "
                         f"label'), but the data holds label {labels.max().item()}; build the model with "
                         f"num_class_embeds={labels.max().item() + 2}")
