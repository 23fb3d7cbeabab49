"""The sliders, headless: move the slider, check the picture it shows."""

import pytest
import torch

from ddpm_helpers.noising import q_sample
from ddpm_helpers.widgets import FrameSlider, draw_forward_frame, forward_noising_slider, render_frames

ALPHAS_CUMPROD = torch.cumprod(1 - torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64), dim=0).float()


def test_frame_slider_shows_the_frame_for_each_value():
    frames = [bytes([i]) * 8 for i in range(5)]
    slider = FrameSlider(frames, range(0, 50, 10))
    assert slider.image.value == frames[0]
    for value, frame in zip([30, 10, 40, 0], [frames[3], frames[1], frames[4], frames[0]]):
        slider.slider.value = value
        assert slider.image.value == frame
    assert (slider.slider.min, slider.slider.max, slider.slider.step) == (0, 40, 10)


@pytest.mark.parametrize(
    "frames, values, match",
    [([b"a", b"b"], [0, 10, 20], "one frame per value"), ([b"a", b"b", b"c"], [0, 10, 30], "evenly spaced")],
)
def test_frame_slider_rejects_mismatched_frames(frames, values, match):
    with pytest.raises(ValueError, match=match):
        FrameSlider(frames, values)


def test_forward_slider_frames_are_the_noised_images_for_that_t():
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand((4, 1, 8, 8), generator=g) * 2 - 1
    noise = torch.randn(x0.shape, generator=g)
    slider = forward_noising_slider(x0, ALPHAS_CUMPROD, step=250, noise=noise)
    assert len(set(slider.frames)) == len(slider.frames) >= 4  # every t looks different
    t = slider.values[2]
    slider.slider.value = t
    expected = render_frames(lambda fig, t: draw_forward_frame(fig, q_sample(x0, t, ALPHAS_CUMPROD, noise), t, ALPHAS_CUMPROD), [t])[0]
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


def _fake_states(n_states=11, batch=4):
    from ddpm_helpers.sampling import SampleStep

    g = torch.Generator().manual_seed(0)
    return [SampleStep(t=100 * (n_states - 2 - i) if i < n_states - 1 else -1,
                       x_t=torch.randn(batch, 1, 8, 8, generator=g), pred_x0=torch.rand(batch, 1, 8, 8, generator=g) * 2 - 1)
            for i in range(n_states)]


def test_reverse_slider_shows_x_t_and_pred_x0_of_the_chosen_state():
    from ddpm_helpers.widgets import draw_reverse_frame, reverse_process_slider

    states = _fake_states()
    slider = reverse_process_slider(states, every=5)
    assert slider.values == [0, 5, 10]  # evenly spaced, first (x_T) and last (the result) included
    slider.slider.value = 5
    expected = render_frames(lambda fig, i: draw_reverse_frame(fig, states[i], i, len(states), 2), [5], figsize=(8, 4.2))[0]
    assert slider.image.value == expected


def test_animation_has_one_frame_per_kept_state():
    from ddpm_helpers.plotting import animate_states

    states = _fake_states()
    animation = animate_states(states, index=1, every=3)
    frames = list(animation.new_frame_seq())
    assert len(frames) == 5  # states 0, 3, 6, 9 and the final state 10
    html = animation.to_jshtml()  # renders every frame, as the notebook does
    assert html.count("data:image/png;base64") == 5
