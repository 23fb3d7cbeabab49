"""The small digit classifier behind the sample-quality measures (``metrics``).

A CNN trained on the embedded digits (100% on held-out renders). Its penultimate layer, 64
features per image, plays the role Inception's pool layer plays in FID and KID; its softmax
says whether a sample is clearly a digit, and which. The weights ship in
``ddpm_helpers/weights/digits_classifier.safetensors``; ``python benchmarks/train_classifier.py``
trains and writes them again.
"""

import os
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import _checks
from ._io import atomic_write
from .digits import render_digits

WEIGHTS_PATH = Path(__file__).parent / "weights" / "digits_classifier.safetensors"
_RETRAIN = "regenerate them with `python benchmarks/train_classifier.py` (about a minute on a CPU)"


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
        """(B, 1, 32, 32) in [-1, 1] -> (B, 64): the penultimate layer, used by the Frechet distance and KID."""
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)  # (B, 32, 16, 16)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)  # (B, 64, 8, 8)
        x = F.max_pool2d(F.relu(self.conv3(x)), 2)  # (B, 64, 4, 4)
        return F.relu(self.fc(x.flatten(1)))  # (B, 64)

    def forward(self, x):
        return self.head(self.features(x))  # (B, 10) logits


def check_digits(images, name):
    """``images`` if it is a batch (N, 1, 32, 32) of digits in [-1, 1] like DigitsDataset's.
    Digits have a black (-1) background, so a batch with no value below 0 is [0, 1] images."""
    _checks.images(images, name, channels=(1,), size=32,
                   hint="digits (N, 1, 32, 32) like DigitsDataset(...).images; for one image use x[None]")
    if images.min().item() >= 0:
        raise ValueError(f"{name} must be digits scaled to [-1, 1] with background -1, but no value is below 0: "
                         "these look like [0, 1] images; map them with data.to_model_range(x) = 2 x - 1")
    return images


def check_classifier(classifier, name="classifier"):
    """``classifier`` if it is a DigitClassifier (``load_classifier()`` gives the shipped one)."""
    return _checks.instance(classifier, name, DigitClassifier, "a DigitClassifier", "use load_classifier()")


def train_classifier(num_steps=600, batch_size=128, lr=2e-3, seed=0, progress=True):
    """Train a ``DigitClassifier`` on freshly rendered digits, a new batch every step.

    Batches come from ``render_digits`` with even seeds (2 * (1000 + step)); every test split
    (``DigitsDataset(split="test")``) uses an odd seed, so test images are never trained on.
    Adam with a cosine learning-rate decay. Returns the model in eval mode.
    """
    from tqdm.auto import tqdm

    num_steps, batch_size = _checks.positive_int(num_steps, "num_steps"), _checks.positive_int(batch_size, "batch_size")
    lr = _checks.real(lr, "lr", 0, 1, low_open=True, hint="e.g. 2e-3")
    torch.manual_seed(_checks.seed(seed))
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
def features(images, classifier, batch_size=500):
    """Penultimate-layer features (N, 64) of images (N, 1, 32, 32) in [-1, 1], on the CPU."""
    check_digits(images, "images")
    check_classifier(classifier).eval()
    batch_size = _checks.positive_int(batch_size, "batch_size")
    images = images.detach().float().cpu()
    return torch.cat([classifier.features(images[i:i + batch_size]) for i in range(0, len(images), batch_size)])


@torch.no_grad()
def accuracy(classifier, images, labels, batch_size=500):
    """Fraction of ``images`` whose predicted digit is ``labels`` (N,) int64."""
    check_classifier(classifier)
    check_digits(images, "images")
    _checks.instance(labels, "labels", torch.Tensor, "an integer tensor of digits 0-9")
    if labels.is_floating_point() or tuple(labels.shape) != (len(images),):
        raise ValueError(f"labels must be an integer tensor of shape ({len(images)},), one digit per image; got "
                         f"dtype {labels.dtype} and shape {tuple(labels.shape)}")
    logits = classifier.head(features(images, classifier, batch_size))  # (N, 10)
    return (logits.argmax(1) == labels.cpu()).float().mean().item()


def save_classifier(classifier, path=WEIGHTS_PATH):
    """Write the weights as fp32 safetensors, atomically (temp file, then rename)."""
    from safetensors.torch import save_file

    tensors = {k: v.float().contiguous() for k, v in check_classifier(classifier).state_dict().items()}
    atomic_write(_checks.instance(path, "path", (str, os.PathLike), "a file path"), lambda tmp: save_file(tensors, tmp))


def load_classifier(path=WEIGHTS_PATH):
    """The shipped ``DigitClassifier`` in eval mode, loaded from safetensors (no pickle)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = _checks.existing_path(path, "path", "file", f"the classifier weights are missing: {_RETRAIN}")
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError) as error:
        raise ValueError(f"path {str(path)!r} must be a safetensors file of classifier weights, but it cannot be "
                         f"read as one ({error}); {_RETRAIN}") from error
    model = DigitClassifier()
    missing, unexpected = model.state_dict().keys() - tensors.keys(), tensors.keys() - model.state_dict().keys()
    shapes = [k for k, v in model.state_dict().items() if k in tensors and tensors[k].shape != v.shape]
    if missing or unexpected or shapes:
        raise ValueError(f"path {str(path)!r} must hold DigitClassifier weights; it lacks {sorted(missing)[:3]}, has "
                         f"extra {sorted(unexpected)[:3]} and other shapes for {shapes[:3]}; {_RETRAIN}")
    model.load_state_dict(tensors)
    return model.eval()
