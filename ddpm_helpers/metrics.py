"""Sample quality, offline and on a CPU: is it a digit, which digit, how far from the real
distribution, and is it a copy of a training image?

Three measures, each reported beside a reference made from real images, because a number
alone means little:

- **Frechet distance** (Heusel et al. 2017, arXiv 1706.08500, the "FID" recipe) between
  Gaussians fitted to features of the samples and of real held-out digits. Our features are
  the penultimate layer of a small digit classifier, not Inception's, so the values are not
  comparable with published FIDs. The floor is the same distance between two real sets of the
  same size: with a few hundred images it is not 0, and a sample set can at best reach it.
- **Classifier confidence**: the fraction of samples classified with probability >= 0.9, and
  how the predicted classes are spread over 0-9 (each ~10% for a model trained on balanced data).
- **Memorisation**: the L2 distance in pixel space from each sample to its nearest training
  image, against the same for real held-out images; the ratio of the medians is ~1 for new
  digits. Training images copied with a little noise (std 0.05) score ~0.13, so a ratio below
  0.5 flags memorisation. Pixel distance is plain to explain but misses copies that are
  shifted by a pixel or two; it catches the near-exact copies an over-trained model makes.

The classifier's weights ship in ``ddpm_helpers/weights/digits_classifier.safetensors``;
``python benchmarks/train_classifier.py`` trains and writes them again.
"""

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from ._io import atomic_write
from .data import DigitsDataset, render_digits

WEIGHTS_PATH = Path(__file__).parent / "weights" / "digits_classifier.safetensors"
CONFIDENT = 0.9  # max softmax probability that counts as "clearly a digit"
MEMORISED_RATIO = 0.5  # flagged when samples sit at less than half the held-out distance


class DigitClassifier(nn.Module):
    """A small CNN for the embedded 32x32 digits: 3 conv blocks, a 64-d feature layer, 10 logits."""

    feature_dim = 64

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, padding=1)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
        self.conv3 = nn.Conv2d(64, 64, 3, padding=1)
        self.fc = nn.Linear(64 * 4 * 4, self.feature_dim)
        self.head = nn.Linear(self.feature_dim, 10)

    def features(self, x):
        """(B, 1, 32, 32) in [-1, 1] -> (B, 64): the penultimate layer, used by the Frechet distance."""
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)  # (B, 32, 16, 16)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)  # (B, 64, 8, 8)
        x = F.max_pool2d(F.relu(self.conv3(x)), 2)  # (B, 64, 4, 4)
        return F.relu(self.fc(x.flatten(1)))  # (B, 64)

    def forward(self, x):
        return self.head(self.features(x))  # (B, 10) logits


def train_classifier(num_steps=600, batch_size=128, lr=2e-3, seed=0, progress=True):
    """Train a ``DigitClassifier`` on freshly rendered digits, a new batch every step.

    Batches come from ``render_digits`` with even seeds (2 * (1000 + step)); every test split
    (``DigitsDataset(split="test")``) uses an odd seed, so test images are never trained on.
    Adam with a cosine learning-rate decay. Returns the model in eval mode.
    """
    from tqdm.auto import tqdm

    torch.manual_seed(seed)
    model = DigitClassifier()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, num_steps)
    for step in tqdm(range(num_steps), desc="classifier", disable=not progress):
        images, labels = render_digits(batch_size, seed=2 * (1000 + seed * num_steps + step))
        loss = F.cross_entropy(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    return model.eval()


@torch.no_grad()
def accuracy(classifier, images, labels, batch_size=500):
    """Fraction of ``images`` whose predicted digit is ``labels``."""
    predictions = torch.cat([classifier(images[i:i + batch_size]).argmax(1) for i in range(0, len(images), batch_size)])
    return (predictions == labels).float().mean().item()


def save_classifier(classifier, path=WEIGHTS_PATH):
    """Write the weights as fp32 safetensors, atomically (temp file, then rename)."""
    from safetensors.torch import save_file

    tensors = {k: v.float().contiguous() for k, v in classifier.state_dict().items()}
    atomic_write(path, lambda tmp: save_file(tensors, tmp))


def load_classifier(path=WEIGHTS_PATH):
    """The shipped ``DigitClassifier`` in eval mode, loaded from safetensors (no pickle)."""
    from safetensors.torch import load_file

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"Classifier weights not found at {path}; regenerate them with "
                                "`python benchmarks/train_classifier.py` (about a minute on a CPU).")
    model = DigitClassifier()
    model.load_state_dict(load_file(str(path)))
    return model.eval()


def _check_images(images, name):
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or tuple(images.shape[1:]) != (1, 32, 32):
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"{name} must be a (N, 1, 32, 32) tensor of digits like DigitsDataset's, got {shape}.")
    if images.min() >= 0 or images.abs().max() > 1.5:
        raise ValueError(f"{name} must be in [-1, 1] (background -1), got values in [{images.min():.2f}, "
                         f"{images.max():.2f}]; map [0, 1] images with data.to_model_range(x) = 2x - 1.")


@torch.no_grad()
def features(images, classifier, batch_size=500):
    """Penultimate-layer features (N, 64) of images (N, 1, 32, 32) in [-1, 1]."""
    classifier.eval()
    images = images.float().cpu()
    return torch.cat([classifier.features(images[i:i + batch_size]) for i in range(0, len(images), batch_size)])


def _sqrt_psd(matrix):
    """Square root of a symmetric positive semi-definite matrix by eigendecomposition, V sqrt(L) V^T."""
    eigenvalues, eigenvectors = torch.linalg.eigh(matrix)
    # rounding can leave tiny negative eigenvalues on a PSD matrix; they are really 0
    return eigenvectors @ torch.diag(eigenvalues.clamp(min=0).sqrt()) @ eigenvectors.T


def frechet_distance(feats_a, feats_b):
    """Frechet distance between Gaussians fitted to two feature sets (N_a, D) and (N_b, D).

    d^2 = ||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^{1/2})   (Heusel et al. 2017, eq. 6)

    Computed in float64. Tr((S_a S_b)^{1/2}) = Tr((S_a^{1/2} S_b S_a^{1/2})^{1/2}), whose inner
    matrix is symmetric PSD: two symmetric eigendecompositions, no scipy.linalg.sqrtm.
    """
    if feats_a.ndim != 2 or feats_b.ndim != 2 or feats_a.shape[1] != feats_b.shape[1]:
        raise ValueError(f"features must be (N, D) with the same D, got {tuple(feats_a.shape)} and "
                         f"{tuple(feats_b.shape)}.")
    if min(len(feats_a), len(feats_b)) < 2:
        raise ValueError("each feature set needs at least 2 rows to estimate a covariance; pass more images.")
    a, b = feats_a.double(), feats_b.double()
    mu_a, mu_b = a.mean(0), b.mean(0)  # (D,)
    cov_a, cov_b = torch.cov(a.T).reshape(a.shape[1], -1), torch.cov(b.T).reshape(b.shape[1], -1)  # (D, D), unbiased
    sqrt_a = _sqrt_psd(cov_a)
    inner = sqrt_a @ cov_b @ sqrt_a
    inner = (inner + inner.T) / 2  # symmetric up to rounding; make it exactly so for eigh
    trace_sqrt = torch.linalg.eigvalsh(inner).clamp(min=0).sqrt().sum()
    # Heusel et al. 2017, eq. (6)
    d2 = (mu_a - mu_b).square().sum() + cov_a.trace() + cov_b.trace() - 2 * trace_sqrt
    return d2.clamp(min=0).item()


def nearest_distances(images, reference, batch_size=250):
    """For each image (N, ...), the L2 pixel distance to its nearest image in ``reference`` (M, ...)."""
    ref = reference.flatten(1).float()  # (M, P)
    return torch.cat([torch.cdist(images[i:i + batch_size].flatten(1).float(), ref).min(1).values
                      for i in range(0, len(images), batch_size)])  # (N,)


@dataclass
class QualityReport:
    num_samples: int  # N, the size of every set compared
    frechet: float  # Frechet distance, samples vs N real test digits (classifier features)
    frechet_floor: float  # the same between two disjoint sets of N real test digits
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


@torch.no_grad()
def quality_report(samples, real=None, classifier=None, train_images=None, heldout_images=None):
    """Measure a set of generated digits (N, 1, 32, 32) in [-1, 1] against real ones.

    real: at least 2N real digits not trained on (default: the test split, 2N images);
        the first N are compared with the samples, the next N give the floor.
    train_images: the images the model was trained on (default: ``DigitsDataset(split="train")``).
    heldout_images: real digits not trained on, for the memorisation reference (default: real[N:2N]).
    Sizes matter: Frechet distances are only comparable at the same N.
    """
    _check_images(samples, "samples")
    samples, n = samples.detach().float().cpu(), len(samples)
    real = DigitsDataset(n=2 * n, split="test").images if real is None else real.detach().float().cpu()
    _check_images(real, "real")
    if len(real) < 2 * n:
        raise ValueError(f"real has {len(real)} images; pass at least 2 * {n} (two sets the size of samples).")
    classifier = load_classifier() if classifier is None else classifier
    train_images = DigitsDataset(split="train").images if train_images is None else train_images.float().cpu()
    heldout_images = real[n:2 * n] if heldout_images is None else heldout_images.float().cpu()

    feats_samples, feats_real = features(samples, classifier), features(real[:2 * n], classifier)
    probs_samples = F.softmax(classifier.head(feats_samples), dim=1)  # (N, 10)
    probs_real = F.softmax(classifier.head(feats_real[:n]), dim=1)
    counts = torch.bincount(probs_samples.argmax(1), minlength=10)
    sample_nn = nearest_distances(samples, train_images).median().item()
    heldout_nn = nearest_distances(heldout_images, train_images).median().item()
    ratio = sample_nn / heldout_nn
    return QualityReport(
        num_samples=n,
        frechet=frechet_distance(feats_samples, feats_real[:n]),
        frechet_floor=frechet_distance(feats_real[:n], feats_real[n:]),
        confident_fraction=(probs_samples.max(1).values >= CONFIDENT).float().mean().item(),
        real_confident_fraction=(probs_real.max(1).values >= CONFIDENT).float().mean().item(),
        class_fractions=(counts.float() / n).tolist(),
        sample_nn_median=sample_nn, heldout_nn_median=heldout_nn,
        memorisation_ratio=ratio, memorised=ratio < MEMORISED_RATIO)


def format_report(report):
    """A short table: each measure of the samples beside its real-image reference."""
    fractions = " ".join(f"{f:.0%}" for f in report.class_fractions)
    rows = [
        ("measure", "samples", "real reference"),
        (f"Frechet distance (N={report.num_samples})", f"{report.frechet:.2f}", f"{report.frechet_floor:.2f} (floor)"),
        (f"confident (p >= {CONFIDENT})", f"{report.confident_fraction:.1%}", f"{report.real_confident_fraction:.1%}"),
        ("nearest training image (L2)", f"{report.sample_nn_median:.2f}", f"{report.heldout_nn_median:.2f}"),
        ("memorisation ratio", f"{report.memorisation_ratio:.2f}",
         f"1.00; copies if < {MEMORISED_RATIO}" + ("  -> MEMORISED" if report.memorised else "")),
    ]
    lines = [f"{a:<32} {b:>10}  {c}" for a, b, c in rows]
    lines.append(f"digits 0-9: {fractions}" + ("" if report.classes_balanced else "  (some outside 5-15%)"))
    return "\n".join(lines)
