"""Reference outputs of the shipped digits model, computed with the course's UNet as it was at
commit 89cccf1 (the layout the checkpoint was trained with), before the diffusers layout."""
import torch
from safetensors.torch import save_file
from ddpm_helpers.checkpoints import load_pretrained
from ddpm_helpers.data import render_digits
from ddpm_helpers.scheduler import DDIMScheduler, DDPMScheduler

torch.set_num_threads(1)
model, scheduler_config = load_pretrained()
ddpm = DDPMScheduler(**scheduler_config)
x0, _ = render_digits(6, seed=1)
g = torch.Generator().manual_seed(0)
t = torch.tensor([0, 100, 300, 500, 800, 999])
x_t = ddpm.add_noise(x0, torch.randn(x0.shape, generator=g), t)
with torch.no_grad():
    eps_per_sample = model(x_t, t)
    eps_t500 = model(x_t, 500)
ddim = DDIMScheduler(**scheduler_config)
ddim.set_timesteps(10)
g = torch.Generator().manual_seed(0)
x = torch.randn(4, 1, 32, 32, generator=g)
with torch.no_grad():
    for step_t in ddim.timesteps:
        x = ddim.step(model(x, step_t), step_t, x).prev_sample
save_file({"x_t": x_t.contiguous(), "t": t, "eps_per_sample": eps_per_sample.contiguous(),
           "eps_t500": eps_t500.contiguous(), "ddim10_seed0": x.contiguous()},
          "tests/data/digits_unet_reference.safetensors",
          metadata={"made_with": "ddpm_helpers at commit 89cccf1 (old layout), see tests/test_unet.py"})
print(eps_per_sample.abs().mean(), x.min(), x.max(), ddim.timesteps)
