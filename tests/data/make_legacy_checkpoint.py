"""A tiny training checkpoint in the course's earlier UNet layout (commit 89cccf1), its
export, and where the run goes after resuming for 3 more steps (old code)."""
import shutil, torch
from safetensors.torch import save_file
from ddpm_helpers.data import DigitsDataset
from ddpm_helpers.training import TrainConfig, train, export_weights
from ddpm_helpers.unet import UNet

torch.set_num_threads(1)
FAST = dict(batch_size=4, warmup_steps=2, log_every=2, checkpoint_every_s=None, bf16=False)
data = DigitsDataset(n=32, image_size=8)
def model():
    torch.manual_seed(0)
    return UNet(image_size=8, block_out_channels=(4, 8), norm_groups=2, attention_heads=2,
                attention_at_lowest=True)
ck = "/tmp/legacy_run/checkpoint.pt"
shutil.rmtree("/tmp/legacy_run", ignore_errors=True)
train(model(), data, TrainConfig(num_steps=2, **FAST), checkpoint_path=ck, progress=False)
shutil.copy(ck, "tests/data/legacy_checkpoint.pt")
export_weights(ck, "tests/data/legacy_export.safetensors")
state = train(model(), data, TrainConfig(num_steps=5, **FAST), checkpoint_path=ck, progress=False)
x = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
ema = state.ema_model
with torch.no_grad():
    eps_ema_step2 = None
    eps = ema(x, torch.tensor([3, 900]))
save_file({**{"model." + k: v.contiguous() for k, v in state.model.state_dict().items()},
           **{"ema." + k: v.contiguous() for k, v in state.ema.shadow.items()},
           "x": x, "eps_ema_step5": eps.contiguous()}, "tests/data/legacy_resumed_step5.safetensors")
print(state.step, sum(p.numel() for p in state.model.parameters()))
# then: eps_ema_step2 = load_pretrained("tests/data/legacy_export.safetensors")[0](x, [3, 900]), added to the same file
