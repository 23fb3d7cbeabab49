"""Lesson 7: classifier-free guidance, measured; and numbers written digit by digit.

Classifier-free guidance (Ho & Salimans 2022, arXiv 2207.12598) mixes a conditional model's
two predictions of the noise, with the label y and with "no label" (null):

    eps_hat = eps(x_t, null) + w (eps(x_t, y) - eps(x_t, null))

w = 0 is the unconditional model, w = 1 the plain conditional one, w > 1 goes further in the
direction the label points. The samplers do it (``sampling.sample(..., class_labels=y,
guidance_scale=w)``); here it is measured: for each w, the share of samples the course's
digit classifier reads as the digit asked for (with probability >= 0.9), per digit, and the
KID (and, from N > 64, the Frechet distance) to real digits, always the same noise at every w.
"""

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from . import _checks
from .classifier import check_classifier, features, load_classifier
from .metrics import CONFIDENT, _frechet_or_nan, kid
from .sampling import guided_noise, sample  # noqa: F401 (guided_noise: lesson 7 calls it from here)

CONDITIONAL_PATH = Path(__file__).parent / "weights" / "digits_conditional_unet.safetensors"
NUM_DIGITS = 10
MAX_NUMBER_LENGTH = 12


def balanced_labels(n, num_classes=NUM_DIGITS):
    """(n,) labels 0, 1, ..., 9, 0, 1, ...: image i asks for digit i % 10."""
    return torch.arange(_checks.positive_int(n, "n")) % num_classes


@torch.no_grad()
def read_as_requested(images, labels, classifier=None, confidence=CONFIDENT):
    """(N,) bool: the classifier reads image i as digit labels[i] with probability >= ``confidence``."""
    classifier = load_classifier() if classifier is None else check_classifier(classifier)
    _checks.instance(labels, "labels", torch.Tensor, "an integer tensor of digits 0-9")
    if labels.is_floating_point() or tuple(labels.shape) != (len(images),):
        raise ValueError(f"labels must be an integer tensor of shape ({len(images)},), one digit per image; got "
                         f"dtype {labels.dtype} and shape {tuple(labels.shape)}")
    probs = F.softmax(classifier.head(features(images, classifier)), dim=1)  # (N, 10)
    best = probs.max(1)
    return (best.indices == labels.cpu()) & (best.values >= confidence)


@dataclass
class GuidanceRow:
    """One guidance scale w of ``guidance_tradeoff``: fidelity (read as requested) and quality (KID)."""

    w: float
    num_samples: int  # N, balanced over the 10 digits
    read_share: float  # share read as the requested digit with probability >= 0.9
    per_digit: list  # the same share for each requested digit 0-9
    kid: float  # KID, samples vs N real test digits (classifier features)
    frechet: float  # Frechet distance, samples vs N real test digits; NaN when N <= 64
    seconds: float  # wall time of the sampling
    images: torch.Tensor = field(default=None, repr=False)  # (N, 1, 32, 32), image i asked for digit i % 10

    @property
    def min_digit_share(self):
        return min(self.per_digit)

    @property
    def seconds_per_64(self):
        return 64 * self.seconds / self.num_samples


@dataclass
class RealReference:
    """What two disjoint sets of N real test digits score: the floor every row is read against."""

    num_samples: int
    read_share: float  # real digits read as their own label with probability >= 0.9
    kid: float  # ~0; its size is the noise of KID at this N
    frechet: float  # NaN when N <= 64
    feats: torch.Tensor = field(repr=False)  # (N, 64) features of the first set


def real_reference(n, classifier=None, seed=0):
    """Score N real test digits (the first set: labels i % 10) against a second set of N."""
    from .data import DigitsDataset

    n = _checks.positive_int(n, "n")
    if n < 2:
        raise ValueError("n must be at least 2: KID compares pairs of images")
    classifier = load_classifier() if classifier is None else check_classifier(classifier)
    data = DigitsDataset(n=max(3 * n, 200), split="test", seed=seed)  # held out: never trained on
    by_digit = [torch.nonzero(data.labels == d).flatten().tolist() for d in range(NUM_DIGITS)]
    # the first set: n images whose labels run 0, 1, ..., 9, 0, ... like balanced_labels(n); then n others
    pick = [by_digit[d][i // NUM_DIGITS] for i, d in enumerate(balanced_labels(n).tolist())]
    taken = set(pick)
    rest = [i for i in range(len(data)) if i not in taken][:n]
    images, others = data.images[pick], data.images[rest]
    feats, feats_other = features(images, classifier), features(others, classifier)
    share = read_as_requested(images, balanced_labels(n), classifier).float().mean().item()
    return RealReference(n, share, kid(feats, feats_other), _frechet_or_nan(feats, feats_other), feats)


def guidance_tradeoff(model, scheduler, scales, n, num_inference_steps=None, seed=0, classifier=None,
                      reference=None, keep_images=False, batch_size=64):
    """For each w in ``scales``: sample N digits (image i asks for digit i % 10) from the same noise
    (generator seeded ``seed`` for every w), then measure them. Returns a list of ``GuidanceRow``.

    ``reference``: a ``real_reference(n)`` to compare with (made here when None).
    ``keep_images``: keep each row's samples in ``row.images`` (for pictures).
    """

    n = _checks.positive_int(n, "n", hint="e.g. 100: 10 per digit")
    if n < 2:
        raise ValueError("n must be at least 2: KID compares pairs of images")
    scales = [_checks.real(w, "scales[i]", low=0, hint="guidance scales w >= 0, e.g. [0, 1, 3]") for w in scales]
    classifier = load_classifier() if classifier is None else check_classifier(classifier)
    reference = real_reference(n, classifier) if reference is None else reference
    if reference.num_samples != n:
        raise ValueError(f"reference holds {reference.num_samples} real digits, but n = {n}: compare sets of one "
                         "size (real_reference(n))")
    labels, rows = balanced_labels(n), []
    for w in scales:
        start = time.perf_counter()
        images = sample(model, scheduler, n, num_inference_steps, generator=torch.Generator().manual_seed(seed),
                        progress=False, class_labels=labels, guidance_scale=w, batch_size=batch_size)
        seconds = time.perf_counter() - start
        images = images.clamp(-1, 1)
        read = read_as_requested(images, labels, classifier).float()
        per_digit = [read[labels == d].mean().item() for d in range(NUM_DIGITS)]
        feats = features(images, classifier)
        rows.append(GuidanceRow(w, n, read.mean().item(), per_digit, kid(feats, reference.feats),
                                _frechet_or_nan(feats, reference.feats), seconds, images if keep_images else None))
    return rows


def format_tradeoff(rows, reference, title=""):
    """The trade-off as a text table, the real digits' reference in the last line."""
    lines = [title] if title else []
    lines.append(f"{'w':>4} {'read as asked':>13} {'worst digit':>11} {'KID/1000':>9} {'Frechet':>8} "
                 f"{'s / 64 img':>10}")
    for r in rows:
        worst = min(range(NUM_DIGITS), key=lambda d: r.per_digit[d])
        frechet = "n/a" if math.isnan(r.frechet) else f"{r.frechet:.1f}"
        lines.append(f"{r.w:>4g} {r.read_share:>13.1%} {r.min_digit_share:>6.0%} ({worst}) {r.kid / 1e3:>9.2f} "
                     f"{frechet:>8} {r.seconds_per_64:>10.1f}")
    frechet = "n/a" if math.isnan(reference.frechet) else f"{reference.frechet:.1f}"
    lines.append(f"{'real':>4} {reference.read_share:>13.1%} {'':>11} {reference.kid / 1e3:>9.2f} {frechet:>8}"
                 f"   (two sets of {reference.num_samples} real test digits)")
    return "\n".join(lines)


def number_labels(text):
    """The digits of ``text`` as a (len,) label tensor: "2026" -> tensor([2, 0, 2, 6]).
    Spaces, commas, dots, dashes and underscores between digits are dropped."""
    if not isinstance(text, str):
        raise TypeError(f"the number must be a str of digits such as '2026', got {type(text).__name__}")
    digits = "".join(ch for ch in text if ch not in " ,._-")
    others = [ch for ch in dict.fromkeys(digits) if ch not in "0123456789"]
    if not digits or others:
        raise ValueError(f"type digits 0-9 only, such as 2026; {text!r} holds "
                         + (", ".join(map(repr, others)) if others else "no digit"))
    if len(digits) > MAX_NUMBER_LENGTH:
        raise ValueError(f"at most {MAX_NUMBER_LENGTH} digits, please; {text!r} has {len(digits)}")
    return torch.tensor([int(ch) for ch in digits])


def draw_number(model, scheduler, text, guidance_scale=3.0, num_inference_steps=20, seed=0, rows=1):
    """The model writes ``text`` ("2026"): ``rows`` versions of it, each digit a fresh sample with
    guidance ``guidance_scale``. Returns (rows * len, 1, H, W) in [-1, 1], row by row."""
    labels = number_labels(text)
    rows = _checks.positive_int(rows, "rows")
    images = sample(model, scheduler, rows * len(labels), num_inference_steps,
                    generator=torch.Generator().manual_seed(_checks.seed(seed)), progress=False,
                    class_labels=labels.repeat(rows), guidance_scale=guidance_scale)
    return images.clamp(-1, 1)
