"""The seed's recipe against the course's defaults, for the same wall-clock training budget.

    python benchmarks/bench_training.py --seconds 300 --samples 256

(a) the seed recipe: diffusers' UNet2DModel as configured in the Hugging Face diffusion
    course, unit 1 (block_out_channels (64, 128, 128, 256), layers_per_block 2, attention in
    the two lowest blocks), diffusers' DDPMScheduler("squaredcos_cap_v2"), AdamW lr 4e-4,
    batch 64, float32, trained with the seed's loop as written (``loss.backward(loss)`` included:
    ``SeedRun``, which bench_quality_curve.py uses too);
(b) ours: ``UNet()`` trained by ``training.train`` with ``TrainConfig()``'s defaults (min-SNR-5
    loss weights: its held-out loss, the plain mean, is higher than the plain loss would give).

Both train on the embedded digits for ``--seconds`` each, one after the other. The table
gives images/s, achieved GFLOP/s (3 x forward FLOPs per image x images/s) against this
CPU's measured matmul peak in the dtype used, the held-out loss (fp32, the same noisy
images for both), and sample quality (DDIM 50 steps, ``metrics.quality_report``; ours samples
with the EMA weights ``train`` keeps, the seed's loop keeps none). Run it alone: the two
recipes are timed one after the other and share the CPU with nothing else.
"""

import argparse
import time

import torch
import torch.nn.functional as F

from ddpm_helpers.data import DigitsDataset
from ddpm_helpers.metrics import quality_report
from ddpm_helpers.sampling import sample
from ddpm_helpers.scheduler import DDIMScheduler, DDPMScheduler
from ddpm_helpers.training import TrainConfig, train
from ddpm_helpers.unet import UNet, count_parameters, cpu_has_native_bf16, estimate_flops

SEED_UNET = dict(sample_size=32, in_channels=1, out_channels=1, layers_per_block=2,
                 block_out_channels=(64, 128, 128, 256),
                 down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"),
                 up_block_types=("AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D", "UpBlock2D"))


def matmul_peak(dtype, n=2048, repeats=5):
    """Best GFLOP/s of an n x n matrix product: this CPU's matmul peak in ``dtype``."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * n**3 / best / 1e9


def _timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


class SeedRun:
    """The seed's training loop (Hugging Face unit 1) as written, on the digits, in slices."""

    def __init__(self, dataset, seed):
        from diffusers import DDPMScheduler as DiffusersDDPMScheduler
        from diffusers import UNet2DModel

        torch.manual_seed(seed)
        self.model = UNet2DModel(**SEED_UNET)
        self.noise_scheduler = DiffusersDDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2")
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=4e-4)
        self.loader = torch.utils.data.DataLoader(dataset, batch_size=64, shuffle=True)
        self.batches, self.elapsed, self.images = iter(self.loader), 0.0, 0

    def _next_batch(self):
        try:
            return next(self.batches)
        except StopIteration:  # the next epoch
            self.batches = iter(self.loader)
            return next(self.batches)

    def advance(self, seconds):
        self.model.train()
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            clean_images = self._next_batch()["images"]
            noise = torch.randn(clean_images.shape)
            timesteps = torch.randint(0, self.noise_scheduler.config.num_train_timesteps, (clean_images.shape[0],))
            noisy_images = self.noise_scheduler.add_noise(clean_images, noise, timesteps)
            noise_pred = self.model(noisy_images, timesteps, return_dict=False)[0]
            loss = F.mse_loss(noise_pred, noise)
            loss.backward(loss)  # as the seed writes it: the gradient of loss^2 / 2 (lesson 4)
            self.optimizer.step()
            self.optimizer.zero_grad()
            self.images += len(clean_images)
        self.elapsed += time.perf_counter() - start

    def sampling_model(self):
        return self.model.eval()

    def trunk_seconds(self, minutes):  # bench_quality_curve.py: the seed's loop has no lr cooldown
        return minutes * 60

    def finish(self, minutes):
        return self.sampling_model(), self.elapsed, self.images


def heldout_loss(model, n=1000):
    """fp32 MSE on fixed held-out digits with fixed noise and t spread evenly over 0..999."""
    x0 = DigitsDataset(n=n, split="test").images
    generator = torch.Generator().manual_seed(0)
    noise, t = torch.randn(x0.shape, generator=generator), torch.arange(n) % 1000
    x_t = DDPMScheduler(1000, beta_schedule="squaredcos_cap_v2").add_noise(x0, noise, t)
    model.eval()
    with torch.no_grad():
        eps_pred = torch.cat([model(x_t[i:i + 250], t[i:i + 250], return_dict=False)[0] for i in range(0, n, 250)])
    return F.mse_loss(eps_pred, noise).item()


def quality(model, num_samples, train_images):
    scheduler = DDIMScheduler(1000, beta_schedule="squaredcos_cap_v2")
    samples = sample(model, scheduler, num_samples, num_inference_steps=50,
                     generator=torch.Generator().manual_seed(1), progress=False)
    real = DigitsDataset(n=2 * num_samples, split="test").images
    return quality_report(samples, real=real, train_images=train_images)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=300, help="training budget of each recipe")
    parser.add_argument("--samples", type=int, default=256, help="samples per recipe for the quality measures")
    args = parser.parse_args()
    dataset = DigitsDataset()
    peaks = {"fp32": matmul_peak(torch.float32), "bf16": matmul_peak(torch.bfloat16)}
    print(f"matmul peak (2048x2048 torch.mm): fp32 {peaks['fp32']:.0f} GFLOP/s, bf16 {peaks['bf16']:.0f} GFLOP/s; "
          f"{torch.get_num_threads()} threads; budget {args.seconds:.0f} s each\n", flush=True)

    seed = SeedRun(dataset, seed=0)
    seed.advance(args.seconds)
    seed_model, seed_images, seed_time = seed.sampling_model(), seed.images, seed.elapsed
    ours_state = train(UNet(), dataset, TrainConfig(num_steps=None, time_budget_s=args.seconds), progress=False)
    ours_dtype = "bf16" if cpu_has_native_bf16() else "fp32"
    rows = [("seed recipe (diffusers UNet2DModel)", seed_model, seed_model, "fp32", seed_images, seed_time),
            ("ours (UNet(), train())", ours_state.model, ours_state.ema_model, ours_dtype,
             ours_state.images_seen, ours_state.elapsed)]
    print("| recipe | params | GFLOPs/img fwd | dtype | images | img/s | GFLOP/s | % of peak | held-out loss "
          "| Frechet (floor) | confident | classes |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, model, sampler_model, dtype, images, elapsed in rows:
        flops = estimate_flops(model)
        achieved = 3 * flops * images / elapsed / 1e9
        report = quality(sampler_model, args.samples, dataset.images)
        print(f"| {name} | {count_parameters(model) / 1e6:.2f}M | {flops / 1e9:.3f} | {dtype} | {images} "
              f"| {images / elapsed:.0f} | {achieved:.0f} | {100 * achieved / peaks[dtype]:.0f}% "
              f"| {heldout_loss(model):.4f} | {report.frechet:.1f} ({report.frechet_floor:.1f}) "
              f"| {report.confident_fraction:.0%} | {min(report.class_fractions):.0%}-{max(report.class_fractions):.0%} |",
              flush=True)
    print(f"\nimages ratio ours / seed: {rows[1][4] / rows[0][4]:.1f}x")


if __name__ == "__main__":
    main()
