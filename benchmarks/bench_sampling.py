"""Sample quality and speed of the shipped checkpoint, per sampler.

    python benchmarks/bench_sampling.py --samples 256
    python benchmarks/bench_sampling.py --weights runs/digits/weights.safetensors

For each sampler (DDPM with 1000 steps, DDIM with 50, 20 and 10) it draws ``--samples``
images from the same seed and prints the time per 64 images and ``metrics.quality_report``:
the Frechet distance in the shipped classifier's feature space beside its floor (the same
distance between two sets of real test images of that size), the share of samples
classified with >= 0.9 confidence, the range of the class shares, and the memorisation
check (median distance to the nearest training image, samples vs held-out real images).
"""

import argparse
import time

import torch

from ddpm_helpers.data import DigitsDataset
from ddpm_helpers.metrics import quality_report
from ddpm_helpers.sampling import sample
from ddpm_helpers.scheduler import DDIMScheduler, DDPMScheduler
from ddpm_helpers.training import load_pretrained

SAMPLERS = [("DDPM", DDPMScheduler, 1000), ("DDIM", DDIMScheduler, 50), ("DDIM", DDIMScheduler, 20),
            ("DDIM", DDIMScheduler, 10)]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=256, help="images per sampler")
    parser.add_argument("--weights", default=None, help="a .safetensors export (default: the shipped one)")
    parser.add_argument("--samplers", default="DDPM-1000,DDIM-50,DDIM-20,DDIM-10", help="comma-separated NAME-STEPS")
    args = parser.parse_args()
    model, scheduler_config = load_pretrained(args.weights)
    wanted = set(args.samplers.split(","))
    real = DigitsDataset(n=2 * args.samples, split="test").images
    train_images = DigitsDataset().images
    print(f"{args.samples} samples per sampler, {torch.get_num_threads()} threads, fp32\n")
    print("| sampler | s per 64 images | Frechet | floor | ratio | confident >= 0.9 | class shares "
          "| NN median: samples / held-out | memorised |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, scheduler_class, steps in SAMPLERS:
        if f"{name}-{steps}" not in wanted:
            continue
        scheduler = scheduler_class.from_config(scheduler_config)
        start = time.perf_counter()
        images = sample(model, scheduler, args.samples, num_inference_steps=steps,
                        generator=torch.Generator().manual_seed(1), progress=False)
        per_64 = (time.perf_counter() - start) * 64 / args.samples
        r = quality_report(images, real=real, train_images=train_images)
        print(f"| {name}-{steps} | {per_64:.1f} | {r.frechet:.1f} | {r.frechet_floor:.1f} "
              f"| {r.frechet / r.frechet_floor:.2f} | {r.confident_fraction:.1%} "
              f"| {min(r.class_fractions):.1%}-{max(r.class_fractions):.1%} "
              f"| {r.sample_nn_median:.2f} / {r.heldout_nn_median:.2f} | {r.memorised} |", flush=True)


if __name__ == "__main__":
    main()
