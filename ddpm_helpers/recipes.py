"""Training recipes by name, for ``python -m ddpm_helpers train --recipe NAME``.

``"seed"`` is the task of the document the course grew from, the training loop of Hugging
Face's diffusion course (unit 1): its UNet2DModel configuration built as our UNet, 1000
butterflies from the Smithsonian at 32x32 RGB (resize, random horizontal flip, to [-1, 1]),
DDPMScheduler(1000, "squaredcos_cap_v2"), the plain mean loss, AdamW at 4e-4 without warmup or
clipping, batch 64, 30 epochs. It needs the Hugging Face hub (``--dataset FOLDER`` trains it on
your own images).
"""

from .unet import UNet

# diffusers' UNet2DModel arguments of the unit 1 notebook (its other arguments are diffusers' defaults)
SEED_UNET = dict(sample_size=32, in_channels=3, out_channels=3, layers_per_block=2,
                 block_out_channels=(64, 128, 128, 256),
                 down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"),
                 up_block_types=("AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D", "UpBlock2D"))

RECIPES = {
    "seed": dict(dataset="huggan/smithsonian_butterflies_subset", image_size=32, channels=3, epochs=30,
                 batch_size=64, learning_rate=4e-4, warmup_steps=0, grad_clip=None, min_snr_gamma=None,
                 timestep_logit_std=None, lr_cooldown=None, unet=SEED_UNET, out="runs/seed"),
}

def build_unet(**options):
    """Our UNet from diffusers' UNet2DModel arguments, e.g. ``build_unet(**SEED_UNET)``."""
    return UNet(**options)
