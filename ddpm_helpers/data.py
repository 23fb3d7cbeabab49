"""Data for the course: the embedded digits, local image folders, Hugging Face hub datasets.

Every source yields the same thing: a dict ``{"images": (C, H, W) float in [-1, 1],
"labels": int64 tensor}`` so the training loop reads ``batch["images"]`` whatever the source.

The embedded default needs no network: digits 0-9 rendered from the fonts that matplotlib
ships (DejaVu, STIX, Computer Modern), each drawn with a small random rotation, scale,
shift and stroke weight, white on black like MNIST. It is deterministic from a seed.
"""

import importlib.util
import os
import socket
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont

# matplotlib's own font files, found without importing matplotlib (a heavy import).
_FONT_DIR = Path(importlib.util.find_spec("matplotlib").origin).parent / "mpl-data" / "fonts" / "ttf"
# Faces whose digits 0-9 render as ordinary digits (cmmi10 has old-style figures; the
# STIX size/non-unicode files and cmsy10/cmex10 hold symbols only).
_FONT_NAMES = [
    "DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSans-Oblique.ttf",
    "DejaVuSans-BoldOblique.ttf", "DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf",
    "DejaVuSerif-Italic.ttf", "DejaVuSerif-BoldItalic.ttf", "DejaVuSansMono.ttf",
    "DejaVuSansMono-Bold.ttf", "DejaVuSansMono-Oblique.ttf", "DejaVuSansMono-BoldOblique.ttf",
    "STIXGeneral.ttf", "STIXGeneralBol.ttf", "STIXGeneralItalic.ttf", "STIXGeneralBolIta.ttf",
    "cmr10.ttf", "cmb10.ttf", "cmti10.ttf", "cmss10.ttf", "cmtt10.ttf",
]
FONT_FILES = [str(_FONT_DIR / name) for name in _FONT_NAMES if (_FONT_DIR / name).exists()]

SPLITS = ("train", "test")
IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
_SUPERSAMPLE = 2     # glyphs and warp at 2x the output size, then average-pool: anti-aliasing
_CHUNK_PIXELS = 2**23  # supersampled pixels warped at once: 2048 images at 32x32 (32 MB)


def to_model_range(x):
    """Map images from [0, 1] (what ToTensor gives) to [-1, 1] (what the model sees): 2x - 1."""
    return x * 2 - 1


def to_image_range(x):
    """Map model-range images from [-1, 1] back to [0, 1] for display, clamped: (x + 1) / 2."""
    return ((x + 1) / 2).clamp(0, 1)


def _check_image_size(image_size):
    if isinstance(image_size, bool) or not isinstance(image_size, int):
        raise TypeError(f"image_size must be an int, got {type(image_size).__name__}; use 32 or 64.")
    if image_size <= 0 or image_size % 8 != 0:
        raise ValueError(f"image_size={image_size} must be a positive multiple of 8 "
                         "(the UNet halves it three times); use 32 or 64.")


@lru_cache(maxsize=None)
def _glyph_bank(size):
    """All glyphs as one tensor (n_fonts * 10, 1, size, size) in [0, 1], plus each glyph's
    (height, width) in pixels. The font size is ``size`` pixels, so every glyph fits its
    square canvas. Glyph k of font f sits at index f * 10 + k, centred on its bounding box.
    Rendered once per process and size."""
    if not FONT_FILES:
        raise RuntimeError(f"No digit fonts found under {_FONT_DIR}; is matplotlib installed?")
    canvases, sizes = [], []
    for path in FONT_FILES:
        font = ImageFont.truetype(path, size)
        for digit in range(10):
            mask = Image.new("L", (2 * size, 2 * size), 0)
            ImageDraw.Draw(mask).text((size // 2, size // 2), str(digit), font=font, fill=255)
            glyph = mask.crop(mask.getbbox())
            canvas = Image.new("L", (size, size), 0)
            canvas.paste(glyph, ((size - glyph.width) // 2, (size - glyph.height) // 2))
            canvases.append(np.asarray(canvas))
            sizes.append((glyph.height, glyph.width))
    bank = torch.from_numpy(np.stack(canvases)).float().div(255).unsqueeze(1)  # (G, 1, S, S)
    return bank, torch.tensor(sizes, dtype=torch.float32)


def _random_affines(glyph_sizes, canvas, generator):
    """One output->input affine matrix (n, 2, 3) per glyph, in affine_grid's [-1, 1] units.

    Height fraction 0.6-0.85 of the image, rotation +-12 degrees, then the shift is drawn
    inside whatever margin the rotated glyph leaves, so no glyph is ever cut at the border."""
    n = glyph_sizes.shape[0]
    u = torch.rand(n, 4, generator=generator)
    height = 0.60 + 0.25 * u[:, 0]                       # glyph height / image height
    angle = torch.deg2rad((u[:, 1] * 2 - 1) * 12)
    half_h = height                                       # half-height in [-1, 1] units
    half_w = height * glyph_sizes[:, 1] / glyph_sizes[:, 0]
    cos, sin = angle.cos(), angle.sin()
    extent_x = cos.abs() * half_w + sin.abs() * half_h    # rotated bounding box half-size
    extent_y = sin.abs() * half_w + cos.abs() * half_h
    margin = 0.12                                         # keep ~2 pixels of black at 32x32
    shrink = ((1 - margin) / torch.maximum(extent_x, extent_y)).clamp(max=1.0)
    half_h, extent_x, extent_y = half_h * shrink, extent_x * shrink, extent_y * shrink
    shift_x = (u[:, 2] * 2 - 1) * (1 - margin - extent_x).clamp(min=0)
    shift_y = (u[:, 3] * 2 - 1) * (1 - margin - extent_y).clamp(min=0)
    # Input units per output unit: the glyph spans glyph_h / canvas of the canvas.
    scale = (glyph_sizes[:, 0] / canvas) / half_h
    theta = torch.stack([
        torch.stack([cos * scale, sin * scale, -(cos * shift_x + sin * shift_y) * scale], 1),
        torch.stack([-sin * scale, cos * scale, (sin * shift_x - cos * shift_y) * scale], 1),
    ], 1)                                                  # (n, 2, 3)
    return theta


def render_digits(n, seed=0, image_size=32):
    """Render ``n`` labelled digit images, deterministically from ``seed``.

    Returns ``(images, labels)``: images float32 (n, 1, image_size, image_size) in [-1, 1]
    with background -1 and the digit near +1; labels int64 (n,), balanced (each digit
    appears n // 10 or n // 10 + 1 times) in an order shuffled by the seed.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n <= 0:
        raise ValueError(f"n={n!r}: the number of images must be a positive int, e.g. 1000.")
    _check_image_size(image_size)
    size_hi = image_size * _SUPERSAMPLE
    bank, sizes = _glyph_bank(size_hi)
    generator = torch.Generator().manual_seed(int(seed))
    labels = (torch.arange(n) % 10)[torch.randperm(n, generator=generator)]
    fonts = torch.randint(len(FONT_FILES), (n,), generator=generator)
    glyph_index = fonts * 10 + labels
    theta = _random_affines(sizes[glyph_index], size_hi, generator)
    bold = torch.rand(n, generator=generator) < 0.25      # a quarter get a heavier stroke
    images = torch.empty(n, 1, image_size, image_size)
    chunk = max(1, _CHUNK_PIXELS // size_hi**2)
    for start in range(0, n, chunk):
        part = slice(start, start + chunk)
        glyphs = bank[glyph_index[part]]                              # (b, 1, 2H, 2W)
        grid = F.affine_grid(theta[part], list(glyphs.shape), align_corners=False)
        x = F.grid_sample(glyphs, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        heavy = bold[part]
        x[heavy] = F.max_pool2d(x[heavy], 3, 1, 1)                    # dilate by one pixel
        images[part] = F.avg_pool2d(x, _SUPERSAMPLE)                  # (b, 1, H, W) in [0, 1]
    return to_model_range(images.clamp(0, 1)), labels.long()


class DigitsDataset(torch.utils.data.Dataset):
    """The embedded offline dataset: rendered digits, all made once at construction.

    ``split="train"`` and ``split="test"`` draw from different seeds (2*seed and 2*seed+1),
    so test images are held out from every training set. ``n`` defaults to 20000 for
    train and 2000 for test. Items are ``{"images": (1, H, W) in [-1, 1], "labels": int64}``.
    """

    def __init__(self, n=None, split="train", seed=0, image_size=32):
        if split not in SPLITS:
            raise ValueError(f"Unknown split {split!r}; use 'train' or 'test'.")
        n = (20000 if split == "train" else 2000) if n is None else n
        self.split, self.seed = split, seed
        self.images, self.labels = render_digits(n, seed=2 * seed + SPLITS.index(split),
                                                 image_size=image_size)

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return {"images": self.images[i], "labels": self.labels[i]}


class HFImageDataset(torch.utils.data.Dataset):
    """A 🤗 ``datasets.Dataset`` of images, seen through the course's transforms.

    Resize to (image_size, image_size), optional random horizontal flip, ToTensor,
    Normalize(0.5, 0.5) -> [-1, 1]; items are ``{"images", "labels"}`` (labels -1 if none).
    """

    def __init__(self, hf_dataset, image_size=32, channels=None, flip=None):
        from torchvision import transforms

        _check_image_size(image_size)
        columns = hf_dataset.column_names
        self.image_key = next((k for k in ("image", "img") if k in columns), None)
        if self.image_key is None:
            raise ValueError(f"No 'image' or 'img' column in this dataset (columns: {columns}).")
        self.label_key = next((k for k in ("label", "labels") if k in columns), None)
        if channels is None:
            channels = 1 if hf_dataset[0][self.image_key].mode in ("1", "L", "I", "I;16", "F") else 3
        if channels not in (1, 3):
            raise ValueError(f"channels={channels}: use 1 (grayscale) or 3 (RGB).")
        self.mode = "L" if channels == 1 else "RGB"
        flip = channels == 3 if flip is None else flip    # flip natural images, never digits
        self.hf_dataset = hf_dataset
        self.transform = transforms.Compose(
            [transforms.Resize((image_size, image_size))]
            + ([transforms.RandomHorizontalFlip()] if flip else [])
            + [transforms.ToTensor(), transforms.Normalize([0.5] * channels, [0.5] * channels)])

    def __len__(self):
        return len(self.hf_dataset)

    def __getitem__(self, i):
        row = self.hf_dataset[int(i)]
        label = row[self.label_key] if self.label_key is not None else -1
        images = self.transform(row[self.image_key].convert(self.mode))
        return {"images": images, "labels": torch.tensor(label, dtype=torch.long)}


def _offline_message(name):
    return (f"Cannot reach the Hugging Face hub to load {name!r}. Offline? Use "
            "load_dataset('digits') - the embedded dataset needs no network - or a local "
            "folder of images: load_dataset('/path/to/images').")


def _env_flag(key):
    return os.environ.get(key, "").strip().lower() in ("1", "true", "yes", "on")


def _check_hub_reachable(name, timeout=3.0):
    """Raise ConnectionError naming the offline default unless the hub answers within
    ``timeout`` seconds. Sets HF_HUB_OFFLINE=1 when it does not, so later calls fail fast."""
    if _env_flag("HF_HUB_OFFLINE") or _env_flag("HF_DATASETS_OFFLINE"):
        raise ConnectionError(_offline_message(name) + " (HF_HUB_OFFLINE is set.)")
    endpoint = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        address = (endpoint.hostname or "huggingface.co", endpoint.port or 443)
        socket.create_connection(address, timeout=timeout).close()
    except OSError as error:
        os.environ["HF_HUB_OFFLINE"] = "1"
        raise ConnectionError(_offline_message(name)) from error


def _load_folder(path, split, image_size, channels, flip, cache_dir):
    """A local folder of images (class subfolders give labels) via the imagefolder builder."""
    import datasets

    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise ValueError(f"Image folder not found: {str(folder)!r}. Pass an existing folder "
                         "of images, or load_dataset('digits') for the embedded dataset.")
    if not any(p.suffix.lower() in IMAGE_EXTENSIONS for p in folder.rglob("*") if p.is_file()):
        raise ValueError(f"No images ({', '.join(sorted(IMAGE_EXTENSIONS))}) found in "
                         f"{str(folder)!r}; put image files in it (one subfolder per class).")
    try:
        hf = datasets.load_dataset("imagefolder", data_dir=str(folder), split=split, cache_dir=cache_dir)
    except ValueError as error:
        raise ValueError(f"Could not load split {split!r} from {str(folder)!r}: {error}. A "
                         "plain folder has only split='train'.") from error
    return HFImageDataset(hf, image_size=image_size, channels=channels, flip=flip)


def load_dataset(name="digits", split="train", image_size=32, *, n=None, seed=0,
                 channels=None, flip=None, cache_dir=None):
    """Load a dataset of ``{"images": (C, H, W) in [-1, 1], "labels": int64}`` items by name.

    - ``"digits"``: the embedded offline dataset (``DigitsDataset(n, split, seed, image_size)``).
    - an existing folder, or ``"imagefolder:PATH"``: your own images through 🤗 datasets'
      ``imagefolder`` builder (works offline; labels from class subfolder names).
    - anything else: a 🤗 hub dataset such as ``"huggan/smithsonian_butterflies_subset"``,
      ``"mnist"``, ``"fashion_mnist"`` or ``"cifar10"``. Fails fast with a ConnectionError
      naming the offline alternatives when the hub cannot be reached.

    ``channels`` (1 or 3) defaults to the first image's; ``flip`` (random horizontal flip)
    defaults to True for RGB images only.
    """
    if not isinstance(name, (str, os.PathLike)):
        raise TypeError(f"name must be a str or path, got {type(name).__name__}; e.g. 'digits'.")
    if not isinstance(split, str):
        raise TypeError(f"split must be a str such as 'train' or 'test', got {split!r}.")
    _check_image_size(image_size)
    name = os.fspath(name)
    if name == "digits":
        return DigitsDataset(n=n, split=split, seed=seed, image_size=image_size)
    if name.startswith("imagefolder:") or Path(name).expanduser().is_dir():
        path = name.removeprefix("imagefolder:")
        return _load_folder(path, split, image_size, channels, flip, cache_dir)
    if name.startswith((".", "~")) or Path(name).is_absolute():
        raise ValueError(f"Image folder not found: {name!r}. Pass an existing folder of "
                         "images, or load_dataset('digits') for the embedded dataset.")
    _check_hub_reachable(name)
    import datasets

    hf = datasets.load_dataset(name, split=split, cache_dir=cache_dir)
    return HFImageDataset(hf, image_size=image_size, channels=channels, flip=flip)


def make_dataloader(dataset, batch_size, shuffle=True, seed=0, num_workers=0):
    """A DataLoader whose shuffling order is fixed by ``seed`` (same seed, same batches)."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
        raise ValueError(f"batch_size={batch_size!r} must be a positive int, e.g. 64.")
    generator = torch.Generator().manual_seed(int(seed))
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=shuffle,
                                       num_workers=num_workers, generator=generator)
