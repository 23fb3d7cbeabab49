"""How the course's schedulers read and write diffusers' configs (plumbing, not a lesson).

- ``SchedulerConfig`` is ``scheduler.config``: a read-only dict that also reads as attributes,
  like diffusers' FrozenDict, so ``diffusers.DDIMScheduler.from_config(ours.config)`` works.
- ``SchedulerOutput`` is what ``step()`` returns: attributes, keys and tuple positions, like
  diffusers' outputs (``out.prev_sample``, ``out["prev_sample"]``, ``out[0]``).
- ``ConfigMixin`` gives the schedulers ``from_config``, ``save_config`` and ``from_pretrained``
  for the ``scheduler_config.json`` files of diffusers' DDPM, DDIM and DPM-Solver++ schedulers.

The rules of ``from_config(config, **overrides)``, in order:

1. Keys starting with "_" are skipped, and so are the ones diffusers lists in
   ``_use_default_values`` (it filled those in with its defaults; the new scheduler uses its
   own, as diffusers does). ``overrides`` replace values of ``config``.
2. The class's own options go to its constructor, which checks them.
3. Options of diffusers' class of the same name that ours lacks (``trained_betas``,
   ``rescale_betas_zero_snr``, ...) are accepted at the values that mean what ours does (their
   defaults, and values that make no difference) and refused with a ValueError naming them
   otherwise. In a config written by another class (diffusers' ``_class_name``, or the class of
   one of ours), that class's own default is not a request either: DDPM's "leading"
   ``timestep_spacing`` is skipped by DPM-Solver++, which spaces its steps "linspace".
   ``thresholding=True`` with ``sample_max_value=1.0`` clips x_0 to [-1, 1]: that is our
   ``clip_sample=True`` and becomes it. diffusers' DPM-Solver++ has no ``clip_sample`` and clips
   only by thresholding, so its configs (``thresholding`` without ``clip_sample``) give ours
   ``clip_sample=False`` unless they threshold.
4. Options of the sibling schedulers (DDPM's ``variance_type`` given to DDIM, DPM-Solver's
   ``solver_order`` given to DDPM, ...) do not apply: skipped silently at their default, with a
   ``UserWarning`` naming them otherwise, since this sampler will not do what they ask.
5. Any other key is an unknown option (a typo, or another family of schedulers): TypeError.
"""

import inspect
import json
import math
import os
import warnings
from pathlib import Path

from ._io import atomic_write

CONFIG_NAME = "scheduler_config.json"  # diffusers' file name for a scheduler's config
DIFFUSERS_VERSION = "0.42.1"  # the diffusers release whose format we write (and test against)
ANY = "any value"  # an option that has no effect on the class, whatever its value

# Every option of diffusers' DDPM, DDIM and DPMSolverMultistep schedulers (0.42) and of ours,
# with its default (two where the classes differ). A config of any of them may carry these.
OPTION_DEFAULTS = {
    "num_train_timesteps": (1000,), "beta_start": (0.0001,), "beta_end": (0.02,), "beta_schedule": ("linear",),
    "trained_betas": (None,), "prediction_type": ("epsilon",), "clip_sample": (True,), "clip_sample_range": (1.0,),
    "thresholding": (False,), "dynamic_thresholding_ratio": (0.995,), "sample_max_value": (1.0,),
    "timestep_spacing": ("leading", "linspace"), "steps_offset": (0,), "rescale_betas_zero_snr": (False,),
    "variance_type": ("fixed_small", None), "set_alpha_to_one": (True,),
    "solver_order": (2,), "algorithm_type": ("dpmsolver++",), "solver_type": ("midpoint",),
    "lower_order_final": (True,), "euler_at_final": (False,), "use_karras_sigmas": (False,),
    "use_exponential_sigmas": (False,), "use_beta_sigmas": (False,), "use_lu_lambdas": (False,),
    "use_flow_sigmas": (False,), "flow_shift": (1.0,), "final_sigmas_type": ("zero",),
    "lambda_min_clipped": (-math.inf,), "use_dynamic_shifting": (False,), "time_shift_type": ("exponential",),
}
THRESHOLDING = ("thresholding", "dynamic_thresholding_ratio", "sample_max_value")


class SchedulerConfig(dict):
    """A scheduler's constructor arguments: ``config.num_train_timesteps`` or ``config["beta_schedule"]``.

    A read-only ``dict`` (like diffusers' FrozenDict): copy it with ``dict(config)`` or
    ``{**config, "clip_sample": False}``, and build a new scheduler from that.
    ``config._class_name`` (an attribute, not a key) names the class it belongs to.
    """

    def __init__(self, values=(), class_name=None):
        super().__init__(values)
        object.__setattr__(self, "_class_name", class_name)

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"config has no field {name!r}; fields: {', '.join(self)}") from None

    def __setattr__(self, name, value):
        raise AttributeError("config is read-only; build a new scheduler with the values you want: "
                             "type(scheduler).from_config(scheduler.config, option=value).")

    def _read_only(self, *args, **kwargs):
        raise TypeError("config is read-only; copy it with dict(config) or {**config, 'option': value}.")

    __setitem__ = __delitem__ = __ior__ = clear = pop = popitem = setdefault = update = _read_only

    def __reduce__(self):
        # copy, deepcopy and pickle rebuild it from a plain dict (its own __setitem__ refuses)
        return (type(self), (dict(self), self._class_name))

    def __repr__(self):
        return "SchedulerConfig(" + ", ".join(f"{k}={v!r}" for k, v in self.items()) + ")"


class SchedulerOutput(dict):
    """What ``step()`` returns: x_{t_prev} and the x_0 it was built from, both shaped like the sample.

    As in diffusers: ``out.prev_sample``, ``out["prev_sample"]``, ``out[0]`` and ``out.to_tuple()``.
    """

    def __init__(self, prev_sample, pred_original_sample):
        super().__init__(prev_sample=prev_sample, pred_original_sample=pred_original_sample)

    prev_sample = property(lambda self: self["prev_sample"], doc="x_{t_prev}: the next loop's input")
    pred_original_sample = property(lambda self: self["pred_original_sample"], doc="x_0 predicted from x_t")

    def __getitem__(self, key):
        # a name, as in a dict, or a position, as in a tuple (diffusers' BaseOutput)
        return super().__getitem__(key) if isinstance(key, str) else self.to_tuple()[key]

    def to_tuple(self):
        return tuple(self.values())


def _is_one_of(value, allowed):
    """``value in allowed`` for scalars; arrays, tensors and lists (e.g. trained betas) never match."""
    if allowed is ANY:
        return True
    if hasattr(value, "shape") or isinstance(value, (list, tuple, dict, set)):
        return False
    return any(value is a or value == a for a in allowed)


class ConfigMixin:
    """``from_config``, ``save_config`` and ``from_pretrained`` on diffusers' file format (see the module)."""

    # options of diffusers' class of the same name that this class lacks -> the values that mean what it does
    _diffusers_only = {}
    _diffusers_has_no_clip_sample = False  # True where diffusers' namesake clips x_0 only by thresholding

    @classmethod
    def _own_options(cls):
        return [name for name in inspect.signature(cls.__init__).parameters if name != "self"]

    @classmethod
    def from_config(cls, config, **overrides):
        """A new scheduler from ``config`` (ours or diffusers', e.g. ``other.config``) with ``overrides``
        on top: ``DDIMScheduler.from_config(ddpm.config, timestep_spacing="trailing")``. Options this
        class does not have are handled as the module docstring says."""
        if not isinstance(config, dict):
            raise TypeError(f"config must be a dict of scheduler options such as scheduler.config, got "
                            f"{type(config).__name__}; to read a folder use {cls.__name__}.from_pretrained(folder).")
        # 1. what the config asks for: not private keys, not diffusers' filled-in defaults
        defaulted = set(config.get("_use_default_values", ()))
        options = {k: v for k, v in config.items() if not str(k).startswith("_") and k not in defaulted}
        source = getattr(config, "_class_name", None) or config.get("_class_name")
        if source not in (None, cls.__name__):  # another sampler's defaults are not requests to this one
            options = {k: v for k, v in options.items()
                       if not (k in cls._diffusers_only and _is_one_of(v, OPTION_DEFAULTS.get(k, ())))}
        options.update(overrides)
        # 2.-5. our options, diffusers' that we lack, siblings', unknown ones
        kwargs = cls._own_and_checked(options)
        # diffusers' thresholding: a clip to [-1, 1] at sample_max_value=1; DPM-Solver's only clip there
        cls._refuse_unless("thresholding", options.get("thresholding", False), (False, True))
        if options.get("thresholding", False):
            cls._refuse_unless("sample_max_value", options.get("sample_max_value", 1.0), (1.0,),
                               "with thresholding=True, where dynamic thresholding clips x_0 to [-1, 1]")
            kwargs.update(clip_sample=True, clip_sample_range=1.0)
        elif cls._diffusers_has_no_clip_sample and "thresholding" in config and "clip_sample" not in config:
            kwargs.setdefault("clip_sample", False)  # a config of diffusers' class, which does not clip x_0
        return cls(**kwargs)

    @classmethod
    def _own_and_checked(cls, options):
        """The constructor arguments among ``options``; refuses or warns about the others (rules 3-5)."""
        own = cls._own_options()
        ignored = {}
        for name, value in options.items():
            if name in own or name in THRESHOLDING:
                continue
            if name in cls._diffusers_only:
                cls._refuse_unless(name, value, cls._diffusers_only[name])
            elif name in OPTION_DEFAULTS:
                if not _is_one_of(value, OPTION_DEFAULTS[name]):
                    ignored[name] = value
            else:
                raise TypeError(f"{cls.__name__}.from_config got the unknown option {name!r}; {cls.__name__} "
                                f"takes {', '.join(own)} (and diffusers' DDPM, DDIM and DPM-Solver++ options).")
        if ignored:
            listed = ", ".join(f"{k}={v!r}" for k, v in ignored.items())
            warnings.warn(f"{cls.__name__}.from_config ignores {listed}: options of another scheduler, which "
                          f"{cls.__name__} does not have, so it will not do what they ask.", UserWarning, stacklevel=3)
        return {name: value for name, value in options.items() if name in own}

    @classmethod
    def _refuse_unless(cls, name, value, allowed, where=""):
        if not _is_one_of(value, allowed):
            supported = " or ".join(repr(a) for a in allowed)
            raise ValueError(
                f"{cls.__name__} does not support {name}={value!r}; it supports {name}={supported}"
                f"{' ' + where if where else ''}. To build it from this config anyway, override the option: "
                f"{cls.__name__}.from_config(config, {name}={allowed[0]!r}) (its samples will then differ "
                f"from those of diffusers' scheduler with {name}={value!r}).")

    def save_config(self, save_directory):
        """Write ``save_directory/scheduler_config.json`` (the folder is created if needed), the file
        ``from_pretrained`` here and in diffusers reads. Returns the file's path."""
        if not isinstance(save_directory, (str, os.PathLike)):
            raise TypeError(f"save_directory must be a folder path (str or Path), got {type(save_directory).__name__}.")
        folder = Path(save_directory)
        if folder.exists() and not folder.is_dir():
            raise ValueError(f"save_directory={str(folder)!r} is a file; give a folder, e.g. 'my_model/scheduler'.")
        data = {**self.config, "_class_name": type(self).__name__, "_diffusers_version": DIFFUSERS_VERSION}
        text = json.dumps(data, indent=2, sort_keys=True) + "\n"
        path = folder / CONFIG_NAME
        atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
        return path

    save_pretrained = save_config  # diffusers' name for it

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, subfolder=None, **overrides):
        """A scheduler from a local folder holding ``scheduler_config.json`` (written by ``save_config``
        or by diffusers), or from that file itself; ``subfolder="scheduler"`` for a pipeline's folder.
        Offline only: download a hub model first (``huggingface_hub.snapshot_download``)."""
        if not isinstance(pretrained_model_name_or_path, (str, os.PathLike)):
            raise TypeError("pretrained_model_name_or_path must be a folder path (str or Path), got "
                            f"{type(pretrained_model_name_or_path).__name__}.")
        folder = Path(pretrained_model_name_or_path) / (subfolder or "")
        path = folder if folder.is_file() else folder / CONFIG_NAME
        if not path.is_file():
            raise FileNotFoundError(cls._missing_config_message(folder))
        try:
            config = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ValueError(f"{path} is not a JSON scheduler config ({error}); re-save it with "
                             "scheduler.save_config(folder).") from None
        if not isinstance(config, dict):
            raise ValueError(f"{path} holds a JSON {type(config).__name__}, not a scheduler config (a JSON object).")
        return cls.from_config(config, **overrides)

    @staticmethod
    def _missing_config_message(folder):
        if not folder.exists():
            return (f"No folder {str(folder)!r}. from_pretrained reads local folders only (the course runs "
                    "offline); download a hub model first, e.g. huggingface_hub.snapshot_download(repo_id).")
        if (folder / "scheduler" / CONFIG_NAME).is_file():
            return f"{folder} is a pipeline folder: pass subfolder='scheduler'."
        return f"No {CONFIG_NAME} in {folder}; write one with scheduler.save_config(folder)."
