"""One process of the multi-process training test (tests/test_distributed.py, benchmarks/gpu_check.py).

    OMP_NUM_THREADS=1 python -m torch.distributed.run --standalone --nproc_per_node 2 \\
        tests/distributed_worker.py OUT [--device cpu|cuda] [--backend gloo]

Every process runs the same three train() calls: 6 steps straight, then 3 steps and a resume
to 6 in a second folder. Each process builds its model from a different seed, so the run only
matches a one-process run if DDP starts every copy from rank 0's weights. Each writes what it
ended with to OUT/rank<r>.pt (test output, not the trainer's); ``reference_run`` is the same
training in one process.
"""

import argparse
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ddpm_helpers import training  # noqa: E402
from ddpm_helpers.data import DigitsDataset  # noqa: E402
from ddpm_helpers.recipes import build_unet  # noqa: E402

CONFIG = dict(num_steps=6, batch_size=8, warmup_steps=2, log_every=2, checkpoint_every=2, checkpoint_every_s=None,
              mixed_precision="no")
INIT_SEED = 100  # process r builds its model from seed INIT_SEED + r


def dataset():
    return DigitsDataset(n=40, image_size=16)  # 5 steps per epoch at batch 8: the run crosses an epoch


def model(seed):
    torch.manual_seed(seed)
    return build_unet(sample_size=16, block_out_channels=(8, 16), norm_num_groups=4)


def snapshot(state):
    return {"params": {name: p.detach().cpu().clone() for name, p in state.model.named_parameters()},
            "ema": {name: t.cpu().clone() for name, t in state.ema.shadow.items()}, "losses": list(state.losses),
            "step": state.step, "num_processes": state.num_processes, "is_main_process": state.is_main_process}


def snapshot_of_init():
    return {name: p.detach().clone() for name, p in model(INIT_SEED).named_parameters()}


def reference_run(device="cpu"):
    """The same 6 steps in one process, from rank 0's initial weights."""
    config = training.TrainConfig(**CONFIG, device=device)
    return snapshot(training.train(model(INIT_SEED), dataset(), config, progress=False))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--backend", help="set up torch.distributed with this backend first (gloo: two "
                        "processes on one GPU, which NCCL refuses)")
    args = parser.parse_args()
    if args.backend:
        torch.distributed.init_process_group(args.backend)
    rank = int(os.environ["RANK"])
    saves = []
    save = training.save_checkpoint

    def counting_save(path, state):
        saves.append(str(path))
        save(path, state)

    training.save_checkpoint = counting_save
    config = dict(CONFIG, device=args.device)
    data = dataset()
    straight = training.train(model(INIT_SEED + rank), data, training.TrainConfig(**config),
                              checkpoint_path=args.out / "straight" / "checkpoint.pt", progress=True)
    resumed_path = args.out / "resumed" / "checkpoint.pt"
    training.train(model(INIT_SEED + rank), data, training.TrainConfig(**{**config, "num_steps": 3}),
                   checkpoint_path=resumed_path, progress=False)
    resumed = training.train(model(INIT_SEED + rank), data, training.TrainConfig(**config),
                             checkpoint_path=resumed_path, progress=False)
    torch.save({"straight": snapshot(straight), "resumed": snapshot(resumed), "saves": saves},
               args.out / f"rank{rank}.pt")


if __name__ == "__main__":
    main()
