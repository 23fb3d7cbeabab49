"""Train the digit classifier behind ddpm_helpers.metrics and ship its weights.

    python benchmarks/train_classifier.py [--steps 600]

Trains on freshly rendered digits (seconds to a couple of minutes on a CPU), prints the
accuracy on the held-out test split (DigitsDataset(split="test"), 2000 images), and writes
ddpm_helpers/weights/digits_classifier.safetensors only if it reaches 99%.
"""

import argparse
import time

import torch

from ddpm_helpers.data import DigitsDataset
from ddpm_helpers.metrics import WEIGHTS_PATH, accuracy, save_classifier, train_classifier

REQUIRED_ACCURACY = 0.99


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    start = time.perf_counter()
    model = train_classifier(args.steps, batch_size=args.batch_size, seed=args.seed)
    seconds = time.perf_counter() - start
    test = DigitsDataset(split="test")
    acc = accuracy(model, test.images, test.labels)
    params = sum(p.numel() for p in model.parameters())
    print(f"{'steps':<24} {args.steps}")
    print(f"{'training time (s)':<24} {seconds:.1f}  ({torch.get_num_threads()} threads)")
    print(f"{'parameters':<24} {params}")
    print(f"{'test accuracy':<24} {acc:.4f}  ({len(test)} held-out images)")
    if acc < REQUIRED_ACCURACY:
        raise SystemExit(f"accuracy {acc:.4f} < {REQUIRED_ACCURACY}: weights not written; train longer (--steps).")
    save_classifier(model)
    print(f"{'weights':<24} {WEIGHTS_PATH} ({WEIGHTS_PATH.stat().st_size / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
