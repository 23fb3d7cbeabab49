"""Tests for ddpm_helpers.plotting: what reaches imshow, fixed limits, range checks."""

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from ddpm_helpers.plotting import image_to_numpy, show_images, show_sequence


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def _expected_grid(images01, nrow, pad=2, pad_value=1.0):
    """The grid recomputed by hand: images (B, H, W) in [0, 1] laid out with padding."""
    b, h, w = images01.shape
    ncol = min(nrow, b)
    nrows = -(-b // nrow)
    grid = np.full((nrows * (h + pad) + pad, ncol * (w + pad) + pad), pad_value, np.float32)
    for i, image in enumerate(images01):
        r, c = divmod(i, nrow)
        grid[pad + r * (h + pad):pad + r * (h + pad) + h, pad + c * (w + pad):pad + c * (w + pad) + w] = image
    return grid


def test_show_images_grayscale_grid_values_and_fixed_limits():
    images = torch.linspace(-1, 1, 3 * 4 * 5).reshape(3, 1, 4, 5)
    ax = show_images(images, nrow=2, title="three")
    shown = np.asarray(ax.images[0].get_array())
    expected = _expected_grid(((images[:, 0] + 1) / 2).numpy(), nrow=2)
    np.testing.assert_allclose(shown, expected, atol=1e-6)
    assert ax.images[0].get_clim() == (0.0, 1.0)
    assert ax.images[0].get_cmap().name == "gray"
    assert ax.get_xticks().size == 0 and ax.get_yticks().size == 0
    assert ax.get_title() == "three"


def test_a_constant_image_is_not_rescaled():
    ax = show_images(torch.zeros(1, 1, 4, 4))                # mid grey, not black or white
    shown = np.asarray(ax.images[0].get_array())
    np.testing.assert_allclose(shown, np.full((4, 4), 0.5))  # one image: no padding
    assert ax.images[0].get_clim() == (0.0, 1.0)


def test_show_images_rgb_single_image_and_list():
    image = torch.rand(3, 6, 6) * 2 - 1
    shown = np.asarray(show_images(image).images[0].get_array())
    assert shown.shape == (6, 6, 3)                          # one image: no padding
    np.testing.assert_allclose(shown, ((image + 1) / 2).permute(1, 2, 0).numpy(), atol=1e-6)
    shown_list = np.asarray(show_images([image, image], nrow=2).images[0].get_array())
    assert shown_list.shape == (10, 18, 3)


def test_draws_into_given_axes():
    _, ax = plt.subplots()
    assert show_images(torch.zeros(2, 1, 4, 4), ax=ax) is ax


def test_noised_images_are_clipped_for_display_only_when_asked():
    x_t = torch.full((1, 1, 4, 4), 3.0)                       # a noised image, |x| > 1
    shown = np.asarray(show_images(x_t).images[0].get_array())
    np.testing.assert_allclose(shown, 1.0)
    with pytest.raises(ValueError, match="clip=True"):
        show_images(x_t, clip=False)


def test_noised_images_up_to_the_equation_4_bound_are_shown_clamped():
    x_t = torch.tensor([-6.0, -1.0, 0.0, 6.0]).reshape(1, 1, 2, 2)  # |x_t| <= 6.08 (see _checks)
    shown = np.asarray(show_images(x_t).images[0].get_array())
    np.testing.assert_allclose(shown, [[0.0, 0.0], [0.5, 1.0]])


def test_show_sequence_labels_under_each_frame():
    frames = [torch.full((1, 4, 4), v) for v in (-1.0, 0.0, 1.0)]
    ax = show_sequence(frames, labels=["t=0", "t=250", "t=999"], title="forward")
    assert [t.get_text() for t in ax.get_xticklabels()] == ["t=0", "t=250", "t=999"]
    np.testing.assert_allclose(ax.get_xticks(), [3.5, 9.5, 15.5])    # frame centres
    shown = np.asarray(ax.images[0].get_array())
    assert shown.shape == (8, 20)                                    # one row
    np.testing.assert_allclose(shown[2:6, 8:12], 0.5)                # second frame, x = 0
    assert ax.get_title() == "forward"


def test_image_to_numpy_shapes_and_values():
    gray = image_to_numpy(torch.tensor([[[-1.0, 0.0], [1.0, 2.0]]]))
    assert gray.shape == (2, 2) and gray.dtype == np.float32
    np.testing.assert_allclose(gray, [[0.0, 0.5], [1.0, 1.0]])
    assert image_to_numpy(torch.zeros(3, 5, 7)).shape == (5, 7, 3)


def test_show_image_rows_labels_each_row_on_the_row():
    from ddpm_helpers.plotting import show_image_rows

    rows = [torch.full((3, 1, 4, 4), -1.0), torch.zeros(2, 1, 4, 4)]  # the second row is shorter
    ax = show_image_rows(rows, ["black", "gray"], title="two rows")
    assert [t.get_text() for t in ax.get_yticklabels()] == ["black", "gray"]
    pixels = np.asarray(ax.images[0].get_array())  # padding 2 around 4x4 images
    assert pixels[3, 3] == 0.0 and pixels[9, 3] == 0.5  # -1 shows black, 0 gray, each on its row
    assert pixels[9, 15] == 1.0  # the missing third image of the short row is blank (white)
    assert ax.get_yticks()[1] > ax.get_yticks()[0] and abs(ax.get_yticks()[0] - 3.5) < 1e-9  # on the row's centre
    with pytest.raises(ValueError, match="one label per row"):
        show_image_rows(rows, ["only one"])
    ax = show_image_rows(torch.zeros(6, 1, 32, 32), ["digit 0", "digit 1"])  # one tensor, split evenly
    assert [t.get_text() for t in ax.get_yticklabels()] == ["digit 0", "digit 1"]
    with pytest.raises(ValueError, match="evenly"):
        show_image_rows(torch.zeros(5, 1, 32, 32), ["a", "b"])
