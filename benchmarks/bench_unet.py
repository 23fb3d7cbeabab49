"""Training speed of the course UNet on this CPU, against the seed's diffusers UNet2DModel.

    python benchmarks/bench_unet.py                 # speed table, about 2-3 minutes
    python benchmarks/bench_unet.py --train-seconds 120   # plus equal-time training on digits
    python benchmarks/bench_unet.py --compile       # plus torch.compile rows (2-3 minutes more to compile)

One training step = forward + backward + AdamW step on a batch, MSE against a random noise
target at random t. Achieved GFLOP/s = 3 x forward FLOPs x batch / step time (backward
costs about twice the forward). Peak = best GFLOP/s of a big GEMM in the same dtype
(torch.mm on MKL or a 1x1 convolution on oneDNN, whichever is faster), measured in every
round between the rows, so that peak and rows see the same load from other processes.
Every time is the best of several repeats: CPU timings are noisy on a shared machine. The
channels-last rows hold the weights in channels-last memory layout, as ``training.train`` does
in float32 on a CPU (oneDNN's convolutions are faster so; the activations follow the weights). On a
CPU without native bf16 the bf16 rows and peak are skipped (emulated bf16 is slower than
float32 there, so no laptop would train in it), which also makes the run much shorter.
"""

import argparse
import time

import torch
import torch.nn.functional as F

from ddpm_helpers.training import TrainConfig
from ddpm_helpers.unet import UNet, UNetConfig, autocast_context, count_parameters, cpu_has_native_bf16, estimate_flops

SEED_RECIPE = dict(  # the seed's model (Hugging Face diffusion course, unit 1), at 32x32 grayscale
    sample_size=32, in_channels=1, out_channels=1, layers_per_block=2,
    block_out_channels=(64, 128, 128, 256),
    down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"),
    up_block_types=("AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
)


def seed_model():
    from diffusers import UNet2DModel

    return UNet2DModel(**SEED_RECIPE)


def timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def matmul_fns(dtype):
    """Two big GEMMs through torch's two CPU backends: torch.mm (MKL) and a 1x1 convolution
    (oneDNN; a GEMM of (32*16*16, 1024) x (1024, 1024)). Returns [(fn, FLOPs)]."""
    a, b = torch.randn(2048, 2048, dtype=dtype), torch.randn(2048, 2048, dtype=dtype)
    x = torch.randn(32, 1024, 16, 16, dtype=dtype).contiguous(memory_format=torch.channels_last)
    w = torch.randn(1024, 1024, 1, 1, dtype=dtype)
    return [(lambda: a @ b, 2 * 2048**3), (lambda: F.conv2d(x, w), 2 * 32 * 16 * 16 * 1024 * 1024)]


def train_step_fn(model, batch, bf16):
    """A closure running one training step; the seed's loop, with optional bf16 autocast."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=4e-4)
    x_t = torch.randn(batch, 1, 32, 32)
    noise = torch.randn_like(x_t)
    context = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if bf16 else (lambda: torch.autocast("cpu", enabled=False))

    def step():
        timesteps = torch.randint(0, 1000, (batch,))
        with context():
            eps_pred = model(x_t, timesteps, return_dict=False)[0]
        loss = F.mse_loss(eps_pred.float(), noise)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def speed_table(rows, rounds, burst=2):
    """Time every row for ``burst`` consecutive steps per round, round after round, and keep each
    row's best step.

    Interleaving spreads every row over the whole run, so a burst of load from other
    processes slows one sample of each row instead of all samples of one row. The burst is for
    oneDNN's primitive cache (1,024 entries by default), which a dozen models' convolutions
    overflow: the first step of a row after all the others rebuilds its primitives, which a training
    run, stepping one model, never does (for the small default model that step was 10-45% slower on
    a 2-core AMD EPYC).
    """
    dtypes = (torch.float32, torch.bfloat16) if any(bf16 for _, _, bf16, _ in rows) else (torch.float32,)
    peak_fns = {dtype: matmul_fns(dtype) for dtype in dtypes}
    peaks = {dtype: 0.0 for dtype in peak_fns}
    steps, infos = [], []
    for name, build, bf16, batch in rows:
        model = build()
        plain = getattr(model, "_orig_mod", model)  # a torch.compile'd model's own module
        infos.append((name, count_parameters(plain), estimate_flops(plain), bf16, batch))
        steps.append(train_step_fn(model, batch, bf16))
        seconds = timed(steps[-1])  # warm-up: oneDNN picks and caches its kernels on the first call
        if "compile" in name:
            print(f"  {name}, {'bf16' if bf16 else 'fp32'}: first step (compiling) {seconds:.0f} s", flush=True)
    best = [float("inf")] * len(rows)
    for r in range(rounds):
        for dtype, fns in peak_fns.items():
            peaks[dtype] = max([peaks[dtype]] + [flops / timed(fn) / 1e9 for fn, flops in fns for _ in range(2)])
        for i, step in enumerate(steps):
            best[i] = min([best[i]] + [timed(step) for _ in range(burst)])
        print(f"  round {r + 1}/{rounds} done", flush=True)
    results = [info + (seconds,) for info, seconds in zip(infos, best)]
    bf16_peak = f", bf16 {peaks[torch.bfloat16]:.0f} GFLOP/s" if torch.bfloat16 in peaks else ""
    print(f"\nmatmul peak (best of torch.mm and a 1x1-conv GEMM, over all rounds): fp32 {peaks[torch.float32]:.0f} "
          f"GFLOP/s{bf16_peak}, {torch.get_num_threads()} threads\n")
    print("| config | params | GFLOPs/img fwd | dtype | batch | ms/step | img/s | GFLOP/s | % of peak |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, params, flops, bf16, batch, seconds in results:
        achieved = 3 * flops * batch / seconds / 1e9
        peak = peaks[torch.bfloat16 if bf16 else torch.float32]
        print(f"| {name} | {params / 1e6:.2f}M | {flops / 1e9:.3f} | {'bf16' if bf16 else 'fp32'} | {batch} "
              f"| {seconds * 1e3:.0f} | {batch / seconds:.0f} | {achieved:.0f} | {100 * achieved / peak:.0f}% |")


def equal_time_training(builders, seconds, batch_sizes):
    """Train each model for the same wall-clock time on rendered digits; report held-out loss.

    The models take turns step by step so they share the load of other processes fairly.
    Held-out loss: fp32, fixed images, noise and t spread evenly over 0..999.
    """
    from ddpm_helpers.data import render_digits
    from ddpm_helpers.schedules import alphas_cumprod_from_betas, make_betas

    alphas_cumprod = alphas_cumprod_from_betas(make_betas("squaredcos_cap_v2", 1000)).float()
    x0_train = render_digits(20000, seed=1)[0]
    x0_eval = render_digits(1000, seed=2)[0]
    g = torch.Generator().manual_seed(0)
    eps_eval, t_eval = torch.randn(x0_eval.shape, generator=g), torch.arange(1000)

    def noisy(x0, eps, t):
        a = alphas_cumprod[t].view(-1, 1, 1, 1)
        # Ho et al. 2020, eq. (4): x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) eps
        return a.sqrt() * x0 + (1 - a).sqrt() * eps

    states = []
    for (name, build, bf16), batch in zip(builders, batch_sizes):
        torch.manual_seed(0)
        model = build()
        states.append(dict(name=name, model=model, bf16=bf16, batch=batch, used=0.0, steps=0,
                           opt=torch.optim.AdamW(model.parameters(), lr=4e-4)))
    while any(s["used"] < seconds for s in states):
        for s in (s for s in states if s["used"] < seconds):
            start = time.perf_counter()
            idx = torch.randint(0, len(x0_train), (s["batch"],))
            eps, t = torch.randn(s["batch"], 1, 32, 32), torch.randint(0, 1000, (s["batch"],))
            context = torch.autocast("cpu", dtype=torch.bfloat16) if s["bf16"] else torch.autocast("cpu", enabled=False)
            with context:
                eps_pred = s["model"](noisy(x0_train[idx], eps, t), t, return_dict=False)[0]
            F.mse_loss(eps_pred.float(), eps).backward()
            s["opt"].step()
            s["opt"].zero_grad(set_to_none=True)
            s["used"] += time.perf_counter() - start
            s["steps"] += 1
    print(f"\nEqual wall-clock training, {seconds:.0f} s each, digits 32x32, cosine schedule, AdamW lr 4e-4:\n")
    print("| model | dtype | batch | steps | images seen | held-out loss (fp32) |")
    print("|---|---|---|---|---|---|")
    for s in states:
        with torch.no_grad():
            losses = [F.mse_loss(s["model"](noisy(x0_eval[i:i + 250], eps_eval[i:i + 250], t_eval[i:i + 250]),
                                            t_eval[i:i + 250], return_dict=False)[0], eps_eval[i:i + 250])
                      for i in range(0, 1000, 250)]
        print(f"| {s['name']} | {'bf16' if s['bf16'] else 'fp32'} | {s['batch']} | {s['steps']} "
              f"| {s['steps'] * s['batch']} | {torch.stack(losses).mean():.4f} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5, help="rounds over all rows (each row's best step is kept)")
    parser.add_argument("--burst", type=int, default=2,
                        help="consecutive steps per row and round (1: only the step after all the other rows)")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--train-seconds", type=float, default=0, help="also train seed vs ours this long each")
    parser.add_argument("--no-speed", action="store_true", help="skip the speed table")
    parser.add_argument("--compile", action="store_true",
                        help="also the default model under torch.compile, at its training batch "
                             "(its compile time is printed)")
    args = parser.parse_args()
    if args.rounds < 1 or args.burst < 1:
        parser.error("--rounds and --burst must be at least 1")
    torch.set_num_threads(args.threads)
    ours = lambda **kw: (lambda: UNet(**kw))  # noqa: E731
    channels_last = lambda build: (lambda: build().to(memory_format=torch.channels_last))  # noqa: E731
    compiled = lambda build: (lambda: torch.compile(build()))  # noqa: E731; compiles on its first (warm-up) step
    default = f"ours default {tuple(UNetConfig().block_out_channels)} lpb{UNetConfig().layers_per_block}"
    train_batch = TrainConfig().batch_size  # the default model's rows at the batch it trains with
    print(f"autocast_context('cpu') on this machine: {type(autocast_context('cpu')).__name__}")
    if not args.no_speed:
        rows = [
            ("seed UNet2DModel (64,128,128,256) lpb2", seed_model, False, 64),
            ("seed UNet2DModel (64,128,128,256) lpb2", seed_model, True, 64),
            (default + ", channels-last (as train() runs fp32)", channels_last(ours()), False, train_batch),
            (default, ours(), True, train_batch),
            (default, ours(), False, 64),
            (default, ours(), False, 128),
            (default + ", channels-last (as train() runs fp32)", channels_last(ours()), False, 64),
            (default + ", channels-last (as train() runs fp32)", channels_last(ours()), False, 128),
            (default, ours(), True, 64),
            (default, ours(), True, 128),
            (default, ours(), True, 256),
            ("ours (32,64,128) lpb2", ours(block_out_channels=(32, 64, 128), layers_per_block=2), True, 128),
            ("ours (32,64,128,128) lpb1", ours(block_out_channels=(32, 64, 128, 128)), True, 128),
            ("ours (64,128,256) lpb1", ours(block_out_channels=(64, 128, 256)), True, 128),
        ]
        if args.compile:
            rows += [  # beside the eager rows at the same batch
                (default + ", channels-last, torch.compile", compiled(channels_last(ours())), False, train_batch),
                (default + ", torch.compile", compiled(ours()), True, train_batch)]
        if not cpu_has_native_bf16():
            print("bf16 rows skipped: this CPU has no native bf16 (emulated bf16 is slower than float32)")
            rows = [row for row in rows if not row[2]]
        speed_table(rows, args.rounds, args.burst)
    if args.train_seconds:
        equal_time_training([("seed UNet2DModel, as in the recipe", seed_model, False),
                             (default, ours(), True)], args.train_seconds, batch_sizes=[64, 128])


if __name__ == "__main__":
    main()
