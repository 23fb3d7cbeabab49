"""Bad inputs to the data module: dataset names, paths, splits and sizes, corrupt and empty
folders, the digits' arguments, the 🤗 dataset wrapper and the DataLoader.

Each case asserts the exception type and that the message names the argument (or the file)
and says what is allowed. Runs offline (the root conftest sets HF_HUB_OFFLINE=1).
"""

import socket

import pytest
import torch
from PIL import Image

from ddpm_helpers import data
from ddpm_helpers.data import (DigitsDataset, HFImageDataset, digits_hf_dataset, load_dataset, make_dataloader,
                               render_digits, to_model_range)


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a bad input must be refused before any network access")

    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """Image folders, each broken one way, and a plain file."""
    root = tmp_path_factory.mktemp("folders")
    for name in ("good", "corrupt", "renamed"):
        for c in ("a", "b"):
            (root / name / c).mkdir(parents=True)
            for i in range(2):
                Image.new("L", (8, 8), 60 * i).save(root / name / c / f"{i}.png")
    (root / "corrupt" / "b" / "bad.png").write_bytes(b"\x00\x01 random bytes, not a PNG")
    (root / "renamed" / "a" / "notes.jpg").write_text("a text file renamed to .jpg")
    (root / "text_only").mkdir()
    (root / "text_only" / "notes.txt").write_text("no images here")
    (root / "nothing").mkdir()
    (root / "a_file.png").write_bytes(b"")
    return root


def hf_dataset(**columns):
    import datasets

    features = {"image": datasets.Image(), "img": datasets.Image(), "label": datasets.Value("string"),
                "x": datasets.Value("int64")}
    return datasets.Dataset.from_dict(columns, features=datasets.Features({k: features[k] for k in columns}))


IMAGES = [Image.new("L", (8, 8), 0), Image.new("L", (8, 8), 255)]
DIGITS = DigitsDataset(n=10)

CASES = {
    # render_digits / DigitsDataset / digits_hf_dataset
    "n zero": (lambda: render_digits(0), ValueError, ["n must be >= 1", "number of images"]),
    "n a float": (lambda: render_digits(2.5), TypeError, ["n must be an int"]),
    "image_size not a multiple of 8": (lambda: render_digits(10, image_size=30), ValueError,
                                       ["image_size must be a multiple of 8", "use 32 or 64"]),
    "image_size a float": (lambda: render_digits(10, image_size=32.0), TypeError, ["image_size must be an int"]),
    "image_size too small": (lambda: render_digits(10, image_size=0), ValueError, ["image_size must be in [8, 1024]"]),
    "image_size huge": (lambda: render_digits(10, image_size=2**40), ValueError, ["image_size must be in [8, 1024]"]),
    "seed negative": (lambda: render_digits(10, seed=-1), ValueError, ["seed must be in [0, "]),
    "seed a string": (lambda: render_digits(10, seed="1"), TypeError, ["seed must be an int"]),
    "split an array": (lambda: DigitsDataset(n=10, split=__import__("numpy").zeros(2)), ValueError,
                       ["split must be one of 'train', 'test'"]),
    "split unknown": (lambda: DigitsDataset(n=10, split="validation"), ValueError,
                      ["split must be one of 'train', 'test'", "'validation'"]),
    "digits n negative": (lambda: DigitsDataset(n=-5), ValueError, ["n must be >= 1"]),
    "hf digits split unknown": (lambda: digits_hf_dataset(n=10, split="val"), ValueError, ["split must be one of"]),
    # load_dataset: names, splits, sizes, options
    "name None": (lambda: load_dataset(None), TypeError, ["name must be 'digits', a folder of images or a hub"]),
    "name empty": (lambda: load_dataset(""), ValueError, ["name must be 'digits'", "empty string"]),
    "split not a str": (lambda: load_dataset("digits", split=1), TypeError, ["split must be a str"]),
    "channels for digits": (lambda: load_dataset("digits", channels=3), ValueError,
                            ["channels, flip and cache_dir apply to folders and hub datasets", "leave them out"]),
    "flip for digits": (lambda: load_dataset("digits", n=10, flip=True), ValueError, ["flip", "not to 'digits'"]),
    "n for a hub dataset": (lambda: load_dataset("mnist", n=100), ValueError, ["n and seed apply to 'digits' only",
                                                                               "Subset"]),
    "image_size checked before the hub": (lambda: load_dataset("cifar10", image_size=33), ValueError,
                                          ["image_size must be a multiple of 8"]),
    "hub name offline": (lambda: load_dataset("mnsit"), ConnectionError,
                         ["'mnsit'", "load_dataset('digits')", "no folder 'mnsit' exists here"]),
    # load_dataset: folders
    "folder missing": (lambda: load_dataset("./no_such_folder"), FileNotFoundError,
                       ["name must be an existing dir", "no_such_folder", "'digits'"]),
}


FOLDER_CASES = {
    "imagefolder: missing": ("imagefolder:{root}/missing", {}, FileNotFoundError, ["name must be an existing dir"]),
    "imagefolder: a file": ("imagefolder:{root}/a_file.png", {}, ValueError, ["name must be a dir"]),
    "folder with no images": ("{root}/text_only", {}, ValueError, ["is a folder with no images", ".png",
                                                                   "put image files in it"]),
    "empty folder": ("{root}/nothing", {}, ValueError, ["is a folder with no images"]),
    "one corrupt image": ("{root}/corrupt", {}, ValueError, ["1 of its 5 image files cannot be read as images",
                                                             "b/bad.png", "delete or replace"]),
    "a text file renamed .jpg": ("{root}/renamed", {}, ValueError, ["a/notes.jpg", "readable image"]),
    "split a folder lacks": ("{root}/good", {"split": "test"}, ValueError, ["split 'test' could not be loaded",
                                                                            "split='train'"]),
    "folder with channels=2": ("{root}/good", {"channels": 2}, ValueError, ["channels must be one of 1, 3",
                                                                            "grayscale"]),
    "folder with flip='yes'": ("{root}/good", {"flip": "yes"}, TypeError, ["flip must be True or False"]),
    "folder with seed": ("{root}/good", {"seed": 3}, ValueError, ["n and seed apply to 'digits' only"]),
}

HF_CASES = {
    "a list, not a dataset": (lambda: HFImageDataset(IMAGES), TypeError, ["hf_dataset must be a datasets.Dataset"]),
    "a DatasetDict": (lambda: HFImageDataset(__import__("datasets").DatasetDict({"train": hf_dataset(image=IMAGES)})),
                      TypeError, ["hf_dataset must be a datasets.Dataset", "not a DatasetDict"]),
    "an empty dataset": (lambda: HFImageDataset(hf_dataset(image=[])), ValueError, ["hf_dataset is empty"]),
    "no image column": (lambda: HFImageDataset(hf_dataset(x=[1, 2])), ValueError,
                        ["hf_dataset must have an 'image' or 'img' column"]),
    "string labels": (lambda: HFImageDataset(hf_dataset(image=IMAGES, label=["cat", "dog"])), ValueError,
                      ["'label' column must hold integer class labels", "class_encode_column('label')"]),
    "channels a float": (lambda: HFImageDataset(hf_dataset(image=IMAGES), channels=1.0), TypeError,
                         ["channels must be an int"]),
    "image_size odd": (lambda: HFImageDataset(hf_dataset(image=IMAGES), image_size=20), ValueError,
                       ["image_size must be a multiple of 8"]),
    "index a float": (lambda: HFImageDataset(hf_dataset(img=IMAGES))[1.5], TypeError, ["index must be an int"]),
    # make_dataloader
    "empty dataset": (lambda: make_dataloader(torch.utils.data.TensorDataset(torch.zeros(0, 1)), 8), ValueError,
                      ["dataset is empty", "at least one item"]),
    "dataset a number": (lambda: make_dataloader(5, 8), TypeError, ["dataset must be a dataset (items by index"]),
    "dataset a string": (lambda: make_dataloader("digits", 8), TypeError, ["dataset must be a dataset",
                                                                           "load_dataset('digits')"]),
    "dataset without a length": (lambda: make_dataloader(iter([1]), 8), TypeError, ["dataset must be a dataset"]),
    "batch_size zero": (lambda: make_dataloader(DIGITS, 0), ValueError, ["batch_size must be >= 1", "e.g. 64"]),
    "batch_size a float": (lambda: make_dataloader(DIGITS, 8.0), TypeError, ["batch_size must be an int"]),
    "shuffle a string": (lambda: make_dataloader(DIGITS, 8, shuffle="yes"), TypeError, ["shuffle must be True or False"]),
    "num_workers negative": (lambda: make_dataloader(DIGITS, 8, num_workers=-1), ValueError,
                             ["num_workers must be in [0, ", "0 loads in the main process"]),
    "num_workers past the CPUs": (lambda: make_dataloader(DIGITS, 8, num_workers=10_000), ValueError,
                                  ["num_workers must be in [0, "]),
    "loader seed a float": (lambda: make_dataloader(DIGITS, 8, seed=0.5), TypeError, ["seed must be an int"]),
    # range transforms
    "to_model_range on uint8": (lambda: to_model_range(torch.zeros(2, dtype=torch.uint8)), TypeError,
                                ["x must be a float tensor"]),
    "to_model_range on [0, 255]": (lambda: to_model_range(torch.tensor([0.0, 255.0])), ValueError,
                                   ["x must be images scaled to [0, 1]", "/ 255"]),
    "to_image_range with NaN": (lambda: data.to_image_range(torch.tensor([float("nan")])), ValueError,
                                ["x contains NaN"]),
}


@pytest.mark.parametrize("call, error, words", CASES.values(), ids=CASES.keys())
def test_bad_dataset_arguments(call, error, words, raises_naming):
    raises_naming(call, error, words)


@pytest.mark.parametrize("name, kwargs, error, words", FOLDER_CASES.values(), ids=FOLDER_CASES.keys())
def test_bad_folders(folders, tmp_path, name, kwargs, error, words, raises_naming):
    name = name.format(root=folders)
    raises_naming(lambda: load_dataset(name, cache_dir=str(tmp_path / "cache"), **kwargs), error, words)


@pytest.mark.parametrize("call, error, words", HF_CASES.values(), ids=HF_CASES.keys())
def test_bad_hf_datasets_and_loaders(call, error, words, raises_naming):
    raises_naming(call, error, words)


def test_the_good_folder_loads(folders, tmp_path):
    """The folders above differ from a loadable one only in the flaw each case names."""
    dataset = load_dataset(str(folders / "good"), image_size=8, cache_dir=str(tmp_path / "cache"))
    assert len(dataset) == 4 and dataset[3]["images"].shape == (1, 8, 8)
