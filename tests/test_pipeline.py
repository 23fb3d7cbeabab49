"""Saving and loading the diffusers way, offline: folders diffusers' DDPMPipeline reads, folders it
writes, and our UNet running inside diffusers' pipelines. Every folder is written by the test."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ddpm_helpers.dpm_solver import DPMSolverMultistepScheduler
from ddpm_helpers.pipeline import DIFFUSERS_VERSION, load_pipeline, save_pipeline
from ddpm_helpers.scheduler import DDIMScheduler, DDPMScheduler
from ddpm_helpers.unet import UNet

ROOT = Path(__file__).resolve().parents[1]


def tiny_unet(**overrides):
    torch.manual_seed(0)
    model = UNet(block_out_channels=(8, 16), norm_num_groups=4, attention_head_dim=8, sample_size=8,
                 down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"),
                 **overrides)
    with torch.no_grad():  # norms and biases away from their init, so a wrong mapping shows
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model.eval()


def eps(model, x, t, **kwargs):
    with torch.no_grad():
        return model(x, t, **kwargs).sample


X = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(1))


def test_folder_layout_and_contents(tmp_path):
    model, scheduler = tiny_unet(), DDPMScheduler(beta_schedule="squaredcos_cap_v2")
    folder = save_pipeline(tmp_path / "pipe", model, scheduler)
    files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    assert files == ["model_index.json", "scheduler/scheduler_config.json", "unet/config.json",
                     "unet/diffusion_pytorch_model.safetensors"]
    index = json.loads((folder / "model_index.json").read_text())
    assert index == {"_class_name": "DDPMPipeline", "_diffusers_version": DIFFUSERS_VERSION,
                     "unet": ["diffusers", "UNet2DModel"], "scheduler": ["diffusers", "DDPMScheduler"]}
    unet_config = json.loads((folder / "unet" / "config.json").read_text())
    assert unet_config["_class_name"] == "UNet2DModel" and unet_config["block_out_channels"] == [8, 16]
    assert unet_config["up_block_types"] == ["AttnUpBlock2D", "UpBlock2D"] and unet_config["out_channels"] == 1
    scheduler_config = json.loads((folder / "scheduler" / "scheduler_config.json").read_text())
    assert scheduler_config == {"_class_name": "DDPMScheduler", "_diffusers_version": DIFFUSERS_VERSION,
                                **dict(scheduler.config)}
    assert not list(folder.rglob("*.tmp"))  # atomic writes leave no temp files


@pytest.mark.parametrize("scheduler_class", [DDPMScheduler, DDIMScheduler, DPMSolverMultistepScheduler])
def test_our_folder_round_trips(tmp_path, scheduler_class):
    model = tiny_unet()
    scheduler = scheduler_class(num_train_timesteps=500, beta_schedule="squaredcos_cap_v2")
    loaded, loaded_scheduler = load_pipeline(save_pipeline(tmp_path, model, scheduler))
    assert not loaded.training and loaded.config == UNet.from_config(model.diffusers_config()).config
    torch.testing.assert_close(eps(loaded, X, 7), eps(model, X, 7), rtol=0, atol=0)
    assert type(loaded_scheduler) is scheduler_class and dict(loaded_scheduler.config) == dict(scheduler.config)


def test_conditional_model_round_trips(tmp_path):
    model = tiny_unet(num_class_embeds=11)
    loaded, _ = load_pipeline(save_pipeline(tmp_path, model, DDPMScheduler()))
    assert loaded.config.num_class_embeds == 11
    labels = torch.tensor([2, 10])
    torch.testing.assert_close(eps(loaded, X, 7, class_labels=labels), eps(model, X, 7, class_labels=labels))


def test_saving_and_loading_needs_no_diffusers(tmp_path):
    """In a process where `import diffusers` fails, the package imports, saves and loads a folder."""
    code = f"""
import sys
sys.modules["diffusers"] = None  # any import of diffusers now raises ImportError
import torch
import ddpm_helpers, ddpm_helpers.unet, ddpm_helpers.pipeline, ddpm_helpers.training
from ddpm_helpers.pipeline import save_pipeline, load_pipeline
from ddpm_helpers.scheduler import DDPMScheduler
from ddpm_helpers.unet import UNet
model = UNet(block_out_channels=(8, 16), norm_num_groups=4, attention_head_dim=8, sample_size=8).eval()
loaded, scheduler = load_pipeline(save_pipeline({str(tmp_path)!r}, model, DDPMScheduler()))
x = torch.randn(1, 1, 8, 8)
assert torch.equal(loaded(x, 3).sample, model(x, 3).sample)
print("ok")
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.stdout.strip() == "ok", result.stderr


def test_importing_the_package_does_not_import_diffusers():
    code = ("import sys, ddpm_helpers, ddpm_helpers.unet, ddpm_helpers.pipeline, ddpm_helpers.training, "
            "ddpm_helpers.sampling; print('diffusers' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.stdout.strip() == "False", result.stderr


# ---- with diffusers ----

@pytest.fixture(scope="module")
def diffusers():
    return pytest.importorskip("diffusers")


def test_diffusers_loads_our_folder_and_makes_our_images(tmp_path, diffusers):
    model, scheduler = tiny_unet(), DDPMScheduler(beta_schedule="squaredcos_cap_v2")
    pipe = diffusers.DDPMPipeline.from_pretrained(save_pipeline(tmp_path, model, scheduler))
    assert type(pipe.unet) is diffusers.UNet2DModel and type(pipe.scheduler) is diffusers.DDPMScheduler
    assert pipe.scheduler.config.beta_schedule == "squaredcos_cap_v2"
    for t in (0, torch.tensor(500), torch.tensor([3, 999])):
        torch.testing.assert_close(eps(pipe.unet, X, t), eps(model, X, t), rtol=0, atol=1e-5)
    ours_in_pipeline = diffusers.DDPMPipeline(unet=model, scheduler=diffusers.DDPMScheduler.from_config(pipe.scheduler.config))
    images = [p(batch_size=2, generator=torch.Generator().manual_seed(0), num_inference_steps=10, output_type="np").images
              for p in (pipe, ours_in_pipeline)]
    assert images[0].shape == (2, 8, 8, 1)
    assert abs(images[0] - images[1]).max() < 1e-5


def test_our_scheduler_loads_into_diffusers_from_our_folder(tmp_path, diffusers):
    folder = save_pipeline(tmp_path, tiny_unet(), DDIMScheduler(beta_schedule="squaredcos_cap_v2", clip_sample=False))
    pipe = diffusers.DDPMPipeline.from_pretrained(folder)
    assert type(pipe.scheduler) is diffusers.DDIMScheduler and pipe.scheduler.config.clip_sample is False


def test_a_folder_diffusers_saved_loads_into_ours(tmp_path, diffusers):
    torch.manual_seed(0)
    unet2d = diffusers.UNet2DModel(sample_size=8, in_channels=1, out_channels=1, block_out_channels=(8, 16),
                                   norm_num_groups=4, attention_head_dim=8, layers_per_block=1, num_class_embeds=5,
                                   down_block_types=("DownBlock2D", "AttnDownBlock2D"),
                                   up_block_types=("AttnUpBlock2D", "UpBlock2D"), flip_sin_to_cos=False, freq_shift=1)
    with torch.no_grad():
        for p in unet2d.parameters():
            p.add_(0.1 * torch.randn_like(p))
    reference = diffusers.DDPMScheduler(beta_schedule="squaredcos_cap_v2", num_train_timesteps=500)
    diffusers.DDPMPipeline(unet=unet2d, scheduler=reference).save_pretrained(tmp_path)
    model, scheduler = load_pipeline(tmp_path)
    labels = torch.tensor([4, 0])
    torch.testing.assert_close(eps(model, X, 77, class_labels=labels), eps(unet2d.eval(), X, 77, class_labels=labels),
                               rtol=0, atol=1e-5)
    assert type(scheduler) is DDPMScheduler
    assert (scheduler.config.beta_schedule, scheduler.config.num_train_timesteps) == ("squaredcos_cap_v2", 500)
    torch.testing.assert_close(scheduler.alphas_cumprod, reference.alphas_cumprod)


def test_a_diffusers_scheduler_saves_and_loads_as_ours(tmp_path, diffusers):
    """save_pipeline takes diffusers' scheduler too; its extra options (thresholding, trained_betas, ...)
    are written, and ours reads the ones it has."""
    reference = diffusers.DDIMScheduler(beta_schedule="squaredcos_cap_v2", clip_sample=False)
    folder = save_pipeline(tmp_path, tiny_unet(), reference)
    written = json.loads((folder / "scheduler" / "scheduler_config.json").read_text())
    assert written["_class_name"] == "DDIMScheduler" and written["thresholding"] is False
    _, scheduler = load_pipeline(folder)
    assert type(scheduler) is DDIMScheduler and scheduler.config.clip_sample is False
    scheduler.set_timesteps(20)
    reference.set_timesteps(20)
    assert torch.equal(scheduler.timesteps, reference.timesteps)
    torch.testing.assert_close(scheduler.alphas_cumprod, reference.alphas_cumprod)


def test_a_hub_style_folder_with_bin_weights_loads(tmp_path, diffusers):
    """Older hub repos ship diffusion_pytorch_model.bin; it is read with weights_only=True."""
    unet2d = diffusers.UNet2DModel(sample_size=8, in_channels=1, out_channels=1, block_out_channels=(8, 16),
                                   norm_num_groups=4, layers_per_block=1,
                                   down_block_types=("DownBlock2D", "AttnDownBlock2D"),
                                   up_block_types=("AttnUpBlock2D", "UpBlock2D"))
    diffusers.DDPMPipeline(unet=unet2d, scheduler=diffusers.DDPMScheduler()).save_pretrained(
        tmp_path, safe_serialization=False)
    assert (tmp_path / "unet" / "diffusion_pytorch_model.bin").is_file()
    model, _ = load_pipeline(tmp_path)
    torch.testing.assert_close(eps(model, X, 5), eps(unet2d.eval(), X, 5), rtol=0, atol=1e-5)


@pytest.mark.parametrize("scheduler_name", ["diffusers", "ours"])
def test_ddpm_pipeline_runs_our_unet(scheduler_name, diffusers):
    """Hugging Face unit 1's `DDPMPipeline(unet=model, scheduler=noise_scheduler)` with our UNet makes
    the images it makes with the same weights in diffusers' UNet2DModel."""
    model = tiny_unet()
    make = (lambda: diffusers.DDPMScheduler(beta_schedule="squaredcos_cap_v2")) if scheduler_name == "diffusers" \
        else (lambda: DDPMScheduler(beta_schedule="squaredcos_cap_v2"))
    ours = diffusers.DDPMPipeline(unet=model, scheduler=make())
    theirs = diffusers.DDPMPipeline(unet=model.to_diffusers().eval(), scheduler=make())
    images = [p(batch_size=2, generator=torch.Generator().manual_seed(0), num_inference_steps=20, output_type="np").images
              for p in (ours, theirs)]
    assert images[0].shape == (2, 8, 8, 1) and images[0].std() > 0.01
    assert abs(images[0] - images[1]).max() < 1e-5
