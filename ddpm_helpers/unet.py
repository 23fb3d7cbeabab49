"""The noise-prediction network eps_theta(x_t, t): the DDPM UNet (Ho et al. 2020, app. B),
block for block the network of diffusers' ``UNet2DModel``.

Shape of the network, top to bottom (default config, 32x32 grayscale):

    x_t (B, 1, 32, 32) -> conv_in -> (B, 32, 32, 32)
    down_blocks, one per level: ResidualBlocks (each followed by SelfAttention in an
        "AttnDownBlock2D"), then a stride-2 Downsample except at the lowest level;
        every output is kept as a skip connection
    mid_block: ResidualBlock, SelfAttention, ResidualBlock at the lowest resolution
    up_blocks, lowest level first: one ResidualBlock more than going down, each fed the
        output so far concatenated with the last unused skip; then an Upsample except at the top
    GroupNorm, SiLU, conv_out -> eps_pred (B, 1, 32, 32)

The timestep t enters every ResidualBlock through a sinusoidal embedding and a small MLP;
a class-conditional model (``num_class_embeds``) adds a learned vector per label to it.
Timesteps are 0-indexed like diffusers: 0 <= t < num_train_timesteps.

Outside, it speaks diffusers: ``UNetConfig`` has UNet2DModel's field names; ``model(x_t, t)``
returns a ``UNetOutput`` whose ``.sample`` is eps_pred, ``model(x_t, t, return_dict=False)[0]``
is the bare tensor, ``model(x_t, t, class_labels=y)`` conditions on labels. The parameter
names are UNet2DModel's too, except that attention computes q, k, v with one 1x1 conv
(``to_qkv``) and resamplers are single modules; ``UNet.from_diffusers`` / ``to_diffusers``
convert exactly (pipeline.py holds the mapping and the folder format).
"""

import math
from contextlib import nullcontext
from dataclasses import dataclass, replace
from functools import lru_cache

import torch
import torch.nn as nn
import torch.nn.functional as F

from ._unet_checks import check_config, check_inputs, check_option_names


@dataclass(frozen=True)
class UNetConfig:
    """The architecture, in UNet2DModel's names; the defaults are the course's digits model."""

    sample_size: int | None = 32  # training resolution H = W; any size divisible by 2**(levels - 1) runs
    in_channels: int = 1  # image channels: 1 grayscale, 3 RGB
    out_channels: int | None = None  # channels predicted; None means in_channels (eps has x_t's shape)
    block_out_channels: tuple = (32, 48, 64)  # width of each resolution level, highest first
    layers_per_block: int = 1  # ResidualBlocks per level going down (one more going up)
    down_block_types: tuple | None = None  # per level, highest first: "DownBlock2D" or "AttnDownBlock2D";
    # None means "DownBlock2D" everywhere (attention only in the middle, the fast choice on a CPU)
    up_block_types: tuple | None = None  # per level, LOWEST first: "UpBlock2D" or "AttnUpBlock2D"
    attention_head_dim: int | None = 16  # channels per attention head (heads = width // it); None: one head
    norm_num_groups: int = 8  # GroupNorm groups; every width must be divisible by it
    norm_eps: float = 1e-5  # GroupNorm epsilon
    downsample_padding: int = 1  # 1: the stride-2 conv pads each side; 0: pad right and bottom only (Ho et al.)
    flip_sin_to_cos: bool = False  # time embedding order: False sin then cos, True cos then sin
    freq_shift: float = 0  # frequency i is 10000 ** (-i / (half - freq_shift)); Ho et al.'s code used 1
    time_embedding_dim: int | None = None  # width of the time embedding; None means 4 * block_out_channels[0]
    num_class_embeds: int | None = None  # labels of a class-conditional model: K classes + 1 "no label"
    dropout: float = 0.0  # dropout inside ResidualBlocks (Ho et al. use 0.1 on CIFAR-10)
    num_train_timesteps: int = 1000  # T of the noise schedule; valid timesteps are 0 .. T-1

    def __post_init__(self):
        check_config(self)

    def block_types(self):
        """(down_block_types, up_block_types) with None spelled out, one entry per level."""
        n = len(self.block_out_channels)
        return (tuple(self.down_block_types or ("DownBlock2D",) * n), tuple(self.up_block_types or ("UpBlock2D",) * n))


@dataclass
class UNetOutput:
    """What ``forward`` returns, like diffusers' ``UNet2DOutput``: ``.sample`` (also ``out[0]``)."""

    sample: torch.Tensor  # eps_pred, (B, out_channels, H, W)

    def __getitem__(self, key):
        if key in (0, "sample"):
            return self.sample
        raise KeyError(f"UNetOutput holds only 'sample' (index 0), not {key!r}")


def timestep_embedding(t, dim, flip_sin_to_cos=False, freq_shift=0, max_period=10000):
    """Sinusoidal embedding of timesteps t (B,) -> (B, dim): sin(t f_i) then cos(t f_i).

    Frequency i = 0 .. dim/2 - 1 is ``max_period ** (-i / (dim // 2 - freq_shift))``: t=0 gives sin 0 = 0
    and cos 0 = 1; nearby t give nearby vectors, and no two t in 0..T-1 give the same vector.
    ``flip_sin_to_cos=True`` puts the cosines first (diffusers' default). Odd dims get a zero column.
    """
    if dim < 2:
        raise ValueError(f"dim must be at least 2 to hold one sin and one cos, got {dim}")
    half = dim // 2
    exponent = -math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device)
    freqs = torch.exp(exponent / (half - freq_shift))  # (half,) from 1 down to ~1/max_period
    # Vaswani et al. 2017, sec. 3.5; used for t by Ho et al. 2020, app. B
    args = t.float()[:, None] * freqs[None, :]  # (B, half)
    emb = torch.cat([torch.cos(args), torch.sin(args)] if flip_sin_to_cos else [torch.sin(args), torch.cos(args)], 1)
    return F.pad(emb, (0, dim % 2))  # (B, dim)


class TimeEmbedding(nn.Module):
    """t (B,) -> sinusoidal embedding (B, dim) -> Linear, SiLU, Linear -> emb (B, time_dim)."""

    def __init__(self, dim, time_dim, flip_sin_to_cos=False, freq_shift=0):
        super().__init__()
        self.dim, self.flip_sin_to_cos, self.freq_shift = dim, flip_sin_to_cos, freq_shift
        self.linear_1 = nn.Linear(dim, time_dim)
        self.linear_2 = nn.Linear(time_dim, time_dim)

    def forward(self, t):
        emb = timestep_embedding(t, self.dim, self.flip_sin_to_cos, self.freq_shift)  # (B, dim), float32
        return self.linear_2(F.silu(self.linear_1(emb.to(self.linear_1.weight.dtype))))  # (B, time_dim)


class ResidualBlock(nn.Module):
    """Two 3x3 convolutions with the time embedding added in between, plus a skip path:

    h = Conv3x3(SiLU(GroupNorm(x))) + Linear(SiLU(emb)), then Conv3x3(Dropout(SiLU(GroupNorm(h)))),
    output x + h (x through a 1x1 conv when the channel count changes). diffusers' ResnetBlock2D.
    """

    def __init__(self, in_ch, out_ch, time_dim, groups, eps=1e-5, dropout=0.0):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, in_ch, eps=eps)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.time_emb_proj = nn.Linear(time_dim, out_ch)
        self.norm2 = nn.GroupNorm(groups, out_ch, eps=eps)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.conv_shortcut = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else None

    def forward(self, x, emb):  # x (B, in_ch, H, W), emb (B, time_dim)
        h = self.conv1(F.silu(self.norm1(x)))  # (B, out_ch, H, W)
        h = h + self.time_emb_proj(F.silu(emb))[:, :, None, None]  # (B, out_ch, 1, 1) broadcast over H, W
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))  # (B, out_ch, H, W)
        return (x if self.conv_shortcut is None else self.conv_shortcut(x)) + h


class SelfAttention(nn.Module):
    """Multi-head self-attention over the H*W positions: x + to_out(softmax(q k^T / sqrt(hs)) v),
    with q, k, v = to_qkv(GroupNorm(x)). diffusers' Attention with q, k, v fused into one 1x1 conv."""

    def __init__(self, ch, heads, groups, eps=1e-5):
        super().__init__()
        self.heads = heads
        self.group_norm = nn.GroupNorm(groups, ch, eps=eps)
        self.to_qkv = nn.Conv2d(ch, 3 * ch, 1)  # diffusers' to_q, to_k, to_v stacked: one matmul instead of three
        self.to_out = nn.Conv2d(ch, ch, 1)

    def forward(self, x):
        B, C, H, W = x.shape
        qkv = self.to_qkv(self.group_norm(x))  # (B, 3C, H, W)
        qkv = qkv.reshape(B, 3, self.heads, C // self.heads, H * W)  # (B, 3, nh, hs, HW)
        q, k, v = qkv.transpose(3, 4).unbind(1)  # each (B, nh, HW, hs)
        # Vaswani et al. 2017, eq. (1)
        out = F.scaled_dot_product_attention(q, k, v)  # (B, nh, HW, hs)
        out = out.transpose(2, 3).reshape(B, C, H, W)  # (B, C, H, W)
        return x + self.to_out(out)


class Downsample(nn.Module):
    """Halve H and W with a stride-2 3x3 conv: (B, C, H, W) -> (B, C, H/2, W/2). With padding=0
    (Ho et al.'s TensorFlow code), one zero row and column are added at the bottom and right first."""

    def __init__(self, ch, padding=1):
        super().__init__()
        self.padding = padding
        self.conv = nn.Conv2d(ch, ch, 3, stride=2, padding=padding)

    def forward(self, x):
        return self.conv(F.pad(x, (0, 1, 0, 1)) if self.padding == 0 else x)


class Upsample(nn.Module):
    """Double H and W: nearest-neighbour copy, then a 3x3 conv. (B, C, H, W) -> (B, C, 2H, 2W)."""

    def __init__(self, ch):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class DownBlock(nn.Module):
    """One level going down (DownBlock2D; AttnDownBlock2D when ``heads``): ResidualBlocks, each
    followed by SelfAttention if ``heads``, then a Downsample if ``downsample``. Returns the output
    and its skips: each ResidualBlock's (or attention's) output and the downsampled one."""

    def __init__(self, in_ch, out_ch, num_layers, heads, downsample, padding, **res):
        super().__init__()
        self.resnets = nn.ModuleList(ResidualBlock(in_ch if i == 0 else out_ch, out_ch, **res) for i in range(num_layers))
        self.attentions = nn.ModuleList(SelfAttention(out_ch, heads, res["groups"], res["eps"])
                                        for _ in range(num_layers)) if heads else None
        self.downsample = Downsample(out_ch, padding) if downsample else None

    def forward(self, h, emb):
        skips = []
        for i, resnet in enumerate(self.resnets):
            h = resnet(h, emb) if self.attentions is None else self.attentions[i](resnet(h, emb))
            skips.append(h)  # (B, out_ch, H, W)
        if self.downsample is not None:
            h = self.downsample(h)  # (B, out_ch, H/2, W/2)
            skips.append(h)
        return h, skips


class MidBlock(nn.Module):
    """The middle at the lowest resolution (UNetMidBlock2D): ResidualBlock, SelfAttention, ResidualBlock."""

    def __init__(self, ch, heads, **res):
        super().__init__()
        self.resnets = nn.ModuleList([ResidualBlock(ch, ch, **res), ResidualBlock(ch, ch, **res)])
        self.attentions = nn.ModuleList([SelfAttention(ch, heads, res["groups"], res["eps"])])

    def forward(self, h, emb):
        return self.resnets[1](self.attentions[0](self.resnets[0](h, emb)), emb)


class UpBlock(nn.Module):
    """One level going up (UpBlock2D; AttnUpBlock2D when ``heads``): ResidualBlocks, each fed the output
    so far concatenated with the last unused skip (``in_chs`` lists the summed widths), each followed
    by SelfAttention if ``heads``, then an Upsample if ``upsample``. Pops the skips it uses."""

    def __init__(self, in_chs, out_ch, heads, upsample, **res):
        super().__init__()
        self.resnets = nn.ModuleList(ResidualBlock(in_ch, out_ch, **res) for in_ch in in_chs)
        self.attentions = nn.ModuleList(SelfAttention(out_ch, heads, res["groups"], res["eps"])
                                        for _ in in_chs) if heads else None
        self.upsample = Upsample(out_ch) if upsample else None

    def forward(self, h, skips, emb):
        for i, resnet in enumerate(self.resnets):
            h = torch.cat([h, skips.pop()], dim=1)  # (B, C + C_skip, H, W)
            h = resnet(h, emb) if self.attentions is None else self.attentions[i](resnet(h, emb))  # (B, out_ch, H, W)
        return h if self.upsample is None else self.upsample(h)  # (B, out_ch, 2H, 2W) after upsampling


class UNet(nn.Module):
    """The noise predictor eps_theta(x_t, t) -> eps_pred with the shape of x_t.

    ``UNet()`` builds the default config; ``UNet(in_channels=3, sample_size=64)`` overrides fields;
    ``UNet(UNetConfig(...))`` takes a whole config; ``UNet.from_config(d)`` a diffusers config dict.
    """

    def __init__(self, config=None, **overrides):
        super().__init__()
        check_option_names(config, overrides, UNetConfig)
        cfg = self.config = replace(config, **overrides) if config is not None else UNetConfig(**overrides)
        widths, (down_types, up_types) = cfg.block_out_channels, cfg.block_types()
        time_dim = cfg.time_embedding_dim or 4 * widths[0]
        res = dict(time_dim=time_dim, groups=cfg.norm_num_groups, eps=cfg.norm_eps, dropout=cfg.dropout)

        def heads(width, kind):  # 0: no attention in this block
            return width // (cfg.attention_head_dim or width) if kind.startswith("Attn") else 0

        self.time_embedding = TimeEmbedding(widths[0], time_dim, cfg.flip_sin_to_cos, cfg.freq_shift)
        self.class_embedding = nn.Embedding(cfg.num_class_embeds, time_dim) if cfg.num_class_embeds else None
        self.conv_in = nn.Conv2d(cfg.in_channels, widths[0], 3, padding=1)
        # 1. down path: remember the width of every skip, the up path consumes them in reverse
        skip_chs, ch, self.down_blocks, lowest = [widths[0]], widths[0], nn.ModuleList(), len(widths) - 1
        for level, (width, kind) in enumerate(zip(widths, down_types)):
            self.down_blocks.append(DownBlock(ch, width, cfg.layers_per_block, heads(width, kind), level < lowest,
                                              cfg.downsample_padding, **res))
            ch = width
            skip_chs += [width] * (cfg.layers_per_block + (level < lowest))
        # 2. middle, at the lowest resolution: Ho et al. 2020 always put attention here
        self.mid_block = MidBlock(ch, heads(ch, "Attn"), **res)
        # 3. up path, lowest level first: one block more per level, to consume the downsampled skip too
        self.up_blocks = nn.ModuleList()
        for i, (width, kind) in enumerate(zip(reversed(widths), up_types)):
            in_chs = [(ch if j == 0 else width) + skip_chs.pop() for j in range(cfg.layers_per_block + 1)]
            self.up_blocks.append(UpBlock(in_chs, width, heads(width, kind), i < lowest, **res))
            ch = width
        self.conv_norm_out = nn.GroupNorm(cfg.norm_num_groups, ch, eps=cfg.norm_eps)
        self.conv_out = nn.Conv2d(ch, cfg.out_channels or cfg.in_channels, 3, padding=1)

    def forward(self, sample, timestep, class_labels=None, return_dict=True):
        """Predict the noise in ``sample`` x_t (B, C, H, W) at ``timestep`` t.

        ``timestep``: an int or float, a 0-d tensor, or a (B,) tensor (one value is used for the
        whole batch). ``class_labels``: (B,) ints in [0, num_class_embeds), only for a
        class-conditional model. Returns ``UNetOutput(sample=eps_pred)``, eps_pred (B, out_channels,
        H, W); with ``return_dict=False`` the tuple ``(eps_pred,)``.
        """
        t, labels = check_inputs(self.config, sample, timestep, class_labels)  # (B,), (B,) or None
        emb = self.time_embedding(t)  # (B, time_dim)
        if self.class_embedding is not None:
            emb = emb + self.class_embedding(labels)  # (B, time_dim): one learned vector per label
        h = self.conv_in(sample)  # (B, C0, H, W)
        skips = [h]
        for block in self.down_blocks:
            h, block_skips = block(h, emb)  # (B, C_level, H_level / 2, W_level / 2) except at the lowest level
            skips += block_skips
        h = self.mid_block(h, emb)  # (B, C_lowest, H_lowest, W_lowest)
        for block in self.up_blocks:
            h = block(h, skips, emb)  # (B, C_level, 2 H_level, 2 W_level) except at the top level
        eps_pred = self.conv_out(F.silu(self.conv_norm_out(h)))  # (B, out_channels, H, W)
        return UNetOutput(sample=eps_pred) if return_dict else (eps_pred,)

    @property
    def device(self):
        """The device of the parameters, as diffusers' pipelines ask of a model."""
        return next(self.parameters()).device

    @property
    def dtype(self):
        """The dtype of the parameters (float32 unless converted)."""
        return next(self.parameters()).dtype

    @classmethod
    def from_config(cls, config):
        """The UNet a diffusers ``UNet2DModel`` config dict describes (missing keys take UNet2DModel's
        defaults, as in ``UNet2DModel.from_config``); unsupported options raise a ValueError."""
        from .pipeline import config_from_diffusers
        return cls(config_from_diffusers(config))

    def diffusers_config(self):
        """This model's config as a ``UNet2DModel`` config dict (what ``unet/config.json`` holds)."""
        from .pipeline import diffusers_config
        return diffusers_config(self.config)

    @classmethod
    def from_diffusers(cls, unet2d):
        """Our UNet holding the weights of a diffusers ``UNet2DModel``: the same function, exactly."""
        from .pipeline import unet_from_diffusers
        return unet_from_diffusers(unet2d)

    def to_diffusers(self):
        """A diffusers ``UNet2DModel`` holding this model's weights (needs diffusers installed)."""
        from .pipeline import unet_to_diffusers
        return unet_to_diffusers(self)


def count_parameters(model):
    """Number of trainable parameters (the sum of ``p.numel()``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _dummy_inputs(model, size, batch):
    cfg = model.config
    x = torch.zeros(batch, cfg.in_channels, size, size, device=next(model.parameters()).device)
    labels = torch.zeros(batch, dtype=torch.long, device=x.device) if getattr(cfg, "num_class_embeds", None) else None
    return x, ({} if labels is None else {"class_labels": labels})


def estimate_flops(model, image_size=None, batch=1):
    """Floating-point operations of one forward pass, counted by ``torch.utils.flop_counter``.

    Counts convolutions, linear layers and attention matmuls; one multiply-add = 2 FLOPs
    (the convention of matmul GFLOP/s). Norms and activations are not counted. A training
    step (forward + backward) costs about 3x this. Works for diffusers' ``UNet2DModel`` too.
    """
    from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

    x, kwargs = _dummy_inputs(model, image_size or model.config.sample_size, batch)
    # the CPU attention kernel is not in flop_counter's registry yet: count it like the GPU ones
    cpu_sdpa = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu:
                lambda q, k, v, *args, **kwargs: sdpa_flop_count(q, k, v)}
    with torch.no_grad(), FlopCounterMode(display=False, custom_mapping=cpu_sdpa) as counter:
        model(x, 0, **kwargs)
    return counter.get_total_flops()


def trace_shapes(model, x, t, class_labels=None):
    """Run ``model(x, t)`` and list (layer name, output shape) for each block, in call order."""
    kinds = (ResidualBlock, SelfAttention, Downsample, Upsample)
    rows, hooks = [], []
    for name, module in model.named_modules():
        if isinstance(module, kinds) or name in ("conv_in", "conv_out"):
            record = lambda m, args, out, name=name: rows.append((name, tuple(out.shape)))  # noqa: E731
            hooks.append(module.register_forward_hook(record))
    try:
        with torch.no_grad():
            model(x, t, class_labels=class_labels)
    finally:
        for hook in hooks:
            hook.remove()
    return rows


@lru_cache(maxsize=None)
def cpu_has_native_bf16():
    """True when this CPU computes bf16 matmuls in hardware (x86 AVX512_BF16 or AMX), Linux only."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "").split()
    except OSError:
        return False
    return torch.backends.mkldnn.is_available() and bool({"avx512_bf16", "amx_bf16"} & set(flags))


def autocast_context(device=None):
    """Mixed precision where it is fast: bf16 autocast on bf16 hardware, otherwise plain fp32.

    CPU with AVX512_BF16/AMX: ``torch.autocast("cpu", torch.bfloat16)``; CUDA GPU with bf16:
    ``torch.autocast("cuda", torch.bfloat16)``; anything else: a do-nothing context (fp32).
    Weights, optimizer state and the loss stay fp32 either way.
    """
    device = torch.device(device or "cpu")
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16)
    if device.type == "cpu" and cpu_has_native_bf16():
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return nullcontext()
