"""Bad inputs to the sample-quality measures: quality_report, frechet_distance, kid, features,
the classifier's files, format_report.

Each case asserts the exception type and that the message names the argument and says what
is allowed (for a file: what the file must be and how to make a good one).
"""

import pytest
import torch

from ddpm_helpers.data import DigitsDataset
from ddpm_helpers.metrics import (DigitClassifier, accuracy, features, format_report, frechet_distance, kid,
                                  load_classifier, nearest_distances, quality_report, train_classifier)

REAL = DigitsDataset(n=40, split="test").images  # (40, 1, 32, 32) in [-1, 1]
CLASSIFIER = DigitClassifier().eval()  # random weights: the checks come before any use
FEATS = torch.randn(80, 8)


def report(samples, **kwargs):
    return lambda: quality_report(samples, **{"real": REAL, "classifier": CLASSIFIER, "train_images": REAL, **kwargs})


def with_nan(x):
    x = x.clone()
    x.view(-1)[3] = float("nan")
    return x


CASES = {
    # quality_report
    "samples RGB": (report(torch.zeros(4, 3, 32, 32)), ValueError,
                    ["samples must be (B, C, H, W) with C = 1, H = W = 32", "(4, 3, 32, 32)"]),
    "samples 28x28": (report(torch.zeros(4, 1, 28, 28)), ValueError, ["samples must be", "H = W = 32"]),
    "samples in [0, 1]": (report((REAL[:10] + 1) / 2), ValueError,
                          ["samples must be digits scaled to [-1, 1]", "to_model_range"]),
    "samples in [0, 255]": (report((REAL[:10] + 1) * 127.5), ValueError, ["samples must be scaled to [-1, 1]",
                                                                          "x / 127.5 - 1"]),
    "samples empty": (report(torch.zeros(0, 1, 32, 32)), ValueError, ["samples is an empty batch"]),
    "one sample": (report(REAL[:1]), ValueError, ["samples must hold at least 2 images"]),
    "samples with NaN": (report(with_nan(REAL[:10])), ValueError, ["samples contains NaN", "finite"]),
    "samples a list": (report(list(REAL[:4])), TypeError, ["samples must be a float tensor"]),
    "samples one image": (report(REAL[0]), ValueError, ["samples must have 4 dimensions", "x[None]"]),
    "real too few": (report(REAL[:10], real=REAL[:15]), ValueError, ["real must hold at least 2 * 10 images"]),
    "real in [0, 1]": (report(REAL[:10], real=(REAL + 1) / 2), ValueError, ["real must be digits scaled to [-1, 1]"]),
    "classifier a string": (report(REAL[:10], classifier="model.pt"), TypeError,
                            ["classifier must be a DigitClassifier", "load_classifier()"]),
    "train_images flat": (report(REAL[:10], train_images=REAL.flatten(1)), ValueError,
                          ["train_images must have 4 dimensions"]),
    "heldout_images uint8": (report(REAL[:10], heldout_images=(REAL > 0).to(torch.uint8)), TypeError,
                             ["heldout_images must be a float tensor"]),
    "heldout_images that were trained on": (report(REAL[:4], heldout_images=REAL[:4]), ValueError,
                                            ["heldout_images (default: real[N:2N]) must be digits not trained on"]),
    # frechet_distance
    "frechet with different D": (lambda: frechet_distance(FEATS, torch.zeros(80, 4)), ValueError,
                                 ["feats_a and feats_b must be (N, D) with the same D"]),
    "frechet at N <= D": (lambda: frechet_distance(FEATS[:8], FEATS[8:16]), ValueError,
                          ["more rows than feature dimensions", "N > D = 8", "kid()"]),
    "frechet of 1-d features": (lambda: frechet_distance(FEATS[:, 0], FEATS[:, 1]), ValueError,
                                ["feats_a must have 2 dimensions", "(N, D)"]),
    "frechet of numpy arrays": (lambda: frechet_distance(FEATS.numpy(), FEATS.numpy()), TypeError,
                                ["feats_a must be a float tensor"]),
    "frechet with NaN": (lambda: frechet_distance(FEATS, with_nan(FEATS)), ValueError, ["feats_b contains NaN"]),
    "frechet of integer features": (lambda: frechet_distance(FEATS.long(), FEATS.long()), TypeError,
                                    ["feats_a must be a float tensor"]),
    # kid
    "kid of one row": (lambda: kid(FEATS[:1], FEATS), ValueError, ["feats_a must have at least 2 rows"]),
    "kid with no subsets": (lambda: kid(FEATS, FEATS, num_subsets=0), ValueError, ["num_subsets must be >= 1"]),
    "kid subsets of one": (lambda: kid(FEATS, FEATS, subset_size=1), ValueError, ["subset_size must be >= 2"]),
    "kid generator a seed": (lambda: kid(FEATS, FEATS, generator=0), TypeError,
                             ["generator must be a torch.Generator or None"]),
    # features, accuracy, nearest_distances, training the classifier
    "features of 28x28 images": (lambda: features(torch.zeros(4, 1, 28, 28), CLASSIFIER), ValueError,
                                 ["images must be (B, C, H, W) with C = 1, H = W = 32"]),
    "features without a classifier": (lambda: features(REAL, None), TypeError, ["classifier must be a DigitClassifier"]),
    "features batch_size zero": (lambda: features(REAL, CLASSIFIER, batch_size=0), ValueError,
                                 ["batch_size must be >= 1"]),
    "accuracy with float labels": (lambda: accuracy(CLASSIFIER, REAL[:10], torch.zeros(10)), ValueError,
                                   ["labels must be an integer tensor of shape (10,)"]),
    "accuracy without a classifier": (lambda: accuracy(None, REAL[:10], torch.zeros(10, dtype=torch.long)),
                                      TypeError, ["classifier must be a DigitClassifier"]),
    "accuracy with a label list": (lambda: accuracy(CLASSIFIER, REAL[:10], [0] * 10), TypeError,
                                   ["labels must be an integer tensor of digits"]),
    "nearest_distances shapes": (lambda: nearest_distances(REAL[:4], REAL[:4, :, :16]), ValueError,
                                 ["images and reference must be batches of same-shaped images"]),
    "train_classifier lr zero": (lambda: train_classifier(num_steps=1, lr=0), ValueError, ["lr must be in (0, 1]"]),
    "train_classifier steps a float": (lambda: train_classifier(num_steps=1.5), TypeError, ["num_steps must be an int"]),
    # format_report
    "format_report of a string": (lambda: format_report("the table"), TypeError,
                                  ["report must be a QualityReport", "quality_report(samples)"]),
}


@pytest.mark.parametrize("call, error, words", CASES.values(), ids=CASES.keys())
def test_bad_measure_arguments(call, error, words, raises_naming):
    raises_naming(call, error, words)


def _png_bytes():
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("L", (4, 4)).save(buffer, format="PNG")
    return buffer.getvalue()


def _other_tensors(path):
    from safetensors.torch import save_file

    save_file({"weight": torch.zeros(3)}, str(path))


FILE_CASES = {
    "random bytes": (lambda p: p.write_bytes(bytes(range(256)) * 4), ValueError,
                     ["must be a safetensors file of classifier weights", "benchmarks/train_classifier.py"]),
    "a PNG renamed": (lambda p: p.write_bytes(_png_bytes()), ValueError, ["must be a safetensors file"]),
    "an empty file": (lambda p: p.write_bytes(b""), ValueError, ["must be a safetensors file"]),
    "other weights": (_other_tensors, ValueError, ["must hold DigitClassifier weights", "'conv1.bias'",
                                                   "train_classifier.py"]),
    "a folder": (lambda p: p.mkdir(), ValueError, ["path must be a file"]),
    "missing": (lambda p: None, FileNotFoundError, ["path must be an existing file", "benchmarks/train_classifier.py"]),
}


@pytest.mark.parametrize("make, error, words", FILE_CASES.values(), ids=FILE_CASES.keys())
def test_bad_classifier_files(tmp_path, make, error, words, raises_naming):
    path = tmp_path / "digits_classifier.safetensors"
    make(path)
    raises_naming(lambda: load_classifier(path), error, words)


def test_classifier_path_of_the_wrong_kind(raises_naming):
    raises_naming(lambda: load_classifier(3), TypeError, ["path must be a path (str or pathlib.Path) to a file"])
