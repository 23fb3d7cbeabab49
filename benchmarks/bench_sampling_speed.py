"""Seconds to sample 64 images with the shipped model, per sampler, fp32, this CPU.

    python benchmarks/bench_sampling_speed.py --rounds 2

The CPU's speed drifts over minutes (turbo, other tenants), so the samplers are timed in
turns, round after round, and each row gives its fastest round. The last column compares
each sampler with the first (DDPM-1000 by default): how many times less time it takes.
"""

import argparse
import time

import torch

from bench_sampling import make_scheduler  # the same sampler names as the quality benchmark

from ddpm_helpers.sampling import sample
from ddpm_helpers.training import load_pretrained

DEFAULT = "DDPM-1000,DDIM-50,DDIM-20,DPM++2M-SDE-20,DPM++2M-SDE-10"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--samplers", default=DEFAULT, help="comma-separated FAMILY-STEPS, as in bench_sampling.py")
    args = parser.parse_args()
    model, scheduler_config = load_pretrained()
    names = args.samplers.split(",")
    steps_of = {name: make_scheduler(name, scheduler_config)[1] for name in names}  # checks every name first
    with torch.no_grad():  # warm up: the first calls allocate
        model(torch.randn(args.images, 1, 32, 32), 500)
    times = {name: [] for name in names}
    for round_ in range(args.rounds):
        for name in names:
            scheduler, steps = make_scheduler(name, scheduler_config)
            start = time.perf_counter()
            sample(model, scheduler, args.images, steps, generator=torch.Generator().manual_seed(round_), progress=False)
            times[name].append(time.perf_counter() - start)
            print(f"round {round_ + 1}: {name} {times[name][-1]:.1f} s", flush=True)
    print(f"\n{args.images} images, {torch.get_num_threads()} threads, fp32, fastest of {args.rounds} rounds\n")
    print("| sampler | model calls | seconds | s per call | times less than the first |\n|---|---|---|---|---|")
    first = min(next(iter(times.values())))
    for name in names:
        best = min(times[name])
        print(f"| {name} | {steps_of[name]} | {best:.1f} | {best / steps_of[name]:.3f} | {first / best:.1f}x |")


if __name__ == "__main__":
    main()
