"""Training variants side by side at the same number of images: the screen behind the default recipe.

    python benchmarks/bench_screen.py                                  # every variant, 42,688 images each
    python benchmarks/bench_screen.py --variants uniform-t logit-normal-1 --seeds 0 1 --threads 1

Where bench_quality_curve.py asks "how good after m minutes?", this asks "which recipe learns more
from the same images?", which a screen can answer faster and under any load: each variant
(``VARIANTS``: TrainConfig options on top of the defaults, each named for what it sets, and under
``"unet"`` options of the UNet) trains ``UNet()`` for ``--images`` images (42,688 by default: what 5
minutes of float32 at 64 images per step saw on a 2-core Xeon), then its EMA weights are measured
exactly as a mark of the curve is (512 samples with DPM-Solver++(2M) and with its SDE, 20 steps
each, the same noise; the held-out loss). Training runs under bf16 autocast where the CPU has it
natively (per image bf16 and float32 learn alike, and it is faster), else float32;
``--mixed-precision`` overrides. A variant's train time is printed, but compare speeds with
bench_unet.py: two screens sharing the CPU slow each other. Rows go to ``--out``/screen.json as they
come (rows already there are not measured again, so a stopped screen resumes), then a table.
"""

import argparse
import json
import time
import warnings
from pathlib import Path

import torch

from bench_quality_curve import LEVELS_4_UNET, QUALITY_HEAD, SDE_HEAD, _span, by_sampler, measure, quality_cells
from ddpm_helpers.data import DigitsDataset
from ddpm_helpers.training import TrainConfig, train
from ddpm_helpers.unet import UNet, cpu_has_native_bf16

VARIANTS = {  # name: TrainConfig options on top of the defaults (batch 32, min-SNR-5, logit-normal t with s = 1),
    # and under "unet" UNet options on top of UNet()'s
    "uniform-t": dict(timestep_logit_std=None),  # the seed's t ~ Uniform{0, ..., T-1}
    "logit-normal-1": dict(timestep_logit_std=1.0),  # t / T = sigmoid(s z): the middle t more often
    "logit-normal-1.5": dict(timestep_logit_std=1.5),
    "logit-normal-2": dict(timestep_logit_std=2.0),  # a wider spread, nearer uniform
    "logit-normal-0.75": dict(timestep_logit_std=0.75),  # a narrower one: the ends less often still
    "lr-2e-3": dict(learning_rate=2e-3),  # twice the default peak learning rate
    "lr-cooldown-0.2": dict(lr_cooldown=0.2),  # the lr falls linearly to 0 over the last fifth of the run
    "lr-cooldown-1": dict(lr_cooldown=1.0),  # ... over the whole run, from the end of warmup
    "min-snr-off": dict(min_snr_gamma=None),  # the plain mean over logit-normal t: the small t weigh in fully
    "min-snr-2": dict(min_snr_gamma=2.0),  # the small t weigh in less still than with gamma = 5
    "levels-4": dict(unet=LEVELS_4_UNET),  # a fourth level, (32, 48, 64, 64): the middle block at 4x4, as many
    # FLOPs per image (bench_unet.py's counter), 1.31M parameters instead of 0.90M
    "levels-4-min-snr-2": dict(min_snr_gamma=2.0, unet=LEVELS_4_UNET),
    "uniform-t-batch-64": dict(timestep_logit_std=None, batch_size=64),  # the screen that chose batch 32
    "uniform-t-batch-16": dict(timestep_logit_std=None, batch_size=16),
}


def screen(name, images, seed, mixed_precision, dataset, num_samples):
    options = dict(mixed_precision=mixed_precision, seed=seed, checkpoint_every=10**9, checkpoint_every_s=None,
                   **VARIANTS[name])
    unet_options = options.pop("unet", {})
    config = TrainConfig(num_steps=images // options.get("batch_size", TrainConfig.batch_size), **options)
    torch.manual_seed(seed)  # the initial weights
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the doctor's warnings on a short run
        state = train(UNet(**unet_options), dataset, config, progress=False)
    train_s = time.perf_counter() - start
    return dict(variant=name, seed=seed, images=state.images_seen, steps=state.step, train_s=round(train_s, 1),
                mixed_precision=mixed_precision, **measure(state.ema_model, num_samples, dataset))


def table(results, variants):
    """One line per variant (ranges over its seeds): 2M's and the SDE's quality, the held-out loss."""
    head = ["variant", "seeds", "images", "steps"] + QUALITY_HEAD + SDE_HEAD + ["held-out loss"]
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for name in variants:
        rows = [r for r in results if r["variant"] == name]
        if rows:
            cells = [name, str(len(rows)), _span([r["images"] for r in rows], "{:,}"),
                     _span([r["steps"] for r in rows], "{:,}")]
            cells += quality_cells(rows) + quality_cells([by_sampler(r, "SDE") for r in rows])
            lines.append("| " + " | ".join(cells + [_span([r["heldout_loss"] for r in rows], "{:.4f}")]) + " |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--images", type=int, default=42_688, help="training images per variant")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0], help="repeats; the table gives ranges")
    parser.add_argument("--samples", type=int, default=512, help="samples per measurement (and real digits)")
    parser.add_argument("--mixed-precision", choices=("bf16", "no"),
                        default="bf16" if cpu_has_native_bf16() else "no")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--report", action="store_true", help="train nothing: the table of --out/screen.json")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"), help="folder of screen.json")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    path = args.out / "screen.json"

    def stored():
        return json.loads(path.read_text()) if path.exists() else []

    if not args.report:
        args.out.mkdir(parents=True, exist_ok=True)
        print(f"{torch.get_num_threads()} threads, {args.mixed_precision}, {args.images:,} images per variant, "
              f"seeds {args.seeds}\n", flush=True)
        dataset = DigitsDataset()
        for seed in args.seeds:
            for name in args.variants:
                if any(r["variant"] == name and r["seed"] == seed for r in stored()):
                    continue
                row = screen(name, args.images, seed, args.mixed_precision, dataset, args.samples)
                path.write_text(json.dumps(stored() + [row], indent=1))  # re-read: another screen may share the file
                two_m, sde = row, by_sampler(row, "SDE")
                print(f"{name} seed {seed}: {row['steps']} steps, {row['train_s']:.0f} s; 2M {two_m['confident']:.0%} "
                      f"{two_m['frechet'] / two_m['frechet_floor']:.2f}x; SDE {sde['confident']:.0%} "
                      f"{sde['frechet'] / sde['frechet_floor']:.2f}x; held-out loss {row['heldout_loss']:.4f}",
                      flush=True)
    results = stored()
    variants = [name for name in VARIANTS if any(r["variant"] == name for r in results)]
    print("\n" + table(results, variants))


if __name__ == "__main__":
    main()
