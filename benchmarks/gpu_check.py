"""The rows of benchmarks/gpu_check.sh, one per call: ``python benchmarks/gpu_check.py ROW``.

Each row prints what it measures; its last line, ``RESULT: ...``, goes into the table.
``GPU_CHECK_DRY_RUN=1`` runs every row at tiny sizes on the CPU, to check the script itself
(its numbers mean nothing then).

    notebooks        every notebook under nbval (quick mode) on this machine's default device
    recipe           the seed recipe (--recipe seed) for one epoch on a synthetic RGB folder
    throughput-default, throughput-seed   training images/s of the course's UNet and the seed's model
    sampling         64 images with DDPM (1000 steps) and DPM-Solver++ (20 steps), shipped digits model
    two-processes    train() in two processes (torchrun) against one: equal weights?
"""

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
DRY = os.environ.get("GPU_CHECK_DRY_RUN", "0") not in ("", "0")
DEVICE = "cpu" if DRY else ("cuda" if torch.cuda.is_available() else "cpu")


def result(text):
    print(f"RESULT: {text}", flush=True)


def synchronize():
    if DEVICE == "cuda":
        torch.cuda.synchronize()


def run(command, **kwargs):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    process = subprocess.run(command, cwd=ROOT, env={**env, **kwargs.pop("env", {})}, capture_output=True,
                             text=True, **kwargs)
    sys.stdout.write(process.stdout[-4000:])
    sys.stderr.write(process.stderr[-4000:])
    return process


def notebooks():
    chosen = os.environ.get("GPU_CHECK_NOTEBOOKS") or ("notebooks/01_forward_noising.ipynb" if DRY else "notebooks")
    env = {"DDPM_QUICK": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "MPLBACKEND": "Agg"}
    process = run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval-lax", *chosen.split()],
                  env=env)
    summary = (process.stdout.strip().splitlines() or ["no output"])[-1].strip("= ")
    result(f"{summary} ({chosen}, device {DEVICE})")
    return process.returncode


def synthetic_rgb_folder(folder, n):
    """n RGB images 48x48: smooth colour gradients with a square, so they are not pure noise."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(0)
    ramp = torch.linspace(0, 1, 48)
    for i in range(n):
        colour = torch.rand(3, 1, 1, generator=generator)
        image = colour * ramp[None, :, None] + (1 - colour) * ramp[None, None, :]  # (3, 48, 48)
        x, y = torch.randint(0, 32, (2,), generator=generator).tolist()
        image[:, y:y + 16, x:x + 16] = 1 - colour
        Image.fromarray((image.permute(1, 2, 0) * 255).byte().numpy()).save(folder / f"{i:04d}.png")
    return folder


def recipe():
    with tempfile.TemporaryDirectory() as tmp:
        images = synthetic_rgb_folder(Path(tmp) / "images", 16 if DRY else 1000)
        out = Path(tmp) / "run"
        size = ["--steps", "2", "--batch-size", "4", "--samples", "2", "--sample-steps", "2"] if DRY else \
            ["--epochs", "1", "--samples", "16", "--sample-steps", "20"]
        start = time.perf_counter()
        process = run([sys.executable, "-m", "ddpm_helpers", "train", "--recipe", "seed", "--dataset", str(images),
                       "--out", str(out), "--device", DEVICE, *size])
        if process.returncode:
            result(f"FAILED: {(process.stderr.strip().splitlines() or ['?'])[-1]}")
            return process.returncode
        log = json.loads((out / "train_log.json").read_text())
        pipeline = "pipeline/ written" if (out / "pipeline").is_dir() else "no pipeline/ (save_pipeline missing)"
        result(f"{log['step']} steps, {log['images_per_s']:.0f} images/s, loss {log['final_loss_smoothed']:.3f}, "
               f"{time.perf_counter() - start:.0f} s in all; {pipeline}")
    return 0


class RandomImages:
    """A dataset of random images in [-1, 1] held as one tensor: only the speed is measured."""

    def __init__(self, n, channels, size):
        self.images = torch.rand(n, channels, size, size, generator=torch.Generator().manual_seed(0)) * 2 - 1

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return {"images": self.images[i]}


def throughput(which):
    from ddpm_helpers.recipes import SEED_UNET, build_unet
    from ddpm_helpers.training import TrainConfig, train
    from ddpm_helpers.unet import UNet

    note = ""
    if which == "default":
        model, data = UNet(), RandomImages(2048, 1, 32)
    else:
        data = RandomImages(2048, 3, 32)
        try:
            model = build_unet(**SEED_UNET)
        except NotImplementedError:
            from diffusers import UNet2DModel

            model, note = UNet2DModel(**SEED_UNET), " (diffusers' UNet2DModel: our UNet cannot build it yet)"
    batch, warmup, timed = (4, 1, 2) if DRY else (64, 10, 40)
    stamps = []

    def stamp(state):
        synchronize()
        stamps.append(time.perf_counter())

    config = TrainConfig(num_steps=warmup + timed, batch_size=batch, log_every=1, checkpoint_every_s=None,
                         device=DEVICE)
    state = train(model, data, config, callbacks=[stamp], progress=False)
    images_per_s = batch * timed / (stamps[-1] - stamps[warmup - 1])
    from ddpm_helpers.parallel import pick_mixed_precision

    precision = pick_mixed_precision("auto", torch.device(DEVICE))
    result(f"{images_per_s:.0f} images/s at batch {batch}, {precision} precision, {DEVICE}{note}; "
           f"loss {state.smoothed_loss:.3f}")
    return 0


def sampling():
    from ddpm_helpers.dpm_solver import DPMSolverMultistepScheduler
    from ddpm_helpers.sampling import sample
    from ddpm_helpers.scheduler import DDPMScheduler
    from ddpm_helpers.training import load_pretrained

    model, scheduler_config = load_pretrained(device=DEVICE)
    n, rows = (4, [("DDPM", DDPMScheduler, 10), ("DPM-Solver++", DPMSolverMultistepScheduler, 2)]) if DRY else \
        (64, [("DDPM", DDPMScheduler, 1000), ("DPM-Solver++", DPMSolverMultistepScheduler, 20)])
    times = []
    for name, scheduler_class, steps in rows:
        scheduler = scheduler_class(**scheduler_config)
        sample(model, scheduler, n, num_inference_steps=2, device=DEVICE, progress=False)  # warm-up
        synchronize()
        start = time.perf_counter()
        sample(model, scheduler, n, num_inference_steps=steps, generator=torch.Generator().manual_seed(0),
               device=DEVICE, progress=False, mixed_precision=True)
        synchronize()
        times.append(f"{name}-{steps} {time.perf_counter() - start:.2f} s")
    result(f"{n} images: {', '.join(times)} ({DEVICE}, mixed precision where the hardware has it)")
    return 0


def two_processes():
    import distributed_worker

    gpus = torch.cuda.device_count() if DEVICE == "cuda" else 0
    backend = ["--backend", "gloo"] if gpus == 1 else []  # NCCL refuses two processes on one GPU
    with tempfile.TemporaryDirectory() as tmp:
        process = run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                       str(ROOT / "tests" / "distributed_worker.py"), tmp, "--device", DEVICE, *backend],
                      env={"OMP_NUM_THREADS": "1"})
        if process.returncode:
            result(f"FAILED: {(process.stderr.strip().splitlines() or ['?'])[-1]}")
            return process.returncode
        ranks = [torch.load(Path(tmp) / f"rank{r}.pt", weights_only=True)["straight"] for r in (0, 1)]
    one = distributed_worker.reference_run(DEVICE)

    def diff(a, b):
        return max((a[k] - b[k]).abs().max().item() for k in a)

    how = f"{DEVICE}, {'gloo' if backend or DEVICE == 'cpu' else 'nccl'}"
    result(f"max |rank 0 - rank 1| = {diff(ranks[0]['params'], ranks[1]['params']):.1e}, max |2 processes - 1| = "
           f"{diff(ranks[0]['params'], one['params']):.1e} after 6 steps ({how})")
    return 0


ROWS = {"notebooks": notebooks, "recipe": recipe, "throughput-default": lambda: throughput("default"),
        "throughput-seed": lambda: throughput("seed"), "sampling": sampling, "two-processes": two_processes}

if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in ROWS:
        sys.exit(f"usage: python benchmarks/gpu_check.py {{{','.join(ROWS)}}}")
    sys.exit(ROWS[sys.argv[1]]())
