"""Same weights, same outputs: our UNet against diffusers' UNet2DModel (in the spirit of minGPT's
test_huggingface_import.py). For random-weight models of several configs, the converted model
gives diffusers' output to 1e-5 in float32, in both directions, and has the same parameter count."""

import inspect

import pytest
import torch

from ddpm_helpers.pipeline import DIFFUSERS_DEFAULTS, UNSUPPORTED, from_diffusers_state_dict, to_diffusers_state_dict
from ddpm_helpers.unet import UNet, count_parameters, estimate_flops

diffusers = pytest.importorskip("diffusers")

SEED_UNIT1 = dict(  # Hugging Face diffusion course, unit 1 (the seed's model), RGB 32x32
    sample_size=32, in_channels=3, out_channels=3, layers_per_block=2, block_out_channels=(64, 128, 128, 256),
    down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"),
    up_block_types=("AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D", "UpBlock2D"))
GOOGLE_CIFAR10 = dict(  # google/ddpm-cifar10-32: attention at 16x16 only, Ho et al.'s embedding and padding
    sample_size=32, in_channels=3, out_channels=3, block_out_channels=(128, 256, 256, 256), layers_per_block=2,
    down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
    flip_sin_to_cos=False, freq_shift=1, downsample_padding=0, norm_eps=1e-6)
CONFIGS = {
    "course default": UNet().diffusers_config(),
    "HF unit 1 (seed)": SEED_UNIT1,
    "google ddpm-cifar10-32": GOOGLE_CIFAR10,
    "google ddpm-cifar10-32, one head": {**GOOGLE_CIFAR10, "attention_head_dim": None},  # as its config.json says
    "class-conditional digits": dict(sample_size=32, in_channels=1, out_channels=1, block_out_channels=(32, 64, 64),
                                     layers_per_block=1, norm_num_groups=8, attention_head_dim=16, num_class_embeds=11,
                                     down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
                                     up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D")),
}
PARAMETERS = {"HF unit 1 (seed)": 18_536_323}  # what diffusers reports for the seed's model (18.54M)
TIMESTEPS = [0, torch.tensor(500), torch.tensor([3, 999])]  # an int, a 0-d tensor, one per sample


def randomise(model, seed=0):
    """Perturb every parameter (norm weights and biases included) by ~20% of its size, so that a
    wrong mapping cannot hide behind a zero, a one or a symmetric init."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            scale = p.abs().mean() if p.abs().mean() > 0 else torch.tensor(0.1)
            p.add_(0.2 * scale * torch.randn(p.shape, generator=generator))
    return model.eval()


def random_diffusers_unet(config):
    torch.manual_seed(0)
    return randomise(diffusers.UNet2DModel(**config))


def inputs(config, batch=2):
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(batch, config["in_channels"], config["sample_size"], config["sample_size"], generator=generator)
    labels = {"class_labels": torch.tensor([3, 10])} if config.get("num_class_embeds") else {}
    return x, labels


def max_difference(model_a, model_b, config):
    x, labels = inputs(config)
    worst, size = 0.0, 0.0
    with torch.no_grad():
        for t in TIMESTEPS:
            a, b = model_a(x, t, **labels).sample, model_b(x, t, **labels).sample
            worst, size = max(worst, (a - b).abs().max().item()), max(size, a.abs().max().item())
    assert size > 0.1, "outputs near zero would make the comparison meaningless"
    return worst


@pytest.mark.parametrize("name", CONFIGS)
def test_diffusers_weights_give_diffusers_outputs(name):
    reference = random_diffusers_unet(CONFIGS[name])
    ours = UNet.from_diffusers(reference)
    assert count_parameters(ours) == count_parameters(reference) == PARAMETERS.get(name, count_parameters(reference))
    assert max_difference(ours, reference, CONFIGS[name]) < 1e-5


@pytest.mark.parametrize("name", CONFIGS)
def test_to_diffusers_gives_back_the_same_weights_and_outputs(name):
    reference = random_diffusers_unet(CONFIGS[name])
    back = UNet.from_diffusers(reference).to_diffusers()
    assert type(back) is diffusers.UNet2DModel
    original, returned = reference.state_dict(), back.state_dict()
    assert list(returned) == list(original)
    for key in original:
        assert torch.equal(returned[key], original[key]), key
    for key in ("block_out_channels", "down_block_types", "up_block_types", "attention_head_dim", "freq_shift",
                "flip_sin_to_cos", "downsample_padding", "norm_eps", "num_class_embeds"):
        plain = [list(v) if isinstance(v, tuple) else v for v in (back.config[key], reference.config[key])]
        assert plain[0] == plain[1], key


@pytest.mark.parametrize("name", ["course default", "class-conditional digits", "google ddpm-cifar10-32"])
def test_our_random_model_in_diffusers_gives_our_outputs(name):
    """The other direction: a random UNet of ours, converted to UNet2DModel."""
    torch.manual_seed(0)
    ours = randomise(UNet.from_config(CONFIGS[name]), seed=1)
    assert max_difference(ours.to_diffusers().eval(), ours, CONFIGS[name]) < 1e-5


def test_the_seed_model_built_from_scratch_has_diffusers_parameter_count():
    """The seed's UNet2DModel config builds our UNet directly, without diffusers' weights."""
    assert count_parameters(UNet.from_config(SEED_UNIT1)) == 18_536_323
    assert round(count_parameters(UNet.from_config(SEED_UNIT1)) / 1e6, 2) == 18.54


def test_state_dict_mapping_is_pure_and_invertible():
    reference = random_diffusers_unet(CONFIGS["class-conditional digits"])
    ours = from_diffusers_state_dict(reference.state_dict())
    assert set(ours) == set(UNet.from_config(CONFIGS["class-conditional digits"]).state_dict())
    back = to_diffusers_state_dict(ours)
    assert set(back) == set(reference.state_dict())
    assert all(torch.equal(back[k], v) for k, v in reference.state_dict().items())


def test_old_hub_attention_names_are_read():
    """Older hub checkpoints (google/ddpm-*) name attention query/key/value/proj_attn, as diffusers'
    loader still accepts; so does ours."""
    reference = random_diffusers_unet(CONFIGS["class-conditional digits"])
    renames = {"to_q": "query", "to_k": "key", "to_v": "value", "to_out.0": "proj_attn"}
    old_style = {}
    for key, tensor in reference.state_dict().items():
        for new, old in renames.items():
            key = key.replace(f".{new}.", f".{old}.")
        old_style[key] = tensor
    assert any(".proj_attn." in key for key in old_style)
    assert from_diffusers_state_dict(old_style).keys() == from_diffusers_state_dict(reference.state_dict()).keys()
    for key, tensor in from_diffusers_state_dict(old_style).items():
        assert torch.equal(tensor, from_diffusers_state_dict(reference.state_dict())[key])


def test_option_tables_match_unet2dmodel():
    """Our record of UNet2DModel's options and defaults is diffusers' own: every __init__ argument
    is either implemented (with the default we assume) or listed as unsupported with its default first."""
    signature = inspect.signature(diffusers.UNet2DModel.__init__).parameters
    options = {name: p.default for name, p in signature.items() if name != "self"}
    assert set(options) == set(DIFFUSERS_DEFAULTS) | set(UNSUPPORTED)
    for name, default in DIFFUSERS_DEFAULTS.items():
        assert options[name] == default, name
    for name, allowed in UNSUPPORTED.items():
        assert options[name] == allowed[0], name


def test_estimate_flops_counts_diffusers_models_the_same():
    config = CONFIGS["class-conditional digits"]
    reference = random_diffusers_unet(config)
    assert estimate_flops(reference) == estimate_flops(UNet.from_diffusers(reference)) > 0
