"""Sliders over precomputed frames: scrubbing swaps a picture, it never recomputes one.

Each frame is rendered once to PNG bytes; moving the slider only sets an ``ipywidgets.Image``'s
value. That is instant, works with ipywidgets 7 (Colab) and 8 (JupyterLab), and is easy to
test: set ``slider.value`` and compare ``image.value`` with the frame for that value.
"""

import io

import ipywidgets as widgets
import numpy as np
import torch
from matplotlib.figure import Figure
from tqdm.auto import tqdm

from .config import quick
from ._checks import image_range
from .noising import q_sample
from .plotting import show_images


def figure_to_png(fig, dpi=72):
    """Render a matplotlib Figure to PNG bytes."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return buffer.getvalue()


def render_frames(draw, values, figsize=(12, 3.4), desc="Rendering frames"):
    """Call ``draw(fig, value)`` on a fresh Figure for each value; return the PNG bytes."""
    frames = []
    for value in tqdm(values, desc=desc, leave=False):
        fig = Figure(figsize=figsize)  # not pyplot: nothing is displayed or kept open
        draw(fig, value)
        frames.append(figure_to_png(fig))
    return frames


class FrameSlider:
    """An IntSlider over ``values`` (evenly spaced) showing ``frames[i]`` for ``values[i]``.

    Display it as the last line of a cell. ``slider``, ``image`` and ``frame_for(value)``
    are public so tests can move the slider and check what it shows.
    """

    def __init__(self, frames, values, description="t"):
        values = [int(v) for v in values]
        if len(frames) != len(values) or not values:
            raise ValueError(f"need one frame per value: got {len(frames)} frames, {len(values)} values.")
        step = values[1] - values[0] if len(values) > 1 else 1
        if step <= 0 or any(b - a != step for a, b in zip(values, values[1:])):
            raise ValueError("values must be evenly spaced and increasing, like range(0, 1000, 10).")
        self.frames, self.values, self.step = list(frames), values, step
        self.slider = widgets.IntSlider(
            value=values[0], min=values[0], max=values[-1], step=step,
            description=description, continuous_update=True,
            layout=widgets.Layout(width="60%"),
        )
        self.image = widgets.Image(value=self.frames[0], format="png")
        self.slider.observe(self._on_change, names="value")
        self.widget = widgets.VBox([self.slider, self.image])

    def frame_for(self, value):
        """The PNG bytes shown when the slider is at ``value``."""
        index = (int(value) - self.values[0]) // self.step
        return self.frames[min(max(index, 0), len(self.frames) - 1)]

    def _on_change(self, change):
        self.image.value = self.frame_for(change["new"])

    def _ipython_display_(self):  # ipywidgets 7 and 8 both honour this hook
        from IPython.display import display

        display(self.widget)


def draw_forward_frame(fig, x_t, t, alphas_cumprod):
    """One frame of lesson 1: the noised images, their histogram against N(0, 1), and
    where t sits on the alpha_bar curve."""
    ax_img, ax_hist, ax_curve = fig.subplots(1, 3, gridspec_kw={"width_ratios": [1.1, 1, 1]})
    alpha_bar_t = alphas_cumprod[t].item()
    show_images(x_t, nrow=int(np.ceil(np.sqrt(len(x_t)))), ax=ax_img)
    ax_img.set_title(f"x_t at t = {t}")

    grid = np.linspace(-4, 4, 200)
    ax_hist.hist(x_t.flatten().numpy(), bins=60, range=(-4, 4), density=True, color="tab:blue", alpha=0.7, label="pixels of x_t")
    ax_hist.plot(grid, np.exp(-grid**2 / 2) / np.sqrt(2 * np.pi), "k--", label="N(0, 1)")
    ax_hist.set_ylim(0, 1.5)
    ax_hist.set_title("pixel values")
    ax_hist.legend(loc="upper right", fontsize=8)

    steps = np.arange(len(alphas_cumprod))
    ax_curve.plot(steps, alphas_cumprod.numpy(), label="alpha_bar")
    ax_curve.plot(steps, alphas_cumprod.sqrt().numpy(), label="sqrt(alpha_bar)  (signal)")
    ax_curve.plot(steps, (1 - alphas_cumprod).sqrt().numpy(), label="sqrt(1 - alpha_bar)  (noise)")
    ax_curve.axvline(t, color="gray", lw=1)
    ax_curve.plot([t], [alpha_bar_t], "o", color="tab:blue")
    ax_curve.set_xlabel("t")
    ax_curve.set_title(f"alpha_bar_t = {alpha_bar_t:.3f}")
    ax_curve.legend(loc="center right", fontsize=8)
    fig.tight_layout()


def forward_noising_slider(x0, alphas_cumprod, step=10, noise=None, generator=None):
    """A slider over t = 0, step, 2 step, ... for lesson 1. Every frame uses the same noise,
    so only t changes. x0: (B, C, H, W) in [-1, 1]; alphas_cumprod: (T,).
    """
    image_range(x0)
    alphas_cumprod = alphas_cumprod.detach().cpu().float()
    values = range(0, len(alphas_cumprod), quick(step, len(alphas_cumprod) // 4))
    if noise is None:
        noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype)

    def draw(fig, t):
        draw_forward_frame(fig, q_sample(x0, t, alphas_cumprod, noise), t, alphas_cumprod)

    return FrameSlider(render_frames(draw, values), values)


def draw_schedule_frame(fig, x0, t, schedules, noise):
    """One frame of lesson 2: the same images and noise at step t under each schedule,
    then the alpha_bar curves with t marked. ``schedules`` maps a name to alphas_cumprod."""
    axes = fig.subplots(1, len(schedules) + 1)
    for ax, (name, alphas_cumprod) in zip(axes, schedules.items()):
        show_images(q_sample(x0, t, alphas_cumprod, noise), nrow=int(np.ceil(np.sqrt(len(x0)))), ax=ax)
        ax.set_title(f"{name}\nalpha_bar_t = {alphas_cumprod[t].item():.3f}", fontsize=9)
    for name, alphas_cumprod in schedules.items():
        axes[-1].plot(alphas_cumprod.numpy(), label=name)
    axes[-1].axvline(t, color="gray", lw=1)
    axes[-1].set_title(f"t = {t}", fontsize=9)
    axes[-1].set_xlabel("t")
    axes[-1].legend(fontsize=7)
    fig.tight_layout()


def schedule_comparison_slider(x0, schedules, step=10, noise=None, generator=None):
    """A slider over t showing ``x0`` noised under each schedule side by side (same noise).

    x0: (B, C, H, W) in [-1, 1]; schedules: {name: alphas_cumprod (T,)}, all with the same T.
    """
    image_range(x0)
    schedules = {name: ac.detach().cpu().float() for name, ac in schedules.items()}
    T = len(next(iter(schedules.values())))
    if any(len(ac) != T for ac in schedules.values()):
        raise ValueError("all schedules must have the same number of timesteps T to share one slider.")
    if noise is None:
        noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype)
    values = range(0, T, quick(step, T // 4))
    frames = render_frames(lambda fig, t: draw_schedule_frame(fig, x0, t, schedules, noise), values,
                           figsize=(3 * (len(schedules) + 1), 3.4))
    return FrameSlider(frames, values)


def draw_reverse_frame(fig, state, index, num_states, nrow):
    """One frame of lesson 5: the sample x_t and the model's predicted x0, side by side."""
    ax_x, ax_x0 = fig.subplots(1, 2)
    label = "pure noise x_T" if index == 0 else ("finished sample" if state.t < 0 else f"t = {state.t}")
    show_images(state.x_t, nrow=nrow, ax=ax_x)
    ax_x.set_title(f"x_t  (state {index}/{num_states - 1}: {label})", fontsize=9)
    show_images(state.pred_x0, nrow=nrow, ax=ax_x0)
    ax_x0.set_title("predicted x0 from this x_t", fontsize=9)
    fig.tight_layout()


def reverse_process_slider(states, every=1):
    """A slider over the states of a sampling run (``sampling.denoising_steps``): x_t and the
    predicted x0 for the whole batch. ``every`` keeps every n-th state (and always the last)."""
    states = list(states)
    indices = list(range(0, len(states) - 1, every)) + [len(states) - 1]
    if len(indices) > 2 and indices[-1] - indices[-2] != every:  # keep the slider evenly spaced
        indices = list(range(0, len(states), every))
    nrow = int(np.ceil(np.sqrt(len(states[0].x_t))))
    frames = render_frames(lambda fig, i: draw_reverse_frame(fig, states[i], i, len(states), nrow), indices,
                           figsize=(8, 4.2))
    return FrameSlider(frames, indices, description="state")
