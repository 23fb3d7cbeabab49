"""The command line: train the course's UNet, export its EMA weights.

    python -m ddpm_helpers train --minutes 10 --out runs/digits
    python -m ddpm_helpers train --minutes 10 --out runs/digits --resume     # continue
    python -m ddpm_helpers train --conditional --out runs/digits_by_label     # class-conditional digits
    python -m ddpm_helpers train --recipe seed                                # the seed's butterflies (hub)
    python -m ddpm_helpers export runs/digits/checkpoint.pt ddpm_helpers/weights/digits_unet.safetensors
    torchrun --standalone --nproc_per_node 2 -m ddpm_helpers train ...        # several processes or GPUs
    accelerate launch -m ddpm_helpers train ...                               # as `accelerate config` says

``train`` writes into --out: checkpoint.pt (resumable; saved every 2 minutes, at the end
and on Ctrl-C), loss.png, samples.png (DDIM, EMA weights) and train_log.json; the seed
recipe also a diffusers-format pipeline/ folder. Any error prints one line and exits with
status 2 (--debug shows the traceback).
"""

import argparse
import json
import math
import os
import platform
import sys
import traceback
import warnings
from dataclasses import asdict
from pathlib import Path

from .config import QUICK, quick

PROG = "python -m ddpm_helpers"


class CommandLineError(Exception):
    """A bad command line: printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise CommandLineError(f"{self.prog}: {message} (see {self.prog} --help)")


def _number(kind, low=None, low_open=False, high=None, high_open=False, allowed=""):
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {allowed}, got {text!r}") from None
        if not math.isfinite(value) or (low is not None and (value <= low if low_open else value < low)) or (
                high is not None and (value >= high if high_open else value > high)):
            raise argparse.ArgumentTypeError(f"must be {allowed}, got {text}")
        return value
    return parse


_positive_int = _number(int, low=1, allowed="a positive whole number")
_positive_real = _number(float, low=0, low_open=True, allowed="a positive number")


def _or_off(parse):
    """A number read by ``parse``, or "off", the seed's way (--min-snr-gamma, --timestep-logit-std, --lr-cooldown)."""
    def parse_or_off(text):
        return "off" if text.strip().lower() == "off" else parse(text)
    return parse_or_off


_real_or_off = _or_off(_number(float, low=0, low_open=True, allowed='a positive number or "off"'))
_share_or_off = _or_off(_number(float, low=0, low_open=True, high=1, allowed='a number in (0, 1] or "off"'))


def _channels(text):
    try:
        widths = tuple(int(w) for w in text.split(","))
    except ValueError:
        widths = ()
    if not widths or min(widths) < 1:
        raise argparse.ArgumentTypeError(f"must be comma-separated positive ints such as 32,48,64, got {text!r}")
    return widths


def _parser():
    debug = _Parser(add_help=False)
    debug.add_argument("--debug", action="store_true", help="on an error, show the Python traceback")
    parser = _Parser(prog=PROG, description=__doc__.split("\n\n")[0], parents=[debug])
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    train = commands.add_parser("train", parents=[debug], help="train the UNet (default: on the embedded digits)",
                                description="Train the default UNet with the seed's algorithm; write "
                                "checkpoint.pt, loss.png, samples.png and train_log.json into --out.")
    limits = train.add_mutually_exclusive_group()
    limits.add_argument("--steps", type=_positive_int, help="stop after this many optimizer steps in total")
    limits.add_argument("--epochs", type=_positive_int, help="stop after this many passes over the dataset")
    train.add_argument("--minutes", type=_positive_real, help="stop after this many minutes (default: 10, "
                       "unless --steps or --epochs is given)")
    train.add_argument("--recipe", choices=("seed",), help="seed: the seed's task, diffusers' unit 1 model on "
                       "the Smithsonian butterflies at 32x32 RGB, AdamW 4e-4, batch 64, 30 epochs (needs the hub)")
    train.add_argument("--conditional", action="store_true", help="class-conditional UNet (num_class_embeds = "
                       "classes + 1; 11 for the digits) trained with label dropout")
    train.add_argument("--label-dropout", type=_number(float, low=0, high=1, high_open=True,
                                                       allowed="a number in [0, 1)"), default=0.1,
                       help="with --conditional: share of labels replaced by 'no label' (default %(default)s)")
    train.add_argument("--min-snr-gamma", type=_real_or_off,
                       help="weight each image's loss by min(SNR_t, gamma) / SNR_t (Hang et al. 2023); 'off': the "
                       "seed's plain mean (default: 5, which learned faster in benchmarks/bench_quality_curve.py; "
                       "the seed recipe: off; --resume: the checkpoint's)")
    train.add_argument("--timestep-logit-std", type=_real_or_off,
                       help="draw t = T * sigmoid(s * z), z ~ N(0, 1), with s this (logit-normal, Esser et al. "
                       "2024); 'off': uniform t, the seed's (default: 1, whose samples were clearer in "
                       "benchmarks/bench_screen.py; the seed recipe: off; --resume: the checkpoint's)")
    train.add_argument("--lr-cooldown", type=_share_or_off,
                       help="let the lr fall linearly to 0 over this last share of the run, e.g. 1: the whole run "
                       "(default: off, a constant lr, as in the seed; --resume: the checkpoint's)")
    train.add_argument("--batch-size", type=_positive_int, help="images per step, all processes together "
                       f"(default {quick(32, 16)}; the seed recipe: 64)")
    train.add_argument("--lr", type=_positive_real, help="AdamW peak learning rate (default 1e-3; seed recipe 4e-4)")
    train.add_argument("--out", type=Path, help="output folder (default runs/digits; seed recipe runs/seed)")
    train.add_argument("--resume", action="store_true", help="continue the run in --out/checkpoint.pt")
    train.add_argument("--init-from", type=Path, help="start a new run from exported weights (a .safetensors "
                       "file from export); with --conditional the label embedding starts at zero, so training "
                       "begins from the unconditional model")
    train.add_argument("--seed", type=_number(int, low=0, allowed="a whole number >= 0"), default=0,
                       help="seed of every random draw (default %(default)s)")
    train.add_argument("--dataset", help="'digits' (embedded, offline), a hub name such as 'mnist', or a folder "
                       "of images (default: digits; seed recipe: huggan/smithsonian_butterflies_subset)")
    train.add_argument("--image-size", type=_positive_int, help="train at this resolution (default 32)")
    train.add_argument("--num-images", type=_positive_int, default=quick(None, 256),
                       help="digits to render (default: 20000)")
    train.add_argument("--channels", type=_channels, help="UNet widths per level, e.g. 32,64 for a small "
                       "fast model (default: the UNet's 32,48,64)")
    train.add_argument("--device", help="cpu, cuda, cuda:1, mps (default: CUDA if present, else Apple's MPS, "
                       "else the CPU)")
    train.add_argument("--mixed-precision", choices=("auto", "no", "bf16", "fp16"), default="auto",
                       help="auto: bf16 where the hardware has it, fp16 with a gradient scaler on older GPUs, "
                       "else float32 (default %(default)s)")
    train.add_argument("--samples", type=_positive_int, default=quick(64, 16),
                       help="images in samples.png (default %(default)s)")
    train.add_argument("--sample-steps", type=_positive_int, default=quick(50, 5),
                       help="DDIM steps for samples.png (default %(default)s)")
    export = commands.add_parser("export", parents=[debug], help="write a checkpoint's EMA weights to a "
                                 ".safetensors file", description="Export the EMA weights of a training checkpoint "
                                 "to a compact .safetensors file that load_pretrained() reads.")
    export.add_argument("checkpoint", type=Path, help="a checkpoint.pt written by train")
    export.add_argument("out", type=Path, help="the .safetensors file to write")
    export.add_argument("--dtype", choices=("auto", "fp32", "fp16"), default="auto",
                        help="storage precision; auto: fp16 when fp32 would exceed 8 MB (default %(default)s)")
    return parser


def _say(*args, **kwargs):
    """print, on the main process only (torchrun and accelerate launch number the processes in RANK)."""
    if os.environ.get("RANK", "0") == "0":
        print(*args, **kwargs)


def _settings(args):
    """Every train setting: the command line, else the recipe, else the course's default."""
    from .recipes import RECIPES
    from .training import TrainConfig

    recipe = RECIPES.get(args.recipe, {})
    chosen = dict(dataset=args.dataset, batch_size=args.batch_size, learning_rate=args.lr, out=args.out,
                  min_snr_gamma=args.min_snr_gamma, timestep_logit_std=args.timestep_logit_std,
                  lr_cooldown=args.lr_cooldown)
    defaults = dict(dataset="digits", batch_size=quick(TrainConfig.batch_size, 16), learning_rate=1e-3, out="runs/digits",
                    min_snr_gamma=TrainConfig.min_snr_gamma, timestep_logit_std=TrainConfig.timestep_logit_std,
                    lr_cooldown=TrainConfig.lr_cooldown)
    settings = {key: value if value is not None else recipe.get(key, defaults[key]) for key, value in chosen.items()}
    for key in ("min_snr_gamma", "timestep_logit_std", "lr_cooldown"):
        if settings[key] == "off":  # TrainConfig's spelling of the seed's way
            settings[key] = None
    settings["out"] = Path(settings["out"])
    if recipe and args.channels is not None:
        raise CommandLineError(f"--channels: the {args.recipe} recipe's model is fixed; drop --channels, or train "
                               "without --recipe")
    image_size = args.image_size or recipe.get("image_size", 32)
    unet = None if "unet" not in recipe else {**recipe["unet"], "sample_size": image_size}
    settings.update(warmup_steps=recipe.get("warmup_steps", 100), grad_clip=recipe.get("grad_clip", 1.0),
                    unet=unet, image_size=image_size)
    steps, epochs, minutes = args.steps, args.epochs, args.minutes
    if steps is None and epochs is None and minutes is None:
        epochs = recipe.get("epochs")
        minutes, steps = (quick(10, None), quick(None, 3)) if epochs is None else (None, None)
    settings.update(steps=steps, epochs=epochs, minutes=minutes)
    return settings


def _check_before_training(args, s):
    """Everything that can be checked before a minute of training is spent."""
    from ._io import check_output_path
    from .checkpoints import load_checkpoint
    from .config import default_device
    from .parallel import pick_mixed_precision
    from .training import OLDER_RUNS

    check_output_path(s["out"], "--out", folder=True)
    checkpoint = s["out"] / "checkpoint.pt"
    if checkpoint.exists() and not args.resume:
        raise CommandLineError(f"{checkpoint} exists: pass --resume to continue it, or choose another --out.")
    if args.init_from is not None and args.resume:
        raise CommandLineError("--init-from starts a new run; a resumed run's weights come from its checkpoint. "
                               "Drop --init-from to continue, or --resume to start again.")
    if args.init_from is not None and not args.init_from.is_file():
        raise CommandLineError(f"--init-from: no weights file at {str(args.init_from)!r} (write one with "
                               "`python -m ddpm_helpers export`)")
    if args.resume and not checkpoint.exists():
        raise CommandLineError(f"--resume: there is no {checkpoint} to continue; drop --resume to start a new run, "
                               "or give the --out of the run to continue.")
    if args.resume:
        saved = load_checkpoint(checkpoint)
        step = saved["step"]
        for key, older in OLDER_RUNS.items():  # not given: continue with the run's own loss weights, t and lr
            if getattr(args, key) is None:
                s[key] = saved["train_config"].get(key, older)
        if s["steps"] is not None and s["steps"] <= step:
            raise CommandLineError(f"--steps {s['steps']}: the run in {checkpoint} is already at step {step}; give "
                                   f"a larger --steps (a total, not a number of extra steps) to continue it.")
    if args.sample_steps > 1000:
        raise CommandLineError(f"--sample-steps must be at most 1000 (the number of training timesteps), "
                               f"got {args.sample_steps}")
    try:
        device = default_device(args.device, "--device")
        precision = pick_mixed_precision(args.mixed_precision, device)
    except (TypeError, ValueError) as error:
        raise CommandLineError(str(error).replace("mixed_precision", "--mixed-precision")) from None
    s["out"].mkdir(parents=True, exist_ok=True)
    return checkpoint, device, precision


def _num_classes(dataset):
    """How many classes a labelled dataset has (the digits: 10; a folder: its class subfolders)."""
    import torch

    labels = getattr(dataset, "labels", None)
    if isinstance(labels, torch.Tensor):
        return int(labels.max()) + 1
    hf, key = getattr(dataset, "hf_dataset", None), getattr(dataset, "label_key", None)
    if hf is not None and key is not None and hasattr(hf.features[key], "num_classes"):
        return hf.features[key].num_classes
    raise CommandLineError("--conditional needs a labelled dataset (the digits, or a folder with one subfolder "
                           "per class); this one has no labels.")


def _build_model(args, s, dataset):
    import torch

    from .recipes import build_unet

    torch.manual_seed(args.seed)
    if s["unet"] is not None:
        options = dict(s["unet"])
    else:
        channels, size = dataset[0]["images"].shape[0], dataset[0]["images"].shape[-1]
        options = dict(sample_size=size, in_channels=channels)
        if args.channels is not None:
            options.update(block_out_channels=args.channels, norm_num_groups=math.gcd(32, *args.channels),
                           attention_head_dim=math.gcd(16, args.channels[-1]))
    if args.conditional:
        options["num_class_embeds"] = _num_classes(dataset) + 1  # + 1: the last one means "no label"
    model = build_unet(**options)
    return model if args.init_from is None else _init_from(model, args.init_from)


def _init_from(model, path):
    """Copy the weights in ``path`` into ``model``; a label embedding they lack starts at zero (the
    conditional model then computes exactly what the unconditional one did, for every label)."""
    import torch

    from .checkpoints import load_pretrained
    from .pipeline import _load_weights

    weights = load_pretrained(path)[0].state_dict()
    labels = {name: torch.zeros_like(w) for name, w in model.state_dict().items()
              if name.startswith("class_embedding.") and name not in weights}
    try:
        return _load_weights(model, {**weights, **labels}, path)
    except ValueError as error:
        raise CommandLineError(f"--init-from: {path} is another architecture ({error}). Give the same --channels "
                               "(and --image-size) as the run that wrote it.") from None


def _train(args):
    from .data import load_dataset
    from .training import TrainConfig, train

    s = _settings(args)
    checkpoint, device, precision = _check_before_training(args, s)
    if s["dataset"] == "digits":  # rendered here: how many, from which seed
        source = dict(n=args.num_images, seed=args.seed)
    else:  # a folder or a hub dataset: the seed recipe's butterflies are RGB
        source = dict(channels=3 if args.recipe == "seed" else None)
    dataset = load_dataset(s["dataset"], image_size=s["image_size"], **source)
    model = _build_model(args, s, dataset)
    steps = s["steps"] if s["epochs"] is None else s["epochs"] * max(1, len(dataset) // s["batch_size"])
    config = TrainConfig(num_steps=steps, batch_size=s["batch_size"], learning_rate=s["learning_rate"],
                         warmup_steps=s["warmup_steps"], grad_clip=s["grad_clip"], seed=args.seed,
                         label_dropout=args.label_dropout, min_snr_gamma=s["min_snr_gamma"],
                         timestep_logit_std=s["timestep_logit_std"], lr_cooldown=s["lr_cooldown"], device=str(device),
                         mixed_precision=args.mixed_precision,
                         time_budget_s=None if s["minutes"] is None else s["minutes"] * 60)
    limits = ([f"{steps} steps"] if steps else []) + ([f"{s['minutes']:g} minutes"] if s["minutes"] else [])
    precision_text = "float32" if precision == "no" else f"{precision} mixed precision"
    _say(f"Training on {len(dataset)} images, {device}, {precision_text}, for {' or '.join(limits)}. "
         "Ctrl-C stops and saves.")
    state = train(model, dataset, config, checkpoint_path=checkpoint, resume=args.resume)
    if not state.is_main_process:
        return
    print(f"{'Interrupted' if state.interrupted else 'Done'} at step {state.step}: {state.images_seen} images "
          f"in {state.elapsed:.0f} s ({state.images_seen / max(state.elapsed, 1e-9):.0f} images/s), smoothed "
          f"loss {state.smoothed_loss:.4f}. Checkpoint: {checkpoint}")
    _write_outputs(args, s, state, device, precision)


def _machine_info(device, precision):
    import torch

    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "python": platform.python_version(), "device": str(device),
            "dtype": "fp32" if precision == "no" else f"{precision} autocast, fp32 weights", "quick_mode": QUICK}


def _write_outputs(args, s, state, device, precision):
    import matplotlib.pyplot as plt
    import torch

    from .checkpoints import _model_config, portable_scheduler_config
    from .plotting import plot_losses, show_images
    from .sampling import sample
    from .scheduler import DDIMScheduler

    out = s["out"]
    axes = plot_losses(state)
    axes[0].figure.tight_layout()
    axes[0].figure.savefig(out / "loss.png", dpi=120)
    log = {"config": asdict(state.config), "model_config": _model_config(state.model), "recipe": args.recipe,
           "dataset": s["dataset"], "init_from": args.init_from, "step": state.step, "images_seen": state.images_seen,
           "wall_time_s": round(state.elapsed, 1), "num_processes": state.num_processes,
           "images_per_s": round(state.images_seen / max(state.elapsed, 1e-9), 1),
           "final_loss_smoothed": state.smoothed_loss, "loss_by_timestep": state.loss_by_timestep,
           "interrupted": state.interrupted, "machine": _machine_info(device, precision)}
    (out / "train_log.json").write_text(json.dumps(log, indent=2, default=str) + "\n")
    print(f"Sampling {args.samples} images with DDIM, {args.sample_steps} steps, EMA weights ...")
    model = state.ema_model
    conditional = getattr(model.config, "num_class_embeds", None) is not None
    scheduler = DDIMScheduler(**portable_scheduler_config(state.scheduler))
    # a conditional model draws label i mod K for image i, so column k of a K-wide grid is class k
    labels = torch.arange(args.samples) % (model.config.num_class_embeds - 1) if conditional else None
    images = sample(model, scheduler, args.samples, num_inference_steps=args.sample_steps,
                    generator=torch.Generator().manual_seed(args.seed), device=device,
                    mixed_precision=precision != "no", class_labels=labels)
    nrow = model.config.num_class_embeds - 1 if conditional else int(math.ceil(math.sqrt(args.samples)))
    ax = show_images(images, nrow=nrow, title=f"step {state.step}, {state.images_seen} images seen"
                     + (" (column k: label k)" if conditional else ""))
    ax.figure.savefig(out / "samples.png", dpi=120, bbox_inches="tight")
    plt.close("all")
    written = "loss.png, samples.png, train_log.json"
    if args.recipe == "seed":
        written += _save_pipeline(out / "pipeline", model, state.scheduler)
    print(f"Wrote {out}/{written}.")


def _save_pipeline(folder, model, scheduler):
    from .pipeline import save_pipeline

    save_pipeline(folder, model, scheduler)
    return ", pipeline/ (diffusers format: DDPMPipeline.from_pretrained)"


def _export(args):
    from .checkpoints import export_weights

    path = export_weights(args.checkpoint, args.out, dtype=args.dtype)
    print(f"Wrote {path} ({path.stat().st_size / 1e6:.1f} MB). Load it with load_pretrained({str(path)!r}).")


def _one_line(error):
    text = " ".join(str(error).split()) or type(error).__name__
    known = (CommandLineError, ValueError, TypeError, OSError, ConnectionError, NotImplementedError,
             FloatingPointError)
    return text if isinstance(error, known) else f"{type(error).__name__}: {text} (--debug shows the traceback)"


def main(argv=None):
    """Run the command line with ``argv`` (default: sys.argv[1:]); returns the exit status."""
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    debug = "--debug" in argv
    show = warnings.showwarning
    warnings.showwarning = lambda message, category, *rest: print(f"warning: {message}", file=sys.stderr)
    try:
        args = _parser().parse_args(argv)
        if args.command == "export":
            _export(args)
        else:
            import matplotlib

            matplotlib.use("Agg")  # files only, no window
            _train(args)
        return 0
    except KeyboardInterrupt:
        print("\nAborted; the checkpoint holds the last saved step. Continue with --resume.", file=sys.stderr)
        return 130
    except SystemExit as exit:  # --help
        return exit.code
    except Exception as error:
        if debug:
            traceback.print_exc()
        message = _one_line(error)
        prefix = "" if message.startswith(PROG) else f"{PROG}: error: "
        print(f"{prefix}{message}", file=sys.stderr)
        return 2
    finally:
        warnings.showwarning = show


if __name__ == "__main__":
    sys.exit(main())
