"""The embedded dataset: digits 0-9 rendered from the fonts that matplotlib ships.

No network and no download: about twenty faces (DejaVu, STIX, Computer Modern), each digit
drawn with a small random rotation, scale, shift and stroke weight, white on black like
MNIST, anti-aliased, deterministic from a seed. ``data.DigitsDataset`` serves them to a
DataLoader; ``data.digits_hf_dataset`` as a 🤗 ``datasets.Dataset``.
"""

import importlib.util
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont

from . import _checks

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

_SUPERSAMPLE = 2     # glyphs and warp at 2x the output size, then average-pool: anti-aliasing
_CHUNK_PIXELS = 2**23  # supersampled pixels warped at once: 2048 images at 32x32 (32 MB)


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


def check_image_size(image_size):
    """``image_size`` as an int: a multiple of 8 (the UNet halves it three times) up to 1024."""
    return _checks.integer(image_size, "image_size", low=8, high=1024, multiple_of=8,
                           hint="use 32 or 64 (the UNet halves the size three times)")


def render_digits(n, seed=0, image_size=32):
    """Render ``n`` labelled digit images, deterministically from ``seed``.

    Returns ``(images, labels)``: images float32 (n, 1, image_size, image_size) in [-1, 1]
    with background -1 and the digit near +1; labels int64 (n,), balanced (each digit
    appears n // 10 or n // 10 + 1 times) in an order shuffled by the seed.
    """
    n = _checks.positive_int(n, "n", hint="the number of images, e.g. 1000")
    image_size = check_image_size(image_size)
    size_hi = image_size * _SUPERSAMPLE
    bank, sizes = _glyph_bank(size_hi)
    generator = torch.Generator().manual_seed(_checks.seed(seed))
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
    return images.clamp(0, 1) * 2 - 1, labels.long()                   # [0, 1] -> [-1, 1]

