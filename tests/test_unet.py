"""The noise-prediction UNet: shapes, timesteps, labels, the diffusers-style call, counts, and the
shipped checkpoint (converted to today's layout, same outputs as the model it was trained as)."""

import math
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from ddpm_helpers.checkpoints import load_checkpoint, load_model, load_pretrained
from ddpm_helpers.data import DigitsDataset
from ddpm_helpers.pipeline import upgrade_legacy_config, upgrade_legacy_state_dict
from ddpm_helpers.scheduler import DDIMScheduler
from ddpm_helpers.training import TrainConfig, TrainingWarning, train
from ddpm_helpers.unet import (
    Downsample,
    SelfAttention,
    UNet,
    UNetConfig,
    UNetOutput,
    autocast_context,
    count_parameters,
    cpu_has_native_bf16,
    estimate_flops,
    timestep_embedding,
    trace_shapes,
)

DATA = Path(__file__).parent / "data"
TINY = dict(block_out_channels=(32, 64))  # two levels: fast, same code paths


def tiny(**overrides):
    torch.manual_seed(0)
    return UNet(**{**TINY, **overrides}).eval()


def eps(model, *args, **kwargs):
    with torch.no_grad():
        return model(*args, **kwargs).sample


@pytest.mark.parametrize("channels, size", [(1, 32), (3, 32), (1, 64), (3, 64)])
def test_output_shape_equals_input_shape(channels, size):
    model = tiny(in_channels=channels, sample_size=size)
    x_t = torch.randn(2, channels, size, size)
    assert eps(model, x_t, 10).shape == x_t.shape


def test_default_model_runs_on_default_images():
    torch.manual_seed(0)
    model = UNet()
    assert model.config == UNetConfig()
    assert eps(model, torch.randn(2, 1, 32, 32), torch.tensor([0, 999])).shape == (2, 1, 32, 32)


def test_out_channels_override():
    assert eps(tiny(in_channels=3, out_channels=6), torch.randn(1, 3, 32, 32), 0).shape == (1, 6, 32, 32)


def test_timestep_forms_agree():
    model = tiny()
    x_t = torch.randn(3, 1, 32, 32)
    reference = eps(model, x_t, torch.tensor([7, 7, 7]))
    for t in (7, 7.0, torch.tensor(7), torch.tensor([7]), torch.tensor([7.0, 7.0, 7.0])):
        torch.testing.assert_close(eps(model, x_t, t), reference)


def test_per_sample_timesteps_match_one_at_a_time():
    model, x_t, t = tiny(), torch.randn(3, 1, 32, 32), torch.tensor([0, 500, 999])
    apart = torch.cat([eps(model, x_t[i:i + 1], int(t[i])) for i in range(3)])
    torch.testing.assert_close(eps(model, x_t, t), apart, rtol=1e-4, atol=1e-5)


def test_return_dict_forms_are_diffusers():
    model, x_t = tiny(), torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        output, as_tuple = model(x_t, 3), model(x_t, 3, return_dict=False)
    assert isinstance(output, UNetOutput) and isinstance(as_tuple, tuple) and len(as_tuple) == 1
    torch.testing.assert_close(as_tuple[0], output.sample)
    assert output[0] is output.sample and output["sample"] is output.sample
    with pytest.raises(KeyError, match="only 'sample'"):
        output["prev_sample"]


def test_device_and_dtype_like_a_diffusers_model():
    model = tiny()
    assert model.device == torch.device("cpu") and model.dtype == torch.float32
    half = tiny().to(torch.bfloat16)
    assert half.dtype == torch.bfloat16
    assert eps(half, torch.randn(1, 1, 32, 32, dtype=torch.bfloat16), 5).dtype == torch.bfloat16


def test_model_uses_the_timestep():
    model, x_t = tiny(), torch.randn(2, 1, 32, 32)
    assert (eps(model, x_t, 10) - eps(model, x_t, 900)).abs().max() > 1e-3


def test_timestep_embedding_values():
    t = torch.tensor([0, 1, 10, 999])
    emb = timestep_embedding(t, 16)
    assert emb.shape == (4, 16)
    # t = 0: every sin is 0 and every cos is 1
    torch.testing.assert_close(emb[0, :8], torch.zeros(8))
    torch.testing.assert_close(emb[0, 8:], torch.ones(8))
    # frequency 0 is 1: the first column is sin(t) and column 8 is cos(t)
    torch.testing.assert_close(emb[:, 0], torch.sin(t.float()))
    torch.testing.assert_close(emb[:, 8], torch.cos(t.float()))
    # frequency i is 10000 ** (-i / 8)
    torch.testing.assert_close(emb[2, 3], torch.tensor(math.sin(10 * 10000 ** (-3 / 8))))
    # sin^2 + cos^2 = 1 per frequency
    torch.testing.assert_close(emb[:, :8] ** 2 + emb[:, 8:] ** 2, torch.ones(4, 8))


def test_timestep_embedding_flip_and_freq_shift():
    t = torch.tensor([0, 3, 500])
    emb = timestep_embedding(t, 16)
    torch.testing.assert_close(timestep_embedding(t, 16, flip_sin_to_cos=True), torch.cat([emb[:, 8:], emb[:, :8]], 1))
    shifted = timestep_embedding(t, 16, freq_shift=1)  # Ho et al.'s code: frequency i is 10000 ** (-i / 7)
    torch.testing.assert_close(shifted[2, 7], torch.tensor(math.sin(500 * 10000 ** (-7 / 7))))
    torch.testing.assert_close(shifted[2, 3], torch.tensor(math.sin(500 * 10000 ** (-3 / 7))), atol=1e-4, rtol=0)


def test_timestep_embedding_distinct_and_odd_dim():
    emb = timestep_embedding(torch.arange(1000), 32)
    distances = torch.cdist(emb, emb) + torch.eye(1000) * 10
    assert distances.min() > 1e-3  # no two timesteps share an embedding
    odd = timestep_embedding(torch.tensor([5.0, 6.0]), 7)
    assert odd.shape == (2, 7)
    torch.testing.assert_close(odd[:, -1], torch.zeros(2))
    torch.testing.assert_close(odd[:, :6], timestep_embedding(torch.tensor([5.0, 6.0]), 6))


def test_attention_in_the_levels_and_head_counts():
    model = tiny(down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"),
                 attention_head_dim=8)
    assert model.down_blocks[0].attentions is None and model.up_blocks[1].attentions is None
    assert [a.heads for a in model.down_blocks[1].attentions] == [8]  # 64 channels / 8 per head
    assert len(model.up_blocks[0].attentions) == 2 and model.mid_block.attentions[0].heads == 8
    assert tiny(attention_head_dim=None).mid_block.attentions[0].heads == 1  # None: one head, as in diffusers
    assert eps(model, torch.randn(2, 1, 32, 32), 3).shape == (2, 1, 32, 32)


def test_downsample_padding_zero_pads_bottom_and_right():
    torch.manual_seed(0)
    down, x = Downsample(4, padding=0), torch.randn(1, 4, 8, 8)
    expected = F.conv2d(F.pad(x, (0, 1, 0, 1)), down.conv.weight, down.conv.bias, stride=2)
    torch.testing.assert_close(down(x), expected)
    assert eps(tiny(downsample_padding=0), torch.randn(1, 1, 32, 32), 3).shape == (1, 1, 32, 32)


def test_class_embedding_is_added_to_the_time_embedding():
    """A conditional model whose label vectors are zero computes the unconditional model."""
    conditional = tiny(num_class_embeds=11)
    assert conditional.class_embedding.weight.shape == (11, 4 * 32)
    x_t, t, labels = torch.randn(3, 1, 32, 32), torch.tensor([5, 500, 900]), torch.tensor([0, 3, 10])
    assert (eps(conditional, x_t, t, class_labels=labels) - eps(conditional, x_t, t, class_labels=labels.roll(1))).abs().max() > 1e-4
    torch.testing.assert_close(eps(conditional, x_t, t, class_labels=7), eps(conditional, x_t, t, class_labels=[7, 7, 7]))
    unconditional = tiny()
    unconditional.load_state_dict({k: v for k, v in conditional.state_dict().items() if k != "class_embedding.weight"})
    with torch.no_grad():
        conditional.class_embedding.weight.zero_()
    torch.testing.assert_close(eps(conditional, x_t, t, class_labels=labels), eps(unconditional, x_t, t))


def test_old_option_names_say_their_new_names():
    with pytest.raises(TypeError, match="'image_size' is now sample_size"):
        UNet(image_size=32)
    with pytest.raises(TypeError, match="'norm_groups' is now norm_num_groups"):
        UNet(norm_groups=8)


def test_count_parameters_by_hand():
    """A one-level UNet, counted layer by layer (weights + biases)."""
    model = UNet(block_out_channels=(4,), norm_num_groups=2, attention_head_dim=4, sample_size=8)
    time_embedding = (4 * 16 + 16) + (16 * 16 + 16)  # 4 -> 16 -> 16
    conv_in, norm_out, conv_out = 1 * 4 * 9 + 4, 2 * 4, 4 * 1 * 9 + 1
    resnet_4_to_4 = 2 * 4 + (4 * 4 * 9 + 4) + (16 * 4 + 4) + 2 * 4 + (4 * 4 * 9 + 4)  # norm1 conv1 time norm2 conv2
    resnet_8_to_4 = 2 * 8 + (8 * 4 * 9 + 4) + (16 * 4 + 4) + 2 * 4 + (4 * 4 * 9 + 4) + (8 * 4 + 4)  # + 1x1 shortcut
    attention = 2 * 4 + (4 * 12 + 12) + (4 * 4 + 4)  # group_norm, to_qkv, to_out
    expected = time_embedding + conv_in + resnet_4_to_4 + (2 * resnet_4_to_4 + attention) + 2 * resnet_8_to_4 \
        + norm_out + conv_out
    assert count_parameters(model) == expected == 2801
    assert count_parameters(UNet()) == 897_473  # the course's default: lesson 3 prints this
    frozen = UNet(block_out_channels=(4,), norm_num_groups=2, attention_head_dim=4)
    frozen.conv_out.requires_grad_(False)
    assert count_parameters(frozen) == expected - conv_out  # trainable parameters only


def _flops_by_hand(model, x_t):
    """2 FLOPs per multiply-add: convs, linears, and attention's QK^T and AV (2 N^2 C each)."""
    total, hooks = [0], []

    def count(module, args, out):
        if isinstance(module, torch.nn.Conv2d):
            kh, kw = module.kernel_size
            total[0] += 2 * out.numel() * (module.in_channels // module.groups) * kh * kw
        elif isinstance(module, torch.nn.Linear):
            total[0] += 2 * out.numel() * module.in_features
        elif isinstance(module, SelfAttention):
            B, C, H, W = args[0].shape
            total[0] += 2 * 2 * B * (H * W) ** 2 * C

    for module in model.modules():
        hooks.append(module.register_forward_hook(count))
    with torch.no_grad():
        model(x_t, 0)
    for hook in hooks:
        hook.remove()
    return total[0]


@pytest.mark.parametrize("size, batch", [(32, 1), (64, 2)])
def test_estimate_flops_matches_count_by_hand(size, batch):
    model = tiny()
    assert estimate_flops(model, image_size=size, batch=batch) == _flops_by_hand(model, torch.zeros(batch, 1, size, size))


def test_estimate_flops_of_a_conditional_model_counts_the_same_network():
    assert estimate_flops(tiny(num_class_embeds=11)) == estimate_flops(tiny())  # an embedding lookup costs no FLOPs


def test_trace_shapes_lists_blocks_in_order():
    model = tiny()
    rows = trace_shapes(model, torch.randn(2, 1, 32, 32), 5)
    assert rows[0] == ("conv_in", (2, 32, 32, 32))
    assert rows[-1] == ("conv_out", (2, 1, 32, 32))
    shapes = dict(rows)
    assert shapes["down_blocks.0.downsample"] == (2, 32, 16, 16)
    assert shapes["mid_block.attentions.0"] == (2, 64, 16, 16)
    assert shapes["up_blocks.0.upsample"] == (2, 64, 32, 32)
    assert not model._forward_hooks and not model.conv_in._forward_hooks  # hooks removed


@pytest.mark.skipif(not cpu_has_native_bf16(), reason="this CPU has no native bf16")
def test_bf16_autocast_close_to_fp32():
    model, x_t = tiny(), torch.randn(4, 1, 32, 32)
    fp32 = eps(model, x_t, 100)
    with autocast_context("cpu"):
        bf16 = eps(model, x_t, 100)
    assert bf16.dtype == torch.bfloat16
    torch.testing.assert_close(bf16.float(), fp32, rtol=0.1, atol=0.05)


def test_autocast_context_is_a_context_manager():
    with autocast_context("cpu"):
        y = torch.ones(2, 2) @ torch.ones(2, 2)
    assert y.dtype == (torch.bfloat16 if cpu_has_native_bf16() else torch.float32)


def test_seed_training_step_reaches_every_parameter():
    """The seed's loop, as written, runs on our model and trains every weight (labels too)."""
    model = tiny(num_class_embeds=11, down_block_types=("AttnDownBlock2D", "DownBlock2D")).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=4e-4)
    clean_images = torch.rand(4, 1, 32, 32) * 2 - 1
    noise = torch.randn(clean_images.shape)
    timesteps = torch.randint(0, 1000, (4,)).long()
    noisy_images = clean_images + noise  # stands in for noise_scheduler.add_noise
    noise_pred = model(noisy_images, timesteps, class_labels=torch.tensor([0, 1, 2, 10]), return_dict=False)[0]
    loss = F.mse_loss(noise_pred, noise)
    loss.backward(loss)
    dead = [name for name, p in model.named_parameters()
            if (p.grad is None or p.grad.abs().sum() == 0) and not name.startswith("class_embedding")]
    assert not dead, f"parameters without gradient: {dead}"
    assert (model.class_embedding.weight.grad.abs().sum(1) > 0).tolist() == [True] * 3 + [False] * 7 + [True]
    optimizer.step()
    optimizer.zero_grad()


def test_our_config_round_trips_through_diffusers_names_without_diffusers():
    config = UNetConfig(block_out_channels=(8, 16), norm_num_groups=4, attention_head_dim=8, sample_size=8,
                        up_block_types=("AttnUpBlock2D", "UpBlock2D"), num_class_embeds=3)
    model = UNet(config)
    rebuilt = UNet.from_config(model.diffusers_config())
    assert rebuilt.config == UNetConfig(**{**vars(config), "out_channels": 1, "down_block_types": ("DownBlock2D",) * 2})
    rebuilt.load_state_dict(model.state_dict())
    x_t = torch.randn(2, 1, 8, 8)
    torch.testing.assert_close(eps(rebuilt, x_t, 9, class_labels=1), eps(model, x_t, 9, class_labels=1))


# ---- the shipped checkpoint and checkpoints of the earlier layout ----

def test_shipped_checkpoint_reproduces_the_model_it_was_trained_as():
    """tests/data/digits_unet_reference.safetensors was computed with the old UNet code (commit 89cccf1,
    tests/data/make_digits_reference.py) from the file as it was then; the converted file gives the
    same noise predictions and the same DDIM-10 samples."""
    ref = load_file(DATA / "digits_unet_reference.safetensors")
    model, scheduler_config = load_pretrained()
    assert model.config == UNetConfig()  # the shipped model is the course's default config
    # float32 rounding differs between CPUs (the reference was computed with AVX-512 kernels; on an AVX2
    # CPU the sums run in another order): 1.9e-5 seen. A wrong layout or weight is off by ~0.1 or more.
    atol = 5e-5
    torch.testing.assert_close(eps(model, ref["x_t"], ref["t"]), ref["eps_per_sample"], rtol=0, atol=atol)
    torch.testing.assert_close(eps(model, ref["x_t"], 500), ref["eps_t500"], rtol=0, atol=atol)
    ddim = DDIMScheduler(**scheduler_config)
    ddim.set_timesteps(10)
    x = torch.randn(4, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    for t in ddim.timesteps:
        x = ddim.step(eps(model, x, t), t, x).prev_sample
    torch.testing.assert_close(x, ref["ddim10_seed0"], rtol=0, atol=atol)


def test_legacy_config_names_map_to_the_same_network():
    old = {"in_channels": 1, "out_channels": None, "image_size": 8, "block_out_channels": [4, 8], "layers_per_block": 1,
           "attention_at_lowest": True, "attention_heads": 2, "time_embed_dim": None, "norm_groups": 2, "dropout": 0.0,
           "num_train_timesteps": 1000}
    new = upgrade_legacy_config(old)
    assert new["sample_size"] == 8 and new["norm_num_groups"] == 2 and new["attention_head_dim"] == 4
    assert new["down_block_types"] == ["DownBlock2D", "AttnDownBlock2D"]
    assert new["up_block_types"] == ["AttnUpBlock2D", "UpBlock2D"]
    assert not set(new) & {"image_size", "norm_groups", "attention_heads", "attention_at_lowest", "time_embed_dim"}
    assert upgrade_legacy_config(new) is new  # today's configs pass unchanged
    renamed = upgrade_legacy_state_dict(dict.fromkeys(["time_mlp.0.weight", "down.1.blocks.0.skip.bias", "mid_attn.qkv.weight",
                                                       "up.0.attentions.1.norm.bias", "up.0.resample.conv.weight",
                                                       "mid_block2.time_proj.weight", "norm_out.weight"]))
    assert list(renamed) == ["time_embedding.linear_1.weight", "down_blocks.1.resnets.0.conv_shortcut.bias",
                             "mid_block.attentions.0.to_qkv.weight", "up_blocks.0.attentions.1.group_norm.bias",
                             "up_blocks.0.upsample.conv.weight", "mid_block.resnets.1.time_emb_proj.weight",
                             "conv_norm_out.weight"]
    names = list(UNet().state_dict())
    assert list(upgrade_legacy_state_dict(dict.fromkeys(names))) == names  # today's names pass unchanged


def test_legacy_checkpoint_and_export_load_with_the_old_outputs():
    """tests/data/legacy_*: a tiny run written by the old code (make_legacy_checkpoint.py) and the EMA
    model's predictions the old code made from it."""
    ref = load_file(DATA / "legacy_resumed_step5.safetensors")
    x, t = ref["x"], torch.tensor([3, 900])
    exported, _ = load_pretrained(DATA / "legacy_export.safetensors")
    from_checkpoint, _ = load_model(DATA / "legacy_checkpoint.pt")
    for model in (exported, from_checkpoint):
        torch.testing.assert_close(eps(model, x, t), ref["eps_ema_step2"], rtol=0, atol=1e-6)
    checkpoint = load_checkpoint(DATA / "legacy_checkpoint.pt", model=UNet(**upgrade_legacy_config(
        torch.load(DATA / "legacy_checkpoint.pt", weights_only=True)["model_config"])))
    assert checkpoint["model_config"]["attention_head_dim"] == 4 and "image_size" not in checkpoint["model_config"]


def test_legacy_checkpoint_resumes(tmp_path):
    """An old run loads into today's layout exactly (weights, EMA and optimizer state renamed and
    renumbered) and resumes. Not bit for bit as the old code would have continued: the random
    stream changed since (exact 63-bit seeds), and train() says so."""
    path = tmp_path / "checkpoint.pt"
    shutil.copy(DATA / "legacy_checkpoint.pt", path)
    old = torch.load(path, weights_only=True)
    config = upgrade_legacy_config(old["model_config"])
    fast = dict(batch_size=4, warmup_steps=2, log_every=2, checkpoint_every_s=None, bf16=False)
    data = DigitsDataset(n=32, image_size=8)
    with pytest.warns(TrainingWarning, match="drew its random numbers differently"):
        loaded = train(UNet(**config), data, TrainConfig(num_steps=old["step"], **fast), checkpoint_path=path,
                       progress=False)
    assert loaded.step == old["step"] == 2
    for name, tensor in upgrade_legacy_state_dict(old["model"]).items():
        torch.testing.assert_close(loaded.model.state_dict()[name], tensor, rtol=0, atol=0, msg=name)
    for name, tensor in upgrade_legacy_state_dict(old["ema"]["shadow"]).items():
        torch.testing.assert_close(loaded.ema.shadow[name], tensor, rtol=0, atol=0, msg=name)
    moments = [s["exp_avg_sq"] for s in loaded.optimizer.state_dict()["state"].values()]
    assert len(moments) == len(old["optimizer"]["state"]) and all(m.abs().sum() > 0 for m in moments)
    with pytest.warns(TrainingWarning, match="drew its random numbers differently"):
        state = train(UNet(**config), data, TrainConfig(num_steps=5, **fast), checkpoint_path=path, progress=False)
    assert state.step == 5 and math.isfinite(state.losses[-1])
    assert "sample_size" in load_checkpoint(path)["model_config"]  # saved again in today's names
