"""The sampling loops: the same numbers as diffusers' loops and pipelines, seeded, no final noise."""

import math

import pytest
import torch

from ddpm_helpers.dpm_solver import DPMSolverMultistepScheduler
from ddpm_helpers.sampling import SampleStep, default_num_inference_steps, denoising_steps, sample
from ddpm_helpers.scheduler import DDIMScheduler, DDPMScheduler
from ddpm_helpers.unet import UNet

SHAPE = (3, 1, 8, 8)


def dummy_eps(x_t, t):
    """A fixed, smooth stand-in for a trained noise predictor."""
    return 0.5 * x_t * math.cos(float(t) / 100) + 0.1 * torch.sin(x_t)


def tiny_unet(seed=0):
    torch.manual_seed(seed)
    return UNet(block_out_channels=(8, 16), norm_num_groups=4, attention_head_dim=8, sample_size=8)


def run(model, scheduler, n, seed=0, shape=SHAPE, **kwargs):
    generator = torch.Generator().manual_seed(seed)
    return list(denoising_steps(model, scheduler, shape, n, generator=generator, progress=False, **kwargs))


def diffusers_loop(model, scheduler, n, seed=0, shape=SHAPE, **step_kwargs):
    """The loop of diffusers' DDPMPipeline / DDIMPipeline, keeping every x_t and pred_x0."""
    generator = torch.Generator().manual_seed(seed)
    x_t = torch.randn(shape, generator=generator)
    scheduler.set_timesteps(n or scheduler.config.num_train_timesteps)
    xs, x0s = [x_t], []
    for t in scheduler.timesteps:
        with torch.no_grad():
            eps_pred = model(x_t, t)
            eps_pred = getattr(eps_pred, "sample", eps_pred)  # our UNet's output object, or dummy_eps' tensor
            out = scheduler.step(eps_pred, t, x_t, generator=generator, **step_kwargs)
        x_t = out.prev_sample
        xs.append(x_t)
        x0s.append(out.pred_original_sample)
    return scheduler.timesteps, xs, x0s


CASES = [
    ("DDPM all T steps", DDPMScheduler, "DDPMScheduler", dict(num_train_timesteps=100), None, {}),
    ("DDPM cosine 50 steps", DDPMScheduler, "DDPMScheduler", dict(beta_schedule="squaredcos_cap_v2"), 50, {}),
    ("DDIM eta=0 20 steps", DDIMScheduler, "DDIMScheduler", {}, 20, dict(eta=0.0)),
    ("DDIM eta=1 20 steps", DDIMScheduler, "DDIMScheduler", {}, 20, dict(eta=1.0)),
    ("DDIM eta=0.5 trailing", DDIMScheduler, "DDIMScheduler", dict(timestep_spacing="trailing"), 10, dict(eta=0.5)),
]


# (model, exact): a real UNet with diffusers given our schedule (bit-for-bit), the dummy both ways
VARIANTS = [("unet", True), ("dummy", True), ("dummy", False)]


@pytest.mark.parametrize("model_name, exact", VARIANTS,
                         ids=["unet-same schedule", "dummy-same schedule", "dummy-stock"])
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_every_step_matches_diffusers_loop(case, model_name, exact):
    diffusers = pytest.importorskip("diffusers")
    _, ours_cls, ref_name, kwargs, n, step_kwargs = case
    ours, ref = ours_cls(**kwargs), getattr(diffusers, ref_name)(**kwargs)
    if exact:  # only step() differs: our schedule is computed in float64, diffusers' in float32
        ref.alphas_cumprod = ours.alphas_cumprod.clone()
    model = dummy_eps if model_name == "dummy" else tiny_unet()
    steps = run(model, ours, n, eta=step_kwargs.get("eta"))
    timesteps, xs, x0s = diffusers_loop(model, ref, n, **step_kwargs)
    assert [s.t for s in steps] == timesteps.tolist() + [-1]
    # bit-for-bit with the same schedule; within the scheduler tests' tolerance otherwise
    tol = dict(rtol=0, atol=0) if exact else dict(rtol=0, atol=1e-4 * max(1.0, xs[-1].abs().max().item()))
    torch.testing.assert_close(torch.stack([s.x_t for s in steps]), torch.stack(xs), **tol)
    torch.testing.assert_close(torch.stack([s.pred_x0 for s in steps[:-1]]), torch.stack(x0s), **tol)


@pytest.mark.parametrize("kind", ["DDPM", "DDIM"])
def test_sample_matches_diffusers_pipeline(kind):
    """sample() on a diffusers UNet2DModel gives the images of DDPMPipeline / DDIMPipeline."""
    diffusers = pytest.importorskip("diffusers")
    torch.manual_seed(0)
    unet = diffusers.UNet2DModel(sample_size=8, in_channels=1, out_channels=1, block_out_channels=(8, 16),
                                 layers_per_block=1, norm_num_groups=4,
                                 down_block_types=("DownBlock2D", "DownBlock2D"),
                                 up_block_types=("UpBlock2D", "UpBlock2D"))
    ours = (DDPMScheduler if kind == "DDPM" else DDIMScheduler)()
    ref = getattr(diffusers, f"{kind}Scheduler")()
    pipe = getattr(diffusers, f"{kind}Pipeline")(unet=unet, scheduler=ref)
    pipe.scheduler.alphas_cumprod = ours.alphas_cumprod.clone()
    pipe.set_progress_bar_config(disable=True)
    expected = pipe(batch_size=2, generator=torch.Generator().manual_seed(3), num_inference_steps=10,
                    output_type="pt").images * 2 - 1  # the pipeline returns [0, 1]
    got = sample(unet, ours, 2, num_inference_steps=10, generator=torch.Generator().manual_seed(3), progress=False)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)



def test_sample_in_batches_matches_diffusers_dpm_solver():
    """sample() with DPM-Solver++(2M) SDE, in batches of 2 from one generator, gives the images of
    diffusers' scheduler in the same loop, batch after batch."""
    diffusers = pytest.importorskip("diffusers")
    model = tiny_unet()
    common = dict(beta_schedule="squaredcos_cap_v2", algorithm_type="sde-dpmsolver++")
    got = sample(model, DPMSolverMultistepScheduler(**common), 3, 10, generator=torch.Generator().manual_seed(0),
                 progress=False, batch_size=2)
    ref = diffusers.DPMSolverMultistepScheduler(**common, thresholding=True, sample_max_value=1.0)
    generator, batches = torch.Generator().manual_seed(0), []
    for size in (2, 1):
        x_t = torch.randn((size, 1, 8, 8), generator=generator)
        ref.set_timesteps(10)
        for t in ref.timesteps:
            with torch.no_grad():
                x_t = ref.step(model(x_t, t).sample, t, x_t, generator=generator).prev_sample
        batches.append(x_t)
    torch.testing.assert_close(got, torch.cat(batches), rtol=0, atol=1e-5)


def test_sample_in_batches_equals_one_loop_per_batch():
    model = tiny_unet()
    got = sample(model, DDPMScheduler(), 5, 10, generator=torch.Generator().manual_seed(4), progress=False,
                 batch_size=2)
    generator = torch.Generator().manual_seed(4)
    expected = [list(denoising_steps(model, DDPMScheduler(), (size, 1, 8, 8), 10, generator=generator,
                                     progress=False))[-1].x_t for size in (2, 2, 1)]
    assert torch.equal(got, torch.cat(expected))
    one_batch = sample(model, DDPMScheduler(), 5, 10, generator=torch.Generator().manual_seed(4), progress=False)
    assert one_batch.shape == got.shape and not torch.equal(one_batch, got)  # other draws, same seed
    with pytest.raises(ValueError, match="batch_size"):
        sample(model, DDPMScheduler(), 5, batch_size=0)

def test_states_start_from_seeded_noise_and_end_with_the_sample():
    scheduler = DDPMScheduler()
    steps = run(dummy_eps, scheduler, 25, seed=7)
    assert len(steps) == 26 and all(isinstance(s, SampleStep) for s in steps)
    torch.testing.assert_close(steps[0].x_t, torch.randn(SHAPE, generator=torch.Generator().manual_seed(7)))
    assert steps[0].t == scheduler.timesteps[0] == 960
    assert [s.t for s in steps] == sorted((s.t for s in steps), reverse=True)
    assert steps[-1].t == -1 and steps[-1].pred_x0 is steps[-1].x_t


@pytest.mark.parametrize("make", [DDPMScheduler, DDIMScheduler, lambda: DDIMScheduler(clip_sample=False)],
                         ids=["DDPM", "DDIM", "DDIM no clip"])
def test_final_step_adds_no_noise(make):
    """The last step returns the last x_0 prediction itself (alpha_bar_prev = 1, sigma = 0), so
    the result is the same whatever the generator would have drawn next."""
    steps = run(dummy_eps, make(), 20, eta=None)
    torch.testing.assert_close(steps[-1].x_t, steps[-2].pred_x0, rtol=0, atol=1e-6)
    if make().config.clip_sample:
        assert steps[-1].x_t.abs().max() <= 1.0


def test_same_seed_same_samples_with_a_unet():
    model = tiny_unet()
    a, b, c = (sample(model, DDPMScheduler(), 4, 20, generator=torch.Generator().manual_seed(s), progress=False)
               for s in (1, 1, 2))
    assert a.shape == (4, 1, 8, 8)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert (a - c).abs().max() > 0.1


def test_ddim_eta0_is_deterministic_given_x_T():
    """With eta = 0 the generator is only used for x_T: the loop draws nothing else."""
    generator = torch.Generator().manual_seed(0)
    steps = list(denoising_steps(dummy_eps, DDIMScheduler(), SHAPE, 10, generator=generator, progress=False))
    after = generator.get_state()
    generator.manual_seed(0)
    torch.randn(SHAPE, generator=generator)
    assert torch.equal(after, generator.get_state())
    assert torch.isfinite(steps[-1].x_t).all()


def test_eval_mode_during_the_loop_and_restored_after():
    model = tiny_unet().train()
    modes = [model.training for _ in denoising_steps(model, DDPMScheduler(), SHAPE, 3, progress=False)]
    assert modes == [False] * 4 and model.training


def test_progress_bar(capsys):
    list(denoising_steps(dummy_eps, DDPMScheduler(), SHAPE, 3, progress=True))
    assert "sampling" in capsys.readouterr().err
    list(denoising_steps(dummy_eps, DDPMScheduler(), SHAPE, 3, progress=False))
    assert capsys.readouterr().err == ""


def test_bad_arguments_fail_when_called():
    """Before any iteration: denoising_steps checks everything when it is called
    (tests/test_bad_inputs_sched.py has the full list)."""
    with pytest.raises(ValueError, match=r"num_inference_steps must be in \[1, 1000\], got 2000"):
        denoising_steps(dummy_eps, DDPMScheduler(), SHAPE, 2000)
    with pytest.raises(ValueError, match="eta=0.5 only applies to DDIMScheduler"):
        denoising_steps(dummy_eps, DDPMScheduler(), SHAPE, 10, eta=0.5)
    with pytest.raises(ValueError, match=r"eta must be in \[0, 1\]"):
        denoising_steps(dummy_eps, DDIMScheduler(), SHAPE, 10, eta=2.0)
    with pytest.raises(TypeError, match="scheduler must be a scheduler object.*DDIMScheduler.from_config"):
        sample(tiny_unet(), "ddim", 2)  # issue 11: was an AttributeError
    with pytest.raises(TypeError, match=r"tuple; load_pretrained\(\) returns \(model, scheduler_config\)"):
        sample((tiny_unet(), {}), DDIMScheduler(), 2)  # model = load_pretrained(), the easy slip
    with pytest.raises(TypeError, match=r"tuple; load_pretrained\(\) returns"):
        denoising_steps((tiny_unet(), {}), DDIMScheduler(), SHAPE, 2)


def test_none_steps_mean_each_samplers_usual_count():
    """num_inference_steps=None: DDPM all T steps (DDPMPipeline), DDIM 50, DPM-Solver++ 20, in both
    denoising_steps and sample (issue 11: sample() used to run 50 DDPM steps, denoising_steps T)."""
    expected = {DDPMScheduler: 100, DDIMScheduler: 50, DPMSolverMultistepScheduler: 20}
    model = tiny_unet()
    for cls, n in expected.items():
        assert len(list(denoising_steps(dummy_eps, cls(num_train_timesteps=100), SHAPE, progress=False))) == n + 1
        scheduler = cls(num_train_timesteps=100)
        sample(model, scheduler, 1, progress=False)
        assert scheduler.num_inference_steps == n and default_num_inference_steps(scheduler) == n
    assert default_num_inference_steps(DDIMScheduler(num_train_timesteps=30)) == 30  # never more than T
    diffusers = pytest.importorskip("diffusers")
    assert default_num_inference_steps(diffusers.DDIMScheduler()) == 50
    with pytest.raises(ValueError, match="pass a number of steps"):
        default_num_inference_steps(diffusers.PNDMScheduler())


def test_mixed_precision_returns_fp32_samples():
    """bf16 autocast (where the hardware has it) changes the numbers a little, not the dtype or range."""
    model = tiny_unet()
    fp32 = sample(model, DDIMScheduler(), 2, 5, generator=torch.Generator().manual_seed(0), progress=False)
    mixed = sample(model, DDIMScheduler(), 2, 5, generator=torch.Generator().manual_seed(0), progress=False,
                   mixed_precision=True)
    assert mixed.dtype == torch.float32 and mixed.shape == fp32.shape
    assert mixed.abs().max() <= 1.0
    # measured on a bf16 CPU: mean |diff| ~0.01, max ~0.14 of the [-1, 1] range; why fp32 is the default
    assert (mixed - fp32).abs().mean() < 0.05 and (mixed - fp32).abs().max() < 0.5
