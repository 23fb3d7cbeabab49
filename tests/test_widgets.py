"""The sliders, headless: move the slider, check the picture it shows; and what a saved notebook
keeps of a slider (the widget view plus a PNG filmstrip, never a progress bar or a widget repr)."""

import base64
import io
import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from ddpm_helpers.noising import q_sample
from ddpm_helpers.widgets import (
    WIDGET_VIEW, FrameSlider, draw_forward_frame, filmstrip, forward_noising_slider, render_frames,
)

ROOT = Path(__file__).resolve().parent.parent
ALPHAS_CUMPROD = torch.cumprod(1 - torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64), dim=0).float()
LESSONS = [ROOT / "notebooks" / "01_forward_noising.ipynb", ROOT / "notebooks" / "02_noise_schedules.ipynb"]


def png(i, size=(40, 30)):
    """A small PNG of one flat colour, different for each i."""
    buffer = io.BytesIO()
    Image.new("RGB", size, (i * 40 % 256, 100, 200)).save(buffer, format="png")
    return buffer.getvalue()


def test_frame_slider_shows_the_frame_for_each_value():
    frames = [png(i) for i in range(5)]
    slider = FrameSlider(frames, range(0, 50, 10))
    assert slider.image.value == frames[0]
    for value, frame in zip([30, 10, 40, 0], [frames[3], frames[1], frames[4], frames[0]]):
        slider.slider.value = value
        assert slider.image.value == frame
    assert (slider.slider.min, slider.slider.max, slider.slider.step) == (0, 40, 10)


def test_uneven_values_get_a_selection_slider_that_reaches_every_value():
    frames = [png(i) for i in range(4)]
    slider = FrameSlider(frames, [0, 20, 40, 47])
    assert [value for _, value in slider.slider.options] == [0, 20, 40, 47]
    for value, frame in zip([47, 20, 0, 40], [frames[3], frames[1], frames[0], frames[2]]):
        slider.slider.value = value
        assert slider.image.value == frame


@pytest.mark.parametrize(
    "frames, values, match",
    [([png(0), png(1)], [0, 10, 20], "one frame per value"), ([png(0), png(1), png(2)], [0, 10, 10], "increase strictly")],
)
def test_frame_slider_rejects_mismatched_frames(frames, values, match):
    with pytest.raises(ValueError, match=match):
        FrameSlider(frames, values)


def test_the_display_carries_the_widget_and_a_filmstrip_of_six_labelled_frames():
    frames = [png(i, size=(200, 60)) for i in range(20)]
    slider = FrameSlider(frames, range(0, 200, 10))
    bundle = slider._repr_mimebundle_()
    assert bundle[WIDGET_VIEW] == {"version_major": 2, "version_minor": 0, "model_id": slider.widget.model_id}
    strip = Image.open(io.BytesIO(base64.b64decode(bundle["image/png"])))
    # six frames, first and last included: 200 px wide frames, 5 per row within 1100 px -> 2 rows
    assert strip.width == 5 * 200
    assert strip.height == 30 + 2 * (24 + 60)
    rgb = strip.convert("RGB")
    for k, index in enumerate([0, 4, 8, 11, 15, 19]):  # round(k * 19 / 5)
        x, y = (k % 5) * 200 + 100, 30 + (k // 5) * 84 + 24 + 30  # the middle of frame k
        assert rgb.getpixel((x, y)) == Image.open(io.BytesIO(frames[index])).convert("RGB").getpixel((100, 30))
    assert "VBox" not in bundle["text/plain"] and "%|" not in bundle["text/plain"]


def test_filmstrip_of_fewer_frames_than_six_shows_them_all():
    frames = [png(i) for i in range(3)]
    strip = Image.open(io.BytesIO(filmstrip(frames, [0, 5, 10])))
    assert strip.width == 3 * 40 and strip.height == 30 + 24 + 30


def test_forward_slider_frames_are_the_noised_images_for_that_t():
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand((4, 1, 8, 8), generator=g) * 2 - 1
    noise = torch.randn(x0.shape, generator=g)
    slider = forward_noising_slider(x0, ALPHAS_CUMPROD, step=250, noise=noise)
    assert len(set(slider.frames)) == len(slider.frames) >= 4  # every t looks different
    t = slider.values[2]
    slider.slider.value = t
    expected = render_frames(lambda fig, t: draw_forward_frame(fig, q_sample(x0, t, ALPHAS_CUMPROD, noise), t,
                                                               ALPHAS_CUMPROD), [t])[0]
    assert slider.image.value == expected
    assert slider.image.value[:8] == b"\x89PNG\r\n\x1a\n"


def test_forward_slider_rejects_unscaled_images():
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        forward_noising_slider(torch.full((2, 1, 8, 8), 255.0), ALPHAS_CUMPROD)


def test_schedule_slider_shows_every_schedule_at_the_slider_t():
    from ddpm_helpers.schedules import alphas_cumprod_from_betas, make_betas
    from ddpm_helpers.widgets import draw_schedule_frame, schedule_comparison_slider

    schedules = {name: alphas_cumprod_from_betas(make_betas(name, 1000)).float() for name in ("linear", "squaredcos_cap_v2")}
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand((1, 1, 8, 8), generator=g) * 2 - 1
    noise = torch.randn(x0.shape, generator=g)
    slider = schedule_comparison_slider(x0, schedules, step=250, noise=noise)
    t = slider.values[-1]
    slider.slider.value = t
    expected = render_frames(lambda fig, t: draw_schedule_frame(fig, x0, t, schedules, noise), [t], figsize=(9, 3.4))[0]
    assert slider.image.value == expected


def test_schedule_slider_needs_one_T():
    from ddpm_helpers.widgets import schedule_comparison_slider

    with pytest.raises(ValueError, match="same number of timesteps"):
        schedule_comparison_slider(torch.zeros(1, 1, 8, 8), {"a": ALPHAS_CUMPROD, "b": ALPHAS_CUMPROD[:500]})


def fake_states(n_states=11, batch=4):
    from ddpm_helpers.sampling import SampleStep

    g = torch.Generator().manual_seed(0)
    return [SampleStep(t=100 * (n_states - 2 - i) if i < n_states - 1 else -1,
                       x_t=torch.randn(batch, 1, 8, 8, generator=g), pred_x0=torch.rand(batch, 1, 8, 8, generator=g) * 2 - 1)
            for i in range(n_states)]


def _reverse_frame(states, i):
    from ddpm_helpers.widgets import draw_reverse_frame

    return render_frames(lambda fig, i: draw_reverse_frame(fig, states[i], i, len(states), 2), [i], figsize=(8, 4.2))[0]


def test_reverse_slider_shows_x_t_and_pred_x0_of_the_chosen_state():
    from ddpm_helpers.widgets import reverse_process_slider

    states = fake_states()
    slider = reverse_process_slider(states, every=5)
    assert slider.values == [0, 5, 10]  # evenly spaced, first (pure noise) and last (the result) included
    slider.slider.value = 5
    assert slider.image.value == _reverse_frame(states, 5)


@pytest.mark.parametrize("n_states, every", [(11, 3), (11, 4), (12, 5), (21, 20), (2, 7)])
def test_reverse_slider_always_ends_on_the_finished_sample(n_states, every):
    """Issue 11: with (states - 1) not a multiple of `every` the finished sample was dropped."""
    from ddpm_helpers.widgets import reverse_process_slider

    states = fake_states(n_states)
    slider = reverse_process_slider(states, every=every)
    assert slider.values == sorted(set(range(0, n_states, every)) | {n_states - 1})
    slider.slider.value = n_states - 1
    assert slider.image.value == _reverse_frame(states, n_states - 1)  # the frame of the finished sample (t = -1)


def test_a_displayed_slider_stores_a_png_and_no_progress_bar_in_the_notebook():
    """Run a slider cell in a real kernel (nbclient), then read what the notebook would save."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("import torch\nfrom ddpm_helpers.widgets import forward_noising_slider\n"
                                  "x0 = torch.rand(2, 1, 8, 8) * 2 - 1\n"
                                  "ac = torch.linspace(0.999, 0.01, 100)"),
        nbformat.v4.new_code_cell("print('before')\nslider = forward_noising_slider(x0, ac, step=10)\nslider"),
    ]
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}).execute()
    outputs = nb.cells[1].outputs
    shown = [o for o in outputs if o.output_type in ("display_data", "execute_result") and o.data]
    assert len(shown) == 1, f"expected one visible output (the slider), got {outputs}"
    bundle = shown[0].data
    assert WIDGET_VIEW in bundle and bundle["image/png"]
    assert Image.open(io.BytesIO(base64.b64decode(bundle["image/png"]))).format == "PNG"
    text = json.dumps([o for o in outputs if o is not shown[0]]) + bundle["text/plain"]
    for marker in ("Rendering frames", "it/s", "%|", "VBox(", "IntSlider("):
        assert marker not in text, f"{marker!r} is stored in the notebook: {text[:500]}"
    assert [o.text for o in outputs if o.output_type == "stream"] == ["before\n"]


@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.stem)
def test_the_committed_lessons_store_every_slider_as_a_filmstrip(path):
    nb = json.loads(path.read_text())
    assert "widgets" not in nb["metadata"], "clean the widget state out of the notebook's metadata"
    sliders = 0
    for cell in nb["cells"]:
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            text = "".join(output.get("text", "")) + "".join(data.get("text/plain", ""))
            for marker in ("Rendering frames", "it/s]", "VBox(children", "IntSlider("):
                assert marker not in text, f"{path.name} stores {marker!r}: {text[:300]}"
            if WIDGET_VIEW in data:
                sliders += 1
                assert data.get("image/png"), f"a slider of {path.name} has no static filmstrip"
    assert sliders >= 1
