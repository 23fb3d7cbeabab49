"""The UNet's argument checks (its config, x_t, t, class labels), built on ``_checks``' rules,
so that unet.py reads as lesson 3 and every mistake still gets an error that says how to fix it."""

import numbers

import torch

from . import _checks

DOWN_BLOCK_TYPES = ("DownBlock2D", "AttnDownBlock2D")
UP_BLOCK_TYPES = ("UpBlock2D", "AttnUpBlock2D")
RENAMED = {"image_size": "sample_size", "norm_groups": "norm_num_groups", "time_embed_dim": "time_embedding_dim",
           "attention_heads": "attention_head_dim (channels per head: width // heads)",
           "attention_at_lowest": "down_block_types / up_block_types ('AttnDownBlock2D' / 'AttnUpBlock2D')"}


def check_option_names(config, overrides, config_class):
    """``UNet(config, **overrides)``: config a UNetConfig or None, every override a config field."""
    if config is not None and not isinstance(config, config_class):
        raise TypeError(f"config must be a UNetConfig, got {type(config).__name__}; for a diffusers config dict "
                        "use UNet.from_config(config), for keyword options UNet(in_channels=3, ...)")
    valid = list(config_class.__dataclass_fields__)
    for name in overrides:
        if name in RENAMED:
            raise TypeError(f"UNet option {name!r} is now {RENAMED[name]}, diffusers' UNet2DModel name")
        if name not in valid:
            raise TypeError(f"unknown UNet option {name!r}; valid options: {', '.join(valid)}")


def check_config(cfg):
    """Every field of a UNetConfig, with errors that name the field and what is allowed."""
    fix = object.__setattr__  # the dataclass is frozen: lists become tuples here, once
    widths = cfg.block_out_channels
    if isinstance(widths, (str, bytes)) or not isinstance(widths, (tuple, list)) or not widths:
        raise TypeError(f"block_out_channels must be a non-empty tuple of ints, one width per level, e.g. "
                        f"(32, 48, 64); got {widths!r}")
    widths = tuple(_checks.positive_int(w, "block_out_channels[i]") for w in widths)
    fix(cfg, "block_out_channels", widths)
    levels = len(widths)
    for name in ("in_channels", "layers_per_block", "norm_num_groups", "num_train_timesteps"):
        _checks.positive_int(getattr(cfg, name), name)
    for name, none_means in (("out_channels", "in_channels"), ("attention_head_dim", "one head per attention"),
                             ("time_embedding_dim", "4 * block_out_channels[0]"), ("sample_size", "not recorded"),
                             ("num_class_embeds", "an unconditional model")):
        if getattr(cfg, name) is not None:
            _checks.positive_int(getattr(cfg, name), name, hint=f"or None for {none_means}")
    if cfg.sample_size is not None and cfg.sample_size % 2 ** (levels - 1):
        raise ValueError(f"sample_size={cfg.sample_size} must be divisible by {2 ** (levels - 1)}: "
                         f"{levels} levels halve it {levels - 1} times; use e.g. {2 ** (levels - 1) * 8}")
    for name, allowed in (("down_block_types", DOWN_BLOCK_TYPES), ("up_block_types", UP_BLOCK_TYPES)):
        given = getattr(cfg, name)
        if given is None:
            continue
        if isinstance(given, str) or not isinstance(given, (tuple, list)):
            raise TypeError(f"{name} must be a tuple of block names, one per level, e.g. {(allowed[0],) * levels}; "
                            f"got {given!r}")
        for kind in given:
            _checks.one_of(kind, name, allowed, hint="the course's UNet has no other diffusers block type")
        if len(given) != levels:
            raise ValueError(f"{name} has {len(given)} entries but block_out_channels has {levels} levels; "
                             "give one block type per level")
        fix(cfg, name, tuple(given))
    bad = [w for w in widths if w % cfg.norm_num_groups]
    if bad:
        raise ValueError(f"every width in block_out_channels={widths} must be divisible by norm_num_groups="
                         f"{cfg.norm_num_groups} (GroupNorm splits channels into equal groups); {bad} are not")
    down, up = cfg.block_types()
    attended = {widths[-1]} | {w for w, kind in zip(widths, down) if kind.startswith("Attn")} | {
        w for w, kind in zip(reversed(widths), up) if kind.startswith("Attn")}
    bad = sorted(w for w in attended if cfg.attention_head_dim and w % cfg.attention_head_dim)
    if bad:
        raise ValueError(f"attention_head_dim={cfg.attention_head_dim} must divide every width with attention "
                         f"(the middle, {widths[-1]}, and the Attn blocks); {bad} are not divisible. Use a divisor, "
                         "or None for one head per attention")
    _checks.real(cfg.norm_eps, "norm_eps", low=0, low_open=True)
    _checks.one_of(_checks.integer(cfg.downsample_padding, "downsample_padding"), "downsample_padding", (0, 1),
                   hint="1 pads the stride-2 conv on every side, 0 pads only right and bottom")
    if not isinstance(cfg.flip_sin_to_cos, bool):
        raise TypeError(f"flip_sin_to_cos must be True or False, got {cfg.flip_sin_to_cos!r}")
    _checks.real(cfg.freq_shift, "freq_shift", low=0, high=widths[0] // 2, high_open=True,
                 hint="it is subtracted from half the embedding width, block_out_channels[0] / 2")
    _checks.real(cfg.dropout, "dropout", low=0, high=1, high_open=True)


def check_inputs(cfg, sample, timestep, class_labels):
    """forward's arguments: return t as a (B,) tensor on sample's device and the labels (B,) or None."""
    if not (isinstance(sample, torch.Tensor) and sample.is_floating_point()):  # raises the TypeError
        _checks.float_tensor(sample, "sample", hint="the model takes float images (B, C, H, W) scaled to [-1, 1]: "
                             "convert with x.float(), a numpy array with torch.from_numpy(x).float()")
    if sample.ndim != 4:
        raise ValueError(f"sample must be 4-D (B, C, H, W), got shape {tuple(sample.shape)}; "
                         "for a single image use x[None] to add the batch dimension")
    _checks.finite(sample, "sample", hint="NaN or inf in x_t comes from the data or from the step before it "
                   "(a diverged model or sampler)")
    B, C, H, W = sample.shape
    if C != cfg.in_channels:
        raise ValueError(f"sample has {C} channel(s) but the model was built for in_channels={cfg.in_channels}; "
                         f"build UNet(in_channels={C}) for these images")
    factor = 2 ** (len(cfg.block_out_channels) - 1)
    if H % factor or W % factor:
        size = cfg.sample_size or 8 * factor
        raise ValueError(f"sample's size {H}x{W} must be divisible by {factor} (the model halves it "
                         f"{factor.bit_length() - 1} time(s)); resize or pad the images, e.g. to {size}x{size}")
    t = _checks.timesteps(timestep, cfg.num_train_timesteps, B, name="timestep", allow_float=True)
    return t.to(sample.device), check_labels(class_labels, cfg.num_class_embeds, B, sample.device)


def check_labels(labels, num_class_embeds, batch_size, device):
    """class_labels as a (B,) long tensor on ``device``, or None for an unconditional model."""
    K = num_class_embeds
    if K is None:
        if labels is not None:
            raise ValueError("class_labels were given, but this model is unconditional (num_class_embeds=None); "
                             "drop class_labels, or build a conditional model with UNet(num_class_embeds=K + 1)")
        return None
    if labels is None:
        raise ValueError(f"class_labels is required: this model is class-conditional (num_class_embeds={K}); pass "
                         f"one label per image in [0, {K - 1}], e.g. class_labels=torch.tensor([3, 7]); "
                         f"{K - 1} means 'no label'")
    if isinstance(labels, bool) or not isinstance(labels, (numbers.Integral, torch.Tensor, list, tuple)):
        raise TypeError(f"class_labels must be an int or a (B,) integer tensor, got {type(labels).__name__}")
    labels = torch.as_tensor(labels, device=device)
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise TypeError(f"class_labels must hold integer class indices in [0, {K - 1}], got dtype {labels.dtype}; "
                        "use .long()")
    if labels.ndim > 1 or (labels.ndim == 1 and labels.shape[0] not in (1, batch_size)):
        raise ValueError(f"class_labels must be one label or one per image, shape ({batch_size},); "
                         f"got shape {tuple(labels.shape)}")
    labels = labels.reshape(-1)
    if labels.numel() == 0 or not bool(((labels >= 0) & (labels < K)).all()):
        low, high = (labels.min().item(), labels.max().item()) if labels.numel() else ("none", "none")
        raise ValueError(f"class_labels must be in [0, {K - 1}] (num_class_embeds={K}; {K - 1} means 'no label'); "
                         f"got values from {low} to {high}")
    return labels.expand(batch_size)
