"""Our parts in diffusers' formats: UNet2DModel configs and weights, and pipeline folders.

The course's UNet is diffusers' ``UNet2DModel`` weight for weight. Its parameter names are
UNet2DModel's except in three places, which the two key mappings below translate:

    ours (unet.py)                                  diffusers UNet2DModel
    ...attentions.N.to_qkv.weight   (3C, C, 1, 1)   ...attentions.N.to_q / to_k / to_v.weight (C, C) each
    ...attentions.N.to_out.weight   (C, C, 1, 1)    ...attentions.N.to_out.0.weight           (C, C)
    down_blocks.L.downsample.conv / up_blocks.L.upsample.conv
                                                    down_blocks.L.downsamplers.0.conv / ...upsamplers.0.conv
    (biases alike; old hub files' attention names query/key/value/proj_attn are read too)

A pipeline folder, as ``DDPMPipeline.save_pretrained`` writes it and ``from_pretrained`` reads it:

    model_index.json                          {"_class_name": "DDPMPipeline", "unet": [...], "scheduler": [...]}
    unet/config.json                          UNet2DModel's config
    unet/diffusion_pytorch_model.safetensors  the weights, in diffusers' names
    scheduler/scheduler_config.json           the scheduler's config

Writing and reading folders needs only torch, json and safetensors; ``unet_from_diffusers``
and ``unet_to_diffusers`` import diffusers. Also here: reading checkpoints written with the
course's earlier UNet names (``upgrade_legacy_*``).
"""

import json
import re
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path

import torch

from . import _checks
from ._io import atomic_write
from ._scheduler_config import DIFFUSERS_VERSION
from .dpm_solver import DPMSolverMultistepScheduler
from .scheduler import DDIMScheduler, DDPMScheduler
from .unet import UNet, UNetConfig

# UNet2DModel's defaults for the options we implement (a config that omits one means this value)
DIFFUSERS_DEFAULTS = dict(
    sample_size=None, in_channels=3, out_channels=3, block_out_channels=(224, 448, 672, 896), layers_per_block=2,
    down_block_types=("DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"),
    up_block_types=("AttnUpBlock2D", "AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"), attention_head_dim=8,
    norm_num_groups=32, norm_eps=1e-5, downsample_padding=1, flip_sin_to_cos=True, freq_shift=0,
    time_embedding_dim=None, num_class_embeds=None, dropout=0.0, num_train_timesteps=None)
# UNet2DModel's options we do not implement, with the values that mean "off" (the first is its default)
UNSUPPORTED = dict(
    center_input_sample=(False,), time_embedding_type=("positional",), mid_block_type=("UNetMidBlock2D",),
    mid_block_scale_factor=(1,), downsample_type=("conv",), upsample_type=("conv",), act_fn=("silu", "swish"),
    attn_norm_num_groups=(None,), resnet_time_scale_shift=("default",), add_attention=(True,),
    class_embed_type=(None,))
SCHEDULERS = {cls.__name__: cls for cls in (DDPMScheduler, DDIMScheduler, DPMSolverMultistepScheduler)}
PIPELINES = ("DDPMPipeline", "DDIMPipeline")
WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"


# ---- configs ----

def config_from_diffusers(config):
    """A ``UNetConfig`` from a UNet2DModel config dict (``unet/config.json``, or ``unet2d.config``).

    Missing keys take UNet2DModel's defaults, so the result is the network ``UNet2DModel.from_config``
    builds. Keys starting with "_" are metadata. An option we do not implement, set to anything but
    its off value, raises a ValueError naming it; so does a key UNet2DModel does not have.
    """
    if not isinstance(config, Mapping):
        raise TypeError(f"config must be a dict (a UNet2DModel config), got {type(config).__name__}; for a "
                        "UNetConfig use UNet(config)")
    if config.get("_class_name", "UNet2DModel") != "UNet2DModel":
        raise ValueError(f"config describes a {config['_class_name']}, but the course's UNet is a UNet2DModel "
                         "(no text conditioning, 2D images); load that model with diffusers itself")
    unknown = sorted(k for k in config if not k.startswith("_") and k not in DIFFUSERS_DEFAULTS and k not in UNSUPPORTED)
    if unknown:
        raise ValueError(f"config has option(s) {unknown} that UNet2DModel does not have; its options are "
                         f"{', '.join(sorted({**DIFFUSERS_DEFAULTS, **UNSUPPORTED}))}")
    for option, off in UNSUPPORTED.items():
        if option in config:
            _checks.one_of(config[option], option, off, hint="the course's UNet implements Ho et al.'s DDPM UNet "
                           "only; load this model with diffusers' UNet2DModel instead")
    values = {**DIFFUSERS_DEFAULTS, **{k: config[k] for k in DIFFUSERS_DEFAULTS if k in config}}
    if values["num_train_timesteps"] is None:  # UNet2DModel only uses it for "learned" time embeddings
        values["num_train_timesteps"] = UNetConfig.num_train_timesteps
    return UNetConfig(**values)


def diffusers_config(config):
    """A ``UNetConfig`` as the UNet2DModel config dict of the same network (JSON-ready)."""
    down, up = config.block_types()
    ours = {**asdict(config), "out_channels": config.out_channels or config.in_channels, "down_block_types": list(down),
            "up_block_types": list(up), "block_out_channels": list(config.block_out_channels)}
    return {"_class_name": "UNet2DModel", "_diffusers_version": DIFFUSERS_VERSION, **ours,
            **{option: off[0] for option, off in UNSUPPORTED.items()}}


# ---- weights ----

def to_diffusers_state_dict(state_dict):
    """Our UNet's state dict in UNet2DModel's names and shapes (pure torch, see the table above)."""
    out = {}
    for name, tensor in state_dict.items():
        base, _, leaf = name.rpartition(".")  # e.g. "mid_block.attentions.0.to_qkv", "weight"
        if base.endswith(".to_qkv"):
            for part, chunk in zip(("to_q", "to_k", "to_v"), tensor.chunk(3, dim=0)):  # (3C, C, 1, 1) -> 3 x (C, C)
                out[f"{base[:-len('to_qkv')]}{part}.{leaf}"] = chunk.flatten(1) if leaf == "weight" else chunk
        elif base.endswith(".to_out"):
            out[f"{base}.0.{leaf}"] = tensor.flatten(1) if leaf == "weight" else tensor  # (C, C, 1, 1) -> (C, C)
        else:
            out[name.replace(".downsample.", ".downsamplers.0.").replace(".upsample.", ".upsamplers.0.")] = tensor
    return out


_DEPRECATED = {"query": "to_q", "key": "to_k", "value": "to_v", "proj_attn": "to_out.0"}


def from_diffusers_state_dict(state_dict):
    """A UNet2DModel state dict in our UNet's names and shapes (the inverse of to_diffusers_state_dict)."""
    out, qkv = {}, {}
    for name, tensor in state_dict.items():
        match = re.fullmatch(r"(.*\.attentions\.\d+)\.(\w+(?:\.0)?)\.(weight|bias)", name)
        if match is None:
            out[name.replace(".downsamplers.0.", ".downsample.").replace(".upsamplers.0.", ".upsample.")] = tensor
            continue
        base, part, leaf = match[1], _DEPRECATED.get(match[2], match[2]), match[3]
        if part in ("to_q", "to_k", "to_v"):
            qkv.setdefault((base, leaf), {})[part] = tensor
        elif part == "to_out.0":
            out[f"{base}.to_out.{leaf}"] = tensor[:, :, None, None] if leaf == "weight" else tensor  # (C, C, 1, 1)
        else:
            out[f"{base}.{part}.{leaf}"] = tensor  # group_norm
    for (base, leaf), parts in qkv.items():
        if len(parts) != 3:
            raise ValueError(f"{base} has {sorted(parts)} but attention needs to_q, to_k and to_v")
        stacked = torch.cat([parts["to_q"], parts["to_k"], parts["to_v"]])  # (3C, C) or (3C,)
        out[f"{base}.to_qkv.{leaf}"] = stacked[:, :, None, None] if leaf == "weight" else stacked
    return out


def _load_weights(model, state_dict, source):
    """Load ``state_dict`` (our names) into ``model``, or say which weights do not fit."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    wrong = [k for k in expected if k in state_dict and state_dict[k].shape != expected[k].shape]
    if missing or unexpected or wrong:
        raise ValueError(f"the weights of {source} do not fit the model its config describes: missing {missing[:3]}, "
                         f"unexpected {unexpected[:3]}, wrong shape {wrong[:3]}; is the config from the same model?")
    model.load_state_dict(state_dict)
    return model


def unet_from_diffusers(unet2d):
    """Our UNet with the config and weights of a diffusers ``UNet2DModel`` (same device, dtype and mode)."""
    import diffusers

    if not isinstance(unet2d, diffusers.UNet2DModel):
        raise TypeError(f"UNet.from_diffusers takes a diffusers UNet2DModel, got {type(unet2d).__name__}; for a "
                        "config dict use UNet.from_config, for a saved folder load_pipeline(folder)")
    weights = unet2d.state_dict()
    model = UNet.from_config(dict(unet2d.config))
    _load_weights(model, from_diffusers_state_dict(weights), "this UNet2DModel")
    return model.to(device=unet2d.device, dtype=unet2d.dtype).train(unet2d.training)


def unet_to_diffusers(model):
    """A diffusers ``UNet2DModel`` with our UNet's config and weights (same device, dtype and mode)."""
    import diffusers

    unet2d = diffusers.UNet2DModel.from_config(diffusers_config(model.config))
    unet2d.load_state_dict(to_diffusers_state_dict(model.state_dict()))
    if model.dtype != unet2d.dtype:
        unet2d = unet2d.to(dtype=model.dtype)
    return unet2d.to(model.device).train(model.training)


# ---- pipeline folders ----

def _plain(value):
    """Config values as JSON: tuples to lists, tensors and numpy arrays to lists, numpy scalars to numbers."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    return value.tolist() if hasattr(value, "tolist") else value


def _write_json(path, data):
    atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(_plain(data), indent=2, sort_keys=True) + "\n"))


def save_pipeline(folder, unet, scheduler):
    """Write ``folder`` in diffusers' pipeline layout (see the module docstring); returns its Path.

    ``diffusers.DDPMPipeline.from_pretrained(folder)`` loads it, and so does ``load_pipeline(folder)``.
    Needs no diffusers. ``unet``: our UNet (conditional or not), or diffusers' UNet2DModel (converted
    with ``UNet.from_diffusers``, which refuses options we lack); ``scheduler``: our DDPMScheduler,
    DDIMScheduler or DPMSolverMultistepScheduler, or diffusers' scheduler of the same name.
    """
    if type(unet).__name__ == "UNet2DModel":  # diffusers' own: same folder, through our layout
        unet = UNet.from_diffusers(unet)
    if not isinstance(unet, UNet):
        raise TypeError(f"unet must be the course's UNet or diffusers' UNet2DModel, got {type(unet).__name__}")
    name = type(scheduler).__name__
    if name not in SCHEDULERS or not isinstance(getattr(scheduler, "config", None), Mapping):
        raise TypeError(f"scheduler must be a {', '.join(SCHEDULERS)} (ours or diffusers'), got {name}")
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"folder {str(folder)!r} is a file; give the path of a folder to write the pipeline into")
    from safetensors.torch import save_file

    weights = {k: v.detach().cpu().contiguous() for k, v in to_diffusers_state_dict(unet.state_dict()).items()}
    atomic_write(folder / "unet" / WEIGHTS_NAME, lambda tmp: save_file(weights, tmp, metadata={"format": "pt"}))
    _write_json(folder / "unet" / "config.json", diffusers_config(unet.config))
    scheduler.save_config(folder / "scheduler")  # ours and diffusers' schedulers both write scheduler_config.json
    _write_json(folder / "model_index.json", {"_class_name": "DDPMPipeline", "_diffusers_version": DIFFUSERS_VERSION,
                                              "unet": ["diffusers", "UNet2DModel"], "scheduler": ["diffusers", name]})
    return folder


def _read_json(path):
    if not path.is_file():
        raise FileNotFoundError(f"{str(path)!r} is missing: a pipeline folder holds model_index.json, unet/config.json, "
                                f"unet/{WEIGHTS_NAME} and scheduler/scheduler_config.json (save_pipeline writes them)")
    try:
        data = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as error:
        raise ValueError(f"{str(path)!r} is not valid JSON ({error}); re-save the pipeline") from None
    if not isinstance(data, dict):
        raise ValueError(f"{str(path)!r} must hold a JSON object, got {type(data).__name__}")
    return data


def _read_weights(unet_dir):
    """The UNet's state dict from unet/diffusion_pytorch_model.safetensors (or the older .bin)."""
    from safetensors.torch import load_file

    path, legacy = unet_dir / WEIGHTS_NAME, unet_dir / "diffusion_pytorch_model.bin"
    if not path.is_file() and not legacy.is_file():
        raise FileNotFoundError(f"{str(path)!r} is missing: the folder has a UNet config but no weights. Write the "
                                "folder with save_pipeline(folder, unet, scheduler), or download it completely")
    try:
        if path.is_file():
            return load_file(str(path))
        return torch.load(legacy, map_location="cpu", weights_only=True)  # never runs pickled code
    except Exception as error:
        raise ValueError(f"the weights in {str(unet_dir)!r} are corrupt or truncated ({type(error).__name__}); "
                         "write or download the folder again") from None


def load_pipeline(folder):
    """(our UNet in eval mode, our scheduler) from a diffusers pipeline folder: one ``save_pipeline``
    wrote, ``DDPMPipeline.save_pretrained`` wrote, or one downloaded from the hub (e.g. with
    ``huggingface_hub.snapshot_download("google/ddpm-cifar10-32")``). Needs no diffusers."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"No pipeline folder at {str(folder)!r}; write one with save_pipeline(folder, unet, "
                                "scheduler) or DDPMPipeline.save_pretrained(folder)")
    index = _read_json(folder / "model_index.json")
    if index.get("_class_name") not in PIPELINES:
        raise ValueError(f"model_index.json describes a {index.get('_class_name')!r}; load_pipeline reads "
                         f"{' and '.join(PIPELINES)} folders (a UNet2DModel and a scheduler)")
    if list(index.get("unet", []))[1:2] != ["UNet2DModel"]:
        raise ValueError(f"model_index.json's unet is {index.get('unet')!r}; the course's UNet reads a "
                         "['diffusers', 'UNet2DModel']")
    # as in diffusers, a part without its subfolder lives at the top (old hub repos: google/ddpm-*)
    unet_dir, scheduler_dir = (folder / part if (folder / part).is_dir() else folder for part in ("unet", "scheduler"))
    model = UNet.from_config(_read_json(unet_dir / "config.json"))
    _load_weights(model, from_diffusers_state_dict(_read_weights(unet_dir)), str(unet_dir))
    scheduler_config = _read_json(scheduler_dir / "scheduler_config.json")
    entry = index.get("scheduler")
    name = entry[1] if isinstance(entry, list) and len(entry) == 2 else scheduler_config.get("_class_name")
    if name not in SCHEDULERS:
        raise ValueError(f"the folder's scheduler is a {name!r}; load_pipeline knows {', '.join(SCHEDULERS)}. "
                         "Build one of those with from_config(the folder's scheduler_config.json)")
    return model.eval(), SCHEDULERS[name].from_config(scheduler_config)


# ---- checkpoints written with the course's earlier UNet names ----

LEGACY_FIELDS = ("image_size", "norm_groups", "time_embed_dim", "attention_heads", "attention_at_lowest")
_LEGACY_KEYS = [  # applied in order to every parameter name of the earlier layout
    (r"^time_mlp\.0\.", "time_embedding.linear_1."), (r"^time_mlp\.2\.", "time_embedding.linear_2."),
    (r"^(down|up)\.(\d+)\.blocks\.", r"\1_blocks.\2.resnets."), (r"^(down|up)\.(\d+)\.attentions\.", r"\1_blocks.\2.attentions."),
    (r"^(down|up)\.(\d+)\.resample\.", r"\1_blocks.\2.\1sample."), (r"^mid_block1\.", "mid_block.resnets.0."),
    (r"^mid_block2\.", "mid_block.resnets.1."), (r"^mid_attn\.", "mid_block.attentions.0."),
    (r"^norm_out\.", "conv_norm_out."), (r"\.time_proj\.", ".time_emb_proj."), (r"\.skip\.", ".conv_shortcut."),
    (r"(\.attentions\.\d+)\.norm\.", r"\1.group_norm."), (r"\.qkv\.", ".to_qkv."), (r"\.proj\.", ".to_out."),
]


def upgrade_legacy_config(config):
    """A model_config dict written with the earlier names (image_size, norm_groups, attention_heads,
    ...) in today's names, for the same network; today's configs come back unchanged."""
    if not any(name in config for name in LEGACY_FIELDS):
        return config
    widths = list(config["block_out_channels"])
    new = {k: v for k, v in config.items() if k not in LEGACY_FIELDS}
    new.update(sample_size=config.get("image_size", 32), norm_num_groups=config.get("norm_groups", 8),
               time_embedding_dim=config.get("time_embed_dim"), attention_head_dim=widths[-1] // config.get("attention_heads", 4),
               flip_sin_to_cos=False, freq_shift=0, norm_eps=1e-5, downsample_padding=1)  # what that layout computed
    if config.get("attention_at_lowest"):  # attention after every lowest-level block, down and up
        new.update(down_block_types=["DownBlock2D"] * (len(widths) - 1) + ["AttnDownBlock2D"],
                   up_block_types=["AttnUpBlock2D"] + ["UpBlock2D"] * (len(widths) - 1))
    return _plain(asdict(UNetConfig(**new)))


def upgrade_legacy_state_dict(state_dict):
    """Parameter names of the earlier layout in today's names (today's names pass unchanged)."""
    def rename(name):
        for pattern, replacement in _LEGACY_KEYS:
            name = re.sub(pattern, replacement, name)
        return name
    return {rename(name): tensor for name, tensor in state_dict.items()}


def upgrade_legacy_checkpoint(checkpoint):
    """A training checkpoint dict of the earlier layout in today's: config, weights, EMA, and the
    optimizer state renumbered to today's parameter order, so training resumes exactly."""
    config = checkpoint.get("model_config")
    if not isinstance(config, Mapping) or not any(name in config for name in LEGACY_FIELDS):
        return checkpoint
    new_config = upgrade_legacy_config(config)
    old_names = list(checkpoint["model"])  # the optimizer's parameter i is the model's i-th parameter
    old_index = {name: i for i, name in enumerate(upgrade_legacy_state_dict(dict.fromkeys(old_names)))}
    order = [old_index[name] for name, _ in UNet(**new_config).named_parameters()]  # today's j was old order[j]
    optimizer = checkpoint.get("optimizer")
    if optimizer is not None:
        state = optimizer["state"]
        optimizer = {**optimizer, "state": {j: state[i] for j, i in enumerate(order) if i in state}}
    ema = checkpoint.get("ema")
    if ema is not None:
        ema = {**ema, "shadow": upgrade_legacy_state_dict(ema["shadow"])}
    return {**checkpoint, "model_config": new_config, "model": upgrade_legacy_state_dict(checkpoint["model"]),
            "ema": ema, "optimizer": optimizer}
