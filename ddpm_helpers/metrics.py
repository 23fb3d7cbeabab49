"""Sample quality, offline and on a CPU: is it a digit, which digit, how far from the real
distribution, and is it a copy of a training image?

Four measures, each reported beside a reference made from real images, because a number
alone means little. Features are the penultimate layer (D = 64) of a small digit classifier,
not Inception's, so the values are not comparable with published FID or KID.

- **KID**, the kernel inception distance (Binkowski et al. 2018, arXiv 1801.01401): the
  unbiased estimate of the squared MMD between samples and real digits with the kernel
  k(x, y) = (x.y / D + 1)^3. Unbiased at any N: two sets of real digits score 0 on average
  (a single value can be negative), so it is the measure to read at small N. Its reference is
  the KID between two real sets, whose size shows the noise.
- **Frechet distance** (Heusel et al. 2017, arXiv 1706.08500, the "FID" recipe) between
  Gaussians fitted to the features. It is biased, and the bias depends on N: the D means and
  D (D + 1) / 2 covariance entries estimated from N images each carry sampling noise of
  variance ~1/N, and the distance adds up their squares, so its bias grows with D and falls
  like 1/N. Its floor, the distance between two real sets of N, is therefore not 0: measured
  on our features (mean of 4 draws; their total variance is ~2900), ~240 at N = 65, ~120 at
  128, ~35 at 512, ~20 at 1000, ~10 at 2000, ~3 at 4000. At N <= D the covariance estimate
  is singular (rank N - 1 < D) and the distance measures N more than the samples, so
  ``frechet_distance`` refuses it (ValueError) and ``quality_report`` reports NaN. Use
  N >= 10 D = 640 for Frechet distances (the floor is then ~30 and falls as 1/N), and the
  same N for every set compared.
- **Classifier confidence**: the fraction of samples classified with probability >= 0.9, and
  how the predicted classes are spread over 0-9 (each ~10% for a model trained on balanced data).
- **Memorisation**: the L2 distance in pixel space from each sample to its nearest training
  image, against the same for real held-out images; the ratio of the medians is ~1 for new
  digits. Training images copied with a little noise (std 0.05) score ~0.13, so a ratio below
  0.5 flags memorisation. Pixel distance is plain to explain but misses copies that are
  shifted by a pixel or two; it catches the near-exact copies an over-trained model makes.

The classifier and its features live in ``classifier`` (re-exported here).
"""

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from . import _checks
from .classifier import (WEIGHTS_PATH, DigitClassifier, accuracy, check_classifier,  # noqa: F401 (re-exported)
                         check_digits, features, load_classifier, save_classifier, train_classifier)
from .data import DigitsDataset

CONFIDENT = 0.9  # max softmax probability that counts as "clearly a digit"
MEMORISED_RATIO = 0.5  # flagged when samples sit at less than half the held-out distance
KID_SUBSETS, KID_SUBSET_SIZE = 50, 1000  # the reference implementation's defaults


def _check_features(feats_a, feats_b, min_rows):
    for name, feats in (("feats_a", feats_a), ("feats_b", feats_b)):
        _checks.float_tensor(feats, name, ndim=2, hint="features are (N, D), one row per image: features(images, c)")
        if len(feats) < min_rows:
            raise ValueError(f"{name} must have at least {min_rows} rows (images), got {len(feats)}")
    if feats_a.shape[1] != feats_b.shape[1]:
        raise ValueError(f"feats_a and feats_b must be (N, D) with the same D, got {tuple(feats_a.shape)} and "
                         f"{tuple(feats_b.shape)}")


def _sqrt_psd(matrix):
    """Square root of a symmetric positive semi-definite matrix by eigendecomposition, V sqrt(L) V^T."""
    eigenvalues, eigenvectors = torch.linalg.eigh(matrix)
    # rounding can leave tiny negative eigenvalues on a PSD matrix; they are really 0
    return eigenvectors @ torch.diag(eigenvalues.clamp(min=0).sqrt()) @ eigenvectors.T


def frechet_distance(feats_a, feats_b):
    """Frechet distance between Gaussians fitted to two feature sets (N_a, D) and (N_b, D).

    d^2 = ||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^{1/2})   (Heusel et al. 2017, eq. 6)

    Needs N > D rows in each set (refused otherwise: the covariance estimate would be singular;
    see the module docstring); its bias grows like D / N, so compare values at the same N only.
    Computed in float64. Tr((S_a S_b)^{1/2}) = Tr((S_a^{1/2} S_b S_a^{1/2})^{1/2}), whose inner
    matrix is symmetric PSD: two symmetric eigendecompositions, no scipy.linalg.sqrtm.
    """
    _check_features(feats_a, feats_b, min_rows=2)
    n, d = min(len(feats_a), len(feats_b)), feats_a.shape[1]
    if n <= d:
        raise ValueError(f"feats_a and feats_b must have more rows than feature dimensions for a Frechet distance "
                         f"(N > D = {d}), got N = {n}: with N <= D the covariance is singular and the distance "
                         f"mostly measures N. Use N >= {10 * d} images, or kid(), which is unbiased at any N")
    a, b = feats_a.double(), feats_b.double()
    mu_a, mu_b = a.mean(0), b.mean(0)  # (D,)
    cov_a, cov_b = torch.cov(a.T).reshape(d, d), torch.cov(b.T).reshape(d, d)  # (D, D), unbiased
    sqrt_a = _sqrt_psd(cov_a)
    inner = sqrt_a @ cov_b @ sqrt_a
    inner = (inner + inner.T) / 2  # symmetric up to rounding; make it exactly so for eigh
    trace_sqrt = torch.linalg.eigvalsh(inner).clamp(min=0).sqrt().sum()
    # Heusel et al. 2017, eq. (6)
    d2 = (mu_a - mu_b).square().sum() + cov_a.trace() + cov_b.trace() - 2 * trace_sqrt
    return d2.clamp(min=0).item()


def _mmd2_unbiased(x, y):
    """The unbiased estimate MMD^2_u (Gretton et al. 2012) of two sets of m rows, with KID's
    kernel k(x, y) = (x.y / D + 1)^3: the within-set means leave out the pairs (i, i)."""
    m, d = len(x), x.shape[1]
    k_xx, k_yy, k_xy = [(p @ q.T / d + 1) ** 3 for p, q in ((x, x), (y, y), (x, y))]  # (m, m) each
    within = (k_xx.sum() - k_xx.diagonal().sum() + k_yy.sum() - k_yy.diagonal().sum()) / (m * (m - 1))
    return within - 2 * k_xy.mean()


def kid(feats_a, feats_b, num_subsets=KID_SUBSETS, subset_size=KID_SUBSET_SIZE, generator=None):
    """Kernel inception distance (Binkowski et al. 2018) between feature sets (N_a, D), (N_b, D).

    The unbiased MMD^2 estimate with the cubic kernel k(x, y) = (x.y / D + 1)^3, averaged over
    ``num_subsets`` random subsets of m = min(subset_size, N_a, N_b) rows of each set, as in the
    reference implementation. When both sets have exactly m rows every subset is the whole
    set, so it is computed once. E[kid] = 0 for two sets from one distribution (one value can
    be negative) and > 0 otherwise, at any N >= 2. Computed in float64; subsets drawn with
    ``generator`` (default: seeded 0, so the same features give the same value).
    """
    _check_features(feats_a, feats_b, min_rows=2)
    num_subsets = _checks.positive_int(num_subsets, "num_subsets")
    m = min(_checks.integer(subset_size, "subset_size", low=2), len(feats_a), len(feats_b))
    _checks.instance(generator, "generator", (torch.Generator, type(None)), "a torch.Generator or None")
    a, b = feats_a.double().cpu(), feats_b.double().cpu()
    if len(a) == len(b) == m:
        return _mmd2_unbiased(a, b).item()
    generator = generator or torch.Generator().manual_seed(0)
    pick = lambda x: x[torch.randperm(len(x), generator=generator)[:m]]  # noqa: E731 (m rows, no repeats)
    return torch.stack([_mmd2_unbiased(pick(a), pick(b)) for _ in range(num_subsets)]).mean().item()


def nearest_distances(images, reference, batch_size=250):
    """For each image (N, ...), the L2 pixel distance to its nearest image in ``reference`` (M, ...)."""
    _checks.float_tensor(images, "images")
    _checks.float_tensor(reference, "reference")
    if images.ndim < 2 or images.shape[1:] != reference.shape[1:] or len(reference) == 0:
        raise ValueError(f"images and reference must be batches of same-shaped images, reference non-empty; got "
                         f"{tuple(images.shape)} and {tuple(reference.shape)}")
    batch_size = _checks.positive_int(batch_size, "batch_size")
    ref = reference.flatten(1).float().cpu()  # (M, P)
    return torch.cat([torch.cdist(images[i:i + batch_size].flatten(1).float().cpu(), ref).min(1).values
                      for i in range(0, len(images), batch_size)])  # (N,)


@dataclass
class QualityReport:
    num_samples: int  # N, the size of every set compared
    kid: float  # KID, samples vs N real test digits (classifier features)
    kid_reference: float  # the same between two disjoint sets of N real test digits: ~0, its size the noise
    frechet: float  # Frechet distance, samples vs N real test digits; NaN when N <= 64 (not defined)
    frechet_floor: float  # the same between two disjoint sets of N real test digits; NaN when N <= 64
    confident_fraction: float  # samples classified with max probability >= 0.9
    real_confident_fraction: float  # the same for N real test digits
    class_fractions: list  # fraction of samples predicted as each digit 0-9
    sample_nn_median: float  # median L2 pixel distance, sample -> nearest training image
    heldout_nn_median: float  # the same for N real held-out digits
    memorisation_ratio: float  # sample_nn_median / heldout_nn_median; ~1 for new digits, ~0 for copies
    memorised: bool  # memorisation_ratio < MEMORISED_RATIO

    @property
    def classes_balanced(self):
        """Every digit makes up 5-15% of the samples."""
        return all(0.05 <= f <= 0.15 for f in self.class_fractions)


def _frechet_or_nan(feats_a, feats_b):
    """The Frechet distance where it is defined (N > D), else NaN: quality_report runs at any N."""
    return frechet_distance(feats_a, feats_b) if len(feats_a) > feats_a.shape[1] else math.nan


@torch.no_grad()
def quality_report(samples, real=None, classifier=None, train_images=None, heldout_images=None):
    """Measure a set of N >= 2 generated digits (N, 1, 32, 32) in [-1, 1] against real ones.

    real: at least 2N real digits not trained on (default: the test split, 2N images);
        the first N are compared with the samples, the next N give the references.
    train_images: the images the model was trained on (default: ``DigitsDataset(split="train")``).
    heldout_images: real digits not trained on, for the memorisation reference (default: real[N:2N]).
    KID is unbiased at any N; the Frechet distance needs N > 64 (else NaN) and is only
    comparable at the same N.
    """
    n = len(check_digits(samples, "samples"))
    if n < 2:
        raise ValueError("samples must hold at least 2 images for KID's pairs; pass more samples")
    real = DigitsDataset(n=2 * n, split="test").images if real is None else check_digits(real, "real")
    if len(real) < 2 * n:
        raise ValueError(f"real must hold at least 2 * {n} images (two sets the size of samples), got {len(real)}")
    classifier = load_classifier() if classifier is None else check_classifier(classifier)
    train_images = DigitsDataset(split="train").images if train_images is None else check_digits(train_images,
                                                                                              "train_images")
    heldout_images = real[n:2 * n] if heldout_images is None else check_digits(heldout_images, "heldout_images")

    feats_samples, feats_real = features(samples, classifier), features(real[:2 * n], classifier)
    probs_samples = F.softmax(classifier.head(feats_samples), dim=1)  # (N, 10)
    probs_real = F.softmax(classifier.head(feats_real[:n]), dim=1)
    counts = torch.bincount(probs_samples.argmax(1), minlength=10)
    sample_nn = nearest_distances(samples.detach().float().cpu(), train_images).median().item()
    heldout_nn = nearest_distances(heldout_images, train_images).median().item()
    if heldout_nn == 0:
        raise ValueError("heldout_images (default: real[N:2N]) must be digits not trained on, but most of them are "
                         "in train_images (distance 0); pass real digits from DigitsDataset(split='test')")
    ratio = sample_nn / heldout_nn
    return QualityReport(
        num_samples=n,
        kid=kid(feats_samples, feats_real[:n]), kid_reference=kid(feats_real[:n], feats_real[n:]),
        frechet=_frechet_or_nan(feats_samples, feats_real[:n]),
        frechet_floor=_frechet_or_nan(feats_real[:n], feats_real[n:]),
        confident_fraction=(probs_samples.max(1).values >= CONFIDENT).float().mean().item(),
        real_confident_fraction=(probs_real.max(1).values >= CONFIDENT).float().mean().item(),
        class_fractions=(counts.float() / n).tolist(),
        sample_nn_median=sample_nn, heldout_nn_median=heldout_nn,
        memorisation_ratio=ratio, memorised=ratio < MEMORISED_RATIO)


def format_report(report):
    """A short table: each measure of the samples beside its real-image reference."""
    _checks.instance(report, "report", QualityReport, "a QualityReport", "make one with quality_report(samples)")
    fractions = " ".join(f"{f:.0%}" for f in report.class_fractions)
    n, d = report.num_samples, DigitClassifier.feature_dim
    frechet = ((f"{report.frechet:.2f}", f"{report.frechet_floor:.2f} (floor)") if n > d
               else ("n/a", f"needs N > {d}; read KID"))
    rows = [
        ("measure", "samples", "real reference"),
        (f"KID / 1000 (N={n})", f"{report.kid / 1e3:.1f}", f"{report.kid_reference / 1e3:.1f} (~0 but noisy)"),
        (f"Frechet distance (N={n})", *frechet),
        (f"confident (p >= {CONFIDENT})", f"{report.confident_fraction:.1%}", f"{report.real_confident_fraction:.1%}"),
        ("nearest training image (L2)", f"{report.sample_nn_median:.2f}", f"{report.heldout_nn_median:.2f}"),
        ("memorisation ratio", f"{report.memorisation_ratio:.2f}",
         f"1.00; copies if < {MEMORISED_RATIO}" + ("  -> MEMORISED" if report.memorised else "")),
    ]
    lines = [f"{a:<32} {b:>10}  {c}" for a, b, c in rows]
    lines.append(f"digits 0-9: {fractions}" + ("" if report.classes_balanced else "  (some outside 5-15%)"))
    return "\n".join(lines)
