"""Classifier-free guidance in every sampler (Ho & Salimans 2022, arXiv 2207.12598, eq. 6):

    eps_hat = eps(x_t, null) + w (eps(x_t, y) - eps(x_t, null)),

both predictions from one forward pass over the batch twice. A conditional model has
``config.num_class_embeds = K + 1``; label K means "no label". Tested on a stand-in whose
noise prediction is known in closed form, and on diffusers' UNet2DModel(num_class_embeds=11),
the reference, against hand-written guided loops.
"""

from types import SimpleNamespace

import pytest
import torch

from ddpm_helpers.dpm_solver import DPMSolverMultistepScheduler
from ddpm_helpers.sampling import denoising_steps, sample
from ddpm_helpers.scheduler import DDIMScheduler, DDPMScheduler

NULL = 10  # digits: 10 classes, label 10 is "no label"
B = 4
SHAPE = (B, 1, 8, 8)


class StandIn(torch.nn.Module):
    """A class-conditional noise predictor with diffusers' call signature:
    eps(x, t, y) = 0.5 cos(t / 300) x + image_y, one fixed random image per label."""

    def __init__(self, num_classes=10, channels=1, size=8):
        super().__init__()
        self.config = SimpleNamespace(num_class_embeds=num_classes + 1, in_channels=channels, sample_size=size)
        generator = torch.Generator().manual_seed(0)
        self.label_images = torch.nn.Parameter(0.3 * torch.randn(num_classes + 1, channels, size, size,
                                                                 generator=generator))
        self.batch_sizes = []  # the batch of every forward call

    def forward(self, sample, timestep, class_labels=None, return_dict=True):
        self.batch_sizes.append(len(sample))
        t = torch.as_tensor(timestep, dtype=sample.dtype)
        eps = 0.5 * sample * torch.cos(t / 300) + self.label_images[class_labels]
        return SimpleNamespace(sample=eps) if return_dict else (eps,)


def diffusers_unet():
    diffusers = pytest.importorskip("diffusers")
    torch.manual_seed(0)
    return diffusers.UNet2DModel(sample_size=8, in_channels=1, out_channels=1, block_out_channels=(8, 16),
                                 layers_per_block=1, norm_num_groups=4, num_class_embeds=NULL + 1,
                                 down_block_types=("DownBlock2D", "DownBlock2D"),
                                 up_block_types=("UpBlock2D", "UpBlock2D")).eval()


SAMPLERS = {
    "DDPM": (lambda: DDPMScheduler(num_train_timesteps=100), {}),
    "DDIM eta=1": (lambda: DDIMScheduler(beta_schedule="squaredcos_cap_v2"), {"eta": 1.0}),
    "DPM-Solver++ SDE": (lambda: DPMSolverMultistepScheduler(algorithm_type="sde-dpmsolver++"), {}),
    "DPM-Solver++": (DPMSolverMultistepScheduler, {}),
}
LABELS = torch.tensor([3, 7, 0, 9])


def run(model, sampler, seed=0, n=8, shape=SHAPE, **kwargs):
    make, step_kwargs = SAMPLERS[sampler]
    return list(denoising_steps(model, make(), shape, n, generator=torch.Generator().manual_seed(seed),
                                progress=False, **step_kwargs, **kwargs))


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_w0_is_the_null_label_and_w1_the_label(sampler):
    model = StandIn()
    null_only = run(model, sampler, class_labels=NULL)[-1].x_t
    conditional = run(model, sampler, class_labels=LABELS)[-1].x_t
    torch.testing.assert_close(run(model, sampler, class_labels=LABELS, guidance_scale=0.0)[-1].x_t, null_only,
                               rtol=0, atol=1e-6)
    torch.testing.assert_close(run(model, sampler, class_labels=LABELS, guidance_scale=1)[-1].x_t, conditional,
                               rtol=0, atol=1e-5)
    assert (run(model, sampler, class_labels=LABELS, guidance_scale=3.0)[-1].x_t - conditional).abs().max() > 1e-2


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_one_step_is_eq_6_computed_by_hand(sampler):
    model, w = StandIn(), 2.5
    states = run(model, sampler, class_labels=LABELS, guidance_scale=w)
    make, step_kwargs = SAMPLERS[sampler]
    scheduler = make()
    scheduler.set_timesteps(8)
    t, x_T = scheduler.timesteps[0], states[0].x_t
    cos = torch.cos(t.float() / 300)
    eps_null = 0.5 * x_T * cos + model.label_images[NULL]
    eps_y = 0.5 * x_T * cos + model.label_images[LABELS]
    eps_hat = eps_null + w * (eps_y - eps_null)  # Ho & Salimans 2022, eq. (6), w = 1 + theirs
    generator = torch.Generator().manual_seed(0)
    torch.randn(SHAPE, generator=generator)  # x_T, drawn first
    out = scheduler.step(eps_hat, t, x_T, generator=generator, **step_kwargs)
    torch.testing.assert_close(states[0].pred_x0, out.pred_original_sample, rtol=0, atol=1e-6)
    torch.testing.assert_close(states[1].x_t, out.prev_sample, rtol=0, atol=1e-6)


def test_one_batched_forward_per_step_and_one_without_guidance():
    model = StandIn()
    run(model, "DDPM", class_labels=LABELS, guidance_scale=4.0)
    assert model.batch_sizes == [2 * B] * 8  # null and labelled halves in one call
    model.batch_sizes.clear()
    run(model, "DDPM", class_labels=LABELS)
    assert model.batch_sizes == [B] * 8


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_seeded(sampler):
    model = StandIn()
    a, b, c = (run(model, sampler, seed=s, class_labels=LABELS, guidance_scale=3.0)[-1].x_t for s in (1, 1, 2))
    assert torch.equal(a, b) and (a - c).abs().max() > 1e-2


def test_int_label_is_the_same_label_for_every_image_and_none_is_unconditional():
    model = StandIn()
    torch.testing.assert_close(run(model, "DDIM eta=1", class_labels=7, guidance_scale=2.0)[-1].x_t,
                               run(model, "DDIM eta=1", class_labels=torch.full((B,), 7), guidance_scale=2.0)[-1].x_t,
                               rtol=0, atol=0)
    # a conditional model without labels samples unconditionally: the null label
    torch.testing.assert_close(run(model, "DDPM")[-1].x_t, run(model, "DDPM", class_labels=NULL)[-1].x_t,
                               rtol=0, atol=0)


def test_sample_in_batches_splits_the_labels():
    model = StandIn()
    labels = torch.tensor([1, 2, 3, 4, 5])
    got = sample(model, DDIMScheduler(), 5, 6, generator=torch.Generator().manual_seed(0), progress=False,
                 batch_size=2, class_labels=labels, guidance_scale=3.0)
    generator, expected = torch.Generator().manual_seed(0), []
    for start, size in ((0, 2), (2, 2), (4, 1)):
        *_, last = denoising_steps(model, DDIMScheduler(), (size, 1, 8, 8), 6, generator=generator, progress=False,
                                   class_labels=labels[start:start + size], guidance_scale=3.0)
        expected.append(last.x_t)
    assert torch.equal(got, torch.cat(expected))


def hand_guided_loop(unet, scheduler, n, labels, w, seed, **step_kwargs):
    """The guided loop written out, with two separate forward passes per step (the reference)."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn((len(labels), 1, 8, 8), generator=generator)
    scheduler.set_timesteps(n)
    null = torch.full_like(labels, unet.config.num_class_embeds - 1)
    for t in scheduler.timesteps:
        with torch.no_grad():
            eps_null = unet(x, t, class_labels=null).sample
            eps_y = unet(x, t, class_labels=labels).sample
        eps = eps_null + w * (eps_y - eps_null)
        x = scheduler.step(eps, t, x, generator=generator, **step_kwargs).prev_sample
    return x


def course_unet():
    """The course's conditional UNet holding the same weights as diffusers_unet()."""
    from ddpm_helpers.unet import UNet

    return UNet.from_diffusers(diffusers_unet()).eval()


@pytest.mark.parametrize("make_unet", [diffusers_unet, course_unet], ids=["diffusers", "ours"])
@pytest.mark.parametrize("sampler", SAMPLERS)
def test_guided_loop_on_a_real_unet_matches_a_hand_written_loop(sampler, make_unet):
    unet = make_unet()
    make, step_kwargs = SAMPLERS[sampler]
    got = sample(unet, make(), B, 6, generator=torch.Generator().manual_seed(5), progress=False,
                 class_labels=LABELS, guidance_scale=3.0, **step_kwargs)
    expected = hand_guided_loop(unet, make(), 6, LABELS, 3.0, seed=5, **step_kwargs)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
    # w = 0 on the real network: the null label alone
    null_only = sample(unet, make(), B, 6, generator=torch.Generator().manual_seed(5), progress=False,
                       class_labels=NULL, **step_kwargs)
    w0 = sample(unet, make(), B, 6, generator=torch.Generator().manual_seed(5), progress=False,
                class_labels=LABELS, guidance_scale=0, **step_kwargs)
    torch.testing.assert_close(w0, null_only, rtol=0, atol=1e-5)


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_our_unet_guides_like_diffusers_unet_with_the_same_weights(sampler):
    make, step_kwargs = SAMPLERS[sampler]
    runs = [sample(unet, make(), B, 6, generator=torch.Generator().manual_seed(2), progress=False,
                   class_labels=LABELS, guidance_scale=2.0, **step_kwargs) for unet in (diffusers_unet(), course_unet())]
    torch.testing.assert_close(runs[1], runs[0], rtol=0, atol=1e-4)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(class_labels=11), ValueError, r"class_labels must be in \[0, 10\]"),
    (dict(class_labels=-1), ValueError, r"class_labels must be in \[0, 10\]"),
    (dict(class_labels=torch.tensor([1, 2, 11, 3])), ValueError, r"class_labels must be in \[0, 10\]"),
    (dict(class_labels=torch.tensor([1.0, 2.0, 3.0, 4.0])), TypeError, "class_labels must hold integers"),
    (dict(class_labels=2.0), TypeError, "class_labels must be an int"),
    (dict(class_labels=torch.tensor([1, 2, 3])), ValueError,
     r"class_labels must be one int or a tensor of shape \(4,\)"),
    (dict(guidance_scale=3.0), ValueError, "guidance_scale=3.0 needs class_labels"),
    (dict(class_labels=3, guidance_scale=-1.0), ValueError, "guidance_scale must be >= 0"),
    (dict(class_labels=3, guidance_scale=float("nan")), ValueError, "guidance_scale must be a finite number"),
])
def test_bad_labels_and_scales_are_refused_when_called(kwargs, error, match):
    with pytest.raises(error, match=match):
        denoising_steps(StandIn(), DDIMScheduler(), SHAPE, 5, **kwargs)


def test_labels_on_an_unconditional_model_are_refused():
    def unconditional(x, t):
        return x

    with pytest.raises(ValueError, match="class_labels were given, but the model is unconditional"):
        denoising_steps(unconditional, DDIMScheduler(), SHAPE, 5, class_labels=3)
