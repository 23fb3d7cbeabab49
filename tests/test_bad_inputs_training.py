"""Bad inputs to TrainConfig, train() and the checkpoint functions: each gets a ValueError or
TypeError whose message names the argument and what is allowed (the command line's bad inputs
are in test_cli.py)."""

import pytest
import torch

from ddpm_helpers.data import DigitsDataset
from ddpm_helpers.recipes import build_unet
from ddpm_helpers.training import TrainConfig, export_weights, load_checkpoint, load_model, load_pretrained, train

FAST = dict(num_steps=1, batch_size=4, checkpoint_every_s=None, mixed_precision="no")

CONFIGS = [  # (TrainConfig arguments, exception, fragments of the message)
    (dict(num_steps=-5), ValueError, ["num_steps", ">= 1", "-5", "None"]),
    (dict(num_steps=0), ValueError, ["num_steps", ">= 1"]),
    (dict(num_steps=2.5), TypeError, ["num_steps", "int", "2.5"]),
    (dict(num_steps="100"), TypeError, ["num_steps", "int"]),
    (dict(num_steps=None), ValueError, ["num_steps or time_budget_s", "never stops"]),
    (dict(batch_size=0), ValueError, ["batch_size", ">= 1"]),
    (dict(batch_size=True), TypeError, ["batch_size", "int"]),
    (dict(learning_rate=0), ValueError, ["learning_rate", "> 0"]),
    (dict(learning_rate=-1e-3), ValueError, ["learning_rate", "> 0"]),
    (dict(learning_rate=float("nan")), ValueError, ["learning_rate", "finite", "nan"]),
    (dict(learning_rate=float("inf")), ValueError, ["learning_rate", "finite"]),
    (dict(learning_rate="1e-3"), TypeError, ["learning_rate", "number"]),
    (dict(warmup_steps=-1), ValueError, ["warmup_steps", ">= 0"]),
    (dict(weight_decay=-0.1), ValueError, ["weight_decay", ">= 0"]),
    (dict(grad_clip=-1), ValueError, ["grad_clip", "> 0", "None"]),
    (dict(grad_clip=0), ValueError, ["grad_clip", "> 0", "None turns clipping off"]),
    (dict(ema_decay=-0.5), ValueError, ["ema_decay", "[0, 1)"]),
    (dict(ema_decay=1.0), ValueError, ["ema_decay", "[0, 1)"]),
    (dict(ema_decay=1.5), ValueError, ["ema_decay", "[0, 1)"]),
    (dict(ema_decay=float("nan")), ValueError, ["ema_decay", "finite"]),
    (dict(seed=-1), ValueError, ["seed", ">= 0"]),
    (dict(seed=1.5), TypeError, ["seed", "int"]),
    (dict(num_train_timesteps=0), ValueError, ["num_train_timesteps", ">= 2"]),
    (dict(beta_schedule="cosine"), ValueError, ["beta_schedule", "'squaredcos_cap_v2'", "'cosine'"]),
    (dict(label_dropout=1.0), ValueError, ["label_dropout", "[0, 1)"]),
    (dict(label_dropout=-0.1), ValueError, ["label_dropout", "[0, 1)"]),
    (dict(checkpoint_every=0), ValueError, ["checkpoint_every", ">= 1"]),
    (dict(checkpoint_every_s=-1), ValueError, ["checkpoint_every_s", "> 0", "None"]),
    (dict(log_every=0), ValueError, ["log_every", ">= 1"]),
    (dict(time_budget_s=0), ValueError, ["time_budget_s", "> 0"]),
    (dict(min_snr_gamma=0), ValueError, ["min_snr_gamma", "> 0", "None turns it off"]),
    (dict(min_snr_gamma="5"), TypeError, ["min_snr_gamma"]),
    (dict(timestep_logit_std=0), ValueError, ["timestep_logit_std", "> 0", "None draws t uniformly"]),
    (dict(lr_cooldown=0), ValueError, ["lr_cooldown", "(0, 1]", "None keeps the lr constant"]),
    (dict(lr_cooldown=1.5), ValueError, ["lr_cooldown", "(0, 1]"]),
    (dict(mixed_precision="fp32"), ValueError, ["mixed_precision", "'bf16'", "'fp32'"]),
    (dict(bf16="yes"), ValueError, ["bf16", "True", "mixed_precision"]),
    (dict(device=3), TypeError, ["device", "'cpu'"]),
]


@pytest.mark.parametrize("kwargs, error, fragments", CONFIGS, ids=[repr(c[0]) for c in CONFIGS])
def test_train_config_refuses(kwargs, error, fragments):
    with pytest.raises(error) as caught:
        TrainConfig(**kwargs)
    for fragment in fragments:
        assert fragment in str(caught.value), (fragment, str(caught.value))


@pytest.fixture(scope="module")
def digits():
    return DigitsDataset(n=16, image_size=16)


def tiny_unet():
    return build_unet(sample_size=16, block_out_channels=(8, 16), norm_num_groups=4)


class NoLabels(torch.nn.Module):
    """A conditional model whose forward takes no class_labels."""

    def __init__(self, num_class_embeds=11):
        super().__init__()
        self.config = type("Config", (), {"num_class_embeds": num_class_embeds})()
        self.weight = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x, t):
        return x * self.weight


class Conditional(NoLabels):
    def forward(self, x, t, class_labels=None):
        return x * self.weight


class Unlabelled(torch.utils.data.Dataset):
    def __len__(self):
        return 8

    def __getitem__(self, i):
        return {"images": torch.zeros(1, 16, 16), "labels": torch.tensor(-1)}


class Tuples(Unlabelled):
    def __getitem__(self, i):
        return torch.zeros(1, 16, 16), 0


def bright(digits):
    data = DigitsDataset(n=16, image_size=16)
    data.images = (data.images + 1) * 127.5  # [0, 255]
    return data


TRAIN_CALLS = [  # (id, call(digits, tmp_path), exception, fragments)
    ("model is a string", lambda d, p: train("unet", d, TrainConfig(**FAST)), TypeError,
     ["model", "torch.nn.Module"]),
    ("config is a dict", lambda d, p: train(tiny_unet(), d, {"num_steps": 1}), TypeError,
     ["config", "TrainConfig"]),
    ("dataset is a number", lambda d, p: train(tiny_unet(), 5, TrainConfig(**FAST)), TypeError,
     ["dataset", "indexable"]),
    ("empty dataset", lambda d, p: train(tiny_unet(), [], TrainConfig(**FAST)), ValueError,
     ["dataset is empty", "load_dataset('digits')"]),
    ("items are tuples", lambda d, p: train(tiny_unet(), Tuples(), TrainConfig(**FAST)), TypeError,
     ["dataset items", "'images'"]),
    ("images in [0, 255]", lambda d, p: train(tiny_unet(), bright(d), TrainConfig(**FAST)), ValueError,
     ["[-1, 1]", "to_model_range(x) = 2 x - 1"]),
    ("checkpoint_path is a folder", lambda d, p: train(tiny_unet(), d, TrainConfig(**FAST), checkpoint_path=p),
     ValueError, ["checkpoint_path", "is a folder", "checkpoint.pt"]),
    ("callbacks is a function", lambda d, p: train(tiny_unet(), d, TrainConfig(**FAST), callbacks=print),
     TypeError, ["callbacks", "list of functions"]),
    ("device not a device", lambda d, p: train(tiny_unet(), d, TrainConfig(**{**FAST, "device": "gpu"})),
     ValueError, ["config.device", "'gpu'", "'cuda'"]),
    ("fp16 on the CPU", lambda d, p: train(tiny_unet(), d, TrainConfig(**{**FAST, "mixed_precision": "fp16",
                                                                         "device": "cpu"})),
     ValueError, ["mixed_precision", "fp16", "'bf16'"]),
    ("conditional model, no labels", lambda d, p: train(Conditional(), Unlabelled(), TrainConfig(**FAST)),
     ValueError, ["class-conditional", "labels", "num_class_embeds"]),
    ("labels out of range", lambda d, p: train(Conditional(num_class_embeds=5), d, TrainConfig(**FAST)),
     ValueError, ["labels must be in [0, 3]", "num_class_embeds=11"]),
    ("num_class_embeds without class_labels", lambda d, p: train(NoLabels(), d, TrainConfig(**FAST)), TypeError,
     ["num_class_embeds", "class_labels"]),
    ("num_class_embeds=1", lambda d, p: train(Conditional(num_class_embeds=1), d, TrainConfig(**FAST)),
     ValueError, ["num_class_embeds", ">= 2", "'no label'"]),
]


@pytest.mark.parametrize("call, error, fragments", [c[1:] for c in TRAIN_CALLS], ids=[c[0] for c in TRAIN_CALLS])
def test_train_refuses(digits, tmp_path, call, error, fragments):
    with pytest.raises(error) as caught:
        call(digits, tmp_path)
    for fragment in fragments:
        assert fragment in str(caught.value), (fragment, str(caught.value))


def test_cuda_that_is_not_here_is_refused(digits, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match=r"config\.device 'cuda'.*no CUDA GPU.*'cpu'"):
        train(tiny_unet(), digits, TrainConfig(**{**FAST, "device": "cuda"}))


@pytest.fixture(scope="module")
def checkpoint(digits, tmp_path_factory):
    path = tmp_path_factory.mktemp("run") / "checkpoint.pt"
    torch.manual_seed(0)
    train(tiny_unet(), digits, TrainConfig(**FAST), checkpoint_path=path, progress=False)
    return path


def junk(tmp_path):
    path = tmp_path / "junk.pt"
    path.write_bytes(bytes(range(256)) * 8)
    return path


CHECKPOINT_CALLS = [
    ("load a missing file", lambda c, p: load_checkpoint(p / "nope.pt"), FileNotFoundError,
     ["No checkpoint at", "python -m ddpm_helpers train"]),
    ("load junk bytes", lambda c, p: load_checkpoint(junk(p)), ValueError,
     ["not a ddpm_helpers training checkpoint", "Check the path"]),
    ("load_model of a folder", lambda c, p: load_model(c.parent), ValueError, ["is a folder", "checkpoint.pt"]),
    ("load_pretrained of a checkpoint", lambda c, p: load_pretrained(c), ValueError,
     ["training checkpoint", "load_model(", "export"]),
    ("load_pretrained of junk", lambda c, p: load_pretrained(junk(p)), ValueError,
     ["not a ddpm_helpers .safetensors weights file"]),
    ("load_pretrained of a missing file", lambda c, p: load_pretrained(p / "none.safetensors"), FileNotFoundError,
     ["No weights at", "python -m ddpm_helpers export"]),
    ("export dtype fp8", lambda c, p: export_weights(c, p / "w.safetensors", dtype="fp8"), ValueError,
     ["dtype", "'fp16'", "'fp8'"]),
    ("export onto a folder", lambda c, p: export_weights(c, p), ValueError, ["out_path", "is a folder"]),
    ("export below a file", lambda c, p: export_weights(c, c / "w.safetensors"), ValueError,
     ["out_path", "is a file, not a folder"]),
    ("export of junk", lambda c, p: export_weights(junk(p), p / "w.safetensors"), ValueError,
     ["not a ddpm_helpers training checkpoint"]),
    ("resume with another model", lambda c, p: load_checkpoint(c, model=build_unet(
        sample_size=16, block_out_channels=(8, 32), norm_num_groups=4)), ValueError,
     ["block_out_channels=[8, 16] in the checkpoint", "[8, 32]", "load_model"]),
]


@pytest.mark.parametrize("call, error, fragments", [c[1:] for c in CHECKPOINT_CALLS],
                         ids=[c[0] for c in CHECKPOINT_CALLS])
def test_checkpoint_functions_refuse(checkpoint, tmp_path, call, error, fragments):
    with pytest.raises(error) as caught:
        call(checkpoint, tmp_path)
    for fragment in fragments:
        assert fragment in str(caught.value), (fragment, str(caught.value))
