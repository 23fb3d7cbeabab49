"""Our schedulers against diffusers': same schedules, same add_noise, same sampling loops.

Two kinds of comparison:
- against stock diffusers: our schedules are computed in float64 and rounded to float32,
  diffusers accumulates them in float32, so alphas_cumprod differ in the last bits and a
  whole sampling loop differs by a little (measured by benchmarks/scheduler_tolerance.py);
- "exact": diffusers given our alphas_cumprod, so only step() is compared. Here the
  samples must be bit-for-bit equal: same formulas, same order of operations, same noise.
"""

import math

import pytest
import torch

diffusers = pytest.importorskip("diffusers")

from ddpm_helpers.dpm_solver import DPMSolverMultistepScheduler  # noqa: E402
from ddpm_helpers.scheduler import DDIMScheduler, DDPMScheduler  # noqa: E402
from ddpm_helpers.schedules import BETA_SCHEDULES  # noqa: E402

SHAPE = (2, 1, 8, 8)
# Relative tolerance against stock diffusers, relative to the largest sample value (at least 1).
LOOP_RTOL = 1e-4


def max_abs_diff(ours, ref):
    """The largest elementwise |ours - ref|, as a float."""
    return (ours.double() - ref.double()).abs().max().item()


def assert_loops_match(ours, ref, rtol=LOOP_RTOL):
    """assert_close with a tolerance that scales with the samples' size; returns the max abs diff."""
    scale = max(1.0, ref.abs().max().item())
    torch.testing.assert_close(ours, ref, rtol=0, atol=rtol * scale)
    return max_abs_diff(ours, ref)


def dummy_eps(x_t, t):
    """A fixed, smooth stand-in for a trained noise predictor, identical for both schedulers."""
    return 0.5 * x_t * math.cos(float(t) / 100) + 0.1 * torch.sin(x_t)


def sample_loop(scheduler, num_inference_steps, seed=0, **step_kwargs):
    """A whole sampling loop from pure noise; ``num_inference_steps=None`` keeps all T steps."""
    generator = torch.Generator().manual_seed(seed)
    x_t = torch.randn(SHAPE, generator=generator)
    if num_inference_steps is not None:
        scheduler.set_timesteps(num_inference_steps)
    for t in scheduler.timesteps:
        x_t = scheduler.step(dummy_eps(x_t, t), t, x_t, generator=generator, **step_kwargs).prev_sample
    return x_t


def use_our_schedule(ref, ours):
    """Give diffusers' scheduler our alphas_cumprod, so that only step() differs."""
    ref.alphas_cumprod = ours.alphas_cumprod.clone()
    if hasattr(ref, "final_alpha_cumprod") and not ours.config.set_alpha_to_one:
        ref.final_alpha_cumprod = ours.alphas_cumprod[0]
    return ref


# The options compared: (name, our class, diffusers' class, constructor kwargs, inference steps, step kwargs)
DDPM_CASES = [
    (f"DDPM {sched} T={T} clip={clip} steps={n or T}", DDPMScheduler, diffusers.DDPMScheduler,
     dict(num_train_timesteps=T, beta_schedule=sched, clip_sample=clip), n, {})
    for sched in BETA_SCHEDULES for T in (1000, 100) for clip in (True, False) for n in (None, 50)
] + [
    ("DDPM linear T=1000 fixed_large steps=50", DDPMScheduler, diffusers.DDPMScheduler,
     dict(variance_type="fixed_large"), 50, {}),
]
DDIM_CASES = [
    (f"DDIM {sched} clip={clip} eta={eta} steps={n}", DDIMScheduler, diffusers.DDIMScheduler,
     dict(beta_schedule=sched, clip_sample=clip), n, dict(eta=eta))
    for sched in BETA_SCHEDULES for clip in (True, False) for eta in (0.0, 1.0) for n in (10, 20, 50)
] + [
    ("DDIM linear set_alpha_to_one=False eta=1.0 steps=20", DDIMScheduler, diffusers.DDIMScheduler,
     dict(set_alpha_to_one=False), 20, dict(eta=1.0)),
    ("DDIM linear steps_offset=1 eta=1.0 steps=20", DDIMScheduler, diffusers.DDIMScheduler,
     dict(steps_offset=1), 20, dict(eta=1.0)),
    ("DDIM linear trailing eta=0.5 steps=20", DDIMScheduler, diffusers.DDIMScheduler,
     dict(timestep_spacing="trailing"), 20, dict(eta=0.5)),
]
LOOP_CASES = DDPM_CASES + DDIM_CASES


def run_case(case, exact=False):
    """Run one case with both libraries; returns (ours, ref) final samples."""
    _, ours_cls, ref_cls, kwargs, n, step_kwargs = case
    ours, ref = ours_cls(**kwargs), ref_cls(**kwargs)
    if exact:
        use_our_schedule(ref, ours)
    return sample_loop(ours, n, **step_kwargs), sample_loop(ref, n, **step_kwargs)


@pytest.mark.parametrize("case", LOOP_CASES, ids=[c[0] for c in LOOP_CASES])
def test_sampling_loop_matches_diffusers(case):
    ours, ref = run_case(case)
    assert torch.isfinite(ours).all()
    assert_loops_match(ours, ref)


@pytest.mark.parametrize("case", LOOP_CASES, ids=[c[0] for c in LOOP_CASES])
def test_step_is_bitwise_equal_given_same_schedule(case):
    ours, ref = run_case(case, exact=True)
    torch.testing.assert_close(ours, ref, rtol=0, atol=0)


@pytest.mark.parametrize("schedule", BETA_SCHEDULES)
@pytest.mark.parametrize("T", [1000, 100, 50])
@pytest.mark.parametrize("classes", [(DDPMScheduler, diffusers.DDPMScheduler), (DDIMScheduler, diffusers.DDIMScheduler)],
                         ids=["DDPM", "DDIM"])
def test_schedule_arrays_match(classes, schedule, T):
    ours, ref = (cls(num_train_timesteps=T, beta_schedule=schedule) for cls in classes)
    for name in ("betas", "alphas"):
        assert getattr(ours, name).dtype == torch.float32
        torch.testing.assert_close(getattr(ours, name), getattr(ref, name), rtol=1e-6, atol=1e-7)
    # float32 cumprod in diffusers drifts by a few ulps over 1000 steps; ours is rounded once
    torch.testing.assert_close(ours.alphas_cumprod, ref.alphas_cumprod, rtol=0, atol=1e-6)
    torch.testing.assert_close(ours.timesteps, ref.timesteps, rtol=0, atol=0)


@pytest.mark.parametrize("schedule", BETA_SCHEDULES)
@pytest.mark.parametrize("T", [1000, 100])
def test_add_noise_matches(schedule, T):
    generator = torch.Generator().manual_seed(1)
    ours = DDPMScheduler(num_train_timesteps=T, beta_schedule=schedule)
    ref = diffusers.DDPMScheduler(num_train_timesteps=T, beta_schedule=schedule)
    x0 = torch.rand((8, 3, 4, 4), generator=generator) * 2 - 1  # images in [-1, 1]
    noise = torch.randn(x0.shape, generator=generator)
    timesteps = torch.randint(0, T, (8,), generator=generator)
    # sqrt(alpha_bar_t) near t = T magnifies the last-bit differences of alphas_cumprod
    torch.testing.assert_close(ours.add_noise(x0, noise, timesteps), ref.add_noise(x0, noise, timesteps),
                               rtol=0, atol=1e-5)
    # with the same alphas_cumprod the arithmetic is identical
    use_our_schedule(ref, ours)
    torch.testing.assert_close(ours.add_noise(x0, noise, timesteps), ref.add_noise(x0, noise, timesteps),
                               rtol=0, atol=0)
    # one timestep for the whole batch, broadcast as diffusers does
    one = timesteps[:1]
    torch.testing.assert_close(ours.add_noise(x0, noise, one), ref.add_noise(x0, noise, one), rtol=0, atol=0)


SPACINGS = {"leading": {}, "offset1": dict(steps_offset=1), "trailing": dict(timestep_spacing="trailing")}
TIMESTEP_CASES = [(T, n, spacing) for T in (1000, 100, 50) for n in (1, 7, 10, 20, 50, 1000) for spacing in SPACINGS
                  if n < T or (n == T and spacing != "offset1")]  # offset 1 with n = T would reach t = T


@pytest.mark.parametrize("T, n, spacing", TIMESTEP_CASES)
def test_set_timesteps_matches(T, n, spacing):
    kwargs = SPACINGS[spacing]
    if not kwargs:
        ours, ref = DDPMScheduler(num_train_timesteps=T), diffusers.DDPMScheduler(num_train_timesteps=T)
        ours.set_timesteps(n), ref.set_timesteps(n)
        torch.testing.assert_close(ours.timesteps, ref.timesteps, rtol=0, atol=0)
    ours, ref = DDIMScheduler(num_train_timesteps=T, **kwargs), diffusers.DDIMScheduler(num_train_timesteps=T, **kwargs)
    ours.set_timesteps(n), ref.set_timesteps(n)
    torch.testing.assert_close(ours.timesteps, ref.timesteps, rtol=0, atol=0)


def test_single_step_outputs_and_tuple_match():
    generator = torch.Generator().manual_seed(3)
    x_t, eps = torch.randn(SHAPE, generator=generator), torch.randn(SHAPE, generator=generator)
    for ours, ref in [(DDPMScheduler(), diffusers.DDPMScheduler()), (DDIMScheduler(), diffusers.DDIMScheduler())]:
        use_our_schedule(ref, ours)
        ours.set_timesteps(50), ref.set_timesteps(50)
        t = ours.timesteps[10]
        a = ours.step(eps, t, x_t, generator=torch.Generator().manual_seed(0))
        b = ref.step(eps, t, x_t, generator=torch.Generator().manual_seed(0))
        torch.testing.assert_close(a.pred_original_sample, b.pred_original_sample, rtol=0, atol=0)
        torch.testing.assert_close(a.prev_sample, b.prev_sample, rtol=0, atol=0)
        a = ours.step(eps, t, x_t, generator=torch.Generator().manual_seed(0), return_dict=False)
        b = ref.step(eps, t, x_t, generator=torch.Generator().manual_seed(0), return_dict=False)
        assert len(a) == len(b)
        torch.testing.assert_close(a[0], b[0], rtol=0, atol=0)


def test_config_round_trips_through_diffusers():
    ours = DDIMScheduler(beta_schedule="squaredcos_cap_v2", clip_sample=False)
    ref = diffusers.DDIMScheduler.from_config(dict(ours.config))
    for key, value in ours.config.items():
        assert ref.config[key] == value
    torch.testing.assert_close(ours.betas, ref.betas, rtol=1e-6, atol=1e-7)


# DPM-Solver++: diffusers clips x_0 through thresholding=True, sample_max_value=1.0 (its
# dynamic threshold is then a plain clamp to [-1, 1]); ours calls that clip_sample=True.
DPM_CASES = [(sched, order, algorithm, clip, n)
             for sched in BETA_SCHEDULES for order in (1, 2) for algorithm in ("dpmsolver++", "sde-dpmsolver++")
             for clip in (True, False) for n in (1, 2, 10, 20)]


@pytest.mark.parametrize("sched, order, algorithm, clip, n", DPM_CASES)
def test_dpm_solver_loop_matches_diffusers(sched, order, algorithm, clip, n):
    common = dict(beta_schedule=sched, solver_order=order, algorithm_type=algorithm)
    ours = DPMSolverMultistepScheduler(**common, clip_sample=clip)
    ref = diffusers.DPMSolverMultistepScheduler(**common, thresholding=clip, sample_max_value=1.0)
    a, b = sample_loop(ours, n), sample_loop(ref, n)
    assert torch.isfinite(a).all()
    assert_loops_match(a, b)


@pytest.mark.parametrize("T", [1000, 100, 50])
def test_dpm_solver_timesteps_match(T):
    for n in list(range(1, min(61, T))) + [T // 3, T // 2, T - 1]:
        ours, ref = DPMSolverMultistepScheduler(T), diffusers.DPMSolverMultistepScheduler(num_train_timesteps=T)
        ours.set_timesteps(n)
        ref.set_timesteps(n)
        assert torch.equal(ours.timesteps, ref.timesteps), (T, n)



def test_dpm_solver_custom_timesteps_match_diffusers():
    timesteps = [999, 800, 600, 450, 300, 150, 60, 10]
    ours = DPMSolverMultistepScheduler(beta_schedule="squaredcos_cap_v2")
    ref = diffusers.DPMSolverMultistepScheduler(beta_schedule="squaredcos_cap_v2", thresholding=True,
                                                sample_max_value=1.0)
    ours.set_timesteps(timesteps=timesteps)
    ref.set_timesteps(timesteps=timesteps)
    assert torch.equal(ours.timesteps, ref.timesteps)
    assert_loops_match(sample_loop(ours, None), sample_loop(ref, None))


def test_ddpm_custom_timesteps_match_diffusers():
    timesteps = [999, 700, 420, 100, 7, 0]
    ours, ref = DDPMScheduler(), diffusers.DDPMScheduler()
    use_our_schedule(ref, ours)
    ours.set_timesteps(timesteps=timesteps)
    ref.set_timesteps(timesteps=timesteps)
    assert [int(ours.previous_timestep(t)) for t in timesteps] == [int(ref.previous_timestep(t)) for t in timesteps]
    torch.testing.assert_close(sample_loop(ours, None), sample_loop(ref, None), rtol=0, atol=0)


# ---- configs both ways: diffusers reads ours, ours read diffusers' ----

OUR_CONFIGS = [
    (DDPMScheduler, diffusers.DDPMScheduler, dict(beta_schedule="squaredcos_cap_v2", variance_type="fixed_large")),
    (DDIMScheduler, diffusers.DDIMScheduler, dict(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                                                  clip_sample=False, set_alpha_to_one=False, steps_offset=1)),
    (DDIMScheduler, diffusers.DDIMScheduler, dict(timestep_spacing="trailing")),
    (DPMSolverMultistepScheduler, diffusers.DPMSolverMultistepScheduler, dict(solver_order=1,
                                                                              algorithm_type="sde-dpmsolver++")),
]


@pytest.mark.parametrize("ours_cls, ref_cls, kwargs", OUR_CONFIGS, ids=["DDPM", "DDIM-SD", "DDIM-trailing", "DPM"])
def test_diffusers_reads_our_config_and_we_read_theirs(ours_cls, ref_cls, kwargs):
    ours = ours_cls(**kwargs)
    theirs = ref_cls.from_config(ours.config)  # our config is a dict, as diffusers requires
    for key, value in ours.config.items():
        if key in theirs.config:
            assert theirs.config[key] == value, key
    back = ours_cls.from_config(theirs.config)  # every diffusers option at a value we support
    assert back.config == ours.config
    fresh = ours_cls.from_config(ref_cls(**kwargs).config)  # a config diffusers made itself
    # diffusers' DPM-Solver++ has no clip_sample and does not clip x_0: neither does ours built from its config
    no_clip = {"clip_sample": False} if ours_cls is DPMSolverMultistepScheduler else {}
    assert fresh.config == {**ours.config, **no_clip}
    torch.testing.assert_close(fresh.alphas_cumprod, theirs.alphas_cumprod, rtol=0, atol=1e-6)


def test_diffusers_dpm_solver_with_thresholding_gives_our_numbers():
    """diffusers' DPM-Solver has no clip_sample; thresholding=True, sample_max_value=1.0 is the same clip."""
    ours = DPMSolverMultistepScheduler(beta_schedule="squaredcos_cap_v2")
    ref = diffusers.DPMSolverMultistepScheduler.from_config(ours.config, thresholding=True, sample_max_value=1.0)
    assert_loops_match(sample_loop(ours, 10), sample_loop(ref, 10))
    again = DPMSolverMultistepScheduler.from_config(ref.config)  # and back: thresholding at 1 is clip_sample
    assert again.config == ours.config
    plain = diffusers.DPMSolverMultistepScheduler(beta_schedule="squaredcos_cap_v2")  # no clipping in diffusers
    unclipped = DPMSolverMultistepScheduler.from_config(plain.config)
    assert unclipped.config.clip_sample is False
    assert_loops_match(sample_loop(unclipped, 10), sample_loop(plain, 10))
    # a DDPM config says clip_sample (True by default), ours or diffusers': DPM-Solver++ keeps it
    for ddpm in (DDPMScheduler(), diffusers.DDPMScheduler()):
        assert DPMSolverMultistepScheduler.from_config(ddpm.config).config.clip_sample is True
    assert DPMSolverMultistepScheduler.from_config(plain.config, clip_sample=True).config.clip_sample is True


def test_switching_samplers_with_from_config_like_diffusers():
    """DDPM -> DDIM -> DPM-Solver++ -> DDPM with ours gives the configs diffusers' classes give."""
    chain_ours = [DDPMScheduler(num_train_timesteps=500, beta_schedule="squaredcos_cap_v2")]
    chain_ref = [diffusers.DDPMScheduler(num_train_timesteps=500, beta_schedule="squaredcos_cap_v2")]
    for ours_cls, ref_cls in [(DDIMScheduler, diffusers.DDIMScheduler), (DDPMScheduler, diffusers.DDPMScheduler)]:
        chain_ours.append(ours_cls.from_config(chain_ours[-1].config))
        chain_ref.append(ref_cls.from_config(chain_ref[-1].config))
    dpm = DPMSolverMultistepScheduler.from_config(chain_ref[1].config)  # diffusers' DDIM config -> our DPM-Solver++
    assert dpm.config.beta_schedule == "squaredcos_cap_v2" and dpm.num_train_timesteps == 500
    for ours, ref in zip(chain_ours, chain_ref):
        assert all(ref.config[k] == v for k, v in ours.config.items()), type(ours).__name__
        torch.testing.assert_close(ours.alphas_cumprod, ref.alphas_cumprod, rtol=0, atol=1e-6)


def test_folders_saved_by_either_library_load_in_the_other(tmp_path):
    ours = DDIMScheduler(beta_schedule="squaredcos_cap_v2", timestep_spacing="trailing", clip_sample=False)
    ours.save_pretrained(tmp_path / "ours")
    theirs = diffusers.DDIMScheduler.from_pretrained(tmp_path / "ours")
    assert all(theirs.config[k] == v for k, v in ours.config.items())
    diffusers.DDIMScheduler(beta_schedule="squaredcos_cap_v2", timestep_spacing="trailing",
                            clip_sample=False).save_pretrained(tmp_path / "theirs")
    assert DDIMScheduler.from_pretrained(tmp_path / "theirs").config == ours.config
    # a diffusers DDPM folder, read by our three samplers (what lesson 8 does with a hub model)
    diffusers.DDPMScheduler(beta_schedule="squaredcos_cap_v2").save_pretrained(tmp_path / "pipe" / "scheduler")
    for cls in (DDPMScheduler, DDIMScheduler, DPMSolverMultistepScheduler):
        loaded = cls.from_pretrained(tmp_path / "pipe", subfolder="scheduler")
        assert loaded.config.beta_schedule == "squaredcos_cap_v2"
