"""The command line: train the course's UNet, export its EMA weights.

    python -m ddpm_helpers train --minutes 10 --out runs/digits
    python -m ddpm_helpers train --minutes 10 --out runs/digits --resume     # continue
    python -m ddpm_helpers export runs/digits/checkpoint.pt ddpm_helpers/weights/digits_unet.safetensors

``train`` writes into --out: checkpoint.pt (resumable; saved every 2 minutes, at the end
and on Ctrl-C), loss.png, samples.png (DDIM, EMA weights) and train_log.json.
"""

import argparse
import json
import math
import os
import platform
import sys
from dataclasses import asdict
from pathlib import Path

from .config import QUICK, quick


def _channels(text):
    try:
        widths = tuple(int(w) for w in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--channels {text!r}: give comma-separated ints, e.g. 64,128,256")
    return widths


def _parser():
    parser = argparse.ArgumentParser(prog="python -m ddpm_helpers", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train", help="train the UNet on a dataset (default: the embedded digits)",
                                description="Train the default UNet with the seed's algorithm; write "
                                "checkpoint.pt, loss.png, samples.png and train_log.json into --out.")
    train.add_argument("--minutes", type=float, help="stop after this many minutes (default: 10, "
                       "unless --steps is given)")
    train.add_argument("--steps", type=int, help="stop after this many optimizer steps in total")
    train.add_argument("--batch-size", type=int, default=quick(64, 16), help="images per step (default %(default)s)")
    train.add_argument("--lr", type=float, default=1e-3, help="AdamW peak learning rate (default %(default)s)")
    train.add_argument("--out", type=Path, default=Path("runs/digits"), help="output folder (default %(default)s)")
    train.add_argument("--resume", action="store_true", help="continue from --out/checkpoint.pt")
    train.add_argument("--seed", type=int, default=0, help="seed of every random draw (default %(default)s)")
    train.add_argument("--dataset", default="digits", help="'digits' (embedded, offline), a hub name "
                       "such as 'mnist', or a folder of images (default %(default)s)")
    train.add_argument("--num-images", type=int, default=quick(None, 256),
                       help="digits to render (default: 20000)")
    train.add_argument("--channels", type=_channels, help="UNet widths per level, e.g. 32,64 for a small "
                       "fast model (default: the UNet's 64,128,256)")
    train.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: CUDA if available, else CPU)")
    train.add_argument("--samples", type=int, default=quick(64, 16), help="images in samples.png (default %(default)s)")
    train.add_argument("--sample-steps", type=int, default=quick(50, 5), help="DDIM steps (default %(default)s)")
    export = commands.add_parser("export", help="write a checkpoint's EMA weights to a .safetensors file",
                                 description="Export the EMA weights of a training checkpoint to a compact "
                                 ".safetensors file that load_pretrained() reads.")
    export.add_argument("checkpoint", type=Path, help="a checkpoint.pt written by train")
    export.add_argument("out", type=Path, help="the .safetensors file to write")
    export.add_argument("--dtype", choices=("auto", "fp32", "fp16"), default="auto",
                        help="storage precision; auto: fp16 when fp32 would exceed 8 MB (default %(default)s)")
    return parser


def _machine_info(device):
    import torch

    from .unet import autocast_context

    bf16 = isinstance(autocast_context(device), torch.autocast)
    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "python": platform.python_version(), "device": str(device),
            "dtype": "bf16 autocast, fp32 weights" if bf16 else "fp32", "quick_mode": QUICK}


def _write_outputs(args, state, device):
    import matplotlib.pyplot as plt
    import torch

    from .plotting import plot_losses, show_images
    from .sampling import sample
    from .scheduler import DDIMScheduler
    from .checkpoints import portable_scheduler_config

    axes = plot_losses(state)
    axes[0].figure.tight_layout()
    axes[0].figure.savefig(args.out / "loss.png", dpi=120)
    log = {"config": asdict(state.config), "model_config": _jsonable(asdict(state.model.config)),
           "step": state.step, "images_seen": state.images_seen, "wall_time_s": round(state.elapsed, 1),
           "images_per_s": round(state.images_seen / max(state.elapsed, 1e-9), 1),
           "final_loss_smoothed": state.smoothed_loss, "loss_by_timestep": state.loss_by_timestep,
           "interrupted": state.interrupted, "machine": _machine_info(device)}
    (args.out / "train_log.json").write_text(json.dumps(log, indent=2, default=str) + "\n")
    print(f"Sampling {args.samples} images with DDIM, {args.sample_steps} steps, EMA weights ...")
    scheduler = DDIMScheduler(**portable_scheduler_config(state.scheduler))
    images = sample(state.ema_model, scheduler, args.samples, num_inference_steps=args.sample_steps,
                    generator=torch.Generator().manual_seed(args.seed), device=device, mixed_precision=True)
    ax = show_images(images, nrow=int(math.ceil(math.sqrt(args.samples))),
                     title=f"step {state.step}, {state.images_seen} images seen")
    ax.figure.savefig(args.out / "samples.png", dpi=120, bbox_inches="tight")
    plt.close("all")


def _jsonable(value):
    return json.loads(json.dumps(value, default=str))


def _train(args, parser):
    import torch

    from .config import default_device
    from .data import load_dataset
    from .training import TrainConfig, train
    from .unet import UNet

    checkpoint = args.out / "checkpoint.pt"
    if checkpoint.exists() and not args.resume:
        parser.error(f"{checkpoint} exists: pass --resume to continue it, or choose another --out.")
    minutes, steps = args.minutes, args.steps
    if minutes is None and steps is None:
        minutes, steps = quick(10, None), quick(None, 3)
    device = default_device(args.device)
    dataset = load_dataset(args.dataset, n=args.num_images, seed=args.seed)
    channels, size = dataset[0]["images"].shape[0], dataset[0]["images"].shape[-1]
    widths = {} if args.channels is None else {"block_out_channels": args.channels,
                                               "norm_num_groups": math.gcd(32, *args.channels),
                                               "attention_head_dim": math.gcd(16, args.channels[-1])}
    torch.manual_seed(args.seed)
    model = UNet(in_channels=channels, sample_size=size, **widths)
    config = TrainConfig(num_steps=steps, batch_size=args.batch_size, learning_rate=args.lr, seed=args.seed,
                         time_budget_s=None if minutes is None else minutes * 60, device=str(device))
    limits = ([f"{steps} steps"] if steps else []) + ([f"{minutes:g} minutes"] if minutes else [])
    print(f"Training on {len(dataset)} images, {device}, {_machine_info(device)['dtype']}, for "
          f"{' or '.join(limits)}. Ctrl-C stops and saves.")
    state = train(model, dataset, config, checkpoint_path=checkpoint, resume=args.resume)
    print(f"{'Interrupted' if state.interrupted else 'Done'} at step {state.step}: {state.images_seen} images "
          f"in {state.elapsed:.0f} s ({state.images_seen / max(state.elapsed, 1e-9):.0f} images/s), smoothed "
          f"loss {state.smoothed_loss:.4f}. Checkpoint: {checkpoint}")
    _write_outputs(args, state, device)
    print(f"Wrote {args.out}/loss.png, samples.png, train_log.json.")


def main(argv=None):
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "export":
        from .checkpoints import export_weights

        path = export_weights(args.checkpoint, args.out, dtype=args.dtype)
        print(f"Wrote {path} ({path.stat().st_size / 1e6:.1f} MB). Load it with load_pretrained({str(path)!r}).")
        return 0
    import matplotlib

    matplotlib.use("Agg")  # files only, no window
    try:
        _train(args, parser)
    except KeyboardInterrupt:
        print("\nAborted; the checkpoint holds the last saved step. Continue with --resume.", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
