"""Lesson 3: the residual-block and forward-path checks, the UNet diagram drawn from the config,
and the notebook's exercises (stored unsolved, their folded solutions right)."""

import re
from pathlib import Path

import matplotlib.pyplot as plt
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from ddpm_helpers import unet
from ddpm_helpers.exercises import check_residual_block, check_unet_forward, show_hint
from ddpm_helpers.plotting import draw_unet, unet_layout
from notebook_cells import exercise_cells

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "notebooks" / "03_unet.ipynb"


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def first_hint(capsys):
    out = capsys.readouterr().out
    assert out.startswith("Not yet. Hint 1 of "), out
    return out


# --- check_residual_block ---------------------------------------------------------------------


class Block(nn.Module):
    """A right residual block, written as a learner would; the mistakes below override forward."""

    def __init__(self, in_ch, out_ch, time_dim, groups):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.time_emb_proj = nn.Linear(time_dim, out_ch)
        self.norm2 = nn.GroupNorm(groups, out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.conv_shortcut = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else None

    def shortcut(self, x):
        return x if self.conv_shortcut is None else self.conv_shortcut(x)

    def time(self, emb):
        return self.time_emb_proj(F.silu(emb))[:, :, None, None]

    def forward(self, x, emb):
        h = self.conv1(F.silu(self.norm1(x))) + self.time(emb)
        return self.shortcut(x) + self.conv2(F.silu(self.norm2(h)))


def with_forward(forward):
    return type("MyResidualBlock", (Block,), {"forward": forward})


def with_init(change):
    def __init__(self, in_ch, out_ch, time_dim, groups):
        Block.__init__(self, in_ch, out_ch, time_dim, groups)
        change(self, in_ch, out_ch, groups)
    return type("MyResidualBlock", (Block,), {"__init__": __init__})


def test_the_package_block_and_a_learners_block_pass(capsys):
    assert check_residual_block(Block) is True
    assert capsys.readouterr().out.startswith("Correct!")
    assert check_residual_block(unet.ResidualBlock) is True


def test_a_block_equal_to_the_package_is_checked_on_its_numbers():
    """The reference really is unet.ResidualBlock: same weights, same outputs as the learner's right block."""
    torch.manual_seed(0)
    ref = unet.ResidualBlock(16, 32, 64, 8).eval()
    mine = Block(16, 32, 64, 8).eval()
    mine.load_state_dict(ref.state_dict())
    x, emb = torch.randn(2, 16, 8, 8), torch.randn(2, 64)
    torch.testing.assert_close(mine(x, emb), ref(x, emb))


def _time_after_conv2(self, x, emb):
    h = self.conv1(F.silu(self.norm1(x)))
    return self.shortcut(x) + self.conv2(F.silu(self.norm2(h))) + self.time(emb)


def _no_emb_silu(self, x, emb):
    h = self.conv1(F.silu(self.norm1(x))) + self.time_emb_proj(emb)[:, :, None, None]
    return self.shortcut(x) + self.conv2(F.silu(self.norm2(h)))


def _no_time(self, x, emb):
    return self.shortcut(x) + self.conv2(F.silu(self.norm2(self.conv1(F.silu(self.norm1(x))))))


def _no_residual(self, x, emb):
    h = self.conv1(F.silu(self.norm1(x))) + self.time(emb)
    return self.conv2(F.silu(self.norm2(h)))


def _relu(self, x, emb):
    h = self.conv1(F.relu(self.norm1(x))) + self.time(emb)
    return self.shortcut(x) + self.conv2(F.relu(self.norm2(h)))


def _act_before_norm(self, x, emb):
    h = self.conv1(self.norm1(F.silu(x))) + self.time(emb)
    return self.shortcut(x) + self.conv2(self.norm2(F.silu(h)))


def _not_broadcast(self, x, emb):
    h = self.conv1(F.silu(self.norm1(x))) + self.time_emb_proj(F.silu(emb))
    return self.shortcut(x) + self.conv2(F.silu(self.norm2(h)))


def _shortcut_unused(self, x, emb):
    h = self.conv1(F.silu(self.norm1(x))) + self.time(emb)
    return x + self.conv2(F.silu(self.norm2(h)))


def _time_times_two(self, x, emb):  # no classic mistake: only the generic hint can say something
    h = self.conv1(F.silu(self.norm1(x))) + 2 * self.time(emb)
    return self.shortcut(x) + self.conv2(F.silu(self.norm2(h)))


@pytest.mark.parametrize("forward, hint, later", [
    (_time_after_conv2, "only by shifting each output channel by one number, the same at every pixel",
     "between the two convolutions"),
    (_no_emb_silu, "with a zero time embedding your block gives the package's output", "SiLU first"),
    (_no_time, "does not change when the time embedding changes", "time_emb_proj(SiLU(emb))"),
    (_no_residual, "the package's block still passes its input on", "shortcut(x) + h"),
    (_relu, "negative values go through your block differently", "F.silu"),
    (_act_before_norm, "in another order inside each branch", "GroupNorm, then SiLU, then the convolution"),
    (_not_broadcast, "at non-singleton dimension 3", "(B, out_ch, 1, 1)"),
    (_shortcut_unused, "at non-singleton dimension 1", "conv_shortcut"),
    (_time_times_two, "differs from the package's by up to", "one at a time"),
])
def test_the_classic_mistakes_get_a_symptom_then_where_to_look(forward, hint, later, capsys):
    assert check_residual_block(with_forward(forward)) is False
    out = first_hint(capsys)
    assert hint in out
    show_hint()
    assert later in capsys.readouterr().out
    show_hint()
    assert "conv1(SiLU(norm1(x)))" in capsys.readouterr().out  # the last hint is the formula


def test_norm_after_conv_with_equal_channels_is_named():
    def forward(self, x, emb):
        h = F.silu(self.norm1(self.conv1(x))) + self.time(emb)
        return x + F.silu(self.norm2(self.conv2(h)))
    # with a channel change norm1 has the wrong size (next test); without one the order shows in the numbers
    from ddpm_helpers import _block_exercises

    ref = _block_exercises._reference_block(32, 32, 64, 8, 0)
    mine = with_forward(forward)(32, 32, 64, 8).eval()
    mine.load_state_dict(ref.state_dict())
    x, emb = torch.randn(2, 32, 8, 8), torch.randn(2, 64)
    with pytest.raises(_block_exercises.NotYet, match="the GroupNorms sit at other places"):
        with torch.no_grad():
            _block_exercises._diagnose_block(mine, ref, x, emb)


@pytest.mark.parametrize("change, hint", [
    (lambda self, i, o, g: setattr(self, "conv_shortcut", None), "no layer for the shortcut, but here the channels "
     "change (16 -> 32)"),
    (lambda self, i, o, g: setattr(self, "conv_shortcut", nn.Conv2d(i, o, 1)), "although its channels do not change"),
    (lambda self, i, o, g: setattr(self, "norm1", nn.GroupNorm(g, o)), "your norm1 normalises 32 channels where the "
     "package's normalises 16"),
    (lambda self, i, o, g: setattr(self, "extra", nn.Linear(2, 2)), "'extra.weight' that the package's block does "
     "not have"),
    (lambda self, i, o, g: setattr(self, "conv1", nn.Conv2d(i, o, 5, padding=2)), "conv1.weight has shape"),
])
def test_layers_are_compared_by_name_and_shape_before_the_numbers(change, hint, capsys):
    assert check_residual_block(with_init(change)) is False
    assert hint in first_hint(capsys)


def test_a_renamed_layer_is_named_with_the_packages_layers(capsys):
    def rename(self, i, o, g):
        self.time_proj = self.time_emb_proj
        del self.time_emb_proj
    assert check_residual_block(with_init(rename)) is False
    out = first_hint(capsys)
    assert "no 'time_emb_proj.weight'" in out and "norm1 GroupNorm, conv1 Conv2d" in out


@pytest.mark.parametrize("given, hint", [
    (Block(16, 32, 64, 8), "an instance: drop the parentheses"),
    (lambda *args: None, "needs your class itself"),
    (None, "needs your class itself"),
    (type("TwoArgs", (nn.Module,), {"__init__": lambda self, a, b: nn.Module.__init__(self)}),
     "takes (a, b)"),
    (type("Broken", (Block,), {"__init__": lambda self, *a: 1 / 0}), "building Broken(16, 32, 64, 8) raised "
     "ZeroDivisionError"),
])
def test_what_is_not_a_block_class_gets_a_hint_never_a_traceback(given, hint, capsys):
    assert check_residual_block(given) is False
    assert hint in first_hint(capsys)


def test_a_block_returning_the_wrong_shape_or_none_gets_a_hint(capsys):
    assert check_residual_block(with_forward(lambda self, x, emb: None)) is False
    assert "returned None" in first_hint(capsys)
    assert check_residual_block(with_forward(lambda self, x, emb: Block.forward(self, x, emb)[:, :1])) is False
    assert "must have shape (2, 32, 8, 8)" in first_hint(capsys)


# --- check_unet_forward -----------------------------------------------------------------------


def forward_path(model, sample, t, pop_first=False, keep_downsampled=True, concatenate=True, keep_first=True):
    """The forward pass written as in the notebook's folded solution, with switches for mistakes."""
    emb = model.time_embedding(t)
    h = model.conv_in(sample)
    skips = [h] if keep_first else []
    for block in model.down_blocks:
        for resnet in block.resnets:
            h = resnet(h, emb)
            skips.append(h)
        if block.downsample is not None:
            h = block.downsample(h)
            if keep_downsampled:
                skips.append(h)
    h = model.mid_block(h, emb)
    for block in model.up_blocks:
        for resnet in block.resnets:
            skip = skips.pop(0) if pop_first else skips.pop()
            h = resnet(torch.cat([h, skip], dim=1) if concatenate else h + skip, emb)
        if block.upsample is not None:
            h = block.upsample(h)
    return model.conv_out(F.silu(model.conv_norm_out(h)))


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return unet.UNet().eval()


def test_a_right_forward_pass_passes_and_equals_the_model(model, capsys):
    assert check_unet_forward(forward_path, model) is True
    assert capsys.readouterr().out.startswith("Correct!")
    assert check_unet_forward(forward_path) is True  # the default model
    x, t = torch.randn(2, 1, 32, 32), torch.tensor([5, 900])
    with torch.no_grad():
        torch.testing.assert_close(forward_path(model, x, t), model(x, t).sample)


@pytest.mark.parametrize("wrong, hint, later", [
    (lambda m, s, t: forward_path(m, s, t, pop_first=True), "a skip of another resolution (8 x 8 and 32 x 32",
     "The skips form a stack"),
    (lambda m, s, t: forward_path(m, s, t, keep_downsampled=False), "another resolution", "every Downsample's"),
    (lambda m, s, t: forward_path(m, s, t, keep_first=False), "ran out of skips", "Save conv_in's output"),
    (lambda m, s, t: forward_path(m, s, t, concatenate=False), "another number of channels",
     "concatenated along the channel axis"),
    (lambda m, s, t: forward_path(m, s, 0 * t), "does not change with the timestep", "model.time_embedding"),
    (lambda m, s, t: m.conv_out(m.conv_norm_out(m.conv_in(s))) * 0 + forward_path(m, s, t) * 1.01,
     "differs from model(sample, t).sample by up to", "trace_shapes"),
])
def test_forward_path_mistakes_get_hints(model, wrong, hint, later, capsys):
    assert check_unet_forward(wrong, model) is False
    assert hint in first_hint(capsys)
    show_hint()
    assert later in capsys.readouterr().out


def test_forward_path_variants_computed_from_the_same_weights_are_named(model, capsys):
    from ddpm_helpers._unet_exercises import unet_forward

    for flags, hint in [(dict(cat_skip_first=True), "see their inputs in another order"),
                        (dict(final_norm=False), "up to the very end"), (dict(final_act=False), "up to the very end"),
                        (dict(mid=False), "one stage of the U is missing")]:
        assert check_unet_forward(lambda m, s, t: unet_forward(m, s, t, **flags), model) is False
        assert hint in first_hint(capsys)
    assert check_unet_forward(lambda m, s, t: m(s, t), model) is False
    assert "return the tensor eps_pred itself" in first_hint(capsys)


def test_the_check_leaves_a_training_model_in_training_mode(capsys):
    torch.manual_seed(0)
    model = unet.UNet().train()
    assert check_unet_forward(forward_path, model) is True
    assert model.training


# --- the diagram: drawn from the config, the network UNet(config) builds ------------------------

CONFIGS = [
    dict(),
    dict(layers_per_block=2, block_out_channels=(32, 64, 64, 128), in_channels=3, sample_size=64,
         down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"),
         up_block_types=("AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D", "UpBlock2D")),
    dict(block_out_channels=(16,), sample_size=None),
    dict(block_out_channels=(16, 32), layers_per_block=3, down_block_types=("AttnDownBlock2D", "DownBlock2D"),
         up_block_types=("UpBlock2D", "AttnUpBlock2D"), sample_size=16, norm_num_groups=4),
]


@pytest.mark.parametrize("overrides", CONFIGS)
def test_the_layout_is_the_network_the_config_builds(overrides):
    """Every box names a real module with the box's channels and attention, and each skip arrow
    joins the tensor the forward pass really concatenates (hooks on the real modules)."""
    torch.manual_seed(0)
    model = unet.UNet(**overrides).eval()
    down, mid, up, skips = unet_layout(model.config)
    modules = dict(model.named_modules())
    for box in down + up:
        module = modules[box["name"]]
        if isinstance(module, unet.ResidualBlock):
            assert (module.conv1.in_channels, module.conv2.out_channels) == (box["in_ch"], box["out_ch"])
            block = modules[box["name"].rsplit(".resnets.", 1)[0]]
            assert box["attention"] == (block.attentions is not None)
        else:
            assert not box["attention"]
    assert mid["out_ch"] == model.mid_block.resnets[0].conv1.in_channels
    n = model.config.layers_per_block
    levels = len(model.config.block_out_channels)
    assert len(skips) == 1 + levels * n + levels - 1 == sum(len(b.resnets) for b in model.up_blocks)

    outputs, inputs = {}, {}

    def source(box):  # a down block with attention hands on the attention's output
        name = box["name"]
        if box["attention"]:
            name = name.replace(".resnets.", ".attentions.")
        return modules[name]

    hooks = [source(box).register_forward_hook(lambda m, a, out, i=i: outputs.__setitem__(i, out))
             for i, box in enumerate(down)]
    hooks += [modules[up[u]["name"]].register_forward_hook(lambda m, args, out, u=u: inputs.__setitem__(u, args[0]))
              for _, u in skips]
    size = model.config.sample_size or 16
    with torch.no_grad():
        model(torch.randn(1, model.config.in_channels, size, size), 10)
    for hook in hooks:
        hook.remove()
    for d, u in skips:
        skip = outputs[d]
        assert down[d]["out_ch"] == skip.shape[1]
        if model.config.sample_size is not None:
            assert down[d]["size"] == up[u]["size"] == skip.shape[-1]
        torch.testing.assert_close(inputs[u][:, -skip.shape[1]:], skip, rtol=0, atol=0)


def test_draw_unet_draws_every_block_every_skip_and_marks_attention():
    config = unet.UNetConfig(**CONFIGS[1])
    ax = draw_unet(config)
    down, mid, up, skips = unet_layout(config)
    texts = [t.get_text() for t in ax.texts]
    for box in down + up:
        assert any(t.startswith(box["label"]) for t in texts), box["label"]
    assert sum(t.endswith("+ attention") for t in texts) == sum(b["attention"] for b in down + up) == 10
    assert any(t.startswith("mid: ResBlock, attention, ResBlock 128") for t in texts)
    arrows = [a for a in ax.texts if a.get_gid() == "skip"]
    assert len(arrows) == len(skips) == 1 + 4 * 2 + 3
    assert "64×64" in texts and "8×8" in texts and "x_t  (3 × 64 × 64)" in texts
    assert "block_out_channels=(32, 64, 64, 128)" in ax.get_title()
    # the default model: attention only in the middle block
    ax = draw_unet(unet.UNet())
    assert not any(t.get_text().endswith("+ attention") for t in ax.texts)


def test_draw_unet_draws_into_given_axes_and_refuses_other_things():
    _, ax = plt.subplots()
    assert draw_unet(unet.UNetConfig(), ax=ax) is ax
    with pytest.raises(TypeError, match="draw_unet takes a UNetConfig or a UNet"):
        draw_unet({"block_out_channels": (32, 64)})


# --- the notebook: exercises stored unsolved, solutions folded and right --------------------------

CHECK_CALL = re.compile(r"^(check_\w+)\((My\w+|my_\w+)((?:, [^)]*)?)\);?\s*$", re.M)


def exercises():
    return exercise_cells(NOTEBOOK, CHECK_CALL)


def test_lesson3_exercises_are_stored_unsolved_with_folded_hints():
    found = list(exercises())
    assert len(found) >= 3
    for source, text, following, solution in found:
        assert text.startswith("Not yet. Hint 1 of "), text
        assert "Correct" not in text
        assert "<summary>Hint 2</summary>" in following and solution is not None
        assert "<details>" not in source


def test_lesson3_folded_solutions_pass_their_checks(capsys):
    """Each exercise cell run without its check, then its folded solution, then the check: Correct."""
    from ddpm_helpers import exercises as checks

    namespace = {}
    exec("import torch, math\nimport torch.nn as nn\nimport torch.nn.functional as F\n"  # noqa: S102
         "from ddpm_helpers import unet\ntorch.manual_seed(0)\nmodel = unet.UNet().eval()", namespace)
    for source, _, _, solution in exercises():
        check_name, given, extra = CHECK_CALL.search(source).groups()
        exec(CHECK_CALL.sub("", source), namespace)  # noqa: S102 - our own notebook's cell: the attempt
        assert getattr(checks, check_name)(namespace[given], *eval(f"[{extra.lstrip(', ')}]", namespace)) is False
        capsys.readouterr()
        exec(solution, namespace)  # noqa: S102 - its folded solution
        args = eval(f"[{extra.lstrip(', ')}]", namespace) if extra else []  # noqa: S307
        assert getattr(checks, check_name)(namespace[given], *args) is True, capsys.readouterr().out


def test_check_bottom_shape(capsys):
    from ddpm_helpers.exercises import check_bottom_shape

    model = unet.UNet(in_channels=3, sample_size=64)
    assert check_bottom_shape((2, 64, 16, 16), model) is True
    assert check_bottom_shape(torch.Size([2, 64, 16, 16]), model) is True
    capsys.readouterr()
    for answer, hint in [((2, 3, 16, 16), "channels C"), ((1, 64, 16, 16), "B is the number of images"),
                         ("2x64", "four whole numbers"), ((2, 64, 8, 8), "B and C are right; H and W are not")]:
        assert check_bottom_shape(answer, model) is False
        assert hint in first_hint(capsys)
    show_hint(3)
    assert "3 levels halve H and W 2 times: 64 -> 32 -> 16" in capsys.readouterr().out
    assert check_bottom_shape((2, 64, 16, 16), "model") is False
    assert "needs the course's UNet" in first_hint(capsys)
