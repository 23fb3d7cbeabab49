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
    """A training callback that redraws ``plot_losses`` in place in a notebook:
    ``train(model, dataset, config, callbacks=[LiveLossPlot()])``."""

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
