"""How close are our schedulers to diffusers'? Prints one row per option.

    python benchmarks/scheduler_tolerance.py

Columns: max |ours - diffusers| of the final sample of a whole sampling loop (dummy model,
same seed), that difference relative to max |sample|, and the same difference when
diffusers is given our alphas_cumprod (0 means step() is bit-for-bit identical, so the
first column comes only from computing the schedule in float64 rather than float32).
The cases are the ones tests/test_scheduler_vs_diffusers.py asserts.
"""

import pathlib
import sys

import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tests"))
import test_scheduler_vs_diffusers as cases  # noqa: E402

from ddpm_helpers.scheduler import DDPMScheduler  # noqa: E402
from ddpm_helpers.schedules import BETA_SCHEDULES  # noqa: E402

diffusers = cases.diffusers


def schedule_rows():
    for schedule in BETA_SCHEDULES:
        for T in (1000, 100, 50):
            ours = DDPMScheduler(num_train_timesteps=T, beta_schedule=schedule)
            ref = diffusers.DDPMScheduler(num_train_timesteps=T, beta_schedule=schedule)
            diffs = [cases.max_abs_diff(getattr(ours, name), getattr(ref, name))
                     for name in ("betas", "alphas", "alphas_cumprod")]
            yield f"{schedule} T={T}", diffs


def main():
    print(f"{'schedule':<28} {'betas':>10} {'alphas':>10} {'alphas_cumprod':>15}")
    for name, diffs in schedule_rows():
        print(f"{name:<28} " + " ".join(f"{d:>10.2e}" for d in diffs[:2]) + f" {diffs[2]:>15.2e}")
    print()
    print(f"{'sampling loop':<56} {'max abs diff':>12} {'relative':>10} {'same sched.':>11}")
    for case in cases.LOOP_CASES:
        ours, ref = cases.run_case(case)
        exact_ours, exact_ref = cases.run_case(case, exact=True)
        diff = cases.max_abs_diff(ours, ref)
        relative = diff / max(1.0, ref.abs().max().item())
        print(f"{case[0]:<56} {diff:>12.2e} {relative:>10.2e} {cases.max_abs_diff(exact_ours, exact_ref):>11.1e}")
    generator = torch.Generator().manual_seed(0)
    x0 = torch.rand((64, 3, 8, 8), generator=generator) * 2 - 1  # images in [-1, 1], as add_noise requires
    noise = torch.randn((64, 3, 8, 8), generator=generator)
    timesteps = torch.randint(0, 1000, (64,), generator=generator)
    print()
    for schedule in BETA_SCHEDULES:
        ours, ref = DDPMScheduler(beta_schedule=schedule), diffusers.DDPMScheduler(beta_schedule=schedule)
        diff = cases.max_abs_diff(ours.add_noise(x0, noise, timesteps), ref.add_noise(x0, noise, timesteps))
        print(f"add_noise {schedule:<46} {diff:>12.2e}")


if __name__ == "__main__":
    main()
