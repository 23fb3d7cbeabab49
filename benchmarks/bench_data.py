"""Speed of the embedded dataset: images rendered per second, and the time to build
the default training set. Run: python benchmarks/bench_data.py"""

import time

import torch

from ddpm_helpers.data import FONT_FILES, DigitsDataset, render_digits
from ddpm_helpers.digits import _glyph_bank


def seconds(fn, repeat=3):
    """Best wall-clock time of ``repeat`` calls of ``fn``."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main():
    start = time.perf_counter()
    _glyph_bank(64)                                 # one-off: render every (font, digit) glyph
    glyph_s = time.perf_counter() - start
    rows = [("glyph cache (%d fonts x 10 digits)" % len(FONT_FILES), glyph_s, "")]
    for size in (32, 64):
        t = seconds(lambda: render_digits(10000, seed=0, image_size=size))
        rows.append((f"render_digits(n=10000) at {size}x{size}", t, f"{10000 / t:,.0f} images/s"))
    t = seconds(lambda: DigitsDataset(), repeat=1)
    rows.append(("DigitsDataset() (train, 20000 images)", t, f"{20000 / t:,.0f} images/s"))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{'what':<42} {'seconds':>8}  rate")
    for what, t, rate in rows:
        print(f"{what:<42} {t:>8.3f}  {rate}")


if __name__ == "__main__":
    main()
