"""Tests for ddpm_helpers.data: the embedded digits, local folders, the offline hub path."""

import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw, ImageFont

from ddpm_helpers import data, digits
from ddpm_helpers.data import (FONT_FILES, DigitsDataset, digits_hf_dataset, load_dataset, make_dataloader,
                               render_digits, to_image_range, to_model_range)


# --- the embedded digits ------------------------------------------------------------------

def test_fonts_found_and_about_twenty():
    assert 15 <= len(FONT_FILES) <= 25
    assert all(Path(f).is_file() for f in FONT_FILES)


def test_same_seed_same_bytes_different_seed_different():
    a, la = render_digits(64, seed=1)
    b, lb = render_digits(64, seed=1)
    c, lc = render_digits(64, seed=2)
    assert torch.equal(a, b) and torch.equal(la, lb)
    assert not torch.equal(a, c)


def test_shape_dtype_range_and_black_background():
    images, labels = render_digits(50, seed=0, image_size=32)
    assert images.shape == (50, 1, 32, 32) and images.dtype == torch.float32
    assert labels.shape == (50,) and labels.dtype == torch.int64
    assert images.min() == -1 and images.max() <= 1
    # The outermost pixel ring is background: no glyph is cut at the border.
    border = torch.cat([images[..., 0, :], images[..., -1, :], images[..., :, 0], images[..., :, -1]], -1)
    assert torch.all(border == -1)
    # Every image has ink, and most pixels are background (white digit on black).
    assert torch.all(images.flatten(1).max(1).values > 0.5)
    assert (images == -1).float().mean() > 0.5


def test_image_size_64():
    images, _ = render_digits(10, seed=0, image_size=64)
    assert images.shape == (10, 1, 64, 64)


def test_classes_balanced():
    _, labels = render_digits(95, seed=3)
    counts = torch.bincount(labels, minlength=10)
    assert counts.min() >= 9 and counts.max() <= 10 and counts.sum() == 95
    assert not torch.equal(labels, torch.arange(95) % 10)     # shuffled


def test_glyph_bank_holds_the_digit_of_its_index():
    """Glyph f * 10 + k is the digit k of font f, compared with a direct PIL rendering."""
    bank, sizes = digits._glyph_bank(64)
    for f in (0, len(FONT_FILES) - 1):
        font = ImageFont.truetype(FONT_FILES[f], 64)
        for k in (1, 7, 8):
            mask = Image.new("L", (200, 200), 0)
            ImageDraw.Draw(mask).text((50, 50), str(k), font=font, fill=255)
            expected = np.asarray(mask.crop(mask.getbbox()), dtype=np.float32) / 255
            glyph = bank[f * 10 + k, 0]
            rows, cols = torch.nonzero(glyph > 0, as_tuple=True)
            cropped = glyph[rows.min():rows.max() + 1, cols.min():cols.max() + 1].numpy()
            assert tuple(sizes[f * 10 + k].int().tolist()) == expected.shape
            np.testing.assert_allclose(cropped, expected, atol=1e-6)


def test_labels_consistent_across_seeds():
    """Class means from one seed classify another seed's images far above chance (10%)."""
    x, y = render_digits(2000, seed=10)
    x_new, y_new = render_digits(500, seed=11)
    centroids = torch.stack([x[y == k].mean(0).flatten() for k in range(10)])
    predicted = torch.cdist(x_new.flatten(1), centroids).argmin(1)
    assert (predicted == y_new).float().mean() > 0.4


def test_range_transforms_round_trip():
    x = torch.linspace(0, 1, 11)
    torch.testing.assert_close(to_model_range(x), torch.linspace(-1, 1, 11))
    torch.testing.assert_close(to_image_range(to_model_range(x)), x)
    assert to_image_range(torch.tensor([-3.0, 3.0])).tolist() == [0.0, 1.0]


def test_digits_dataset_items_and_held_out_test_split():
    train = DigitsDataset(n=200, split="train", seed=0)
    test = DigitsDataset(n=200, split="test", seed=0)
    assert len(train) == 200
    item = train[3]
    assert set(item) == {"images", "labels"}
    assert item["images"].shape == (1, 32, 32) and item["labels"].dtype == torch.int64
    # No test image equals any train image.
    distances = torch.cdist(test.images.flatten(1), train.images.flatten(1))
    assert distances.min() > 0
    # train seed s and test seed s' never coincide.
    assert not torch.equal(DigitsDataset(n=20, split="test", seed=0).images,
                           DigitsDataset(n=20, split="train", seed=1).images)


def test_load_dataset_digits_and_dataloader_is_seeded():
    dataset = load_dataset("digits", n=40, seed=5)
    assert isinstance(dataset, DigitsDataset) and len(dataset) == 40
    first = [next(iter(make_dataloader(dataset, batch_size=8, seed=1)))["labels"] for _ in range(2)]
    assert torch.equal(first[0], first[1])
    batch = next(iter(make_dataloader(dataset, batch_size=8, shuffle=False)))
    assert batch["images"].shape == (8, 1, 32, 32)


# --- local folders through the imagefolder builder (offline) ------------------------------

def _write_folder(root, mode="RGB", classes=("cat", "dog"), per_class=3, size=(20, 24)):
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            colour = (40 * i, 100 * c, 200) if mode == "RGB" else 40 * i + 100 * c
            Image.new(mode, size, colour).save(root / name / f"{i}.png")
    return root


def test_load_local_folder_offline(tmp_path):
    assert os.environ["HF_HUB_OFFLINE"] == "1"                 # set by conftest
    folder = _write_folder(tmp_path / "pets")
    dataset = load_dataset(str(folder), image_size=16, cache_dir=str(tmp_path / "cache"))
    assert len(dataset) == 6
    items = [dataset[i] for i in range(len(dataset))]
    assert all(it["images"].shape == (3, 16, 16) for it in items)
    assert all(-1 <= it["images"].min() and it["images"].max() <= 1 for it in items)
    assert sorted(int(it["labels"]) for it in items) == [0, 0, 0, 1, 1, 1]
    # The blue channel is 200 everywhere: (200 / 255) * 2 - 1 in model range.
    torch.testing.assert_close(items[0]["images"][2], torch.full((16, 16), 200 / 127.5 - 1))


def test_load_grayscale_folder_with_prefix(tmp_path):
    folder = _write_folder(tmp_path / "gray", mode="L", classes=("a",), per_class=2)
    dataset = load_dataset(f"imagefolder:{folder}", image_size=8, cache_dir=str(tmp_path / "cache"))
    assert dataset[0]["images"].shape == (1, 8, 8)


def test_a_truncated_image_is_named_when_it_is_read(tmp_path):
    """A file whose header is fine but whose pixel data is cut short passes the load-time check
    (which opens headers only) and is named, with what to do, when a batch reads it."""
    folder = _write_folder(tmp_path / "pets", per_class=2, size=(64, 64))
    noisy = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    noisy.save(folder / "dog" / "cut.png")
    whole = (folder / "dog" / "cut.png").read_bytes()
    (folder / "dog" / "cut.png").write_bytes(whole[:len(whole) // 2])
    dataset = load_dataset(str(folder), image_size=16, cache_dir=str(tmp_path / "cache"))
    assert len(dataset) == 5
    with pytest.raises(ValueError, match=r"cut\.png.*cannot be read as an image.*delete or replace"):
        [dataset[i] for i in range(len(dataset))]


# --- hub names fail fast offline ------------------------------------------------------------

def _no_network(*args, **kwargs):
    raise AssertionError("the network must not be touched when HF_HUB_OFFLINE=1")


def test_hub_name_offline_raises_before_any_connection(monkeypatch):
    monkeypatch.setattr(socket, "create_connection", _no_network)
    with pytest.raises(ConnectionError, match=r"load_dataset\('digits'\)"):
        load_dataset("huggan/smithsonian_butterflies_subset")
    with pytest.raises(ConnectionError, match="digits"):
        load_dataset("mnsit")                                  # misspelled: same advice


def test_unreachable_hub_sets_offline_and_raises(monkeypatch):
    import datasets

    def unreachable(*args, **kwargs):
        raise OSError("network is unreachable")

    def never(*args, **kwargs):
        raise AssertionError("datasets.load_dataset must not be called")

    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("HF_DATASETS_OFFLINE")
    monkeypatch.setattr(socket, "create_connection", unreachable)
    monkeypatch.setattr(datasets, "load_dataset", never)
    with pytest.raises(ConnectionError, match="local folder"):
        load_dataset("mnist")
    assert os.environ["HF_HUB_OFFLINE"] == "1"


def test_bad_image_size_checked_before_the_hub(monkeypatch):
    monkeypatch.setattr(socket, "create_connection", _no_network)
    with pytest.raises(ValueError, match="use 32 or 64"):
        load_dataset("cifar10", image_size=33)
    with pytest.raises(TypeError, match="'digits'"):
        load_dataset(None)


def test_hub_style_dataset_with_img_column_and_no_labels():
    """CIFAR-10 names its column 'img'; datasets without labels give label -1."""
    import datasets

    images = [Image.new("RGB", (10, 12), (255, 0, 0)), Image.new("RGB", (10, 12), (0, 0, 255))]
    hf = datasets.Dataset.from_dict({"img": images}, features=datasets.Features({"img": datasets.Image()}))
    dataset = data.HFImageDataset(hf, image_size=8, flip=False)
    item = dataset[1]
    assert item["images"].shape == (3, 8, 8) and int(item["labels"]) == -1
    torch.testing.assert_close(item["images"][2], torch.ones(8, 8))     # blue channel at +1
    torch.testing.assert_close(item["images"][0], -torch.ones(8, 8))
    gray = data.HFImageDataset(hf, image_size=8, channels=1)
    assert gray[0]["images"].shape == (1, 8, 8)
    assert len(list(gray)) == 2  # plain iteration stops at the IndexError past the end


# --- the digits as a 🤗 datasets.Dataset ---------------------------------------------------------

def test_digits_hf_dataset_has_the_hub_columns_and_the_same_images():
    import datasets

    hf = digits_hf_dataset(n=30, split="test", seed=2)
    reference = DigitsDataset(n=30, split="test", seed=2)
    assert hf.column_names == ["image", "label"] and hf.split == "test" and len(hf) == 30
    assert isinstance(hf.features["image"], datasets.Image)
    assert hf.features["label"] == datasets.ClassLabel(names=[str(k) for k in range(10)])
    assert hf.features["label"].int2str(7) == "7"
    assert hf["label"] == reference.labels.tolist()
    image = hf[4]["image"]
    assert isinstance(image, Image.Image) and image.mode == "L" and image.size == (32, 32)
    pixels = torch.tensor(np.array(image), dtype=torch.float32) / 127.5 - 1  # back to [-1, 1]
    torch.testing.assert_close(pixels, reference.images[4, 0], rtol=0, atol=0.5 / 127.5)  # 8-bit rounding


def _unit1_transform(convert_rgb):
    """Hugging Face's diffusion course, unit 1, verbatim (plus the grayscale variant)."""
    from torchvision import transforms

    preprocess = transforms.Compose([
        transforms.Resize((32, 32)),
        transforms.RandomHorizontalFlip(),
        transforms.ToTensor(),
        transforms.Normalize([0.5], [0.5]),
    ])

    def transform(examples):
        images = [preprocess(image.convert("RGB") if convert_rgb else image) for image in examples["image"]]
        return {"images": images}

    return transform


@pytest.mark.parametrize("convert_rgb, channels", [(True, 3), (False, 1)], ids=["rgb", "grayscale"])
def test_unit_1_preprocessing_runs_unchanged_on_the_digits(convert_rgb, channels):
    torch.manual_seed(0)  # RandomHorizontalFlip draws from torch's global generator
    dataset = digits_hf_dataset(n=24, seed=1)
    reference = DigitsDataset(n=24, seed=1).images  # (24, 1, 32, 32) in [-1, 1]
    dataset.set_transform(_unit1_transform(convert_rgb))
    train_dataloader = torch.utils.data.DataLoader(dataset, batch_size=8, shuffle=False)
    batches = [batch["images"] for batch in train_dataloader]
    assert len(batches) == 3 and all(b.shape == (8, channels, 32, 32) for b in batches)
    images = torch.cat(batches)
    assert images.min() >= -1 and images.max() <= 1 and images.min() == -1  # black background
    if channels == 3:  # a grayscale image converted to RGB: three equal channels
        torch.testing.assert_close(images[:, 1:], images[:, :1].expand(-1, 2, -1, -1), rtol=0, atol=0)
    flipped = 0
    for image, expected in zip(images[:, :1], reference):
        same, mirrored = (image - expected).abs().max(), (image - expected.flip(-1)).abs().max()
        assert min(same, mirrored) <= 1 / 127.5  # each image is the digit, maybe mirrored by the flip
        flipped += bool(mirrored < same)
    assert 0 < flipped < 24  # the random flip mirrors some images, not all


def test_course_transforms_on_the_hf_digits_give_the_digits_dataset():
    hf = digits_hf_dataset(n=12, seed=3)
    ours = data.HFImageDataset(hf, image_size=32)  # grayscale: one channel, never flipped
    reference = DigitsDataset(n=12, seed=3)
    for i in (0, 5, 11):
        item = ours[i]
        assert item["images"].shape == (1, 32, 32) and int(item["labels"]) == int(reference.labels[i])
        torch.testing.assert_close(item["images"], reference.images[i], rtol=0, atol=0.5 / 127.5 + 1e-6)
