"""Bad inputs to the figures: show_images, show_sequence, image_to_numpy, plot_losses and
animate_states given empty, NaN, wrongly scaled or wrongly shaped input.

Each case asserts the exception type and that the message names the argument and says what
is allowed; none ends in an IndexError or StopIteration from inside matplotlib or torch.
"""

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from PIL import Image

from ddpm_helpers.plotting import animate_states, image_to_numpy, plot_losses, show_images, show_sequence
from ddpm_helpers.sampling import SampleStep
from ddpm_helpers.scheduler import DDPMScheduler
from ddpm_helpers.training import TrainState

IMAGE = torch.zeros(1, 4, 4)
NAN = float("nan")


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def history(losses):
    """A TrainState with only what plot_losses reads: the losses and the scheduler."""
    return TrainState(model=None, optimizer=None, ema=None, scheduler=DDPMScheduler(), config=None, losses=losses)


def states(n=3, batch=2, nan_at=None, shape=(1, 4, 4)):
    out = [SampleStep(t=999 - i, x_t=torch.zeros(batch, *shape), pred_x0=torch.zeros(batch, *shape)) for i in range(n)]
    if nan_at is not None:
        out[nan_at].x_t[0, 0, 0, 0] = NAN
    return out


CASES = {
    # show_images
    "empty batch": (lambda: show_images(torch.zeros(0, 1, 8, 8)), ValueError,
                    ["images is an empty batch", "at least one image"]),
    "empty list": (lambda: show_images([]), ValueError, ["images is empty", "a list of (C, H, W) images"]),
    "NaN": (lambda: show_images(torch.full((1, 1, 4, 4), NAN)), ValueError, ["images contains NaN", "finite"]),
    "inf": (lambda: show_images(torch.full((1, 1, 4, 4), float("inf"))), ValueError, ["images contains inf"]),
    "[0, 255] floats": (lambda: show_images(torch.full((1, 1, 4, 4), 255.0)), ValueError,
                        ["images must be images in [-1, 1] or noised images x_t (|x| <= 6.08)", "x / 127.5 - 1"]),
    "noised, clip=False": (lambda: show_images(torch.full((1, 1, 4, 4), 3.0), clip=False), ValueError,
                           ["images must be scaled to [-1, 1]", "clip=True"]),
    "uint8": (lambda: show_images(torch.zeros(1, 1, 4, 4, dtype=torch.uint8)), TypeError,
              ["images must be float images scaled to [-1, 1]", "x.float() / 127.5 - 1"]),
    "(H, W)": (lambda: show_images(torch.zeros(4, 4)), ValueError,
               ["images must be (C, H, W) or (B, C, H, W) with C = 1 or 3", "x[None]"]),
    "two channels": (lambda: show_images(torch.zeros(2, 2, 4, 4)), ValueError,
                     ["images must be (B, C, H, W) with C = 1 or 3", "(2, 2, 4, 4)"]),
    "5-d": (lambda: show_images(torch.zeros(1, 1, 1, 4, 4)), ValueError, ["images must be (C, H, W) or (B, C, H, W)"]),
    "list of two shapes": (lambda: show_images([IMAGE, torch.zeros(1, 8, 8)]), ValueError,
                           ["images must all have one shape", "(1, 8, 8)"]),
    "list with a number": (lambda: show_images([IMAGE, 0.5]), TypeError,
                           ["images[1] must be a (C, H, W) tensor in [-1, 1]"]),
    "a PIL image": (lambda: show_images(Image.new("L", (4, 4))), TypeError, ["images must be a tensor", "to_tensor"]),
    "nrow zero": (lambda: show_images(IMAGE, nrow=0), ValueError, ["nrow must be >= 1", "images per row"]),
    "nrow a float": (lambda: show_images(IMAGE, nrow=2.5), TypeError, ["nrow must be an int"]),
    "ax a figure": (lambda: show_images(IMAGE, ax=plt.figure()), TypeError, ["ax must be a matplotlib Axes or None"]),
    "clip a string": (lambda: show_images(IMAGE, clip="yes"), TypeError, ["clip must be True or False"]),
    "figsize a number": (lambda: show_images(IMAGE, figsize=3), TypeError, ["figsize must be a (width, height) pair"]),
    "figsize negative": (lambda: show_images(IMAGE, figsize=(3, -1)), ValueError, ["figsize must be > 0"]),
    # show_sequence
    "no frames": (lambda: show_sequence([]), ValueError, ["frames is empty"]),
    "frames with NaN": (lambda: show_sequence([IMAGE, torch.full((1, 4, 4), NAN)]), ValueError,
                        ["frames contains NaN"]),
    "labels a string": (lambda: show_sequence([IMAGE, IMAGE, IMAGE], labels="t=0"), TypeError,
                        ["labels must be a list of strings, one per frame"]),
    "labels miscounted": (lambda: show_sequence(torch.zeros(3, 1, 4, 4), labels=["t=0"]), ValueError,
                          ["labels must be one label per frame", "1 labels for 3 frames"]),
    # image_to_numpy
    "a batch to image_to_numpy": (lambda: image_to_numpy(torch.zeros(2, 1, 4, 4)), ValueError,
                                  ["x must be one image (C, H, W)", "x[0]"]),
    "a list to image_to_numpy": (lambda: image_to_numpy([[[0.0]]]), TypeError, ["x must be one image"]),
    "numpy uint8 to image_to_numpy": (lambda: image_to_numpy(np.zeros((1, 4, 4), np.uint8)), TypeError,
                                      ["x must be float images scaled to [-1, 1]"]),
    # plot_losses
    "history a list": (lambda: plot_losses([0.5, 0.4]), TypeError, ["history must be a TrainState", "train()"]),
    "no steps yet": (lambda: plot_losses(history([])), ValueError, ["history.losses is empty",
                                                                    "train at least one step"]),
    "a NaN loss": (lambda: plot_losses(history([1.0, 0.8, NAN, 0.5])), ValueError,
                   ["history.losses must be finite numbers", "history.losses[2] is nan", "history.losses[:2]"]),
    # animate_states
    "no states": (lambda: animate_states([]), ValueError, ["states is empty", "a list of SampleStep"]),
    "tensors, not states": (lambda: animate_states([torch.zeros(2, 1, 4, 4)]), TypeError,
                            ["states[0] must be a SampleStep (with t, x_t, pred_x0)"]),
    "a NaN state": (lambda: animate_states(states(nan_at=1)), ValueError, ["states[1].x_t contains NaN"]),
    "index past the batch": (lambda: animate_states(states(), index=5), ValueError, ["index must be in [0, 1]"]),
    "every zero": (lambda: animate_states(states(), every=0), ValueError, ["every must be >= 1"]),
    "interval negative": (lambda: animate_states(states(), interval=-5), ValueError, ["interval must be > 0",
                                                                                       "milliseconds"]),
    "states without a batch dimension": (lambda: animate_states(states(shape=(4, 4))), ValueError,
                                         ["states[0].x_t must have 4 dimensions"]),
}


@pytest.mark.parametrize("call, error, words", CASES.values(), ids=CASES.keys())
def test_bad_figure_input_is_refused_with_a_message_that_names_it_and_what_is_allowed(call, error, words):
    with pytest.raises(error) as info:
        call()
    for word in words:
        assert word in str(info.value), f"{word!r} not in {str(info.value)!r}"


def test_the_good_versions_draw():
    """The cases above differ from inputs that draw only in the flaw each one names."""
    assert show_sequence([IMAGE, np.zeros((1, 4, 4), np.float32)], labels=["a", "b"]) is not None
    curve, _ = plot_losses(history([1.0, 0.8, 0.5]))
    assert list(curve.lines[0].get_ydata()) == [1.0, 0.8, 0.5]
    animation = animate_states(states(), index=1)
    assert animation.to_jshtml().count("data:image/png;base64") == 3
