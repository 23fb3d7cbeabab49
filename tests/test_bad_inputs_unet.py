"""Bad inputs to the UNet, its converters and the pipeline folders: each gets a TypeError or
ValueError (FileNotFoundError for missing files) whose message names the argument and says what
is allowed; none ends in a traceback from inside torch, json or safetensors."""

import json
from pathlib import Path

import pytest
import torch

from ddpm_helpers.pipeline import load_pipeline, save_pipeline
from ddpm_helpers.scheduler import DDPMScheduler
from ddpm_helpers.unet import UNet

SMALL = dict(block_out_channels=(8, 16), norm_num_groups=4, attention_head_dim=8, sample_size=8)


def small(**overrides):
    torch.manual_seed(0)
    return UNet(**{**SMALL, **overrides}).eval()


X = torch.randn(2, 1, 8, 8)

# (id, call, error, phrases the message must contain: the argument, and what is allowed)
CONFIG_CASES = [
    ("in_channels=0", lambda: UNet(in_channels=0), ValueError, ["in_channels", ">= 1", "got 0"]),
    ("in_channels float", lambda: UNet(in_channels=1.5), TypeError, ["in_channels", "must be an int"]),
    ("sample_size not divisible", lambda: UNet(sample_size=30), ValueError, ["sample_size=30", "divisible by 4"]),
    ("width vs norm groups", lambda: UNet(block_out_channels=(32, 50)), ValueError,
     ["block_out_channels=(32, 50)", "norm_num_groups=8", "[50]"]),
    ("no widths", lambda: UNet(block_out_channels=()), TypeError, ["block_out_channels", "non-empty tuple of ints"]),
    ("width not an int", lambda: UNet(block_out_channels=(32, "48")), TypeError, ["block_out_channels[i]", "int"]),
    ("attention width vs head dim", lambda: UNet(block_out_channels=(32, 40), attention_head_dim=16), ValueError,
     ["attention_head_dim=16", "[40]", "None for one head"]),
    ("attention in a level vs head dim", lambda: UNet(block_out_channels=(24, 32), norm_num_groups=8,
                                                      down_block_types=("AttnDownBlock2D", "DownBlock2D")),
     ValueError, ["attention_head_dim=16", "[24]"]),
    ("too few block types", lambda: UNet(down_block_types=("DownBlock2D",)), ValueError,
     ["down_block_types has 1 entries", "3 levels"]),
    ("unknown block type", lambda: UNet(down_block_types=("CrossAttnDownBlock2D",) * 3), ValueError,
     ["down_block_types", "'DownBlock2D', 'AttnDownBlock2D'", "CrossAttnDownBlock2D"]),
    ("down block in the up path", lambda: UNet(up_block_types=("DownBlock2D",) * 3), ValueError,
     ["up_block_types", "'UpBlock2D', 'AttnUpBlock2D'"]),
    ("block types as one string", lambda: UNet(up_block_types="UpBlock2D"), TypeError,
     ["up_block_types", "tuple of block names"]),
    ("downsample_padding=2", lambda: UNet(downsample_padding=2), ValueError, ["downsample_padding", "0, 1"]),
    ("norm_eps=0", lambda: UNet(norm_eps=0), ValueError, ["norm_eps", "> 0"]),
    ("flip_sin_to_cos string", lambda: UNet(flip_sin_to_cos="yes"), TypeError, ["flip_sin_to_cos", "True or False"]),
    ("freq_shift NaN", lambda: UNet(freq_shift=float("nan")), ValueError, ["freq_shift", "finite", "[0, 16)"]),
    ("freq_shift too large", lambda: UNet(freq_shift=16), ValueError, ["freq_shift", "[0, 16)"]),
    ("dropout=1", lambda: UNet(dropout=1.0), ValueError, ["dropout", "[0, 1)"]),
    ("num_class_embeds=0", lambda: UNet(num_class_embeds=0), ValueError, ["num_class_embeds", ">= 1", "None"]),
    ("num_train_timesteps bool", lambda: UNet(num_train_timesteps=True), TypeError, ["num_train_timesteps", "int"]),
    ("old option name", lambda: UNet(image_size=32), TypeError, ["'image_size'", "sample_size"]),
    ("old attention option", lambda: UNet(attention_at_lowest=True), TypeError,
     ["'attention_at_lowest'", "AttnDownBlock2D"]),
    ("misspelt option", lambda: UNet(in_chanels=3), TypeError, ["'in_chanels'", "valid options", "in_channels"]),
    ("config as a dict", lambda: UNet({"in_channels": 3}), TypeError, ["config must be a UNetConfig", "from_config"]),
]

FORWARD_CASES = [
    ("integer images", lambda: small()(torch.zeros(2, 1, 8, 8, dtype=torch.long), 0), TypeError,
     ["sample", "float tensor", ".float()"]),
    ("numpy images", lambda: small()(X.numpy(), 0), TypeError, ["sample", "float tensor"]),
    ("one image without batch", lambda: small()(X[0], 0), ValueError, ["sample must be 4-D", "x[None]"]),
    ("wrong channels", lambda: small()(torch.randn(2, 3, 8, 8), 0), ValueError,
     ["sample has 3 channel(s)", "in_channels=1", "UNet(in_channels=3)"]),
    ("size not divisible", lambda: small()(torch.randn(2, 1, 9, 9), 0), ValueError, ["9x9", "divisible by 2"]),
    ("NaN in the images", lambda: small()(torch.full((2, 1, 8, 8), float("nan")), 0), ValueError,
     ["sample contains NaN", "diverged"]),
    ("timestep T", lambda: small()(X, 1000), ValueError, ["timestep", "[0, 999]", "0-indexed"]),
    ("timestep -1", lambda: small()(X, torch.tensor([-1, 3])), ValueError, ["timestep", "[0, 999]", "-1"]),
    ("timestep NaN", lambda: small()(X, float("nan")), ValueError, ["timestep", "NaN"]),
    ("timestep inf", lambda: small()(X, torch.tensor([1.0, float("inf")])), ValueError, ["timestep", "inf"]),
    ("timestep string", lambda: small()(X, "5"), TypeError, ["timestep", "int"]),
    ("timestep bool", lambda: small()(X, True), TypeError, ["timestep", "int"]),
    ("timestep per sample, wrong count", lambda: small()(X, torch.tensor([1, 2, 3])), ValueError,
     ["timestep", "(1,) or (2,)", "(3,)"]),
    ("labels for an unconditional model", lambda: small()(X, 3, class_labels=torch.tensor([1, 2])), ValueError,
     ["class_labels", "unconditional", "num_class_embeds"]),
    ("no labels for a conditional model", lambda: small(num_class_embeds=11)(X, 3), ValueError,
     ["class_labels is required", "[0, 10]", "10 means 'no label'"]),
    ("label out of range", lambda: small(num_class_embeds=11)(X, 3, class_labels=torch.tensor([1, 11])), ValueError,
     ["class_labels must be in [0, 10]", "11"]),
    ("float labels", lambda: small(num_class_embeds=11)(X, 3, class_labels=torch.tensor([1.0, 2.0])), TypeError,
     ["class_labels", "integer class indices", ".long()"]),
    ("labels wrong count", lambda: small(num_class_embeds=11)(X, 3, class_labels=torch.tensor([1, 2, 3])), ValueError,
     ["class_labels", "(2,)", "(3,)"]),
    ("labels as a string", lambda: small(num_class_embeds=11)(X, 3, class_labels="3"), TypeError,
     ["class_labels", "integer tensor"]),
]

FROM_CONFIG_CASES = [
    ("not a dict", lambda: UNet.from_config("unet/config.json"), TypeError, ["config must be a dict", "UNet2DModel"]),
    ("another model class", lambda: UNet.from_config({"_class_name": "UNet2DConditionModel"}), ValueError,
     ["UNet2DConditionModel", "UNet2DModel"]),
    ("fourier time embedding", lambda: UNet.from_config({"time_embedding_type": "fourier"}), ValueError,
     ["time_embedding_type", "'positional'", "fourier"]),
    ("scale-shift conditioning", lambda: UNet.from_config({"resnet_time_scale_shift": "scale_shift"}), ValueError,
     ["resnet_time_scale_shift", "'default'"]),
    ("centred input", lambda: UNet.from_config({"center_input_sample": True}), ValueError,
     ["center_input_sample", "False"]),
    ("timestep class embedding", lambda: UNet.from_config({"class_embed_type": "timestep"}), ValueError,
     ["class_embed_type", "None"]),
    ("no mid block", lambda: UNet.from_config({"mid_block_type": None}), ValueError, ["mid_block_type", "UNetMidBlock2D"]),
    ("mid block without attention", lambda: UNet.from_config({"add_attention": False}), ValueError,
     ["add_attention", "True"]),
    ("other activation", lambda: UNet.from_config({"act_fn": "gelu"}), ValueError, ["act_fn", "'silu'"]),
    ("resnet downsampling", lambda: UNet.from_config({"downsample_type": "resnet"}), ValueError,
     ["downsample_type", "'conv'"]),
    ("an option UNet2DModel lacks", lambda: UNet.from_config({"cross_attention_dim": 768}), ValueError,
     ["cross_attention_dim", "UNet2DModel does not have", "block_out_channels"]),
    ("a block type we lack", lambda: UNet.from_config({"down_block_types": ["SkipDownBlock2D"] * 4}), ValueError,
     ["down_block_types", "'DownBlock2D', 'AttnDownBlock2D'", "SkipDownBlock2D"]),
]


def _writer(tmp_path, edit):
    """A pipeline folder written by save_pipeline, then broken by ``edit(folder)``."""
    def make():
        folder = save_pipeline(tmp_path / "pipe", small(), DDPMScheduler())
        edit(folder)
        return load_pipeline(folder)
    return make


def _edit_json(path, **changes):
    def edit(folder):
        data = json.loads((folder / path).read_text())
        data.update(changes)
        (folder / path).write_text(json.dumps(data))
    return edit


def folder_cases(tmp_path):
    return [
        ("missing folder", lambda: load_pipeline(tmp_path / "nowhere"), FileNotFoundError,
         ["No pipeline folder", "nowhere", "save_pipeline"]),
        ("no model_index.json", _writer(tmp_path, lambda f: (f / "model_index.json").unlink()), FileNotFoundError,
         ["model_index.json", "is missing", "save_pipeline"]),
        ("no weights", _writer(tmp_path, lambda f: (f / "unet" / "diffusion_pytorch_model.safetensors").unlink()),
         FileNotFoundError, ["diffusion_pytorch_model.safetensors", "is missing", "save_pipeline"]),
        ("corrupt weights", _writer(tmp_path, lambda f: (f / "unet" / "diffusion_pytorch_model.safetensors")
                                    .write_bytes(b"\x00" * 64)), ValueError, ["weights", "corrupt or truncated"]),
        ("unet config not JSON", _writer(tmp_path, lambda f: (f / "unet" / "config.json").write_text("{oops")),
         ValueError, ["config.json", "not valid JSON"]),
        ("wrong pipeline class", _writer(tmp_path, _edit_json("model_index.json", _class_name="StableDiffusionPipeline")),
         ValueError, ["StableDiffusionPipeline", "DDPMPipeline and DDIMPipeline"]),
        ("wrong unet class", _writer(tmp_path, _edit_json("model_index.json", unet=["diffusers", "UNet2DConditionModel"])),
         ValueError, ["unet", "UNet2DConditionModel", "UNet2DModel"]),
        ("unsupported option in the folder", _writer(tmp_path, _edit_json("unet/config.json", center_input_sample=True)),
         ValueError, ["center_input_sample", "False"]),
        ("config of another model", _writer(tmp_path, _edit_json("unet/config.json", block_out_channels=[8, 32])),
         ValueError, ["do not fit the model its config describes", "wrong shape"]),
        ("unknown scheduler", _writer(tmp_path, _edit_json("model_index.json", scheduler=["diffusers", "PNDMScheduler"])),
         ValueError, ["PNDMScheduler", "DDPMScheduler, DDIMScheduler, DPMSolverMultistepScheduler"]),
        ("save: not our unet", lambda: save_pipeline(tmp_path / "p", torch.nn.Linear(2, 2), DDPMScheduler()), TypeError,
         ["unet must be the course's UNet or diffusers' UNet2DModel", "Linear"]),
        ("save: not a scheduler", lambda: save_pipeline(tmp_path / "p", small(), "ddpm"), TypeError,
         ["scheduler must be a DDPMScheduler, DDIMScheduler, DPMSolverMultistepScheduler", "str"]),
        ("save: folder is a file", lambda: (tmp_path.joinpath("file").write_text("x"),
                                            save_pipeline(tmp_path / "file", small(), DDPMScheduler())), ValueError,
         ["is a file", "folder"]),
    ]


def check(call, error, phrases):
    with pytest.raises(error) as info:
        call()
    assert type(info.value) is error, f"{type(info.value).__name__}: {info.value}"
    message = str(info.value)
    missing = [p for p in phrases if p not in message]
    assert not missing, f"message {message!r} lacks {missing}"


@pytest.mark.parametrize("name, call, error, phrases", CONFIG_CASES + FORWARD_CASES + FROM_CONFIG_CASES,
                         ids=[c[0] for c in CONFIG_CASES + FORWARD_CASES + FROM_CONFIG_CASES])
def test_bad_input_is_explained(name, call, error, phrases):
    check(call, error, phrases)


@pytest.mark.parametrize("index", range(len(folder_cases(Path(".")))),
                         ids=[c[0] for c in folder_cases(Path("."))])
def test_bad_folder_is_explained(tmp_path, index):
    name, call, error, phrases = folder_cases(tmp_path)[index]
    check(call, error, phrases)


def test_from_diffusers_refuses_other_models():
    pytest.importorskip("diffusers")
    check(lambda: UNet.from_diffusers(torch.nn.Linear(2, 2)), TypeError,
          ["UNet.from_diffusers takes a diffusers UNet2DModel", "Linear", "UNet.from_config"])


def test_cases_are_distinct():
    names = [c[0] for c in CONFIG_CASES + FORWARD_CASES + FROM_CONFIG_CASES + folder_cases(Path("."))]
    assert len(names) == len(set(names)) >= 60
