"""Pictures of images: grids of a batch, a row of frames over time.

Images everywhere in the course are (C, H, W) or (B, C, H, W) tensors in [-1, 1] with
1 or 3 channels. Display maps them to [0, 1] with fixed limits, so a grey pixel always
means the same value and a picture is never silently rescaled.
"""

import math

import matplotlib.pyplot as plt
import numpy as np
import torch
from torchvision.utils import make_grid

from . import _checks

_PADDING = 2
_PAD_VALUE = 1.0    # white grid lines, visible between dark MNIST-like images


def _as_batch(images, clip=True, name="images"):
    """Validate and return a (B, C, H, W) float tensor in [0, 1] for display.

    ``clip=True`` takes noised images x_t too, which pass [-1, 1] (``_checks.image_range``,
    noised=True), and clamps them to [-1, 1]; ``clip=False`` takes only [-1, 1] images.
    """
    if isinstance(images, (list, tuple)):
        _checks.nonempty(images, name, "a list of (C, H, W) images")
        for i, image in enumerate(images):
            _checks.instance(image, f"{name}[{i}]", (torch.Tensor, np.ndarray), "a (C, H, W) tensor in [-1, 1]")
        if len({tuple(image.shape) for image in images}) > 1:
            raise ValueError(f"{name} must all have one shape to share a grid, got shapes "
                             f"{sorted({tuple(image.shape) for image in images})}")
        images = torch.stack([torch.as_tensor(image) for image in images])
    _checks.instance(images, name, (torch.Tensor, np.ndarray), "a tensor (B, C, H, W) or (C, H, W) in [-1, 1], or "
                     "a list of them", "convert PIL images with torchvision.transforms.functional.to_tensor(image) * 2 - 1")
    images = torch.as_tensor(images).detach().cpu()
    if not images.is_floating_point():
        raise TypeError(f"{name} must be float images scaled to [-1, 1], got dtype {images.dtype}; a uint8 "
                        "image (0-255) becomes x.float() / 127.5 - 1")
    if images.ndim not in (3, 4):
        raise ValueError(f"{name} must be (C, H, W) or (B, C, H, W) with C = 1 or 3, got shape "
                         f"{tuple(images.shape)}; for one (H, W) image use x[None]")
    images = images[None] if images.ndim == 3 else images
    fix = ("scale [0, 255] images with x / 127.5 - 1, and clamp an unclipped x0 prediction with x.clamp(-1, 1)"
           if clip else "pass clip=True to clamp noised images x_t for display")
    _checks.images(images, name, noised=clip, range_hint=fix)
    return (images.float().clamp(-1, 1) + 1) / 2


def _axes(ax, figsize):
    """``ax``, or new Axes of ``figsize`` (inches) when it is None."""
    from matplotlib.axes import Axes

    if ax is not None:
        return _checks.instance(ax, "ax", Axes, "a matplotlib Axes or None", "e.g. _, ax = plt.subplots()")
    if not (isinstance(figsize, (tuple, list)) and len(figsize) == 2):
        raise TypeError(f"figsize must be a (width, height) pair in inches or None, got {figsize!r}")
    return plt.subplots(figsize=[_checks.real(v, "figsize", 0, low_open=True) for v in figsize])[1]


def _grid_to_numpy(grid, channels):
    """(C, H, W) image or make_grid's (3, H, W) grid -> (H, W) if grayscale, else (H, W, 3)."""
    return grid[0].numpy() if channels == 1 else grid.permute(1, 2, 0).numpy()


def _imshow(ax, array):
    """Show an [0, 1] array with fixed limits (never auto-rescaled) and no ticks."""
    cmap = "gray" if array.ndim == 2 else None
    image = ax.imshow(array, cmap=cmap, vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    return image


def image_to_numpy(x):
    """One image (C, H, W) in [-1, 1] -> a float array in [0, 1] for imshow:
    (H, W) when C = 1, (H, W, 3) when C = 3. Values are clamped to [0, 1]."""
    _checks.instance(x, "x", (torch.Tensor, np.ndarray), "one image, a (C, H, W) tensor in [-1, 1]")
    if x.ndim != 3:
        raise ValueError(f"x must be one image (C, H, W), got shape {tuple(x.shape)}; for a batch pick one: x[0]")
    image = _as_batch(x, name="x")[0]                         # (C, H, W) in [0, 1]
    return _grid_to_numpy(image, image.shape[0]).astype(np.float32)


def show_images(images, nrow=8, title=None, ax=None, figsize=None, clip=True):
    """Show a batch (B, C, H, W) in [-1, 1] (or one (C, H, W) image, or a list) as one grid.

    ``nrow`` images per row; grayscale uses cmap="gray" with vmin/vmax fixed, so -1 is
    black and +1 white. ``clip=True`` is for noised images x_t, whose values pass [-1, 1]:
    they are clamped for display (a value beyond |x| = 6.08, more than even x_t reaches, is a
    wrong scale and raises); ``clip=False`` takes only [-1, 1]. A single image is drawn
    without grid padding. Returns the Axes.
    """
    batch = _as_batch(images, clip=_checks.flag(clip, "clip"))
    nrow = _checks.positive_int(nrow, "nrow", hint="images per row, e.g. 8")
    grid = make_grid(batch, nrow=nrow, padding=_PADDING, pad_value=_PAD_VALUE)  # (3, H', W')
    if figsize is None:
        n_cols, n_rows = min(nrow, batch.shape[0]), -(-batch.shape[0] // nrow)
        figsize = (max(2.0, 0.8 * n_cols), max(2.0, 0.8 * n_rows))
    ax = _axes(ax, figsize)
    _imshow(ax, _grid_to_numpy(grid, batch.shape[1]))
    if title is not None:
        ax.set_title(title)
    return ax


def show_sequence(frames, labels=None, title=None, ax=None, clip=True):
    """Show frames (a list of (C, H, W) images or a (N, C, H, W) tensor) in one row, with
    ``labels`` (e.g. ``["t=0", "t=250"]``) written under each frame. Returns the Axes."""
    batch = _as_batch(frames, clip=_checks.flag(clip, "clip"), name="frames")
    n, channels, _, width = batch.shape
    if labels is not None:
        _checks.instance(labels, "labels", (list, tuple), "a list of strings, one per frame")
        if len(labels) != n:
            raise ValueError(f"labels must be one label per frame: got {len(labels)} labels for {n} frames")
    grid = make_grid(batch, nrow=n, padding=_PADDING, pad_value=_PAD_VALUE)
    ax = _axes(ax, (max(2.0, 1.3 * n), 1.8))
    _imshow(ax, _grid_to_numpy(grid, channels))
    if labels is not None:
        # Frame i spans columns [pad + i * (width + pad), ... + width).
        centres = [_PADDING + i * (width + _PADDING) + (width - 1) / 2 for i in range(n)]
        ax.set_xticks(centres, [str(label) for label in labels])
        ax.tick_params(axis="x", length=0)
    if title is not None:
        ax.set_title(title)
    return ax


def plot_losses(history, axes=None):
    """Two panels from a training run (``training.TrainState``): the loss per step with its
    smoothed curve (log scale), and the recent mean loss in each range of t. Returns the axes."""
    from .training import TrainState, smooth

    _checks.instance(history, "history", TrainState, "a TrainState (what train() returns)")
    losses, by_t = list(history.losses), list(history.loss_by_timestep)
    _checks.nonempty(losses, "history.losses", "a list of losses", "train at least one step first")
    bad = next((i for i, loss in enumerate(losses) if not math.isfinite(loss)), None)
    if bad is not None:
        raise ValueError(f"history.losses must be finite numbers, but history.losses[{bad}] is {losses[bad]}: "
                         f"training diverged there; plot the steps before it with plt.plot(history.losses[:{bad}]), "
                         "then lower the learning rate and train again")
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    curve, buckets = axes
    curve.plot(losses, alpha=0.3, lw=0.8, label="loss per step")
    curve.plot(smooth(losses), lw=1.5, label="smoothed")
    curve.set(xlabel="step", ylabel="MSE(eps_pred, eps)", yscale="log", title="training loss")
    curve.legend()
    T = history.scheduler.num_train_timesteps
    width = T / len(by_t)
    buckets.bar([width * (i + 0.5) for i in range(len(by_t))], by_t, width=width * 0.9)  # NaN: no sample yet
    buckets.set(xlabel="timestep t", ylabel="mean loss (recent steps)", title="loss by timestep")
    return axes


class LiveLossPlot:
    """A training callback that redraws ``plot_losses`` in place in a notebook, titled with the
    step, images seen and images/s so far: ``train(model, dataset, config, callbacks=[LiveLossPlot()])``
    (with ``progress=False`` the figure is the only progress shown, and no bar text is stored)."""

    def __init__(self):
        self.figure = self.axes = self.handle = None

    def __call__(self, state):
        from IPython.display import display

        if self.figure is None:
            self.figure, self.axes = plt.subplots(1, 2, figsize=(10, 3.5))
            plt.close(self.figure)  # shown through the display handle only, not again at cell end
        for ax in self.axes:
            ax.clear()
        plot_losses(state, self.axes)
        self.figure.suptitle(f"step {state.step:,}: {state.images_seen:,} images in {state.elapsed:.0f} s "
                             f"({state.images_seen / max(state.elapsed, 1e-9):.0f} images/s)", fontsize=10)
        self.figure.tight_layout()
        if self.handle is None:
            self.handle = display(self.figure, display_id=True)
        else:
            self.handle.update(self.figure)


def animate_states(states, index=0, every=1, interval=80):
    """A matplotlib animation of one image's trajectory through a sampling run: x_t (left)
    and the predicted x0 (right) for image ``index`` of each ``SampleStep`` in ``states``.
    Show it in a notebook with ``IPython.display.HTML(animation.to_jshtml())``."""
    from matplotlib import animation

    states = list(_checks.nonempty(states, "states", "a list of SampleStep (list(denoising_steps(...)))"))
    for i, state in enumerate(states):
        if not all(hasattr(state, key) for key in ("t", "x_t", "pred_x0")):
            raise TypeError(f"states[{i}] must be a SampleStep (with t, x_t, pred_x0) as denoising_steps yields, "
                            f"got {type(state).__name__}")
        _checks.finite(state.x_t, f"states[{i}].x_t")
        _checks.finite(state.pred_x0, f"states[{i}].pred_x0")
    batch = len(_checks.images(states[0].x_t, "states[0].x_t", noised=True))
    index = _checks.integer(index, "index", 0, batch - 1, hint="the image of the batch to follow")
    every = _checks.positive_int(every, "every", hint="keep every n-th state, e.g. 10")
    interval = _checks.real(interval, "interval", 0, low_open=True, hint="milliseconds per frame, e.g. 80")
    states = states[::every] + ([states[-1]] if (len(states) - 1) % every else [])
    fig, (ax_x, ax_x0) = plt.subplots(1, 2, figsize=(4, 2.3))
    images = [_imshow(ax_x, image_to_numpy(states[0].x_t[index].clamp(-1, 1))),
              _imshow(ax_x0, image_to_numpy(states[0].pred_x0[index].clamp(-1, 1)))]
    ax_x.set_title("x_t", fontsize=9)
    ax_x0.set_title("predicted x0", fontsize=9)
    label = fig.suptitle("", fontsize=9)
    plt.close(fig)  # shown through the animation only

    def update(i):
        state = states[i]
        images[0].set_data(image_to_numpy(state.x_t[index].clamp(-1, 1)))
        images[1].set_data(image_to_numpy(state.pred_x0[index].clamp(-1, 1)))
        label.set_text("finished" if state.t < 0 else f"t = {state.t}")
        return [*images, label]

    return animation.FuncAnimation(fig, update, frames=len(states), interval=interval, blit=False)


# --- the UNet as a diagram (lesson 3) -------------------------------------------------------
# Drawn from the config alone: the same arithmetic as unet.UNet.__init__, so the picture shows
# the network that UNet(config) builds (tests/test_lesson3.py checks it against the modules).

from matplotlib.patches import FancyBboxPatch, Patch  # noqa: E402 - this block's own import

_RESNET, _ATTENTION, _RESAMPLE, _OTHER = "#dbe8f6", "#f9d9a8", "#d9efd3", "#eeeeee"  # box colours


def unet_layout(config):
    """The blocks of ``UNet(config)`` in call order and its skip connections, from the config alone.

    Returns ``(down, mid, up, skips)``: ``down`` and ``up`` are lists of dicts with ``name`` (the
    module's name in the UNet), ``label``, ``in_ch``, ``out_ch``, ``size`` (output H = W, None when
    the config has no sample_size) and ``attention`` (a SelfAttention follows); ``down`` starts
    with conv_in, ``up`` ends with conv_out. ``skips`` pairs (index in down, index in up): the
    output of that down block is concatenated to the input of that up ResidualBlock.
    """
    cfg = getattr(config, "config", config)
    if not hasattr(cfg, "block_out_channels") or not hasattr(cfg, "block_types"):
        raise TypeError(f"draw_unet takes a UNetConfig or a UNet, e.g. draw_unet(model.config); got "
                        f"{type(config).__name__}. For a diffusers config dict use UNet.from_config(d).config")
    widths, (down_types, up_types) = cfg.block_out_channels, cfg.block_types()
    lowest, size = len(widths) - 1, cfg.sample_size

    def at(level):
        return None if size is None else size // 2 ** level

    def box(name, label, in_ch, out_ch, level, attention=False):
        return dict(name=name, label=label, in_ch=in_ch, out_ch=out_ch, size=at(level), attention=attention)

    ch = widths[0]
    down, stack = [box("conv_in", f"conv_in {cfg.in_channels}→{ch}", cfg.in_channels, ch, 0)], [0]
    for level, (width, kind) in enumerate(zip(widths, down_types)):
        for j in range(cfg.layers_per_block):
            down.append(box(f"down_blocks.{level}.resnets.{j}", f"ResBlock {ch}→{width}", ch, width, level,
                            kind.startswith("Attn")))
            stack.append(len(down) - 1)
            ch = width
        if level < lowest:
            down.append(box(f"down_blocks.{level}.downsample", f"Downsample {width}", width, width, level + 1))
            stack.append(len(down) - 1)
    mid = box("mid_block", f"mid: ResBlock, attention, ResBlock {ch}", ch, ch, lowest, True)
    up, skips = [], []
    for i, (width, kind) in enumerate(zip(reversed(widths), up_types)):
        level = lowest - i
        for j in range(cfg.layers_per_block + 1):
            source = stack.pop()  # the last skip saved is the first one used
            in_ch = ch + down[source]["out_ch"]
            up.append(box(f"up_blocks.{i}.resnets.{j}", f"ResBlock {ch}+{down[source]['out_ch']}→{width}", in_ch,
                          width, level, kind.startswith("Attn")))
            skips.append((source, len(up) - 1))
            ch = width
        if level > 0:
            up.append(box(f"up_blocks.{i}.upsample", f"Upsample {width}", width, width, level - 1))
    out_ch = cfg.out_channels or cfg.in_channels
    up.append(box("conv_out", f"GroupNorm, SiLU, conv_out {ch}→{out_ch}", ch, out_ch, 0))
    return down, mid, up, skips


def _size_text(size, level):
    return f"{size}×{size}" if size is not None else ("H×W" if level == 0 else f"H/{2 ** level}×W/{2 ** level}")


def _unet_rows(down, up, skips):
    """Heights of the boxes: the down path one row per box, top to bottom, with a gap where the
    resolution halves (room for the up path's Upsample); each up ResBlock at the height of the skip
    it takes, each Upsample between its neighbours, conv_out above the top."""
    y_down = [0.0]
    for item in down[1:]:
        y_down.append(y_down[-1] - 1 - 0.5 * item["name"].endswith("downsample"))
    y_up, partner = [None] * len(up), {u: d for d, u in skips}
    for u in partner:
        y_up[u] = y_down[partner[u]]
    for u in range(len(up)):
        if y_up[u] is None:
            above = next((y for y in y_up[u + 1:] if y is not None), None)
            y_up[u] = (y_up[u - 1] + above) / 2 if above is not None else y_up[u - 1] + 1.2
    return y_down, y_up, y_down[-1] - 1.3


def _resolution_bands(ax, down, y_down, y_mid, x_label):
    """Shaded bands, one per resolution, meeting halfway between the rows of two levels."""
    levels = [0]  # resolution level of each down box's output
    for item in down[1:]:
        levels.append(levels[-1] + item["name"].endswith("downsample"))
    for level in range(levels[-1] + 1):
        rows = [r for r in range(len(down)) if levels[r] == level]
        top = y_down[0] + 0.5 if level == 0 else (y_down[rows[0] - 1] + y_down[rows[0]]) / 2
        bottom = (y_down[rows[-1]] + y_down[rows[-1] + 1]) / 2 if level < levels[-1] else y_mid - 0.45
        ax.axhspan(bottom, top, color="0.5" if level % 2 else "0.85", alpha=0.15, lw=0)
        ax.text(x_label, (top + bottom) / 2, _size_text(down[rows[0]]["size"], level), ha="right", va="center",
                fontsize=9, color="0.3")


def _unet_box(ax, x, y, item, width, height):
    name = item["name"]
    kind = "res" if ".resnets." in name or name == "mid_block" else "resample" if "sample" in name else "other"
    color = _ATTENTION if item["attention"] else {"res": _RESNET, "resample": _RESAMPLE}.get(kind, _OTHER)
    ax.add_patch(FancyBboxPatch((x - width / 2, y - height / 2), width, height, boxstyle="round,pad=0.02",
                                fc=color, ec="black", lw=0.8, gid=name))
    text = item["label"] + (" + attention" if item["attention"] and name != "mid_block" else "")
    ax.text(x, y, text, ha="center", va="center", fontsize=8, gid=name)


def _arrow(ax, x0, y0, x1, y1, **style):
    ax.annotate("", xy=(x1, y1), xytext=(x0, y0), arrowprops=dict(arrowstyle="-|>", lw=1, color="black", **style))


def _unet_legend(ax, cfg, x, y):
    time_dim = cfg.time_embedding_dim or 4 * cfg.block_out_channels[0]
    text = (f"t → sinusoidal embedding ({cfg.block_out_channels[0]}) → MLP → emb ({time_dim}), "
            "added inside every ResBlock")
    ax.text(x, y, text, ha="center", va="top", fontsize=8, color="0.25")
    ax.legend(handles=[Patch(fc=_RESNET, ec="black", lw=0.8, label="ResBlock (the time embedding enters here)"),
                       Patch(fc=_ATTENTION, ec="black", lw=0.8, label="with self-attention"),
                       Patch(fc=_RESAMPLE, ec="black", lw=0.8, label="Downsample / Upsample"),
                       plt.Line2D([], [], color="0.45", ls="--", label="skip: concatenated to the input")],
              loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=2, fontsize=8, frameon=False)


def draw_unet(config, ax=None):
    """Draw ``UNet(config)`` as a U: the down path on the left (top to bottom), the middle block at
    the bottom, the up path on the right (bottom to top). Each box is one block with its channel
    widths; the bands give the resolution; dashed arrows are the skip connections (each down
    output is concatenated to the input of the up block at its height); orange marks attention.
    ``config``: a UNetConfig or a UNet. Returns the Axes."""
    cfg = getattr(config, "config", config)
    down, mid, up, skips = unet_layout(cfg)
    y_down, y_up, y_mid = _unet_rows(down, up, skips)
    if ax is None:
        _, ax = plt.subplots(figsize=(10, 0.55 * (len(down) + 3) + 1))
    x_down, x_up, x_mid, w, h, h_resample = 0.0, 6.4, 3.2, 2.9, 0.56, 0.34
    _resolution_bands(ax, down, y_down, y_mid, x_down - w / 2 - 0.15)
    for r, item in enumerate(down):
        _unet_box(ax, x_down, y_down[r], item, w, h)
        if r:
            _arrow(ax, x_down, y_down[r - 1] - h / 2, x_down, y_down[r] + h / 2)
    _unet_box(ax, x_mid, y_mid, mid, w + 0.6, h)
    _arrow(ax, x_down, y_down[-1] - h / 2, x_mid - w / 2 - 0.3, y_mid)
    _arrow(ax, x_mid + w / 2 + 0.3, y_mid, x_up, y_up[0] - h / 2)
    heights = [h_resample if item["name"].endswith("upsample") else h for item in up]
    for u, item in enumerate(up):
        _unet_box(ax, x_up, y_up[u], item, w, heights[u])
        if u:
            _arrow(ax, x_up, y_up[u - 1] + heights[u - 1] / 2, x_up, y_up[u] - heights[u] / 2)
    for d, u in skips:
        ax.annotate("", xy=(x_up - w / 2, y_up[u]), xytext=(x_down + w / 2, y_down[d]), gid="skip",
                    arrowprops=dict(arrowstyle="-|>", lw=1, ls="--", color="0.45"))
    size, top = _size_text(cfg.sample_size, 0).replace("×", " × "), y_up[-1] + 0.75
    ax.text(x_down, top, f"x_t  ({cfg.in_channels} × {size})", ha="center", va="bottom", fontsize=9)
    _arrow(ax, x_down, top, x_down, y_down[0] + h / 2)
    ax.text(x_up, top, f"eps_pred  ({cfg.out_channels or cfg.in_channels} × {size})", ha="center", va="bottom",
            fontsize=9)
    _arrow(ax, x_up, y_up[-1] + h / 2, x_up, top)
    _unet_legend(ax, cfg, x_mid, y_mid - 0.55)
    ax.set_title(f"UNet: block_out_channels={tuple(cfg.block_out_channels)}, "
                 f"layers_per_block={cfg.layers_per_block}", fontsize=10)
    ax.set(xlim=(-2.9, x_up + w / 2 + 0.2), ylim=(y_mid - 1.0, top + 0.5))
    ax.axis("off")
    return ax


def show_image_rows(rows, labels, ax=None, title=None, label_size=9):
    """Show images in labelled rows, each label written on its own row (e.g. the sampler that made
    it, or the digit asked for). ``rows``: a list of (B, C, H, W) batches in [-1, 1], one per row
    (a shorter row is padded with blanks), or one (R * K, C, H, W) tensor filling the R rows
    evenly; ``labels``: one string per row. Returns the Axes."""
    _checks.instance(labels, "labels", (list, tuple), "a list of strings, one per row")
    _checks.nonempty(labels, "labels", "a list of strings, one per row")
    if isinstance(rows, torch.Tensor):
        batch = _as_batch(rows, name="rows")
        if len(batch) % len(labels):
            raise ValueError(f"rows must fill the {len(labels)} rows evenly (one per label): got {len(batch)} "
                             f"images, not a multiple of {len(labels)}")
        batches = list(batch.chunk(len(labels)))
    else:
        _checks.instance(rows, "rows", (list, tuple), "a list of (B, C, H, W) batches, one per row")
        _checks.nonempty(rows, "rows", "a list of (B, C, H, W) batches, one per row")
        if len(labels) != len(rows):
            raise ValueError(f"labels must be one label per row: got {len(labels)} labels for {len(rows)} rows")
        batches = [_as_batch(row, name=f"rows[{i}]") for i, row in enumerate(rows)]
    width, (channels, height, size) = max(len(b) for b in batches), batches[0].shape[1:]
    if any(b.shape[1:] != batches[0].shape[1:] for b in batches):
        shapes = sorted({tuple(b.shape[1:]) for b in batches})
        raise ValueError(f"every row must hold images of one (C, H, W) shape; got {shapes}")
    blank = torch.full((1, channels, height, size), _PAD_VALUE)
    padded = torch.cat([torch.cat([b, blank.expand(width - len(b), -1, -1, -1)]) for b in batches])
    grid = make_grid(padded, nrow=width, padding=_PADDING, pad_value=_PAD_VALUE)
    ax = _axes(ax, (max(4.0, 0.8 * width + 1.8), 0.85 * len(batches) + (0.3 if title else 0)))
    _imshow(ax, _grid_to_numpy(grid, channels))
    centres = [_PADDING + r * (height + _PADDING) + (height - 1) / 2 for r in range(len(batches))]
    ax.set_yticks(centres, [str(label) for label in labels], fontsize=label_size)
    ax.tick_params(axis="y", length=0)
    if title is not None:
        ax.set_title(title)
    return ax
