"""Seconds for lesson 8's slow cells on this machine, fp32 (and bf16 autocast where the CPU has it).

    python benchmarks/bench_lesson8.py --rounds 2
    python benchmarks/bench_lesson8.py --rounds 1 --steps-scale 0.01     # a quick check that it runs

Rows:
- unit 1's `DDPMPipeline(unet=model, scheduler=noise_scheduler)()`: the shipped digits model in
  diffusers' pipeline, one image, all 1000 DDPM steps (lesson 8, section 5);
- lesson 8's pipeline comparison (section 3): diffusers' DDPM-50 and DDIM-20 pipelines and our
  sample() with the same samplers, 8 images each;
- the hub cell (section 7): 8 images with 20 DDIM steps from a UNet of google/ddpm-cifar10-32's
  config (35.7M parameters) with random weights: the same arithmetic as the downloaded model,
  without the download, so it runs offline. On a GPU add --device cuda.

Each row is timed in turns, round after round, and gives its fastest round (the CPU's speed
drifts with turbo and other tenants).
"""

import argparse
import time
from contextlib import nullcontext

import diffusers
import torch

from ddpm_helpers.checkpoints import load_pretrained
from ddpm_helpers.sampling import sample
from ddpm_helpers.scheduler import DDIMScheduler, DDPMScheduler
from ddpm_helpers.unet import UNet, autocast_context, count_parameters

GOOGLE_CIFAR10 = dict(  # google/ddpm-cifar10-32's UNet2DModel config (tests/test_unet_vs_diffusers.py)
    sample_size=32, in_channels=3, out_channels=3, block_out_channels=(128, 256, 256, 256), layers_per_block=2,
    down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
    flip_sin_to_cos=False, freq_shift=1, downsample_padding=0, norm_eps=1e-6, attention_head_dim=None)


def rows(model, scheduler_config, hub_model, scale):
    """(name, function to time) for each row; steps scaled by ``scale`` (at least 1)."""
    steps = lambda n: max(1, round(n * scale))  # noqa: E731
    noise_scheduler = DDPMScheduler.from_config(scheduler_config)
    unit1 = diffusers.DDPMPipeline(unet=model, scheduler=noise_scheduler)
    unet2d = model.to_diffusers()
    ddpm = diffusers.DDPMPipeline(unet=unet2d, scheduler=diffusers.DDPMScheduler.from_config(scheduler_config))
    ddim = diffusers.DDIMPipeline(unet=unet2d, scheduler=diffusers.DDIMScheduler.from_config(scheduler_config))
    for pipe in (unit1, ddpm, ddim):
        pipe.set_progress_bar_config(disable=True)
    seed = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    ours = lambda m, scheduler, n, k: sample(m, scheduler, n, k, generator=seed(), progress=False)  # noqa: E731
    return [
        (f"unit 1's image_pipe(): 1 digit, DDPM-{steps(1000)}", lambda: unit1(num_inference_steps=steps(1000))),
        (f"DDPMPipeline, 8 digits, DDPM-{steps(50)}", lambda: ddpm(8, seed(), steps(50), output_type="np")),
        (f"our sample(), 8 digits, DDPM-{steps(50)}", lambda: ours(model, noise_scheduler, 8, steps(50))),
        (f"DDIMPipeline, 8 digits, DDIM-{steps(20)}", lambda: ddim(8, seed(), num_inference_steps=steps(20),
                                                                   output_type="np")),
        (f"our sample(), 8 digits, DDIM-{steps(20)}",
         lambda: ours(model, DDIMScheduler.from_config(scheduler_config), 8, steps(20))),
        (f"hub cell: cifar10-32-sized UNet, 8 images, DDIM-{steps(20)}",
         lambda: ours(hub_model, DDIMScheduler.from_config(scheduler_config), 8, steps(20))),
    ]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--steps-scale", type=float, default=1.0, help="multiply every step count (check: 0.01)")
    parser.add_argument("--device", default="cpu", help="for the hub-sized UNet only (the digits rows run on the CPU)")
    args = parser.parse_args()
    diffusers.utils.logging.set_verbosity_error()
    model, scheduler_config = load_pretrained(device="cpu")
    torch.manual_seed(0)
    hub_model = UNet.from_config(GOOGLE_CIFAR10).eval().to(args.device)
    contexts = {"fp32": nullcontext}
    if isinstance(autocast_context("cpu"), torch.autocast):
        contexts["bf16 autocast"] = lambda: autocast_context("cpu")
    table = rows(model, scheduler_config, hub_model, args.steps_scale)
    times = {(name, precision): [] for name, _ in table for precision in contexts}
    for round_ in range(args.rounds):
        for precision, context in contexts.items():
            for name, run in table:
                start = time.perf_counter()
                with torch.no_grad(), context():
                    run()
                times[name, precision].append(time.perf_counter() - start)
                print(f"round {round_ + 1}, {precision}: {name}: {times[name, precision][-1]:.1f} s", flush=True)
    print(f"\n{torch.get_num_threads()} threads; the hub-sized UNet ({count_parameters(hub_model):,} parameters) on "
          f"{args.device}; fastest of {args.rounds} rounds\n")
    print("| cell | " + " | ".join(f"{p} s" for p in contexts) + " |\n|---|" + "---|" * len(contexts))
    for name, _ in table:
        print(f"| {name} | " + " | ".join(f"{min(times[name, p]):.1f}" for p in contexts) + " |")


if __name__ == "__main__":
    main()
