"""Data for the course: the embedded digits, local image folders, Hugging Face hub datasets.

Every source yields the same thing: a dict ``{"images": (C, H, W) float in [-1, 1],
"labels": int64 tensor}`` so the training loop reads ``batch["images"]`` whatever the source.
``load_dataset(name)`` picks the source by name.

The embedded digits (``digits.render_digits``) need no network. They also come as a 🤗
``datasets.Dataset`` (``digits_hf_dataset``) with the hub's columns, ``"image"`` (PIL) and
``"label"`` (ClassLabel "0".."9"), so code written for hub datasets, such as Hugging Face's
unit 1 preprocessing with ``dataset.set_transform(transform)``, runs on them offline.
"""

import os
import socket
from pathlib import Path
from urllib.parse import urlparse

import torch
from PIL import Image

from . import _checks
from .digits import FONT_FILES, check_image_size, render_digits  # noqa: F401 (FONT_FILES: the fonts used)

SPLITS = ("train", "test")
IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
DIGIT_NAMES = [str(k) for k in range(10)]  # the ClassLabel names of the digits
_BAD_IMAGE = (OSError, SyntaxError, ValueError)  # what PIL raises on a file it cannot read or decode


def to_model_range(x):
    """Map images from [0, 1] (what ToTensor gives) to [-1, 1] (what the model sees): 2x - 1."""
    tol = _checks.IMAGE_RANGE_TOLERANCE
    _checks.in_range(x, "x", -tol, 1 + tol, "images scaled to [0, 1] (what ToTensor gives)",
                     "divide [0, 255] images by 255 first: x.float() / 255")
    return x * 2 - 1


def to_image_range(x):
    """Map model-range images from [-1, 1] back to [0, 1] for display, clamped: (x + 1) / 2."""
    _checks.float_tensor(x, "x")
    return ((x + 1) / 2).clamp(0, 1)


class DigitsDataset(torch.utils.data.Dataset):
    """The embedded offline dataset: rendered digits, all made once at construction.

    ``split="train"`` and ``split="test"`` draw from different seeds (2*seed and 2*seed+1),
    so test images are held out from every training set. ``n`` defaults to 20000 for
    train and 2000 for test. Items are ``{"images": (1, H, W) in [-1, 1], "labels": int64}``.
    """

    def __init__(self, n=None, split="train", seed=0, image_size=32):
        _checks.one_of(split, "split", SPLITS)
        n = (20000 if split == "train" else 2000) if n is None else n
        self.split, self.seed = split, _checks.integer(seed, "seed", 0, _checks.SEED_RANGE[1] // 2)
        self.images, self.labels = render_digits(n, seed=2 * self.seed + SPLITS.index(split),
                                                 image_size=image_size)

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return {"images": self.images[i], "labels": self.labels[i]}


def digits_hf_dataset(n=None, split="train", seed=0, image_size=32):
    """The embedded digits as a 🤗 ``datasets.Dataset``, the same images as ``DigitsDataset``.

    Columns as on the hub: ``"image"``, grayscale PIL images (mode "L", 0-255), and
    ``"label"``, a ClassLabel with names "0".."9". Hugging Face's unit 1 preprocessing runs on
    it unchanged: ``image.convert("RGB")`` gives 3-channel tensors, leaving it out 1-channel.
    """
    import datasets

    digits = DigitsDataset(n, split, seed, image_size)
    pixels = ((digits.images[:, 0] + 1) * 127.5).round().to(torch.uint8).numpy()  # (n, H, W) in 0..255
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=DIGIT_NAMES)})
    columns = {"image": [Image.fromarray(p) for p in pixels], "label": digits.labels.tolist()}
    return datasets.Dataset.from_dict(columns, features=features, split=split)


class HFImageDataset(torch.utils.data.Dataset):
    """A 🤗 ``datasets.Dataset`` of images, seen through the course's transforms.

    Resize to (image_size, image_size), optional random horizontal flip, ToTensor,
    Normalize(0.5, 0.5) -> [-1, 1]; items are ``{"images", "labels"}`` (labels -1 if none).
    """

    def __init__(self, hf_dataset, image_size=32, channels=None, flip=None):
        import datasets
        from torchvision import transforms

        _checks.instance(hf_dataset, "hf_dataset", datasets.Dataset, "a datasets.Dataset (one split, e.g. "
                         "datasets.load_dataset(name, split='train'); not a DatasetDict or a streaming dataset)")
        _checks.nonempty(hf_dataset, "hf_dataset", "a dataset", "it has no rows; check the split and the files")
        image_size = check_image_size(image_size)
        columns = hf_dataset.column_names
        self.image_key = next((k for k in ("image", "img") if k in columns), None)
        if self.image_key is None or not isinstance(hf_dataset.features[self.image_key], datasets.Image):
            raise ValueError(f"hf_dataset must have an 'image' or 'img' column of images (datasets.Image); "
                             f"its columns are {hf_dataset.features}")
        self.label_key = next((k for k in ("label", "labels") if k in columns), None)
        if self.label_key is not None and not _integer_labels(hf_dataset.features[self.label_key], datasets):
            raise ValueError(f"hf_dataset's {self.label_key!r} column must hold integer class labels, got "
                             f"{hf_dataset.features[self.label_key]}; encode it with "
                             f"hf_dataset.class_encode_column({self.label_key!r})")
        self.hf_dataset = hf_dataset
        if channels is None:
            channels = 1 if self._row(0)[self.image_key].mode in ("1", "L", "I", "I;16", "F") else 3
        _checks.one_of(_checks.integer(channels, "channels"), "channels", (1, 3), "1 for grayscale, 3 for RGB")
        self.mode = "L" if channels == 1 else "RGB"
        flip = channels == 3 if flip is None else _checks.flag(flip, "flip")  # flip natural images, never digits
        self.transform = transforms.Compose(
            [transforms.Resize((image_size, image_size))]
            + ([transforms.RandomHorizontalFlip()] if flip else [])
            + [transforms.ToTensor(), transforms.Normalize([0.5] * channels, [0.5] * channels)])

    def __len__(self):
        return len(self.hf_dataset)

    def _row(self, i):
        """Row i with its PIL image decoded; a file PIL cannot read is named in a ValueError."""
        try:
            row = self.hf_dataset[i]
            row[self.image_key].load()
            return row
        except _BAD_IMAGE as error:
            import datasets

            raw = self.hf_dataset.cast_column(self.image_key, datasets.Image(decode=False))[i][self.image_key]
            source = raw.get("path") or "stored in the dataset, no file name"
            raise ValueError(f"image {i} of hf_dataset ({source}) cannot be read as an image ({error}); every "
                             "image must be a readable image file: delete or replace that file") from error

    def __getitem__(self, i):
        row = self._row(_checks.integer(i, "index"))  # out of range: the IndexError that ends iteration
        label = row[self.label_key] if self.label_key is not None else -1
        images = self.transform(row[self.image_key].convert(self.mode))
        return {"images": images, "labels": torch.tensor(label, dtype=torch.long)}


def _integer_labels(feature, datasets):
    return isinstance(feature, datasets.ClassLabel) or (
        isinstance(feature, datasets.Value) and feature.dtype.startswith(("int", "uint")))


def _offline_message(name):
    return (f"Cannot reach the Hugging Face hub to load {name!r}. Offline? Use "
            "load_dataset('digits') - the embedded dataset needs no network - or a local "
            f"folder of images: load_dataset('/path/to/images') (no folder {name!r} exists here).")


def _env_flag(key):
    return os.environ.get(key, "").strip().lower() in ("1", "true", "yes", "on")


def hub_unreachable(timeout=3.0, offline_flags=("HF_HUB_OFFLINE",)):
    """Why the Hugging Face hub cannot be reached (a short reason), or None when it answers within
    ``timeout`` seconds. Never waits longer: with an offline flag set it does not try, and when
    the hub does not answer it sets HF_HUB_OFFLINE=1, so later calls fail at once. Behind an
    HTTPS proxy a direct connection says nothing, so there it answers None and leaves the test
    to the download itself."""
    if any(_env_flag(flag) for flag in offline_flags):
        return f"{offline_flags[0]} is set" if _env_flag(offline_flags[0]) else f"{offline_flags[-1]} is set"
    if any(os.environ.get(name) for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return None
    endpoint = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    address = (endpoint.hostname or "huggingface.co", endpoint.port or (80 if endpoint.scheme == "http" else 443))
    try:
        socket.create_connection(address, timeout=timeout).close()
    except OSError:
        os.environ["HF_HUB_OFFLINE"] = "1"
        return f"{address[0]} did not answer within {timeout:g} s"
    return None


def _check_hub_reachable(name, timeout=3.0):
    """Raise ConnectionError naming the offline default unless the hub answers within ``timeout`` s."""
    reason = hub_unreachable(timeout, offline_flags=("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))
    if reason is not None:
        raise ConnectionError(_offline_message(name) + f" ({reason}.)")


def _check_image_files(folder):
    """Every image file under ``folder`` opens in PIL (the header only: fast); else a ValueError
    that names the unreadable files, before any training starts."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise ValueError(f"name {str(folder)!r} is a folder with no images ({', '.join(sorted(IMAGE_EXTENSIONS))}); "
                         "put image files in it (one subfolder per class)")
    bad = []
    for path in files:
        try:
            Image.open(path).close()
        except _BAD_IMAGE:
            bad.append(str(path.relative_to(folder)))
    if bad:
        listed = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise ValueError(f"name {str(folder)!r}: {len(bad)} of its {len(files)} image files cannot be read as "
                         f"images: {listed}; every file must be a readable image: delete or replace them")


def _load_folder(folder, split, image_size, channels, flip, cache_dir):
    """A local folder of images (class subfolders give labels) via the imagefolder builder."""
    import datasets

    _check_image_files(folder)
    try:
        hf = datasets.load_dataset("imagefolder", data_dir=str(folder), split=split, cache_dir=cache_dir)
    except ValueError as error:
        raise ValueError(f"split {split!r} could not be loaded from {str(folder)!r} ({error}); a plain folder "
                         "has only split='train'") from error
    return HFImageDataset(hf, image_size=image_size, channels=channels, flip=flip)


def load_dataset(name="digits", split="train", image_size=32, *, n=None, seed=None,
                 channels=None, flip=None, cache_dir=None):
    """Load a dataset of ``{"images": (C, H, W) in [-1, 1], "labels": int64}`` items by name.

    - ``"digits"``: the embedded offline dataset (``DigitsDataset(n, split, seed or 0, image_size)``);
      ``n`` and ``seed`` apply to it only.
    - an existing folder, or ``"imagefolder:PATH"``: your own images through 🤗 datasets'
      ``imagefolder`` builder (works offline; labels from class subfolder names).
    - anything else: a 🤗 hub dataset such as ``"huggan/smithsonian_butterflies_subset"``,
      ``"mnist"``, ``"fashion_mnist"`` or ``"cifar10"``. Fails fast with a ConnectionError
      naming the offline alternatives when the hub cannot be reached.

    ``channels`` (1 or 3) defaults to the first image's; ``flip`` (random horizontal flip)
    defaults to True for RGB images only. The digits as a 🤗 Dataset: ``digits_hf_dataset``.
    """
    _checks.instance(name, "name", (str, os.PathLike), "'digits', a folder of images or a hub dataset name")
    _checks.instance(split, "split", str, "a str such as 'train' or 'test'")
    image_size = check_image_size(image_size)
    name = os.fspath(name)
    if not name.strip():
        raise ValueError("name must be 'digits', a folder of images or a hub dataset name, got an empty string")
    if name == "digits":
        if channels not in (None, 1) or flip is not None or cache_dir is not None:
            raise ValueError("channels, flip and cache_dir apply to folders and hub datasets, not to 'digits' "
                             "(grayscale, never flipped: a mirrored 3 is no digit); leave them out")
        return DigitsDataset(n=n, split=split, seed=0 if seed is None else seed, image_size=image_size)
    if n is not None or seed is not None:
        raise ValueError(f"n and seed apply to 'digits' only, not to {name!r}; for fewer images use "
                         "torch.utils.data.Subset(dataset, range(n))")
    folder = Path(name.removeprefix("imagefolder:")).expanduser()
    if name.startswith("imagefolder:") or folder.is_dir():
        _checks.existing_path(folder, "name", "dir", "pass an existing folder of images, or 'digits'")
        return _load_folder(folder, split, image_size, channels, flip, cache_dir)
    if name.startswith((".", "~")) or folder.is_absolute():
        _checks.existing_path(folder, "name", "dir", "pass an existing folder of images, or 'digits' for the "
                              "embedded dataset")
    _check_hub_reachable(name)
    import datasets

    hf = datasets.load_dataset(name, split=split, cache_dir=cache_dir)
    return HFImageDataset(hf, image_size=image_size, channels=channels, flip=flip)


def make_dataloader(dataset, batch_size, shuffle=True, seed=0, num_workers=0):
    """A DataLoader whose shuffling order is fixed by ``seed`` (same seed, same batches)."""
    if isinstance(dataset, (str, bytes)) or not hasattr(dataset, "__getitem__"):
        raise TypeError(f"dataset must be a dataset (items by index, e.g. load_dataset('digits')), got "
                        f"{type(dataset).__name__}")
    _checks.nonempty(dataset, "dataset", "a dataset", "load one with load_dataset('digits')")
    batch_size = _checks.positive_int(batch_size, "batch_size", hint="e.g. 64")
    shuffle = _checks.flag(shuffle, "shuffle")
    num_workers = _checks.integer(num_workers, "num_workers", 0, os.cpu_count() or 1,
                                  hint="0 loads in the main process; more workers than CPUs only compete")
    generator = torch.Generator().manual_seed(_checks.seed(seed))
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=shuffle,
                                       num_workers=num_workers, generator=generator)
