"""The noise-prediction network eps_theta(x_t, t): a small DDPM UNet (Ho et al. 2020, app. B).

Shape of the network, top to bottom (default config, 32x32 grayscale):

    x_t (B, 1, 32, 32) -> conv_in -> down path: ResidualBlocks, halve H and W per level
    -> middle: ResidualBlock, SelfAttention, ResidualBlock at the lowest resolution
    -> up path: ResidualBlocks fed the concatenated skip connections, double H and W
    -> GroupNorm, SiLU, conv_out -> eps_pred (B, 1, 32, 32)

The timestep t enters every ResidualBlock through a sinusoidal embedding and a small MLP.
Timesteps are 0-indexed like diffusers: 0 <= t < num_train_timesteps.
The model is called like diffusers' ``UNet2DModel``: ``model(x_t, t)`` returns ``eps_pred``;
``model(x_t, t, return_dict=False)[0]`` also works, as in the diffusers training loop.
"""

import math
from contextlib import nullcontext
from dataclasses import dataclass, fields, replace
from functools import lru_cache

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class UNetConfig:
    in_channels: int = 1  # image channels: 1 grayscale, 3 RGB
    out_channels: int | None = None  # channels predicted; None means in_channels (eps has x's shape)
    image_size: int = 32  # training resolution; any H, W divisible by 2**(levels - 1) also runs
    block_out_channels: tuple = (32, 48, 64)  # width of each resolution level, highest first
    layers_per_block: int = 1  # ResidualBlocks per level on the way down (one more on the way up)
    attention_at_lowest: bool = False  # SelfAttention after each lowest-resolution block too (the middle
    # block always has one); off by default: it costs ~10% of the speed on a CPU
    attention_heads: int = 4  # heads of each SelfAttention
    time_embed_dim: int | None = None  # width of the timestep embedding; None means 4 * first width
    norm_groups: int = 8  # GroupNorm groups; every width must be divisible by it
    dropout: float = 0.0  # dropout inside ResidualBlocks (Ho et al. use 0.1 on CIFAR-10)
    num_train_timesteps: int = 1000  # T of the noise schedule; valid timesteps are 0 .. T-1


@dataclass
class UNetOutput:
    """What ``forward(..., return_dict=True)`` returns, like diffusers' ``UNet2DOutput``."""

    sample: torch.Tensor  # eps_pred, (B, C, H, W)


def timestep_embedding(t, dim, max_period=10000):
    """Sinusoidal embedding of timesteps t (B,) -> (B, dim), first half sin, second half cos.

    Frequency i is ``max_period ** (-i / (dim // 2))``: t=0 gives sin 0 = 0 and cos 0 = 1;
    nearby t give nearby vectors, and no two t in 0..T-1 give the same vector.
    """
    if dim < 2:
        raise ValueError(f"dim must be at least 2 to hold one sin and one cos, got {dim}")
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device) / half)  # (half,)
    # Vaswani et al. 2017, sec. 3.5; used for t by Ho et al. 2020, app. B
    args = t.float()[:, None] * freqs[None, :]  # (B, half)
    emb = torch.cat([torch.sin(args), torch.cos(args)], dim=1)  # (B, 2 * half)
    return F.pad(emb, (0, dim % 2))  # (B, dim): a zero column when dim is odd


class ResidualBlock(nn.Module):
    """Two 3x3 convolutions with the time embedding added in between, plus a skip path.

    GroupNorm -> SiLU -> Conv3x3 -> + Linear(SiLU(emb)) -> GroupNorm -> SiLU -> Dropout
    -> Conv3x3, added to the input (through a 1x1 conv when the channel count changes).
    """

    def __init__(self, in_ch, out_ch, time_dim, groups, dropout=0.0):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.time_proj = nn.Linear(time_dim, out_ch)
        self.norm2 = nn.GroupNorm(groups, out_ch)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x, emb):  # x (B, in_ch, H, W), emb (B, time_dim)
        h = self.conv1(F.silu(self.norm1(x)))  # (B, out_ch, H, W)
        h = h + self.time_proj(F.silu(emb))[:, :, None, None]  # (B, out_ch, 1, 1) broadcast
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))  # (B, out_ch, H, W)
        return self.skip(x) + h


class SelfAttention(nn.Module):
    """Multi-head self-attention over the H*W positions, with GroupNorm first and a residual."""

    def __init__(self, ch, heads, groups):
        super().__init__()
        if ch % heads:
            raise ValueError(f"channels ({ch}) must be divisible by attention_heads ({heads})")
        self.heads = heads
        self.norm = nn.GroupNorm(groups, ch)
        self.qkv = nn.Conv2d(ch, 3 * ch, 1)
        self.proj = nn.Conv2d(ch, ch, 1)

    def forward(self, x):
        B, C, H, W = x.shape
        qkv = self.qkv(self.norm(x))  # (B, 3C, H, W)
        qkv = qkv.reshape(B, 3, self.heads, C // self.heads, H * W)  # (B, 3, nh, hs, HW)
        q, k, v = qkv.transpose(3, 4).unbind(1)  # each (B, nh, HW, hs)
        out = F.scaled_dot_product_attention(q, k, v)  # (B, nh, HW, hs)
        out = out.transpose(2, 3).reshape(B, C, H, W)  # (B, C, H, W)
        return x + self.proj(out)


class Downsample(nn.Module):
    """Halve H and W with a stride-2 3x3 convolution: (B, C, H, W) -> (B, C, H/2, W/2)."""

    def __init__(self, ch):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, stride=2, padding=1)

    def forward(self, x):
        return self.conv(x)


class Upsample(nn.Module):
    """Double H and W: nearest-neighbour copy, then a 3x3 conv. (B, C, H, W) -> (B, C, 2H, 2W)."""

    def __init__(self, ch):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class Level(nn.Module):
    """One resolution level: ResidualBlocks (each followed by attention or nothing), then resampling."""

    def __init__(self, blocks, attentions, resample):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.attentions = nn.ModuleList(attentions)
        self.resample = resample  # Downsample, Upsample or None


class UNet(nn.Module):
    """The noise predictor eps_theta(x_t, t) -> eps_pred with the shape of x_t.

    ``UNet()`` builds the default config; ``UNet(in_channels=3, image_size=64)`` overrides
    fields; ``UNet(UNetConfig(...))`` takes a whole config.
    """

    def __init__(self, config: UNetConfig | None = None, **overrides):
        super().__init__()
        names = {f.name for f in fields(UNetConfig)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise TypeError(f"unknown UNet option(s) {unknown}; valid options: {sorted(names)}")
        cfg = replace(config or UNetConfig(), **overrides)
        widths, groups = tuple(cfg.block_out_channels), cfg.norm_groups
        if any(w % groups for w in widths):
            raise ValueError(f"every width in block_out_channels={widths} must be divisible by "
                             f"norm_groups={groups}; change one or the other")
        self.config = cfg
        time_dim = cfg.time_embed_dim or 4 * widths[0]
        lowest = len(widths) - 1

        def res(i, o):
            return ResidualBlock(i, o, time_dim, groups, cfg.dropout)

        def attention(ch, level):
            use = level == lowest and cfg.attention_at_lowest
            return SelfAttention(ch, cfg.attention_heads, groups) if use else nn.Identity()

        self.time_mlp = nn.Sequential(
            nn.Linear(widths[0], time_dim), nn.SiLU(), nn.Linear(time_dim, time_dim))
        self.conv_in = nn.Conv2d(cfg.in_channels, widths[0], 3, padding=1)
        # 1. down path: remember the width of every output, the up path consumes them as skips
        skip_chs, ch, self.down = [widths[0]], widths[0], nn.ModuleList()
        for level, width in enumerate(widths):
            blocks, attns = [], []
            for _ in range(cfg.layers_per_block):
                blocks.append(res(ch, width))
                attns.append(attention(width, level))
                ch = width
                skip_chs.append(ch)
            down = Downsample(ch) if level < lowest else None
            if down is not None:
                skip_chs.append(ch)
            self.down.append(Level(blocks, attns, down))
        # 2. middle, at the lowest resolution: Ho et al. 2020 always put attention here
        self.mid_block1 = res(ch, ch)
        self.mid_attn = SelfAttention(ch, cfg.attention_heads, groups)
        self.mid_block2 = res(ch, ch)
        # 3. up path: one block more per level than going down, to consume the resampling skip
        self.up = nn.ModuleList()
        for level, width in reversed(list(enumerate(widths))):
            blocks, attns = [], []
            for _ in range(cfg.layers_per_block + 1):
                blocks.append(res(ch + skip_chs.pop(), width))
                attns.append(attention(width, level))
                ch = width
            self.up.append(Level(blocks, attns, Upsample(ch) if level > 0 else None))
        self.norm_out = nn.GroupNorm(groups, ch)
        self.conv_out = nn.Conv2d(ch, cfg.out_channels or cfg.in_channels, 3, padding=1)

    def forward(self, sample, timestep, return_dict=None):
        """Predict the noise in ``sample`` x_t (B, C, H, W) at ``timestep`` t.

        ``timestep``: python int or float, 0-d tensor, or (B,) tensor (a single value is
        used for the whole batch). Returns eps_pred (B, C, H, W); a tuple ``(eps_pred,)``
        with ``return_dict=False``; a ``UNetOutput`` with ``.sample`` with ``return_dict=True``.
        """
        t = self._check_inputs(sample, timestep)  # (B,)
        emb = self.time_mlp(timestep_embedding(t, self.config.block_out_channels[0]))  # (B, time_dim)
        h = self.conv_in(sample)  # (B, C0, H, W)
        skips = [h]
        for level in self.down:
            for block, attention in zip(level.blocks, level.attentions):
                h = attention(block(h, emb))  # (B, C_level, H_level, W_level)
                skips.append(h)
            if level.resample is not None:
                h = level.resample(h)  # (B, C_level, H_level / 2, W_level / 2)
                skips.append(h)
        h = self.mid_block2(self.mid_attn(self.mid_block1(h, emb)), emb)  # (B, C_lowest, H_low, W_low)
        for level in self.up:
            for block, attention in zip(level.blocks, level.attentions):
                h = torch.cat([h, skips.pop()], dim=1)  # (B, C + C_skip, H_level, W_level)
                h = attention(block(h, emb))  # (B, C_level, H_level, W_level)
            if level.resample is not None:
                h = level.resample(h)  # (B, C_level, 2 H_level, 2 W_level)
        eps_pred = self.conv_out(F.silu(self.norm_out(h)))  # (B, out_channels, H, W)
        if return_dict is None:
            return eps_pred
        return UNetOutput(sample=eps_pred) if return_dict else (eps_pred,)

    def _check_inputs(self, sample, timestep):
        """Validate x_t and t; return t as a (B,) tensor on sample's device."""
        cfg = self.config
        if not isinstance(sample, torch.Tensor) or not sample.is_floating_point():
            raise TypeError(f"sample must be a float tensor (B, C, H, W), got {type(sample).__name__}"
                            f"{'' if not isinstance(sample, torch.Tensor) else ' of ' + str(sample.dtype)}; "
                            "convert images with .float() and scale them to [-1, 1]")
        if sample.ndim != 4:
            raise ValueError(f"sample must be 4-D (B, C, H, W), got shape {tuple(sample.shape)}; "
                             "for a single image use x[None] to add the batch dimension")
        B, C, H, W = sample.shape
        if C != cfg.in_channels:
            raise ValueError(f"sample has {C} channel(s) but the model was built for {cfg.in_channels} "
                             f"channel(s); build UNet(in_channels={C}) for these images")
        factor = 2 ** (len(cfg.block_out_channels) - 1)
        if H % factor or W % factor:
            raise ValueError(f"image size {H}x{W} must be divisible by {factor} (the model halves it "
                             f"{factor.bit_length() - 1} times); resize or pad the images, e.g. to "
                             f"{cfg.image_size}x{cfg.image_size}")
        if isinstance(timestep, bool) or not isinstance(timestep, (int, float, torch.Tensor)):
            raise TypeError(f"timestep must be an int, a float or a tensor, got {type(timestep).__name__}")
        t = torch.as_tensor(timestep, device=sample.device)
        if t.dtype == torch.bool or t.is_complex():
            raise TypeError(f"timestep must hold integers or floats, got {t.dtype}")
        if t.ndim > 1 or (t.ndim == 1 and t.shape[0] not in (1, B)):
            raise ValueError(f"timestep must be a number, a 0-d tensor or a (B,) tensor with B={B}, "
                             f"got shape {tuple(t.shape)}")
        if ((t < 0) | (t >= cfg.num_train_timesteps)).any():
            raise ValueError(f"timesteps must be in [0, {cfg.num_train_timesteps}) (0-indexed like "
                             f"diffusers), got values from {t.min().item()} to {t.max().item()}")
        return t.reshape(-1).expand(B)  # (B,)


def count_parameters(model):
    """Number of trainable parameters (the sum of ``p.numel()``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def estimate_flops(model, image_size=None, batch=1):
    """Floating-point operations of one forward pass, counted by ``torch.utils.flop_counter``.

    Counts convolutions, linear layers and attention matmuls; one multiply-add = 2 FLOPs
    (the convention of matmul GFLOP/s). Norms and activations are not counted. A training
    step (forward + backward) costs about 3x this. Works for diffusers' ``UNet2DModel`` too.
    """
    from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

    cfg = model.config
    size = image_size or getattr(cfg, "image_size", None) or cfg.sample_size  # ours or diffusers'
    x = torch.zeros(batch, cfg.in_channels, size, size, device=next(model.parameters()).device)
    # the CPU attention kernel is not in flop_counter's registry yet: count it like the GPU ones
    cpu_sdpa = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu:
                lambda q, k, v, *args, **kwargs: sdpa_flop_count(q, k, v)}
    with torch.no_grad(), FlopCounterMode(display=False, custom_mapping=cpu_sdpa) as counter:
        model(x, 0)
    return counter.get_total_flops()


def trace_shapes(model, x, t):
    """Run ``model(x, t)`` and list (layer name, output shape) for each block, in call order."""
    kinds = (ResidualBlock, SelfAttention, Downsample, Upsample)
    rows, hooks = [], []
    for name, module in model.named_modules():
        if isinstance(module, kinds) or name in ("conv_in", "conv_out"):
            record = lambda m, args, out, name=name: rows.append((name, tuple(out.shape)))  # noqa: E731
            hooks.append(module.register_forward_hook(record))
    try:
        with torch.no_grad():
            model(x, t)
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
