"""Lesson 8's helpers: load_from_hub (on local folders and a hand-made hub cache, never the network),
the flat folder layout of Google's DDPM repositories, and the attention-weights exercise check."""

import json
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ddpm_helpers import hub
from ddpm_helpers.exercises_diffusers import check_attention_weights, random_attention_weights
from ddpm_helpers.hub import load_from_hub
from ddpm_helpers.pipeline import load_pipeline, save_pipeline
from ddpm_helpers.scheduler import DDPMScheduler
from ddpm_helpers.unet import UNet

ROOT = Path(__file__).resolve().parents[1]
REPO = "someone/tiny-ddpm"
X = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(1))


def tiny_unet():
    torch.manual_seed(0)
    model = UNet(block_out_channels=(8, 16), norm_num_groups=4, attention_head_dim=8, sample_size=8,
                 down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"),
                 flip_sin_to_cos=False, freq_shift=1, downsample_padding=0, norm_eps=1e-6)
    with torch.no_grad():  # away from the init, so that a wrong mapping shows
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model.eval()


def eps(model, t=7):
    with torch.no_grad():
        return model(X, t).sample


def flatten(folder):
    """Google's layout: the unet's and the scheduler's files beside model_index.json, no subfolders."""
    for part in ("unet", "scheduler"):
        for file in (folder / part).iterdir():
            file.rename(folder / file.name)
        (folder / part).rmdir()
    return folder


@pytest.fixture
def model():
    return tiny_unet()


@pytest.fixture
def remote(tmp_path, model):
    """A folder standing for a hub repository: a DDPM pipeline in the subfolder layout."""
    return save_pipeline(tmp_path / "remote", model, DDPMScheduler(beta_schedule="squaredcos_cap_v2",
                                                                   variance_type="fixed_large"))


def fake_cache(cache_dir, repo_id, source, commit="0123456789abcdef0123456789abcdef01234567"):
    """``source``'s files as the hub cache keeps a downloaded snapshot of ``repo_id``."""
    storage = Path(cache_dir) / f"models--{repo_id.replace('/', '--')}"
    shutil.copytree(source, storage / "snapshots" / commit)
    (storage / "refs").mkdir()
    (storage / "refs" / "main").write_text(commit)
    return storage


def no_network(*args, **kwargs):
    raise AssertionError("the network was used")


def go_online(monkeypatch):
    """As on a learner's machine with a network: not offline, no proxy."""
    for name in ("HF_HUB_OFFLINE", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)


# ---- load_pipeline reads the flat layout of old hub repositories ----

def test_load_pipeline_reads_the_flat_layout(remote, model):
    loaded, scheduler = load_pipeline(flatten(remote))
    assert sorted(p.name for p in remote.iterdir()) == ["config.json", "diffusion_pytorch_model.safetensors",
                                                       "model_index.json", "scheduler_config.json"]
    torch.testing.assert_close(eps(loaded), eps(model), rtol=0, atol=0)
    assert type(scheduler) is DDPMScheduler and scheduler.config.variance_type == "fixed_large"


def test_diffusers_and_we_read_the_same_flat_folder(tmp_path):
    """A flat folder written by diffusers itself, as google/ddpm-cifar10-32 is laid out."""
    diffusers = pytest.importorskip("diffusers")
    torch.manual_seed(0)
    unet2d = diffusers.UNet2DModel(sample_size=8, in_channels=1, out_channels=1, block_out_channels=(8, 16),
                                   norm_num_groups=4, layers_per_block=1, attention_head_dim=None,
                                   down_block_types=("DownBlock2D", "AttnDownBlock2D"),
                                   up_block_types=("AttnUpBlock2D", "UpBlock2D"), flip_sin_to_cos=False,
                                   freq_shift=1, downsample_padding=0, norm_eps=1e-6).eval()
    unet2d.save_pretrained(tmp_path)
    diffusers.DDPMScheduler(variance_type="fixed_large").save_pretrained(tmp_path)
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "DDPMPipeline", "_diffusers_version": "0.1.0",
                                                           "scheduler": ["diffusers", "DDPMScheduler"],
                                                           "unet": ["diffusers", "UNet2DModel"]}))
    pipe = diffusers.DDPMPipeline.from_pretrained(tmp_path)  # diffusers reads it: the layout is real
    ours, scheduler = load_pipeline(tmp_path)
    with torch.no_grad():
        torch.testing.assert_close(eps(ours, 500), pipe.unet(X, 500).sample, rtol=0, atol=1e-5)
    torch.testing.assert_close(scheduler.alphas_cumprod, pipe.scheduler.alphas_cumprod)


# ---- load_from_hub ----

def test_a_cached_repository_loads_without_the_network(tmp_path, remote, model, monkeypatch):
    monkeypatch.setattr(socket, "create_connection", no_network)
    fake_cache(tmp_path / "cache", REPO, remote)
    loaded, scheduler = load_from_hub(REPO, cache_dir=tmp_path / "cache")
    torch.testing.assert_close(eps(loaded), eps(model), rtol=0, atol=0)
    assert not loaded.training and scheduler.config.variance_type == "fixed_large"


def test_a_cached_flat_repository_loads(tmp_path, remote, model, monkeypatch):
    monkeypatch.setattr(socket, "create_connection", no_network)
    fake_cache(tmp_path / "cache", "google/ddpm-tiny", flatten(remote))
    loaded, _ = load_from_hub("google/ddpm-tiny", cache_dir=tmp_path / "cache")
    torch.testing.assert_close(eps(loaded), eps(model), rtol=0, atol=0)


def test_offline_it_says_so_in_one_line_without_trying_the_network(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(socket, "create_connection", no_network)
    with pytest.raises(ConnectionError) as caught:
        load_from_hub("google/ddpm-cifar10-32", cache_dir=tmp_path / "empty")
    message = str(caught.value)
    assert "\n" not in message and "'google/ddpm-cifar10-32'" in message and "HF_HUB_OFFLINE" in message
    assert "load_pretrained()" in message and caught.value.__cause__ is None


def test_a_partial_cache_is_not_taken_for_a_model(tmp_path, remote, monkeypatch):
    """An interrupted download (weights missing) is not loaded; offline, that is the one-line message."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    (remote / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    fake_cache(tmp_path / "cache", REPO, remote)
    with pytest.raises(ConnectionError, match="Cannot download 'someone/tiny-ddpm'"):
        load_from_hub(REPO, cache_dir=tmp_path / "cache")


def test_an_unreachable_hub_fails_fast_and_later_calls_skip_the_network(tmp_path, monkeypatch):
    go_online(monkeypatch)
    calls = []

    def unreachable(address, timeout=None):
        calls.append((address, timeout))
        raise OSError("Network is unreachable")

    monkeypatch.setattr(socket, "create_connection", unreachable)
    with pytest.raises(ConnectionError, match=r"huggingface\.co did not answer within 0\.5 s"):
        load_from_hub(REPO, cache_dir=tmp_path, timeout=0.5)
    assert calls == [(("huggingface.co", 443), 0.5)]
    with pytest.raises(ConnectionError, match="HF_HUB_OFFLINE is set"):
        load_from_hub(REPO, cache_dir=tmp_path)
    assert len(calls) == 1


def test_behind_a_proxy_the_direct_connection_test_is_skipped(monkeypatch):
    go_online(monkeypatch)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setattr(socket, "create_connection", no_network)
    hub.check_hub_reachable(REPO)  # no error: huggingface_hub will go through the proxy


class FakeHub:
    """huggingface_hub's list_repo_files and snapshot_download, serving a local folder."""

    def __init__(self, remote, snapshots):
        self.remote, self.snapshots, self.downloads = remote, snapshots, []

    def list_repo_files(self, repo_id, revision=None):  # set on the class HfApi: self stays this FakeHub
        return sorted(str(p.relative_to(self.remote)) for p in self.remote.rglob("*") if p.is_file())

    def snapshot_download(self, repo_id, cache_dir=None, revision=None, local_files_only=False, allow_patterns=None):
        if local_files_only:
            raise FileNotFoundError("not in the cache")
        self.downloads.append(sorted(allow_patterns))
        for name in allow_patterns:
            (self.snapshots / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(self.remote / name, self.snapshots / name)
        return str(self.snapshots)


@pytest.fixture
def fake_hub(tmp_path, remote, monkeypatch):
    import huggingface_hub

    fake = FakeHub(remote, tmp_path / "snapshot")
    go_online(monkeypatch)
    monkeypatch.setattr(socket, "create_connection", lambda address, timeout=None: socket.socket())
    monkeypatch.setattr(huggingface_hub.HfApi, "list_repo_files", fake.list_repo_files)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake.snapshot_download)
    return fake


def test_online_it_downloads_only_the_pipeline_files(fake_hub, remote, model):
    (remote / "README.md").write_text("a model card")
    torch.save({}, remote / "unet" / "diffusion_pytorch_model.bin")  # repos often hold both formats
    loaded, _ = load_from_hub(REPO)
    assert fake_hub.downloads == [["model_index.json", "scheduler/scheduler_config.json", "unet/config.json",
                                   "unet/diffusion_pytorch_model.safetensors"]]
    torch.testing.assert_close(eps(loaded), eps(model), rtol=0, atol=0)


def test_online_bin_weights_are_taken_when_there_are_no_safetensors(fake_hub, remote, model):
    flatten(remote)
    torch.save(_diffusers_weights(remote), remote / "diffusion_pytorch_model.bin")
    (remote / "diffusion_pytorch_model.safetensors").unlink()
    loaded, _ = load_from_hub(REPO)
    assert fake_hub.downloads == [["config.json", "diffusion_pytorch_model.bin", "model_index.json",
                                   "scheduler_config.json"]]
    torch.testing.assert_close(eps(loaded), eps(model), rtol=0, atol=0)


def _diffusers_weights(folder):
    from safetensors.torch import load_file

    return load_file(str(folder / "diffusion_pytorch_model.safetensors"))


def test_a_repository_that_is_not_a_pipeline_is_named(fake_hub, remote):
    (remote / "model_index.json").unlink()
    with pytest.raises(ValueError, match="'someone/tiny-ddpm' is not a diffusers DDPM pipeline"):
        load_from_hub(REPO)


@pytest.mark.parametrize("repo_id, error", [(42, TypeError), (None, TypeError), ("ddpm-cifar10-32", ValueError),
                                            ("google/", ValueError), ("a/b/c", ValueError), (" google/x", ValueError)])
def test_bad_repo_ids(repo_id, error):
    with pytest.raises(error, match="repo_id must"):
        load_from_hub(repo_id)


@pytest.mark.parametrize("timeout", [0, -1, float("nan")])
def test_bad_timeouts(timeout):
    with pytest.raises(ValueError, match="timeout"):
        load_from_hub(REPO, timeout=timeout)


def test_without_huggingface_hub_it_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)
    with pytest.raises(ImportError, match="pip install huggingface_hub"):
        load_from_hub(REPO)


def test_importing_the_helpers_imports_neither_diffusers_nor_the_hub():
    code = ("import sys, ddpm_helpers.hub, ddpm_helpers.exercises_diffusers; "
            "print('diffusers' in sys.modules, 'huggingface_hub' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.stdout.strip() == "False False", result.stderr


def test_the_offline_message_is_what_the_notebook_prints():
    assert hub.offline_message("x/y", "why") == (
        "Cannot download 'x/y' from the Hugging Face hub (why), so this step is skipped; online, run it again. "
        "The course's own model needs no network: load_pretrained().")


# ---- the exercise ----

def solution(theirs):
    ours = {"group_norm.weight": theirs["group_norm.weight"], "group_norm.bias": theirs["group_norm.bias"]}
    ours["to_qkv.weight"] = torch.cat([theirs[f"to_{p}.weight"] for p in "qkv"])[:, :, None, None]
    ours["to_qkv.bias"] = torch.cat([theirs[f"to_{p}.bias"] for p in "qkv"])
    ours["to_out.weight"] = theirs["to_out.0.weight"][:, :, None, None]
    ours["to_out.bias"] = theirs["to_out.0.bias"]
    return ours


def changed(**edits):
    """The solution with some entries replaced: edits maps a key (dots as __) to f(theirs, ours) -> value."""
    def fn(theirs):
        ours = solution(theirs)
        for key, edit in edits.items():
            ours[key.replace("__", ".")] = edit(theirs, ours)
        return ours
    return fn


def qkv(theirs, order="qkv", leaf="weight", dim=0, transpose=False):
    parts = [theirs[f"to_{p}.{leaf}"] for p in order]
    return torch.cat([p.T for p in parts] if transpose else parts, dim)


def conv(weight):
    return weight[:, :, None, None]


MISTAKES = {
    "placeholders (as in the notebook)": (changed(to_qkv__weight=lambda t, o: ..., to_qkv__bias=lambda t, o: ...),
                                          "to_qkv.weight is still the placeholder `...`"),
    "no reshape": (changed(to_qkv__weight=lambda t, o: qkv(t)), "to_qkv is a 1x1 convolution, not a Linear layer"),
    "to_out not reshaped": (changed(to_out__weight=lambda t, o: t["to_out.0.weight"]), "to_out is a 1x1 convolution"),
    "k, q, v order": (changed(to_qkv__weight=lambda t, o: conv(qkv(t, "kqv"))), "holds to_k, to_q, to_v"),
    "bias order": (changed(to_qkv__bias=lambda t, o: qkv(t, "vkq", "bias")), "to_qkv.bias holds to_v, to_k, to_q"),
    "side by side": (changed(to_qkv__weight=lambda t, o: conv(qkv(t, dim=1))), "side by side"),
    "transposed": (changed(to_qkv__weight=lambda t, o: conv(qkv(t, transpose=True))), "no transpose"),
    "norm not copied": (changed(group_norm__weight=lambda t, o: torch.ones(32)), "group_norm.weight holds other"),
    "a list": (changed(to_out__bias=lambda t, o: t["to_out.0.bias"].tolist()), "must be a torch tensor"),
    "diffusers' name kept": (changed(to_out__0__weight=lambda t, o: t["to_out.0.weight"]), "'to_out.0.weight', a name"),
    "a key missing": (lambda t: {k: v for k, v in solution(t).items() if k != "to_qkv.bias"}, "no 'to_qkv.bias'"),
    "returns None": (lambda t: None, "returned None"),
    "raises": (lambda t: t["query.weight"], "raised KeyError: 'query.weight'"),
    "not a function": (42, "pass your function itself"),
}


def test_the_solution_passes(capsys):
    assert check_attention_weights(solution) is True
    assert capsys.readouterr().out.startswith("Correct!")


@pytest.mark.parametrize("name", MISTAKES)
def test_each_mistake_gets_its_hint_and_no_traceback(name, capsys):
    fn, hint = MISTAKES[name]
    assert check_attention_weights(fn) is False
    out = capsys.readouterr().out
    assert out.startswith("Not yet. Hint: ") and hint in out, out


def test_the_learners_dict_and_random_state_are_left_alone():
    theirs, _ = random_attention_weights()
    state = torch.random.get_rng_state()
    assert check_attention_weights(lambda t: (t.clear(), solution(theirs))[1]) is True  # edits its copy only
    assert torch.equal(torch.random.get_rng_state(), state)


def test_the_exercise_layer_is_the_package_mapping():
    """diffusers' own Attention layer with these weights computes what our SelfAttention does."""
    diffusers = pytest.importorskip("diffusers")
    from diffusers.models.attention_processor import Attention

    from ddpm_helpers.exercises_diffusers import CHANNELS, HEADS, _layer

    theirs, ours = random_attention_weights()
    # as UNet2DModel's AttnDownBlock2D builds it
    reference = Attention(CHANNELS, heads=HEADS, dim_head=CHANNELS // HEADS, norm_num_groups=8,
                          residual_connection=True, bias=True, upcast_softmax=True, _from_deprecated_attn_block=True)
    reference.eval()
    reference.load_state_dict(theirs)
    layer = _layer().eval()
    layer.load_state_dict(ours)
    x = torch.randn(2, CHANNELS, 4, 4, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        torch.testing.assert_close(layer(x), reference(x), rtol=0, atol=1e-5)
    assert diffusers is not None
