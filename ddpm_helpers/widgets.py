"""Sliders over precomputed frames: scrubbing swaps a picture, it never recomputes one.

Each frame is rendered once to PNG bytes; moving the slider only sets an ``ipywidgets.Image``'s
value. That is instant, works with ipywidgets 7 (Colab) and 8 (JupyterLab), and is easy to
test: set ``slider.value`` and compare ``image.value`` with the frame for that value.

A slider is displayed as ONE output that carries two representations: the live widget and a
PNG filmstrip of six of its frames. A frontend that runs widgets (JupyterLab, Notebook, Colab)
shows only the widget; one that cannot (GitHub, nbviewer, JupyterLab before the notebook is
trusted or run) shows the filmstrip. The progress bar shown while frames render is replaced by
an empty output when it closes, so the saved notebook holds no "Rendering frames: 0%" text.
"""

import base64
import bisect
import io
from collections.abc import Mapping
from contextlib import contextmanager

import ipywidgets as widgets
import numpy as np
import torch
from matplotlib.figure import Figure
from tqdm import notebook as tqdm_notebook
from tqdm.auto import tqdm

from . import _checks
from .config import quick
from .noising import q_sample
from .plotting import show_images

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def figure_to_png(fig, dpi=72):
    """Render a matplotlib Figure to PNG bytes."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return buffer.getvalue()


@contextmanager
def _transient_progress(total, desc):
    """A tqdm bar that leaves nothing behind: in a notebook its output is replaced by an empty
    one when it closes (display handle), elsewhere tqdm erases its line (leave=False)."""
    if not issubclass(tqdm, tqdm_notebook.tqdm):
        with tqdm(total=total, desc=desc, leave=False) as bar:
            yield bar
        return
    from IPython.display import display

    bar = tqdm(total=total, desc=desc, leave=False, display=False)
    handle = display(bar.container, display_id=True)
    try:
        yield bar
    finally:
        bar.close()
        if handle is not None:
            handle.update({}, raw=True)  # the stored output becomes empty instead of "0%|  | 0/100"


def render_frames(draw, values, figsize=(12, 3.4), desc="Rendering frames"):
    """Call ``draw(fig, value)`` on a fresh Figure for each value; return the PNG bytes."""
    if not callable(draw):
        raise TypeError(f"draw must be a function draw(fig, value), got {type(draw).__name__}.")
    values = list(values)
    if not values:
        raise ValueError("values is empty: give at least one value to render a frame for.")
    frames = []
    with _transient_progress(len(values), desc) as bar:
        for value in values:
            fig = Figure(figsize=figsize)  # not pyplot: nothing is displayed or kept open
            draw(fig, value)
            frames.append(figure_to_png(fig))
            bar.update()
    return frames


def _frame_indices(count, n):
    """``count`` evenly spaced indices into n frames, always the first and the last."""
    count = min(count, n)
    return sorted({round(i * (n - 1) / (count - 1)) for i in range(count)}) if count > 1 else [0]


def filmstrip(frames, values, label="t", count=6, max_width=1100):
    """One PNG of ``count`` evenly spaced frames (first and last included), each under a band
    "label = value", with a header line: what GitHub and nbviewer show instead of the slider."""
    from matplotlib import font_manager
    from PIL import Image, ImageDraw, ImageFont

    picks = _frame_indices(count, len(frames))
    images = [Image.open(io.BytesIO(frames[i])).convert("RGB") for i in picks]
    width, height = max(im.width for im in images), max(im.height for im in images)
    columns = max(1, min(len(images), max_width // width))
    rows = -(-len(images) // columns)
    band, header = 24, 30
    canvas = Image.new("RGB", (columns * width, header + rows * (band + height)), "white")
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.truetype(font_manager.findfont("DejaVu Sans"), 15)
    bold = ImageFont.truetype(font_manager.findfont(font_manager.FontProperties(family="DejaVu Sans",
                                                                                  weight="bold")), 15)
    draw.text((6, 6), f"{len(images)} of the slider's {len(frames)} frames ({label} = {values[0]} to "
                      f"{values[-1]}). Run the notebook to drag the slider through all of them.",
              fill=(90, 90, 90), font=font)
    for k, (index, image) in enumerate(zip(picks, images)):
        x, y = (k % columns) * width, header + (k // columns) * (band + height)
        draw.rectangle([x, y, x + width - 1, y + band - 2], fill=(235, 240, 248))
        draw.text((x + 6, y + 3), f"{label} = {values[index]}", fill="black", font=bold)
        canvas.paste(image, (x, y + band))
    # 256 colours look the same here and take 2-3x fewer bytes in the notebook; method 0 is median cut,
    # dither 0 none (integers, as Pillow 9.0 has no enums for them)
    buffer = io.BytesIO()
    canvas.quantize(256, method=0, dither=0).save(buffer, format="png", optimize=True)
    return buffer.getvalue()


class FrameSlider:
    """A slider over ``values`` (increasing ints) showing ``frames[i]`` (PNG bytes) for ``values[i]``.

    Evenly spaced values give an IntSlider, others a SelectionSlider. Display it as the last line
    of a cell: the output holds the live widget and a static filmstrip (see the module docstring).
    ``slider``, ``image`` and ``frame_for(value)`` are public so tests can move the slider and
    check what it shows.
    """

    def __init__(self, frames, values, description="t"):
        frames, values = _check_frames(frames), _check_values(values)
        if len(frames) != len(values):
            raise ValueError(f"need one frame per value: got {len(frames)} frames and {len(values)} values.")
        if not isinstance(description, str):
            raise TypeError(f"description must be a str (the slider's label), got {type(description).__name__}.")
        self.frames, self.values, self.description = frames, values, description
        steps = {b - a for a, b in zip(values, values[1:])}
        layout = widgets.Layout(width="60%")
        if len(steps) <= 1:
            self.step = steps.pop() if steps else 1
            self.slider = widgets.IntSlider(value=values[0], min=values[0], max=values[-1], step=self.step,
                                            description=description, continuous_update=True, layout=layout)
        else:  # uneven, e.g. every 20th state of a sampling run and the last one
            self.step = None
            self.slider = widgets.SelectionSlider(options=[(str(v), v) for v in values], value=values[0],
                                                  description=description, continuous_update=True, layout=layout)
        self.image = widgets.Image(value=self.frames[0], format="png")
        self.slider.observe(self._on_change, names="value")
        self.widget = widgets.VBox([self.slider, self.image])
        self._filmstrip = None

    def frame_for(self, value):
        """The PNG bytes shown when the slider is at ``value`` (the frame of the largest value <= it)."""
        index = bisect.bisect_right(self.values, int(value)) - 1
        return self.frames[min(max(index, 0), len(self.frames) - 1)]

    def filmstrip(self):
        """The static picture stored with the notebook: six evenly spaced frames as one PNG."""
        if self._filmstrip is None:
            self._filmstrip = filmstrip(self.frames, self.values, self.description)
        return self._filmstrip

    def _on_change(self, change):
        self.image.value = self.frame_for(change["new"])

    def __repr__(self):
        return (f"FrameSlider({self.description} = {self.values[0]} .. {self.values[-1]}, "
                f"{len(self.frames)} frames)")

    def _repr_mimebundle_(self, include=None, exclude=None):
        # one output, two views: frontends that run widgets pick the widget view (it ranks first),
        # the others (GitHub, nbviewer, an untrusted notebook in JupyterLab) show the PNG
        return {
            "text/plain": repr(self),
            "image/png": base64.b64encode(self.filmstrip()).decode("ascii"),
            WIDGET_VIEW: {"version_major": 2, "version_minor": 0, "model_id": self.widget.model_id},
        }


def _check_frames(frames):
    if isinstance(frames, (bytes, str)) or not hasattr(frames, "__iter__"):
        raise TypeError(f"frames must be a list of PNG images (bytes), got {type(frames).__name__}; "
                        "make them with render_frames(draw, values).")
    frames = list(frames)
    if not frames:
        raise ValueError("frames is empty: a slider needs at least one frame; make them with render_frames.")
    for i, frame in enumerate(frames):
        if not isinstance(frame, (bytes, bytearray)):
            raise TypeError(f"frames[{i}] must be PNG bytes, got {type(frame).__name__}; "
                            "make frames with render_frames(draw, values).")
        if not bytes(frame[:8]) == PNG_SIGNATURE:
            raise ValueError(f"frames[{i}] is not a PNG image (it does not start with the PNG signature); "
                             "make frames with render_frames(draw, values) or figure_to_png(fig).")
    return [bytes(f) for f in frames]


def _check_values(values):
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise TypeError(f"values must be a sequence of ints, e.g. range(0, 1000, 10); got {type(values).__name__}.")
    values = [_checks.integer(v, f"values[{i}]") for i, v in enumerate(values)]
    if not values:
        raise ValueError("values is empty: a slider needs at least one value.")
    for i, (a, b) in enumerate(zip(values, values[1:])):
        if b <= a:
            raise ValueError(f"values must increase strictly, like range(0, 1000, 10); values[{i + 1}] = {b} "
                             f"follows values[{i}] = {a}.")
    return values


def _check_batch(x0, name="x0"):
    """x0 as a (B, C, H, W) float tensor in [-1, 1] with B >= 1; NaN fails."""
    if isinstance(x0, torch.Tensor) and x0.ndim != 4:
        raise ValueError(f"{name} must be a batch of images (B, C, H, W), got shape {tuple(x0.shape)}; "
                         "for one image (C, H, W) use x[None].")
    _checks.image_range(x0, name)
    if len(x0) == 0:
        raise ValueError(f"{name} holds no images (batch size 0); give at least one, e.g. render_digits(4)[0].")
    return x0.detach().cpu().float()


def _check_alphas_cumprod(alphas_cumprod, name="alphas_cumprod"):
    _checks.float_tensor(alphas_cumprod, name, ndim=1, hint="pass scheduler.alphas_cumprod, shape (T,)")
    if len(alphas_cumprod) == 0:
        raise ValueError(f"{name} is empty; pass scheduler.alphas_cumprod, shape (T,).")
    if not bool(((alphas_cumprod >= 0) & (alphas_cumprod <= 1)).all()):
        raise ValueError(f"{name} must hold values in [0, 1] (alpha_bar_t = prod (1 - beta_s)); got values from "
                         f"{alphas_cumprod.min().item():.3g} to {alphas_cumprod.max().item():.3g}. Did you pass betas?")
    return alphas_cumprod.detach().cpu().float()


def _check_noise(noise, x0, generator):
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}.")
    if noise is None:
        return torch.randn(x0.shape, generator=generator, dtype=x0.dtype)
    _checks.float_tensor(noise, "noise", hint="draw it with torch.randn_like(x0)")
    if noise.shape != x0.shape:
        raise ValueError(f"noise must have x0's shape {tuple(x0.shape)}, got {tuple(noise.shape)}; "
                         "draw it with torch.randn_like(x0).")
    return noise.detach().cpu().float()


def _check_step(step, T):
    return _checks.integer(step, "step", low=1, high=max(1, T - 1),
                           hint=f"the slider shows t = 0, step, 2 step, ... up to T - 1 = {T - 1}")


def _alpha_bar_text(value):
    return f"alpha_bar_t = {value:.5f}" if value >= 1e-3 else f"alpha_bar_t = {value:.1e}"


def draw_forward_frame(fig, x_t, t, alphas_cumprod):
    """One frame of lesson 1: the noised images, their histogram against N(0, 1), and
    where t sits on the alpha_bar curve."""
    ax_img, ax_hist, ax_curve = fig.subplots(1, 3, gridspec_kw={"width_ratios": [1.1, 1, 1]})
    alpha_bar_t = alphas_cumprod[t].item()
    show_images(x_t, nrow=int(np.ceil(np.sqrt(len(x_t)))), ax=ax_img)
    ax_img.set_title(f"x_t at t = {t}")

    grid = np.linspace(-4, 4, 200)
    ax_hist.hist(x_t.flatten().numpy(), bins=60, range=(-4, 4), density=True, color="tab:blue", alpha=0.7,
                 label="pixels of x_t")
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
    ax_curve.set_title(_alpha_bar_text(alpha_bar_t))
    ax_curve.legend(loc="center right", fontsize=8)
    fig.tight_layout()


def forward_noising_slider(x0, alphas_cumprod, step=10, noise=None, generator=None):
    """A slider over t = 0, step, 2 step, ... for lesson 1. Every frame uses the same noise,
    so only t changes. x0: (B, C, H, W) in [-1, 1], B >= 1; alphas_cumprod: (T,) in [0, 1];
    step: an int in [1, T-1]; noise: like x0 (default: drawn with ``generator``).
    """
    x0 = _check_batch(x0)
    alphas_cumprod = _check_alphas_cumprod(alphas_cumprod)
    T = len(alphas_cumprod)
    values = range(0, T, quick(_check_step(step, T), max(1, T // 4)))
    noise = _check_noise(noise, x0, generator)

    def draw(fig, t):
        draw_forward_frame(fig, q_sample(x0, t, alphas_cumprod, noise), t, alphas_cumprod)

    return FrameSlider(render_frames(draw, values), values)


def draw_schedule_frame(fig, x0, t, schedules, noise):
    """One frame of lesson 2: the same images and noise at step t under each schedule,
    then the alpha_bar curves with t marked. ``schedules`` maps a name to alphas_cumprod."""
    axes = fig.subplots(1, len(schedules) + 1)
    for ax, (label, alphas_cumprod) in zip(axes, schedules.items()):
        show_images(q_sample(x0, t, alphas_cumprod, noise), nrow=int(np.ceil(np.sqrt(len(x0)))), ax=ax)
        ax.set_title(f"{label}\n{_alpha_bar_text(alphas_cumprod[t].item())}", fontsize=9)
    for label, alphas_cumprod in schedules.items():
        axes[-1].plot(alphas_cumprod.numpy(), label=label)
    axes[-1].axvline(t, color="gray", lw=1)
    axes[-1].set_title(f"alpha_bar_t, t = {t}", fontsize=9)
    axes[-1].set_xlabel("t")
    axes[-1].legend(fontsize=7)
    fig.tight_layout()


def schedule_comparison_slider(x0, schedules, step=10, noise=None, generator=None):
    """A slider over t showing ``x0`` noised under each schedule side by side (same noise).

    x0: (B, C, H, W) in [-1, 1], B >= 1; schedules: {name: alphas_cumprod (T,)}, all with the same T.
    """
    x0 = _check_batch(x0)
    if not isinstance(schedules, Mapping) or not schedules:
        raise TypeError(f"schedules must be a non-empty dict {{name: alphas_cumprod}}, got "
                        f"{type(schedules).__name__ if not isinstance(schedules, Mapping) else 'an empty dict'}.")
    schedules = {str(label): _check_alphas_cumprod(ac, f"schedules[{label!r}]") for label, ac in schedules.items()}
    T = len(next(iter(schedules.values())))
    if any(len(ac) != T for ac in schedules.values()):
        lengths = ", ".join(f"{label}: {len(ac)}" for label, ac in schedules.items())
        raise ValueError(f"all schedules must have the same number of timesteps T to share one slider; got {lengths}.")
    values = range(0, T, quick(_check_step(step, T), max(1, T // 4)))
    noise = _check_noise(noise, x0, generator)
    frames = render_frames(lambda fig, t: draw_schedule_frame(fig, x0, t, schedules, noise), values,
                           figsize=(3 * (len(schedules) + 1), 3.4))
    return FrameSlider(frames, values)


def draw_reverse_frame(fig, state, index, num_states, nrow):
    """One frame of lesson 5: the sample x_t and the model's predicted x0, side by side."""
    ax_x, ax_x0 = fig.subplots(1, 2)
    label = "finished sample" if state.t < 0 else f"t = {state.t}" + (", pure noise" if index == 0 else "")
    show_images(state.x_t, nrow=nrow, ax=ax_x)
    ax_x.set_title(f"x_t  (state {index}/{num_states - 1}: {label})", fontsize=9)
    # an unclipped scheduler's x0 guess can be far outside [-1, 1] at large t: show it clamped
    show_images(state.pred_x0.clamp(-1, 1), nrow=nrow, ax=ax_x0)
    ax_x0.set_title("predicted x0 from this x_t", fontsize=9)
    fig.tight_layout()


def _check_states(states):
    if isinstance(states, torch.Tensor) or not hasattr(states, "__iter__"):
        raise TypeError(f"states must be a list of SampleStep, as list(sampling.denoising_steps(...)) gives; "
                        f"got {type(states).__name__}.")
    states = list(states)
    if not states:
        raise ValueError("states is empty: collect a sampling run with states = list(denoising_steps(model, "
                         "scheduler, shape)).")
    for i, state in enumerate(states):
        if not all(hasattr(state, field) for field in ("t", "x_t", "pred_x0")):
            raise TypeError(f"states[{i}] must be a SampleStep (with .t, .x_t, .pred_x0), got {type(state).__name__}.")
        for field in ("x_t", "pred_x0"):
            value = _checks.float_tensor(getattr(state, field), f"states[{i}].{field}", ndim=4,
                                         hint="the sampler diverged: check the model and the scheduler")
            if len(value) == 0:
                raise ValueError(f"states[{i}].{field} holds no images (batch size 0); sample at least one.")
    return states


def reverse_process_slider(states, every=1):
    """A slider over the states of a sampling run (``sampling.denoising_steps``): x_t and the
    predicted x0 for the whole batch. ``every`` (an int >= 1) keeps states 0, every, 2 every, ...
    and always the last one, the finished sample (then the last gap may be shorter)."""
    states = _check_states(states)
    every = _checks.positive_int(every, "every", hint="keep every n-th state, e.g. every=20")
    indices = list(range(0, len(states), every))
    if indices[-1] != len(states) - 1:
        indices.append(len(states) - 1)
    nrow = int(np.ceil(np.sqrt(len(states[0].x_t))))
    frames = render_frames(lambda fig, i: draw_reverse_frame(fig, states[i], i, len(states), nrow), indices,
                           figsize=(8, 4.2))
    return FrameSlider(frames, indices, description="state")


# --- lesson 7: guidance ---------------------------------------------------------------------------


def draw_guidance_frame(fig, images, w, labels, read=None):
    """One frame of lesson 7: the samples drawn at guidance scale w, one column per requested
    digit (``labels``), one row per starting noise; ``read``: which ones the classifier reads as asked."""
    from .plotting import show_image_rows

    ax = fig.subplots()
    columns = len(labels)
    rows = len(images) // columns
    show_image_rows(images, [f"noise {r + 1}" for r in range(rows)], ax=ax)
    height = images.shape[-1] + 2
    ax.set_xticks([2 + c * height + (height - 3) / 2 for c in range(columns)], [str(int(d)) for d in labels])
    ax.tick_params(axis="x", length=0, labeltop=True, labelbottom=False)
    text = f"w = {w:g}"
    if read is not None:
        text += f": {int(read.sum())} of {len(read)} read as the digit asked for (p >= 0.9)"
    ax.set_title(text, fontsize=10)
    fig.tight_layout()


def guidance_slider(images_by_w, labels, read_by_w=None):
    """A slider over integer guidance scales w: ``images_by_w`` {w: (R * K, 1, H, W)} drawn from the
    same noise at each w, row r column k asking for ``labels[k]``; ``read_by_w`` {w: (R * K,) bool}."""
    if not isinstance(images_by_w, Mapping) or not images_by_w:
        raise TypeError("images_by_w must be a non-empty dict {w: images}, one entry per guidance scale")
    values = sorted(images_by_w)
    labels = [int(d) for d in labels]
    for w in values:
        if len(images_by_w[w]) % len(labels):
            raise ValueError(f"images_by_w[{w}] must hold whole rows of {len(labels)} images, one per label; "
                             f"got {len(images_by_w[w])}")
    read_by_w = read_by_w or {}
    frames = render_frames(lambda fig, w: draw_guidance_frame(fig, images_by_w[w], w, labels, read_by_w.get(w)),
                           values, figsize=(0.55 * len(labels) + 1.2, 0.55 * (len(images_by_w[values[0]])
                                                                         // len(labels)) + 0.9))
    return FrameSlider(frames, values, description="w")


class NumberWriter:
    """Type a number, the model writes it: an ``ipywidgets.Text`` box and the picture of its digits.

    ``draw(text) -> PNG bytes`` makes the picture (raising ValueError on text that is not a number);
    a new value of ``text`` (on Enter) redraws it, a bad one leaves the picture and says why in
    ``message``. Displayed, the output carries the widget and a PNG of the current number.
    """

    def __init__(self, draw, initial="2026"):
        if not callable(draw):
            raise TypeError(f"draw must be a function draw(text) -> PNG bytes, got {type(draw).__name__}")
        self.draw = draw
        self.text = widgets.Text(value=str(initial), description="number", continuous_update=False)
        self.message = widgets.HTML(value="")
        self.image = widgets.Image(value=draw(str(initial)), format="png")
        self.text.observe(self._on_change, names="value")
        self.widget = widgets.VBox([widgets.HBox([self.text, self.message]), self.image])

    def _on_change(self, change):
        try:
            png = self.draw(change["new"])
        except ValueError as error:
            self.message.value = f"<span style='color:#a00'>{error}</span>"
            return
        self.message.value = ""
        self.image.value = png

    def __repr__(self):
        return f"NumberWriter(number = {self.text.value!r})"

    def _repr_mimebundle_(self, include=None, exclude=None):
        return {
            "text/plain": repr(self),
            "image/png": base64.b64encode(self.image.value).decode("ascii"),
            WIDGET_VIEW: {"version_major": 2, "version_minor": 0, "model_id": self.widget.model_id},
        }


def number_writer(model, scheduler, initial="2026", guidance_scale=3.0, num_inference_steps=20, seed=0, rows=2):
    """Lesson 7's "write a number": a text box; the model draws the number typed, digit by digit,
    ``rows`` versions one under the other (``guidance.draw_number``)."""
    from .guidance import draw_number, number_labels
    from .plotting import show_image_rows

    def draw(text):
        digits = number_labels(text)
        images = draw_number(model, scheduler, text, guidance_scale, num_inference_steps, seed, rows)
        fig = Figure(figsize=(0.75 * len(digits) + 1.3, 0.75 * rows + 0.5))
        ax = fig.subplots()
        show_image_rows(images, [f"version {r + 1}" for r in range(rows)], ax=ax)
        ax.set_title(f"\"{''.join(map(str, digits.tolist()))}\", w = {guidance_scale:g}", fontsize=10)
        return figure_to_png(fig, dpi=80)

    return NumberWriter(draw, initial)
