"""Sample quality against minutes of training on this machine: the quality-per-minute curve.

    python benchmarks/bench_quality_curve.py                  # ours (+ bf16 where native), the seed, 1-20 min
    python benchmarks/bench_quality_curve.py --recipes ours-plain ours-min-snr --minutes 1 2 3 5 10
    python benchmarks/bench_quality_curve.py --shipped        # the shipped model, measured the same way

Recipes (``RECIPES``):
- ``ours-min-snr`` / ``ours-bf16``: ``UNet()`` trained by ``training.train`` with ``TrainConfig()``'s
  defaults (min-SNR-5 loss weights, 32 images per step, logit-normal t) in float32 / under bf16
  autocast (skipped where the CPU has no native bf16: emulated bf16 is slower than float32 there, so
  no laptop would use it);
- ``ours-uniform-t`` / ``ours-uniform-t-bf16``: the same with the seed's uniform t (the default until
  bench_screen.py showed logit-normal t giving clearer digits from the same images);
- ``ours-lr-cooldown`` / ``ours-lr-cooldown-bf16``: the default with the lr falling linearly to 0
  over each mark's run (``lr_cooldown=1``; each mark is its own run of that length, see ``OursRun``);
- ``ours-batch-64``: ``ours-uniform-t`` with 64 images per step (the default until the curve showed
  32 learning faster per minute);
- ``ours-plain``: batch 64, uniform t, with the seed's plain mean loss (``min_snr_gamma=None``, the default
  until the curve showed min-SNR-5 learning faster); ``ours-lr-2e-3``,
  ``ours-small`` (``UNet(block_out_channels=(16, 32, 64))``, the CLI's ``--channels 16,32,64``):
  ``ours-plain`` with one thing changed each; ``ours-min-snr-lr-2e-3``: two changes together;
- ``ours-levels-4``: ``ours-min-snr`` with a fourth level (``UNet(block_out_channels=(32, 48, 64, 64))``,
  the middle block at 4x4: as many FLOPs per image, 1.31M parameters; bench_screen.py's ``levels-4``);
- ``seed-fp32``: the seed's loop as written (diffusers' UNet2DModel in unit 1's configuration with
  one channel, diffusers' DDPMScheduler, AdamW 4e-4, ``loss.backward(loss)``, no EMA).

The recipes train in turns of ``--slice`` seconds (round robin; ours resume from a checkpoint,
bit for bit), so every row sees the same drift in the machine's load. Each recipe's clock counts
its own training steps only. When a clock passes a mark in ``--minutes``, that recipe's model
(ours: the EMA weights; the seed's loop keeps none) draws ``--samples`` digits with
DPM-Solver++(2M) and with DPM-Solver++(2M) SDE (20 steps each, the same noise for every row; the
SDE sampler adds fresh noise at each step, which hides much of a young model's error), each
measured by ``metrics.quality_report``
against as many real test digits, and its held-out loss is taken; sampling is not on the clock.
Every row is printed as soon as it is measured and added to ``--out``/quality_curve.json, so an
interrupted run keeps what it measured; at the end the table and a plot (quality_curve.png).
With several ``--seeds`` the table gives ranges over the seeds (the classes column: the smallest
and the largest share of any digit in any of them).
"""

import argparse
import json
import math
import shutil
import sys
import tempfile
import warnings
from pathlib import Path

import torch

from bench_training import SeedRun, heldout_loss
from ddpm_helpers.data import DigitsDataset
from ddpm_helpers.dpm_solver import DPMSolverMultistepScheduler
from ddpm_helpers.metrics import quality_report
from ddpm_helpers.sampling import sample
from ddpm_helpers.training import TrainConfig, load_pretrained, train
from ddpm_helpers.unet import UNet, cpu_has_native_bf16

SMALL_UNET = dict(block_out_channels=(16, 32, 64), attention_head_dim=16)  # --channels 16,32,64: half the FLOPs
LEVELS_4_UNET = dict(block_out_channels=(32, 48, 64, 64))  # --channels 32,48,64,64
PLAIN = dict(mixed_precision="no", min_snr_gamma=None, batch_size=64, timestep_logit_std=None)  # the first default
RECIPES = {  # name: TrainConfig options for ours (and "unet": UNet options); "seed" for the seed's loop
    "ours-min-snr": dict(mixed_precision="no", min_snr_gamma=5.0),
    "ours-bf16": dict(mixed_precision="bf16", min_snr_gamma=5.0),
    "ours-lr-cooldown": dict(mixed_precision="no", min_snr_gamma=5.0, lr_cooldown=1.0),
    "ours-lr-cooldown-bf16": dict(mixed_precision="bf16", min_snr_gamma=5.0, lr_cooldown=1.0),
    "ours-uniform-t": dict(mixed_precision="no", min_snr_gamma=5.0, timestep_logit_std=None),
    "ours-uniform-t-bf16": dict(mixed_precision="bf16", min_snr_gamma=5.0, timestep_logit_std=None),
    "ours-batch-64": dict(mixed_precision="no", min_snr_gamma=5.0, batch_size=64, timestep_logit_std=None),
    "ours-plain": PLAIN,
    "ours-lr-2e-3": dict(PLAIN, learning_rate=2e-3),
    "ours-small": dict(PLAIN, unet=SMALL_UNET),
    "ours-min-snr-lr-2e-3": dict(PLAIN, min_snr_gamma=5.0, learning_rate=2e-3),
    "ours-levels-4": dict(mixed_precision="no", min_snr_gamma=5.0, unet=LEVELS_4_UNET),
    "seed-fp32": "seed",
}
DEFAULT_RECIPES = ("ours-min-snr", "ours-bf16", "ours-batch-64", "seed-fp32")


class OursRun:
    """``training.train`` in slices: each call resumes from the checkpoint (bit for bit). With an lr
    cooldown (``ours-lr-cooldown``) the slices are a constant-lr trunk, and each mark's run branches
    off it where its cooldown begins (see ``finish``)."""

    def __init__(self, options, dataset, seed, folder):
        self.dataset, self.path = dataset, Path(folder) / "checkpoint.pt"
        options = dict(options)
        self.unet_options = options.pop("unet", {})
        self.cooldown = options.pop("lr_cooldown", TrainConfig.lr_cooldown)
        self.options = dict(options, seed=seed, num_steps=None, checkpoint_every=10**9, checkpoint_every_s=None)
        self.seed, self.state, self.elapsed, self.images = seed, None, 0.0, 0

    def _train(self, seconds, lr_cooldown, path):
        config = TrainConfig(time_budget_s=seconds, lr_cooldown=lr_cooldown, **self.options)
        torch.manual_seed(self.seed)  # the first slice's initial weights; later slices load the checkpoint
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the doctor's "loss is not falling" on a short slice
            return train(UNet(**self.unet_options), self.dataset, config, checkpoint_path=path, progress=False)

    def trunk_seconds(self, minutes):
        """How long the trunk trains for the run of ``minutes``: all of it, or up to its cooldown."""
        return minutes * 60 * (1 - (self.cooldown or 0))

    def advance(self, seconds):
        self.state = self._train(seconds, None, self.path)
        self.elapsed, self.images = self.state.elapsed, self.state.images_seen

    def finish(self, minutes):
        """The run of ``minutes``: (its EMA model, seconds, images). With a cooldown c, a copy of the trunk
        (at (1 - c) * minutes) trains the rest with the lr falling linearly to 0 (lr_cooldown=1 over that
        call): the lr of every step is that of one run of ``minutes`` with lr_cooldown=c. The trunk goes on
        at a constant lr, so one trunk serves every mark ("warmup-stable-decay", Hägele et al. 2024)."""
        if not self.cooldown:
            return self.state.ema_model, self.elapsed, self.images
        if self.elapsed >= minutes * 60:  # the trunk's last step ran past the whole mark (a loaded machine)
            warnings.warn(f"the trunk is {self.elapsed:.1f} s in, past the {minutes:g}-minute mark: no time left "
                          "for its cooldown, so this mark is the trunk's (a constant lr)")
            return self.state.ema_model, self.elapsed, self.images
        branch = self.path.with_name("branch.pt")
        shutil.copyfile(self.path, branch)
        state = self._train(minutes * 60 - self.elapsed, 1.0, branch)
        branch.unlink()
        return state.ema_model, state.elapsed, state.images_seen


SAMPLERS = {  # name: DPMSolverMultistepScheduler algorithm_type; each mark is measured with both
    "2M": "dpmsolver++",  # DPM-Solver++(2M), deterministic
    "SDE": "sde-dpmsolver++",  # DPM-Solver++(2M) SDE: fresh noise at every step
}


def by_sampler(row, sampler):
    """A row's measurements with ``sampler``: the 2M's are the row's own keys (rows measured before the
    SDE sampler have only those), the SDE's are under ``"sde"``; None where the row has none."""
    return row if sampler == "2M" else row.get("sde")


def sample_quality(model, algorithm_type, num_samples, real, train_images):
    """Quality of ``num_samples`` 20-step samples (fixed noise) of one DPM-Solver++ variant."""
    scheduler = DPMSolverMultistepScheduler(1000, beta_schedule="squaredcos_cap_v2", algorithm_type=algorithm_type)
    samples = sample(model, scheduler, num_samples, num_inference_steps=20, generator=torch.Generator().manual_seed(1),
                     progress=False)
    report = quality_report(samples, real=real, train_images=train_images)
    return dict(confident=report.confident_fraction, class_min=min(report.class_fractions),
                class_max=max(report.class_fractions), frechet=report.frechet, frechet_floor=report.frechet_floor,
                kid=report.kid, kid_reference=report.kid_reference)


def measure(model, num_samples, dataset):
    """A mark's row: each sampler's quality (laid out as ``by_sampler`` reads it) and the held-out loss."""
    real = DigitsDataset(n=2 * num_samples, split="test").images
    two_m, sde = (sample_quality(model, SAMPLERS[name], num_samples, real, dataset.images) for name in ("2M", "SDE"))
    return dict(two_m, sde=sde, heldout_loss=heldout_loss(model))


def run_curve(recipes, marks, seeds, slice_s, num_samples, out, until=None):
    dataset = DigitsDataset()
    results_path = out / "quality_curve.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else []
    done = {(r["recipe"], r["seed"], r["minutes"]) for r in results}
    with tempfile.TemporaryDirectory() as tmp:
        runs = {(name, seed): (SeedRun(dataset, seed) if RECIPES[name] == "seed"
                               else OursRun(RECIPES[name], dataset, seed, Path(tmp) / f"{name}-{seed}"))
                for name in recipes for seed in seeds}
        until = until or {}
        pending = {key: [m for m in marks if m <= until.get(key[0], math.inf)] for key in runs}
        while any(pending.values()):
            for key, run in runs.items():  # one slice each, in turn
                if not pending[key]:
                    continue
                target = run.trunk_seconds(pending[key][0])
                run.advance(max(0.1, min(slice_s, target - run.elapsed)))
                if run.elapsed < target - 0.5:
                    continue
                minutes = pending[key].pop(0)
                if (*key, minutes) in done:
                    continue
                model, train_s, images = run.finish(minutes)
                row = dict(recipe=key[0], seed=key[1], minutes=minutes, train_s=round(train_s, 1),
                           images=images, **measure(model, num_samples, dataset))
                results.append(row)
                results_path.write_text(json.dumps(results, indent=1))
                print(format_row(row), flush=True)
    return results


def format_quality(row):
    """Both samplers' measurements of a row (or of ``measure``'s answer), and its held-out loss, in words."""
    def quality(m):
        return (f"confident {m['confident']:.0%}, classes {m['class_min']:.0%}-{m['class_max']:.0%}, "
                f"Frechet {m['frechet']:.0f} (floor {m['frechet_floor']:.0f})")
    sde = f"; SDE: {quality(by_sampler(row, 'SDE'))}" if by_sampler(row, "SDE") else ""
    return f"2M: {quality(row)}{sde}; held-out loss {row['heldout_loss']:.4f}"


def format_row(row):
    return (f"{row['recipe']:<14} seed {row['seed']} {row['minutes']:>4} min ({row['train_s']:.0f} s, "
            f"{row['images']} images): {format_quality(row)}")


def _span(values, fmt):
    low, high = min(values), max(values)
    return fmt.format(low) if fmt.format(low) == fmt.format(high) else f"{fmt.format(low)}-{fmt.format(high)}"


QUALITY_HEAD = ["confident (>= 0.9)", "classes (min-max)", "Frechet / floor"]
SDE_HEAD = ["SDE: confident", "SDE: classes", "SDE: Frechet / floor"]


def quality_cells(ms):
    """The three quality cells of one sampler's measurements ``ms`` (one per seed): ranges over them."""
    return [f"{_span([100 * m['confident'] for m in ms], '{:.0f}')}%",
            f"{100 * min(m['class_min'] for m in ms):.0f}-{100 * max(m['class_max'] for m in ms):.0f}%",
            f"{_span([m['frechet'] / m['frechet_floor'] for m in ms], '{:.1f}')}x"]


def table(results, recipes, marks):
    """One line per recipe and mark; the SDE sampler's columns where the rows have them."""
    sde = any(by_sampler(r, "SDE") for r in results)
    head = ["recipe", "minutes", "seeds", "images"] + QUALITY_HEAD + (SDE_HEAD if sde else [])
    lines = ["| " + " | ".join(head + ["held-out loss"]) + " |", "|---" * (len(head) + 1) + "|"]
    for name in recipes:
        for minutes in marks:
            rows = [r for r in results if r["recipe"] == name and r["minutes"] == minutes]
            if not rows:
                continue
            cells = [name, str(minutes), str(len(rows)), _span([r["images"] for r in rows], "{:,}")] + quality_cells(rows)
            if sde:
                sde_rows = [by_sampler(r, "SDE") for r in rows]
                cells += quality_cells(sde_rows) if all(sde_rows) else ["-"] * 3
            lines.append("| " + " | ".join(cells + [_span([r["heldout_loss"] for r in rows], "{:.4f}")]) + " |")
    return "\n".join(lines)


def plot(results, recipes, path, machine):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_conf, ax_fid) = plt.subplots(1, 2, figsize=(10, 3.8))
    colors = {}  # one colour per recipe, both samplers
    for name in recipes:
        rows = sorted((r for r in results if r["recipe"] == name), key=lambda r: r["minutes"])
        if not rows:
            continue
        for sampler, style in (("2M", "o-"), ("SDE", "s--")):  # solid: DPM-Solver++(2M); dashed: its SDE
            measured = [(r["minutes"], by_sampler(r, sampler)) for r in rows if by_sampler(r, sampler)]
            minutes = sorted({m for m, _ in measured})
            if not minutes:
                continue
            for ax, value in ((ax_conf, lambda m: 100 * m["confident"]),
                              (ax_fid, lambda m: m["frechet"] / m["frechet_floor"])):
                per_mark = [[value(q) for m, q in measured if m == mark] for mark in minutes]
                line, = ax.plot(minutes, [sum(v) / len(v) for v in per_mark], style, label=f"{name}, {sampler}",
                                color=colors.setdefault(name, f"C{len(colors)}"))
                ax.fill_between(minutes, [min(v) for v in per_mark], [max(v) for v in per_mark],
                                color=line.get_color(), alpha=0.2)
    ax_conf.axhline(90, color="gray", ls="--", lw=1)
    ax_conf.set(xscale="log", xlabel="training minutes (log scale)", ylabel="% of samples classified >= 0.9",
                title="Is it clearly a digit?")
    ax_fid.axhline(2, color="gray", ls="--", lw=1)
    ax_fid.set(xscale="log", yscale="log", xlabel="training minutes (log scale)",
               ylabel="Frechet distance / real-vs-real floor", title="How close to real digits?")
    all_marks = sorted({r["minutes"] for r in results})
    plain = matplotlib.ticker.FormatStrFormatter("%g")  # 4 and 40, not 4x10^0 and 4x10^1
    for ax in (ax_conf, ax_fid):
        ax.set_xticks(all_marks, [str(m) for m in all_marks])
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.grid(alpha=0.3)
    ax_fid.yaxis.set_major_formatter(plain)

    def minor_label(y, pos):  # over more than a decade only 2 and 5 (20, 50, ...): 6, 7, 8, 9 would crowd
        low, high = ax_fid.get_ylim()
        mantissa = round(y / 10 ** math.floor(math.log10(y)))
        return f"{y:g}" if high / low <= 10 or mantissa in (2, 5) else ""

    ax_fid.yaxis.set_minor_formatter(matplotlib.ticker.FuncFormatter(minor_label))
    ax_conf.legend(fontsize=7)
    fig.suptitle(machine, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipes", nargs="+", choices=sorted(RECIPES), default=list(DEFAULT_RECIPES))
    parser.add_argument("--minutes", nargs="+", type=float, default=[1, 2, 3, 5, 10, 20],
                        help="marks at which each recipe is measured (its own training minutes)")
    parser.add_argument("--until", nargs="+", default=[], metavar="RECIPE=MINUTES",
                        help="stop these recipes at an earlier mark, e.g. ours-small=10 (a screening run)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0], help="repeats; the table gives ranges")
    parser.add_argument("--slice", type=float, default=60, help="seconds each recipe trains per turn")
    parser.add_argument("--samples", type=int, default=512, help="samples per measurement (and real digits)")
    parser.add_argument("--report", action="store_true",
                        help="train nothing: the table and plot of every row in --out/quality_curve.json")
    parser.add_argument("--shipped", action="store_true",
                        help="train nothing: measure the shipped model (digits_unet.safetensors) the same way")
    parser.add_argument("--machine", default=None, help="the plot's caption (default: threads, torch, bf16)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"),
                        help="folder of quality_curve.json (rows already there are not measured again) and .png")
    args = parser.parse_args()
    marks = [int(m) if m == int(m) else m for m in sorted(args.minutes)]
    recipes = list(args.recipes)
    machine = args.machine or (f"{torch.get_num_threads()} thread(s), torch {torch.__version__.split('+')[0]}, "
                               f"{'native bf16' if cpu_has_native_bf16() else 'no native bf16'}")
    if args.report:
        results = json.loads((args.out / "quality_curve.json").read_text())
        recipes = list(dict.fromkeys(r["recipe"] for r in results))
        marks = sorted({r["minutes"] for r in results})
        print(table(results, recipes, marks))
        plot(results, recipes, args.out / "quality_curve.png", machine)
        return
    if args.shipped:
        model, _ = load_pretrained()
        row = measure(model, args.samples, DigitsDataset())
        print(f"the shipped model ({args.samples} samples): {format_quality(row)}")
        return
    for name in [r for r in recipes if RECIPES[r] != "seed" and RECIPES[r]["mixed_precision"] == "bf16"]:
        if not cpu_has_native_bf16():
            recipes.remove(name)
            print(f"{name}: skipped, this CPU has no native bf16 (emulated bf16 is slower than float32)")
    if not recipes:
        sys.exit("no recipe left to run")
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"{torch.get_num_threads()} threads; recipes {', '.join(recipes)}; marks {marks} min; seeds {args.seeds}; "
          f"{args.samples} samples per mark and sampler (DPM-Solver++(2M) and its SDE, 20 steps)\n", flush=True)
    until = {name: float(minutes) for name, minutes in (item.split("=") for item in args.until)}
    results = run_curve(recipes, marks, args.seeds, args.slice, args.samples, args.out, until)
    print("\n" + table(results, recipes, marks))
    plot(results, recipes, args.out / "quality_curve.png", machine)
    print(f"\nwrote {args.out / 'quality_curve.json'} and {args.out / 'quality_curve.png'}")


if __name__ == "__main__":
    main()
