"""Lesson 7's helpers: the guidance check, the trade-off measurement, "write a number", the
guidance slider, and the shipped class-conditional weights."""

import base64

import pytest
import torch

from ddpm_helpers import guidance
from ddpm_helpers.exercises import check_guidance
from ddpm_helpers.data import DigitsDataset
from ddpm_helpers.dpm_solver import DPMSolverMultistepScheduler
from ddpm_helpers.sampling import sample
from ddpm_helpers.unet import UNet
from ddpm_helpers.widgets import PNG_SIGNATURE, WIDGET_VIEW, NumberWriter, guidance_slider, number_writer

CONDITIONAL_WEIGHTS = guidance.CONDITIONAL_PATH


def tiny_conditional_unet():
    torch.manual_seed(0)
    return UNet(block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=4, num_class_embeds=11,
                down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D")).eval()


# --- the exercise check ---------------------------------------------------------------------------

ATTEMPTS = {  # a wrong attempt -> words of its first hint
    "placeholder": (lambda eps_uncond, eps_cond, w: ..., "placeholder"),
    "w on the wrong term": (lambda eps_uncond, eps_cond, w: w * eps_uncond + (eps_cond - eps_uncond), "wrong term"),
    "swapped": (lambda eps_uncond, eps_cond, w: eps_cond + w * (eps_uncond - eps_cond), "swapped"),
    "no unconditional term": (lambda eps_uncond, eps_cond, w: w * (eps_cond - eps_uncond), "missing"),
    "the paper's w": (lambda eps_uncond, eps_cond, w: eps_cond + w * (eps_cond - eps_uncond), "paper"),
    "no difference": (lambda eps_uncond, eps_cond, w: eps_uncond + w * eps_cond, "difference"),
    "w unused": (lambda eps_uncond, eps_cond, w: eps_cond, "not used"),
    "raises": (lambda eps_uncond, eps_cond, w: eps_cond[5], "IndexError"),
    "a number": (lambda eps_uncond, eps_cond, w: 1.0, "float"),
}


@pytest.mark.parametrize("attempt", ATTEMPTS)
def test_check_guidance_names_each_mistake(attempt, capsys):
    fn, words = ATTEMPTS[attempt]
    assert check_guidance(fn) is False
    out = capsys.readouterr().out
    assert out.startswith("Not yet.") and words in out


def test_check_guidance_accepts_the_solution_and_never_raises(capsys):
    assert check_guidance(lambda eps_uncond, eps_cond, w: eps_uncond + w * (eps_cond - eps_uncond)) is True
    assert check_guidance(lambda eps_uncond, eps_cond, w: guidance.guided_noise(eps_uncond, eps_cond, w)) is True
    assert "Correct!" in capsys.readouterr().out
    assert check_guidance("eps_uncond + w * (eps_cond - eps_uncond)") is False
    assert check_guidance(lambda a, b: a) is False


def test_guided_noise_is_the_samplers_combination():
    """The samplers' guided prediction is guided_noise of the model's two predictions."""
    model = tiny_conditional_unet()
    x, labels = torch.randn(3, 1, 32, 32), torch.tensor([1, 5, 9])
    from ddpm_helpers.sampling import _predict_noise

    with torch.no_grad():
        eps_uncond = model(x, 500, class_labels=torch.full((3,), 10)).sample
        eps_cond = model(x, 500, class_labels=labels).sample
    for w in (0.0, 1.0, 4.0):
        torch.testing.assert_close(_predict_noise(model, x, 500, labels, 10, w, False, "cpu"),
                                   guidance.guided_noise(eps_uncond, eps_cond, w), atol=1e-5, rtol=1e-5)


# --- measuring the trade-off ------------------------------------------------------------------------


def test_read_as_requested_reads_real_digits_and_refuses_wrong_labels():
    data = DigitsDataset(n=50, split="test")
    read = guidance.read_as_requested(data.images, data.labels)
    assert read.dtype == torch.bool and read.float().mean() >= 0.9
    assert not guidance.read_as_requested(data.images, (data.labels + 1) % 10).any()
    with pytest.raises(ValueError, match="one digit per image"):
        guidance.read_as_requested(data.images, data.labels[:3])


def test_real_reference_is_balanced_and_near_zero_kid():
    ref = guidance.real_reference(40)
    assert ref.num_samples == 40 and ref.feats.shape == (40, 64)
    assert ref.read_share >= 0.9
    assert abs(ref.kid) < 1e6  # KID/1000 below 1000 for two real sets (units: metrics' KID)


def test_tradeoff_uses_the_same_noise_at_every_w():
    model, scheduler = tiny_conditional_unet(), DPMSolverMultistepScheduler()
    ref = guidance.real_reference(10)
    rows = guidance.guidance_tradeoff(model, scheduler, [0, 1, 2], 10, num_inference_steps=3, reference=ref,
                                      keep_images=True)
    assert [r.w for r in rows] == [0, 1, 2] and all(len(r.per_digit) == 10 for r in rows)
    labels = guidance.balanced_labels(10)
    unconditional = sample(model, scheduler, 10, 3, generator=torch.Generator().manual_seed(0), progress=False,
                           class_labels=10)
    conditional = sample(model, scheduler, 10, 3, generator=torch.Generator().manual_seed(0), progress=False,
                         class_labels=labels)
    # the guided batch runs twice as large through the model: equal up to float rounding
    torch.testing.assert_close(rows[0].images, unconditional.clamp(-1, 1), atol=1e-3, rtol=0)
    torch.testing.assert_close(rows[1].images, conditional.clamp(-1, 1), atol=1e-3, rtol=0)
    assert (rows[2].images - rows[1].images).abs().max() > 1e-2
    assert rows[1].seconds_per_64 == pytest.approx(6.4 * rows[1].seconds)
    table = guidance.format_tradeoff(rows, ref)
    assert "real" in table and len(table.splitlines()) == 5
    with pytest.raises(ValueError, match="one size"):
        guidance.guidance_tradeoff(model, scheduler, [0], 20, num_inference_steps=2, reference=ref)


def test_number_labels():
    assert guidance.number_labels("2026").tolist() == [2, 0, 2, 6]
    assert guidance.number_labels("1 000,5").tolist() == [1, 0, 0, 0, 5]
    for bad, words in [("20a6", "'a'"), ("", "no digit"), ("-", "no digit"), ("1" * 13, "at most"), ("٣", "0-9")]:
        with pytest.raises(ValueError, match=words):
            guidance.number_labels(bad)
    with pytest.raises(TypeError):
        guidance.number_labels(2026)


def test_draw_number_asks_for_each_digit():
    model, scheduler = tiny_conditional_unet(), DPMSolverMultistepScheduler()
    images = guidance.draw_number(model, scheduler, "305", num_inference_steps=2, rows=2)
    expected = sample(model, scheduler, 6, 2, generator=torch.Generator().manual_seed(0), progress=False,
                      class_labels=torch.tensor([3, 0, 5, 3, 0, 5]), guidance_scale=3.0)
    torch.testing.assert_close(images, expected.clamp(-1, 1))


# --- widgets ----------------------------------------------------------------------------------------


def fake_png(text):
    from matplotlib.figure import Figure

    from ddpm_helpers.widgets import figure_to_png

    guidance.number_labels(text)  # a bad number raises ValueError, as the real drawing does
    fig = Figure(figsize=(1, 1))
    fig.text(0.5, 0.5, text)
    return figure_to_png(fig)


def test_number_writer_redraws_on_a_new_number_and_explains_a_bad_one():
    writer = NumberWriter(fake_png, initial="7")
    assert writer.image.value == fake_png("7")
    writer.text.value = "42"
    assert writer.image.value == fake_png("42") and writer.message.value == ""
    writer.text.value = "4x2"
    assert writer.image.value == fake_png("42") and "digits 0-9" in writer.message.value
    bundle = writer._repr_mimebundle_()
    assert base64.b64decode(bundle["image/png"]) == fake_png("42") and WIDGET_VIEW in bundle


def test_number_writer_draws_with_the_model():
    writer = number_writer(tiny_conditional_unet(), DPMSolverMultistepScheduler(), "19", num_inference_steps=2)
    assert bytes(writer.image.value).startswith(PNG_SIGNATURE)


def test_guidance_slider_shows_the_frame_of_each_w():
    images = {w: torch.rand(20, 1, 32, 32) * 2 - 1 for w in (3, 0, 1)}
    read = {w: torch.rand(20) > 0.5 for w in images}
    slider = guidance_slider(images, range(10), read)
    assert slider.values == [0, 1, 3]
    slider.slider.value = 3
    assert slider.image.value == slider.frames[2]
    with pytest.raises(ValueError, match="whole rows"):
        guidance_slider({0: torch.zeros(7, 1, 32, 32)}, range(10))


def test_show_image_rows_labels_each_row():
    import matplotlib

    matplotlib.use("Agg")
    from ddpm_helpers.plotting import show_image_rows

    ax = show_image_rows(torch.zeros(6, 1, 32, 32), ["digit 0", "digit 1"])
    assert [t.get_text() for t in ax.get_yticklabels()] == ["digit 0", "digit 1"]
    with pytest.raises(ValueError, match="evenly"):
        show_image_rows(torch.zeros(5, 1, 32, 32), ["a", "b"])


# --- the shipped conditional model ------------------------------------------------------------------


def test_shipped_conditional_weights_load_as_a_conditional_model():
    from ddpm_helpers.checkpoints import load_pretrained

    model, scheduler_config = load_pretrained(CONDITIONAL_WEIGHTS)
    assert model.config.num_class_embeds == 11 and model.class_embedding.weight.shape[0] == 11
    assert scheduler_config["num_train_timesteps"] == 1000
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():  # the label changes the prediction: the embedding was trained
        assert (model(x, 500, class_labels=torch.tensor([3, 3])).sample
                - model(x, 500, class_labels=torch.tensor([8, 10])).sample).abs().max() > 1e-3


def test_shipped_conditional_model_round_trips_to_diffusers_with_class_labels():
    pytest.importorskip("diffusers")
    from ddpm_helpers.checkpoints import load_pretrained

    model, _ = load_pretrained(CONDITIONAL_WEIGHTS)
    unet2d = model.to_diffusers().eval()
    assert unet2d.config.num_class_embeds == 11
    x, t, labels = torch.randn(4, 1, 32, 32), torch.tensor([999, 500, 20, 0]), torch.tensor([0, 7, 9, 10])
    with torch.no_grad():
        ours = model(x, t, class_labels=labels).sample
        theirs = unet2d(x, t, class_labels=labels).sample
        back = UNet.from_diffusers(unet2d).eval()(x, t, class_labels=labels).sample
    assert (ours - theirs).abs().max() < 1e-5
    assert (ours - back).abs().max() < 1e-5
