"""The noise-prediction UNet: shapes, timestep handling, the seed's call, input checks."""

import math

import pytest
import torch
import torch.nn.functional as F

from ddpm_helpers.unet import (
    UNet,
    UNetConfig,
    SelfAttention,
    UNetOutput,
    autocast_context,
    count_parameters,
    cpu_has_native_bf16,
    estimate_flops,
    timestep_embedding,
    trace_shapes,
)

TINY = dict(block_out_channels=(32, 64))  # two levels: fast, same code paths


def tiny(**overrides):
    torch.manual_seed(0)
    return UNet(**{**TINY, **overrides}).eval()


@pytest.mark.parametrize("channels, size", [(1, 32), (3, 32), (1, 64), (3, 64)])
def test_output_shape_equals_input_shape(channels, size):
    model = tiny(in_channels=channels, image_size=size)
    x_t = torch.randn(2, channels, size, size)
    with torch.no_grad():
        assert model(x_t, 10).shape == x_t.shape


def test_default_model_runs_on_default_images():
    torch.manual_seed(0)
    model = UNet()
    assert model.config == UNetConfig()
    x_t = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        assert model(x_t, torch.tensor([0, 999])).shape == (2, 1, 32, 32)


def test_out_channels_override():
    model = tiny(in_channels=3, out_channels=6)
    with torch.no_grad():
        assert model(torch.randn(1, 3, 32, 32), 0).shape == (1, 6, 32, 32)


def test_timestep_forms_agree():
    model = tiny()
    x_t = torch.randn(3, 1, 32, 32)
    with torch.no_grad():
        reference = model(x_t, torch.tensor([7, 7, 7]))
        for t in (7, 7.0, torch.tensor(7), torch.tensor([7]), torch.tensor([7.0, 7.0, 7.0])):
            torch.testing.assert_close(model(x_t, t), reference)


def test_per_sample_timesteps_match_one_at_a_time():
    model = tiny()
    x_t, t = torch.randn(3, 1, 32, 32), torch.tensor([0, 500, 999])
    with torch.no_grad():
        together = model(x_t, t)
        apart = torch.cat([model(x_t[i:i + 1], int(t[i])) for i in range(3)])
    torch.testing.assert_close(together, apart, rtol=1e-4, atol=1e-5)


def test_return_dict_forms():
    model = tiny()
    x_t = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        eps_pred = model(x_t, 3)
        as_tuple = model(x_t, 3, return_dict=False)
        as_output = model(x_t, 3, return_dict=True)
    assert isinstance(as_tuple, tuple) and len(as_tuple) == 1
    assert isinstance(as_output, UNetOutput)
    torch.testing.assert_close(as_tuple[0], eps_pred)
    torch.testing.assert_close(as_output.sample, eps_pred)


def test_model_uses_the_timestep():
    model = tiny()
    x_t = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        difference = (model(x_t, 10) - model(x_t, 900)).abs().max()
    assert difference > 1e-3


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


def test_timestep_embedding_distinct_and_odd_dim():
    emb = timestep_embedding(torch.arange(1000), 32)
    distances = torch.cdist(emb, emb) + torch.eye(1000) * 10
    assert distances.min() > 1e-3  # no two timesteps share an embedding
    odd = timestep_embedding(torch.tensor([5.0, 6.0]), 7)
    assert odd.shape == (2, 7)
    torch.testing.assert_close(odd[:, -1], torch.zeros(2))
    torch.testing.assert_close(odd[:, :6], timestep_embedding(torch.tensor([5.0, 6.0]), 6))


@pytest.mark.skipif(not cpu_has_native_bf16(), reason="this CPU has no native bf16")
def test_bf16_autocast_close_to_fp32():
    model = tiny()
    x_t = torch.randn(4, 1, 32, 32)
    with torch.no_grad():
        fp32 = model(x_t, 100)
        with autocast_context("cpu"):
            bf16 = model(x_t, 100)
    assert bf16.shape == fp32.shape
    torch.testing.assert_close(bf16.float(), fp32, rtol=0.1, atol=0.05)


def test_autocast_context_is_a_context_manager():
    with autocast_context("cpu"):
        y = torch.ones(2, 2) @ torch.ones(2, 2)
    expected = torch.bfloat16 if cpu_has_native_bf16() else torch.float32
    assert y.dtype == expected


@pytest.mark.parametrize("bad, error, match", [
    (torch.randn(1, 32, 32), ValueError, "4-D"),
    (torch.randn(2, 3, 32, 32), ValueError, r"built for 1 channel.*UNet\(in_channels=3\)"),
    (torch.randn(2, 1, 33, 33), ValueError, "33x33 must be divisible by 2"),
    (torch.zeros(2, 1, 32, 32, dtype=torch.long), TypeError, "float"),
    (torch.randn(2, 1, 32, 32).numpy(), TypeError, "float tensor"),
])
def test_bad_samples_are_explained(bad, error, match):
    with pytest.raises(error, match=match):
        tiny()(bad, 0)


@pytest.mark.parametrize("bad, error, match", [
    (1000, ValueError, r"\[0, 1000\)"),
    (-1, ValueError, r"\[0, 1000\)"),
    (torch.tensor([0, 1, 2]), ValueError, "B=2"),
    (torch.zeros(2, 1), ValueError, "0-d tensor or a"),
    ("5", TypeError, "int, a float or a tensor"),
    (True, TypeError, "int, a float or a tensor"),
])
def test_bad_timesteps_are_explained(bad, error, match):
    with pytest.raises(error, match=match):
        tiny()(torch.randn(2, 1, 32, 32), bad)


def test_bad_config_is_explained():
    with pytest.raises(TypeError, match="unknown UNet option"):
        UNet(in_chanels=3)
    with pytest.raises(ValueError, match="divisible by norm_groups"):
        UNet(block_out_channels=(48, 96), norm_groups=32)


def test_count_parameters():
    model = tiny()
    assert count_parameters(model) == sum(p.numel() for p in model.parameters())


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
    expected = _flops_by_hand(model, torch.zeros(batch, 1, size, size))
    assert estimate_flops(model, image_size=size, batch=batch) == expected


def test_trace_shapes_lists_blocks_in_order():
    model = tiny()
    rows = trace_shapes(model, torch.randn(2, 1, 32, 32), 5)
    assert rows[0] == ("conv_in", (2, 32, 32, 32))
    assert rows[-1] == ("conv_out", (2, 1, 32, 32))
    shapes = dict(rows)
    assert shapes["down.0.resample"] == (2, 32, 16, 16)
    assert shapes["mid_attn"] == (2, 64, 16, 16)
    assert not model._forward_hooks and not model.conv_in._forward_hooks  # hooks removed


def test_seed_training_step_reaches_every_parameter():
    """The seed's loop, as written, runs on our model and trains every weight."""
    model = tiny().train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=4e-4)
    clean_images = torch.rand(4, 1, 32, 32) * 2 - 1
    noise = torch.randn(clean_images.shape)
    timesteps = torch.randint(0, 1000, (4,)).long()
    noisy_images = clean_images + noise  # stands in for noise_scheduler.add_noise
    noise_pred = model(noisy_images, timesteps, return_dict=False)[0]
    loss = F.mse_loss(noise_pred, noise)
    loss.backward(loss)
    dead = [name for name, p in model.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not dead, f"parameters without gradient: {dead}"
    optimizer.step()
    optimizer.zero_grad()
