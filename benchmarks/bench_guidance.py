"""Classifier-free guidance: fidelity against quality, per sampler and guidance scale w.

    python benchmarks/bench_guidance.py --samples 256
    python benchmarks/bench_guidance.py --samplers DPM++2M-20 --scales 0,1,2,3 --samples 512
    python benchmarks/bench_guidance.py --smoke        # a few seconds: 10 samples, 2 steps

For each sampler (default DDIM-50 and DPM-Solver++(2M) with 20 steps) and each w (default 0, 1,
2, 3, 5, 8) it draws ``--samples`` images from the shipped class-conditional model, image i asking
for digit i % 10, from the same noise at every w (``guidance.guidance_tradeoff``), and prints:

- read as asked: the share the course's digit classifier reads as the requested digit with
  probability >= 0.9, and the worst digit's share (which digit in brackets);
- KID / 1000 to as many real test digits, in the classifier's feature space (unbiased at any N;
  the "real" line gives two real sets' KID, whose size is the noise), and the Frechet distance
  from N > 64 on (biased: read it against the real line's floor at the same N);
- seconds per 64 images: guidance runs the model on the batch twice (one forward pass of 2B).
"""

import argparse
import os
import platform
import time

import torch

from ddpm_helpers import guidance
from ddpm_helpers.checkpoints import load_pretrained
from ddpm_helpers.dpm_solver import DPMSolverMultistepScheduler
from ddpm_helpers.scheduler import DDIMScheduler

FAMILIES = {"DDIM": DDIMScheduler, "DPM++2M": DPMSolverMultistepScheduler}


def make_scheduler(name, scheduler_config):
    """'DPM++2M-20' -> (DPMSolverMultistepScheduler from the model's config, 20)."""
    family, _, steps = name.rpartition("-")
    if family not in FAMILIES or not steps.isdigit():
        raise SystemExit(f"unknown sampler {name!r}; use FAMILY-STEPS with FAMILY one of {', '.join(FAMILIES)}")
    return FAMILIES[family].from_config(scheduler_config), int(steps)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=256, help="images per sampler and w (balanced over digits)")
    parser.add_argument("--samplers", default="DPM++2M-20,DDIM-50", help="comma-separated FAMILY-STEPS")
    parser.add_argument("--scales", default="0,1,2,3,5,8", help="comma-separated guidance scales w")
    parser.add_argument("--weights", default=None, help="a conditional .safetensors export (default: the shipped)")
    parser.add_argument("--seed", type=int, default=1, help="the noise: the same at every w")
    parser.add_argument("--smoke", action="store_true", help="a tiny run that only shows the script works")
    args = parser.parse_args()
    scales = [float(w) for w in args.scales.split(",")]
    n, step_cap = (10, 2) if args.smoke else (args.samples, None)

    model, scheduler_config = load_pretrained(args.weights or guidance.CONDITIONAL_PATH)
    if not model.config.num_class_embeds:
        raise SystemExit("these weights are unconditional; pass a class-conditional export with --weights")
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU(s), torch "
          f"{torch.__version__}, {torch.get_num_threads()} thread(s); {n} samples per row, seed {args.seed}")
    reference = guidance.real_reference(n)
    for name in args.samplers.split(","):
        scheduler, steps = make_scheduler(name, scheduler_config)
        steps = steps if step_cap is None else min(steps, step_cap)
        start = time.perf_counter()
        rows = guidance.guidance_tradeoff(model, scheduler, scales, n, steps, seed=args.seed, reference=reference)
        print()
        print(guidance.format_tradeoff(rows, reference, f"{name} (ran {steps} steps), "
                                                        f"{time.perf_counter() - start:.0f} s in all"))
        for row in rows:
            print(f"  w = {row.w:g}, per digit 0-9: " + " ".join(f"{s:.0%}" for s in row.per_digit))


if __name__ == "__main__":
    main()
