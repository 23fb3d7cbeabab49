"""Pictures of images: grids of a batch, a row of frames over time.

Images everywhere in the course are (C, H, W) or (B, C, H, W) tensors in [-1, 1] with
1 or 3 channels. Display maps them to [0, 1] with fixed limits, so a grey pixel always
means the same value and a picture is never silently rescaled.
"""

import matplotlib.pyplot as plt
import numpy as np
import torch
from torchvision.utils import make_grid

_PADDING = 2
_PAD_VALUE = 1.0    # white grid lines, visible between dark MNIST-like images
_FAR_OUT = 10.0     # |x| beyond this is a wrong range (e.g. [0, 255]), not noise


def _as_batch(images, clip=True):
    """Validate and return a (B, C, H, W) float tensor in [0, 1] for display."""
    if isinstance(images, (list, tuple)):
        images = torch.stack([torch.as_tensor(x) for x in images])
    images = torch.as_tensor(images).detach().cpu()
    if images.dtype == torch.uint8:
        raise ValueError("images are uint8 (0-255); scale them to [-1, 1] first: "
                         "x.float() / 127.5 - 1.")
    if images.dim() == 3:
        images = images.unsqueeze(0)
    if images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"images must be (C, H, W) or (B, C, H, W) with C = 1 or 3, got "
                         f"shape {tuple(images.shape)}; for (H, W) use x[None].")
    images = images.float()
    if not torch.isfinite(images).all():
        raise ValueError("images contain NaN or inf; check the model output or the loss.")
    peak = images.abs().max().item()
    if peak > _FAR_OUT:
        raise ValueError(f"images reach |x| = {peak:.1f}, far outside [-1, 1]; scale them to "
                         "[-1, 1] first (from [0, 255]: x / 127.5 - 1).")
    if not clip and peak > 1 + 1e-6:
        raise ValueError(f"images reach |x| = {peak:.2f}, outside [-1, 1]; pass clip=True to "
                         "clamp them for display (noised images x_t often exceed 1).")
    return ((images.clamp(-1, 1) + 1) / 2)


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
    x = torch.as_tensor(x)
    if x.dim() != 3:
        raise ValueError(f"image_to_numpy takes one image (C, H, W), got shape {tuple(x.shape)}; "
                         "for a batch pick one: x[0].")
    image = _as_batch(x)[0]                                   # (C, H, W) in [0, 1]
    return _grid_to_numpy(image, image.shape[0]).astype(np.float32)


def show_images(images, nrow=8, title=None, ax=None, figsize=None, clip=True):
    """Show a batch (B, C, H, W) in [-1, 1] (or one (C, H, W) image, or a list) as one grid.

    ``nrow`` images per row; grayscale uses cmap="gray" with vmin/vmax fixed, so -1 is
    black and +1 white. With ``clip=True`` values beyond [-1, 1] (noised images x_t) are
    clamped for display; ``clip=False`` raises instead. A single image is drawn without
    grid padding. Returns the Axes.
    """
    batch = _as_batch(images, clip=clip)
    grid = make_grid(batch, nrow=nrow, padding=_PADDING, pad_value=_PAD_VALUE)  # (3, H', W')
    if ax is None:
        n_cols = min(nrow, batch.shape[0])
        n_rows = -(-batch.shape[0] // nrow)
        if figsize is None:
            figsize = (max(2.0, 0.8 * n_cols), max(2.0, 0.8 * n_rows))
        _, ax = plt.subplots(figsize=figsize)
    _imshow(ax, _grid_to_numpy(grid, batch.shape[1]))
    if title is not None:
        ax.set_title(title)
    return ax


def show_sequence(frames, labels=None, title=None, ax=None, clip=True):
    """Show frames (a list of (C, H, W) images or a (N, C, H, W) tensor) in one row, with
    ``labels`` (e.g. ``["t=0", "t=250"]``) written under each frame. Returns the Axes."""
    batch = _as_batch(frames, clip=clip)
    n, channels, _, width = batch.shape
    if labels is not None and len(labels) != n:
        raise ValueError(f"got {len(labels)} labels for {n} frames; give one label per frame.")
    grid = make_grid(batch, nrow=n, padding=_PADDING, pad_value=_PAD_VALUE)
    if ax is None:
        _, ax = plt.subplots(figsize=(max(2.0, 1.3 * n), 1.8))
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
    from .training import smooth

    losses, by_t = list(history.losses), list(history.loss_by_timestep)
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    curve, buckets = axes
    curve.plot(losses, alpha=0.3, lw=0.8, label="loss per step")
    curve.plot(smooth(losses), lw=1.5, label="smoothed")
    curve.set(xlabel="step", ylabel="MSE(eps_pred, eps)", yscale="log", title="training loss")
    curve.legend()
    T = history.scheduler.num_train_timesteps
    width = T / len(by_t)
    buckets.bar([width * (i + 0.5) for i in range(len(by_t))], by_t, width=width * 0.9)
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

    states = list(states)
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
