"""The training loop: exact resume, EMA, checkpoints, the doctor, and the CLI end to end."""

import json
import os
import signal
import subprocess
import sys
import warnings
from dataclasses import fields, replace

import pytest
import torch

from ddpm_helpers import checkpoints
from ddpm_helpers.__main__ import main
from ddpm_helpers.data import DigitsDataset
from ddpm_helpers.training import (EMA, TrainConfig, TrainingDoctor, TrainingWarning, batch_indices,
                                   export_weights, learning_rate_at, load_checkpoint, load_model, load_pretrained,
                                   save_checkpoint, smooth, train)
from ddpm_helpers.recipes import build_unet

FAST = dict(batch_size=8, warmup_steps=4, log_every=4, checkpoint_every_s=None, mixed_precision="no")


def tiny_unet(**overrides):
    return build_unet(sample_size=16, block_out_channels=(8, 16), norm_num_groups=4, **overrides)


@pytest.fixture(scope="module")
def digits():
    return DigitsDataset(n=256, image_size=16)


@pytest.fixture(scope="module")
def trained(digits, tmp_path_factory):
    """A 6-step run of a tiny UNet with its checkpoint: (state, checkpoint path)."""
    path = tmp_path_factory.mktemp("run") / "checkpoint.pt"
    torch.manual_seed(0)
    state = train(tiny_unet(), digits, TrainConfig(num_steps=6, **FAST), checkpoint_path=path, progress=False)
    return state, path


# ---- determinism and exact resume ----

def test_batch_indices_are_epoch_permutations():
    epoch = torch.cat([batch_indices(40, 8, seed=0, step=s) for s in range(5)])
    assert sorted(epoch.tolist()) == list(range(40))  # each image once per epoch
    assert torch.equal(batch_indices(40, 8, 0, 7), batch_indices(40, 8, 0, 7))
    assert not torch.equal(batch_indices(40, 8, 0, 5), batch_indices(40, 8, 0, 0))  # a new order per epoch


def test_resume_after_a_kill_gives_the_same_weights(tmp_path):
    data = DigitsDataset(n=40, image_size=16)  # 5 steps per epoch: the run crosses epochs
    config = TrainConfig(num_steps=12, seed=3, **{**FAST, "log_every": 1, "checkpoint_every": 5})

    def fresh_model(init_seed):  # dropout > 0: its randomness must be replayed too
        torch.manual_seed(init_seed)
        return tiny_unet(dropout=0.1)

    straight = train(fresh_model(0), data, config, progress=False)

    def kill_at_step_8(state):
        if state.step == 8:
            raise RuntimeError("killed")

    path = tmp_path / "checkpoint.pt"
    with pytest.raises(RuntimeError, match="killed"):
        train(fresh_model(0), data, config, checkpoint_path=path, callbacks=[kill_at_step_8], progress=False)
    assert load_checkpoint(path)["step"] == 5  # the last checkpoint before the kill
    resumed = train(fresh_model(123), data, config, checkpoint_path=path, progress=False)

    assert resumed.step == straight.step == 12
    assert resumed.losses == straight.losses
    for (name, a), b in zip(straight.model.named_parameters(), resumed.model.parameters()):
        assert torch.equal(a, b), name
    for name, a in straight.ema.shadow.items():
        assert torch.equal(a, resumed.ema.shadow[name]), name


def test_ctrl_c_finishes_the_step_saves_and_returns(digits, tmp_path):
    def press_ctrl_c(state):
        if state.step == 4:
            os.kill(os.getpid(), signal.SIGINT)

    path = tmp_path / "checkpoint.pt"
    config = TrainConfig(num_steps=50, **{**FAST, "log_every": 2})
    state = train(tiny_unet(), digits, config, checkpoint_path=path, callbacks=[press_ctrl_c], progress=False)
    assert state.interrupted and 4 <= state.step <= 5
    assert load_checkpoint(path)["step"] == state.step


def test_config_that_never_stops_is_refused():
    with pytest.raises(ValueError, match="never stops"):
        TrainConfig(num_steps=None)


# ---- EMA ----

def test_ema_update_is_decay_times_ema_plus_rest_times_param():
    model = torch.nn.Linear(3, 2)
    ema = EMA(model, decay=0.9, warmup=False)
    before = {k: v.clone() for k, v in ema.shadow.items()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    ema.update(model)
    for name, p in model.named_parameters():
        torch.testing.assert_close(ema.shadow[name], 0.9 * before[name] + 0.1 * p.detach())
    target = torch.nn.Linear(3, 2)
    ema.copy_to(target)
    torch.testing.assert_close(target.weight, ema.shadow["weight"])


def test_ema_decay_warms_up():
    ema = EMA(torch.nn.Linear(1, 1), decay=0.999)
    assert ema.current_decay() == pytest.approx(0.1)  # (1 + 0) / (10 + 0): follow the weights at first
    ema.num_updates = 10**6
    assert ema.current_decay() == 0.999


# ---- checkpoints ----

def test_checkpoint_is_written_atomically(trained, tmp_path, monkeypatch):
    state, _ = trained
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, state)
    assert os.listdir(tmp_path) == ["checkpoint.pt"]  # no temp file left behind

    def save_half_then_fail(obj, f):
        with open(f, "wb") as handle:
            handle.write(b"PK\x03\x04 half a checkpoint")
        raise OSError("disk full")

    state.step += 1
    monkeypatch.setattr(checkpoints.torch, "save", save_half_then_fail)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, state)
    state.step -= 1
    assert os.listdir(tmp_path) == ["checkpoint.pt"]
    assert load_checkpoint(path)["step"] == 6  # the previous checkpoint, intact


def test_checkpoint_holds_only_plain_data(trained):
    _, path = trained
    checkpoint = torch.load(path, weights_only=True)  # raises if anything needs unpickling code
    assert checkpoint["step"] == 6 and len(checkpoint["losses"]) == 6
    assert checkpoint["model_config"]["block_out_channels"] == [8, 16]
    assert checkpoint["scheduler_config"]["beta_schedule"] == "squaredcos_cap_v2"


class NotATensor:
    pass


def test_checkpoint_with_pickled_code_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format": checkpoints.FORMAT, "payload": NotATensor()}, path)
    with pytest.raises(ValueError, match="refusing"):
        load_checkpoint(path)


def test_truncated_checkpoint_says_corrupt(trained, tmp_path):
    _, path = trained
    data = path.read_bytes()
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="corrupt or truncated"):
        load_checkpoint(truncated)


def test_missing_checkpoint_names_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="python -m ddpm_helpers train"):
        load_checkpoint(tmp_path / "nope.pt")


def test_mismatched_model_config_names_the_field(trained):
    _, path = trained
    with pytest.raises(ValueError, match=r"block_out_channels=\[8, 16\].*UNet\(\*\*"):
        load_checkpoint(path, model=build_unet(sample_size=16, block_out_channels=(8, 32), norm_num_groups=4))


def test_load_model_gives_the_ema_weights(trained):
    state, path = trained
    model, scheduler_config = load_model(path)
    assert not model.training
    for name, p in model.named_parameters():
        assert torch.equal(p, state.ema.shadow[name]), name
    assert scheduler_config["num_train_timesteps"] == 1000


def test_export_and_load_pretrained_round_trip(trained, tmp_path, monkeypatch):
    state, path = trained
    out = export_weights(path, tmp_path / "weights.safetensors", dtype="fp32")
    model, scheduler_config = load_pretrained(out)
    for name, p in model.named_parameters():
        assert torch.equal(p, state.ema.shadow[name]), name
    assert scheduler_config["beta_schedule"] == "squaredcos_cap_v2"
    out.write_bytes(out.read_bytes()[:100])
    with pytest.raises(ValueError, match="corrupt"):
        load_pretrained(out)
    monkeypatch.setattr(checkpoints, "PRETRAINED_PATH", tmp_path / "missing.safetensors")
    with pytest.raises(FileNotFoundError, match="python -m ddpm_helpers export"):
        load_pretrained()


# ---- the doctor ----

class ConstantModel(torch.nn.Module):
    """Predicts ``value`` everywhere, ignoring x_t and t (with one unused weight for AdamW)."""

    def __init__(self, value, grow=0.0):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(()))
        self.value, self.grow = value, grow

    def forward(self, x, t, return_dict=True):
        self.value += self.grow
        return (torch.full_like(x, self.value) + 0 * self.weight,)  # called with return_dict=False


def run_fake(model, digits, steps=40):
    config = TrainConfig(num_steps=steps, **{**FAST, "log_every": 10})
    return train(model, digits, config, doctor=TrainingDoctor(stuck_after=20, window=10), progress=False)


def test_doctor_flags_loss_stuck_at_one(digits):
    with pytest.warns(TrainingWarning, match="predicting zeros"):
        state = run_fake(ConstantModel(0.0), digits)
    assert state.smoothed_loss == pytest.approx(1.0, abs=0.15)  # E[eps^2] = 1


def test_doctor_flags_loss_not_falling(digits):
    with pytest.warns(TrainingWarning, match="not falling"):
        run_fake(ConstantModel(1.0, grow=0.01), digits)  # loss 1 + value^2, rising


def test_doctor_stops_on_nan(digits):
    with pytest.raises(FloatingPointError, match="learning rate"):
        run_fake(ConstantModel(float("nan")), digits)


def test_doctor_rejects_images_outside_minus_one_one():
    images = DigitsDataset(n=16, image_size=16)
    images.images = (images.images + 1) * 127.5  # [0, 255]
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        train(tiny_unet(), images, TrainConfig(num_steps=1, **FAST), progress=False)


# ---- it learns ----

def test_loss_falls_and_low_t_is_hardest():
    torch.manual_seed(0)
    data = DigitsDataset(n=512, image_size=16)
    config = TrainConfig(num_steps=80, batch_size=16, learning_rate=2e-3, warmup_steps=10, bf16=False)
    state = train(tiny_unet(), data, config, progress=False)
    assert state.images_seen == 80 * 16
    start, end = sum(state.losses[:10]) / 10, smooth(state.losses)[-1]
    assert end < 0.5 * start, (start, end)
    by_t = state.loss_by_timestep
    assert len(by_t) == 10 and by_t[0] > by_t[-1]  # eps is hardest to see when little was added


def test_time_budget_stops_early(digits):
    config = TrainConfig(num_steps=None, time_budget_s=0.5, **FAST)
    state = train(tiny_unet(), digits, config, progress=False)
    assert state.step >= 1 and 0.5 <= state.elapsed < 10


# ---- plots ----

def test_plot_losses_and_live_plot_show_the_history(trained):
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.utils.capture import capture_output

    from ddpm_helpers.plotting import LiveLossPlot, plot_losses

    state, _ = trained
    curve, buckets = plot_losses(state)
    assert list(curve.lines[0].get_ydata()) == state.losses
    assert [bar.get_height() for bar in buckets.patches] == pytest.approx(state.loss_by_timestep, nan_ok=True)
    InteractiveShell.instance()  # display() as in a notebook
    live = LiveLossPlot()
    with capture_output() as captured:
        live(state)
        live(state)  # the second call updates the same display instead of adding a figure
    first, second = captured.outputs
    assert not first.update and first.transient["display_id"]
    assert second.update and second.transient == first.transient  # same display_id: redrawn in place
    assert live.handle is not None and len(live.axes[0].lines) == 2
    title = live.figure._suptitle.get_text()
    assert title.startswith(f"step {state.step:,}: {state.images_seen:,} images in ")
    assert f"({state.images_seen / state.elapsed:.0f} images/s)" in title


# ---- the command line ----

def test_cli_trains_exports_and_loads(tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "DDPM_QUICK": "1"}

    def cli(*args):
        result = subprocess.run([sys.executable, "-m", "ddpm_helpers", *args], env=env,
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-3000:]
        return result

    cli("train", "--steps", "3", "--channels", "16,32", "--out", str(out))
    for name in ("checkpoint.pt", "loss.png", "samples.png", "train_log.json"):
        assert (out / name).is_file(), name
    log = json.loads((out / "train_log.json").read_text())
    assert log["step"] == 3 and log["images_seen"] == 3 * log["config"]["batch_size"]
    assert {"platform", "cpu_count", "torch", "device", "dtype"} <= set(log["machine"])

    weights = tmp_path / "digits_unet.safetensors"
    assert main(["export", str(out / "checkpoint.pt"), str(weights)]) == 0  # in-process: saves a start-up
    model, _ = load_pretrained(weights)
    ema_model, _ = load_model(out / "checkpoint.pt")
    for (name, a), b in zip(model.named_parameters(), ema_model.parameters()):
        assert torch.equal(a, b), name


# ---- devices and mixed precision (the selection logic, without the hardware) ----

def test_default_device_prefers_cuda_then_mps_then_cpu(monkeypatch):
    from ddpm_helpers.config import default_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert default_device() == torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert default_device() == torch.device("mps")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert default_device() == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert default_device("cuda:1") == torch.device("cuda:1")  # an explicit choice is kept


def test_pick_device_refuses_devices_that_are_not_here(monkeypatch):
    from ddpm_helpers.config import default_device as pick_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert pick_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match=r"device 'cuda'.*no CUDA GPU.*'cpu'"):
        pick_device("cuda")
    with pytest.raises(ValueError, match="MPS is not available"):
        pick_device("mps")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert pick_device("cuda:1") == torch.device("cuda:1")
    with pytest.raises(ValueError, match=r"only 2 GPU\(s\).*\[0, 1\]"):
        pick_device("cuda:2")


@pytest.mark.parametrize("device, bf16_hardware, expected", [
    ("cuda", True, "bf16"), ("cuda", False, "fp16"),  # fp16 comes with accelerate's gradient scaler
    ("cpu", True, "bf16"), ("cpu", False, "no"), ("mps", True, "no")])
def test_auto_mixed_precision_follows_the_hardware(monkeypatch, device, bf16_hardware, expected):
    from ddpm_helpers import parallel

    monkeypatch.delenv("ACCELERATE_MIXED_PRECISION", raising=False)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: bf16_hardware)
    monkeypatch.setattr(parallel, "cpu_has_native_bf16", lambda: bf16_hardware)
    assert parallel.pick_mixed_precision("auto", torch.device(device)) == expected
    assert parallel.pick_mixed_precision("no", torch.device(device)) == "no"  # asked for: kept


def test_auto_mixed_precision_takes_the_launchers_choice(monkeypatch):
    from ddpm_helpers import parallel

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "fp16")  # accelerate launch --mixed_precision fp16
    assert parallel.pick_mixed_precision("auto", torch.device("cuda")) == "fp16"
    assert parallel.pick_mixed_precision("bf16", torch.device("cuda")) == "bf16"
    with pytest.raises(ValueError, match="fp16.*needs a GPU"):
        parallel.pick_mixed_precision("fp16", torch.device("cpu"))


def test_bf16_training_leaves_a_plain_float32_model(digits):
    """accelerate wraps forward in bf16 autocast for training; afterwards the model is plain again."""
    model = tiny_unet()
    dtypes = []
    model.conv_out.register_forward_hook(lambda module, args, out: dtypes.append(out.dtype))
    train(model, digits, TrainConfig(num_steps=2, **{**FAST, "mixed_precision": "bf16"}), progress=False)
    assert dtypes == [torch.bfloat16] * 2
    assert not {"forward", "_original_forward", "_is_accelerate_prepared"} & set(model.__dict__)
    model(torch.zeros(1, 1, 16, 16), 0)
    assert dtypes[-1] == torch.float32
    train(model, digits, TrainConfig(num_steps=1, **FAST), progress=False)  # float32 now: accelerate set up anew
    assert dtypes[-1] == torch.float32


# ---- any model with the diffusers call signature ----

def tiny_diffusers_unet(**overrides):
    diffusers = pytest.importorskip("diffusers")
    torch.manual_seed(0)
    return diffusers.UNet2DModel(sample_size=16, in_channels=1, out_channels=1, block_out_channels=(16, 32),
                                 layers_per_block=1, norm_num_groups=8, attention_head_dim=8,
                                 down_block_types=("DownBlock2D", "AttnDownBlock2D"),
                                 up_block_types=("AttnUpBlock2D", "UpBlock2D"), **overrides)


def test_diffusers_unet_trains_and_its_checkpoint_loads_and_exports(digits, tmp_path):
    path = tmp_path / "checkpoint.pt"
    state = train(tiny_diffusers_unet(), digits, TrainConfig(num_steps=3, **FAST), checkpoint_path=path,
                  progress=False)
    assert load_checkpoint(path)["model_config"]["_class_name"] == "UNet2DModel"
    model, _ = load_model(path)
    assert type(model).__name__ == "UNet2DModel" and not model.training
    for name, p in model.named_parameters():
        assert torch.equal(p, state.ema.shadow[name]), name
    exported, _ = load_pretrained(export_weights(path, tmp_path / "w.safetensors", dtype="fp32"))
    x = torch.randn(2, 1, 16, 16)
    torch.testing.assert_close(exported(x, 10).sample, model(x, 10).sample, rtol=0, atol=0)


def test_a_model_we_cannot_rebuild_says_so(digits, tmp_path):
    path = tmp_path / "checkpoint.pt"
    train(ConstantModel(0.0), digits, TrainConfig(num_steps=1, **FAST), checkpoint_path=path, progress=False)
    with pytest.raises(ValueError, match=r"cannot rebuild \(.*ConstantModel\).*load_state_dict"):
        load_model(path)
    out = export_weights(path, tmp_path / "w.safetensors")  # the weights still export ...
    with pytest.raises(ValueError, match=r"cannot rebuild \(.*ConstantModel\)"):
        load_pretrained(out)  # ... and loading them names the model to build


# ---- class-conditional training with label dropout ----

class LabelRecorder(torch.nn.Module):
    """A stand-in class-conditional model (diffusers' call signature) that records its labels."""

    def __init__(self, num_class_embeds=11):
        super().__init__()
        self.config = type("Config", (), {"num_class_embeds": num_class_embeds, "in_channels": 1})()
        self.embedding = torch.nn.Embedding(num_class_embeds, 1)
        self.scale = torch.nn.Parameter(torch.zeros(()))
        self.calls = []

    def forward(self, sample, timestep, class_labels=None, return_dict=True):
        self.calls.append((sample.detach().clone(), timestep.clone(), class_labels.clone()))
        out = self.scale * sample + self.embedding(class_labels)[:, :, None, None]
        return (out,) if not return_dict else {"sample": out}


def test_label_dropout_replaces_a_share_of_labels_by_no_label(digits):
    model = LabelRecorder()
    config = TrainConfig(num_steps=60, **{**FAST, "batch_size": 16})  # label_dropout 0.1 by default
    train(model, digits, config, progress=False)
    labels = torch.cat([call[2] for call in model.calls])
    dropped = labels == 10
    assert 0.07 < dropped.float().mean().item() < 0.13, dropped.float().mean()  # 960 draws of p = 0.1
    true_labels = torch.cat([digits.labels[batch_indices(len(digits), 16, config.seed, s)] for s in range(60)])
    assert torch.equal(labels[~dropped], true_labels[~dropped])  # the others are the images' own labels
    model = LabelRecorder()
    train(model, digits, replace(config, num_steps=5, label_dropout=0.0), progress=False)
    assert not any((call[2] == 10).any() for call in model.calls)


def test_labels_leave_the_noise_and_timesteps_of_a_step_unchanged(digits):
    conditional, plain = LabelRecorder(), Recorder()
    config = TrainConfig(num_steps=2, **FAST)
    train(conditional, digits, config, progress=False)
    train(plain, digits, config, progress=False)
    for (x_c, t_c, _), (x_u, t_u) in zip(conditional.calls, plain.calls):
        assert torch.equal(t_c, t_u) and torch.equal(x_c, x_u)


class Recorder(torch.nn.Module):
    """An unconditional stand-in that records (x_t, t)."""

    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.zeros(()))
        self.calls = []

    def forward(self, sample, timestep):
        self.calls.append((sample.detach().clone(), timestep.clone()))
        return self.scale * sample


def assert_resume_is_exact(build_model, data, tmp_path, **overrides):
    config = TrainConfig(num_steps=10, seed=3, **{**FAST, "log_every": 1, "checkpoint_every": 4, **overrides})

    def make_model():
        torch.manual_seed(0)
        return build_model()

    straight = train(make_model(), data, config, progress=False)

    def kill_at_step_6(state):
        if state.step == 6:
            raise RuntimeError("killed")

    path = tmp_path / "checkpoint.pt"
    with pytest.raises(RuntimeError, match="killed"):
        train(make_model(), data, config, checkpoint_path=path, callbacks=[kill_at_step_6], progress=False)
    resumed = train(make_model(), data, config, checkpoint_path=path, progress=False)
    assert resumed.losses == straight.losses
    for (name, a), b in zip(straight.model.named_parameters(), resumed.model.parameters()):
        assert torch.equal(a, b), name
    for name, a in straight.ema.shadow.items():
        assert torch.equal(a, resumed.ema.shadow[name]), name
    return straight


def test_conditional_diffusers_unet_resumes_exactly(digits, tmp_path):
    straight = assert_resume_is_exact(lambda: tiny_diffusers_unet(num_class_embeds=11), digits, tmp_path,
                                      label_dropout=0.3)
    assert straight.smoothed_loss < 1.5


def test_conditional_course_unet_trains_and_resumes_exactly(digits, tmp_path):
    assert_resume_is_exact(lambda: tiny_unet(num_class_embeds=11), digits, tmp_path)


def test_conditional_training_needs_labels_in_range(digits):
    too_few = LabelRecorder(num_class_embeds=10)  # 9 classes + 'no label', but the digits have 10
    with pytest.raises(ValueError, match=r"labels must be in \[0, 8\].*num_class_embeds=11"):
        train(too_few, digits, TrainConfig(num_steps=1, **FAST), progress=False)


# ---- datasets with random transforms ----

class RandomlyFlipped(torch.utils.data.Dataset):
    """Items drawn through torch's global RNG, like torchvision's RandomHorizontalFlip."""

    def __init__(self, images):
        self.images_ = images

    def __len__(self):
        return len(self.images_)

    def __getitem__(self, i):
        image = self.images_[i]
        return {"images": image.flip(-1) if torch.rand(()) < 0.5 else image, "labels": torch.tensor(0)}


def test_random_transforms_are_seeded_per_step_so_resume_stays_exact(tmp_path):
    data = RandomlyFlipped(DigitsDataset(n=40, image_size=16).images)
    torch.manual_seed(0)
    first = Recorder()
    train(first, data, TrainConfig(num_steps=2, **FAST), progress=False)
    torch.manual_seed(12345)  # the global RNG's state does not leak into the batches
    second = Recorder()
    train(second, data, TrainConfig(num_steps=2, **FAST), progress=False)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(first.calls, second.calls))
    assert_resume_is_exact(lambda: tiny_unet(), data, tmp_path)


def test_seeds_are_exact_63_bit_integers():
    from ddpm_helpers.training import _seed_for

    seeds = [_seed_for(0, 0, step) for step in range(200)]
    assert all(0 <= s < 2**63 for s in seeds) and len(set(seeds)) == 200
    # computed through float64 they kept 53 significant bits: the low bits of large seeds were all 0
    assert sum(s % 1024 != 0 for s in seeds if s >= 2**53) > 150
    assert _seed_for(0, 0, 1) == _seed_for(0, 0, 1) != _seed_for(0, 1, 0)


# ---- min-SNR-gamma loss weights (Hang et al. 2023) ----

def test_min_snr_weights_follow_the_formula():
    from ddpm_helpers.scheduler import DDPMScheduler
    from ddpm_helpers.training import loss_weights

    scheduler, t = DDPMScheduler(1000, beta_schedule="squaredcos_cap_v2"), torch.arange(1000)
    assert torch.equal(loss_weights(t, scheduler, TrainConfig(min_snr_gamma=None)), torch.ones(1000))  # the seed
    w = loss_weights(t, scheduler, TrainConfig())  # the default: gamma = 5
    assert TrainConfig().min_snr_gamma == 5.0
    alpha_bar = scheduler.alphas_cumprod.double()
    snr = alpha_bar / (1 - alpha_bar)
    expected = torch.where(snr > 5, 5 / snr, torch.ones_like(snr))
    torch.testing.assert_close(w.double(), expected, rtol=1e-6, atol=0)
    # the cosine schedule's SNR falls through 5 near t = 200: below it weights < 1, above it exactly 1
    crossing = int((snr > 5).sum())
    assert 150 < crossing < 300 and w[:crossing].max() < 1 and torch.all(w[crossing:] == 1)
    assert w[0] < 0.01  # the nearly clean t = 0 counts almost nothing


# ---- logit-normal timesteps (Esser et al. 2024) ----

def test_logit_normal_timesteps_follow_their_distribution():
    from ddpm_helpers.training import draw_timesteps

    def draw(n, **options):
        return draw_timesteps(n, 1000, TrainConfig(**options), torch.Generator().manual_seed(0))

    assert TrainConfig().timestep_logit_std == 1.0
    # None: the seed's uniform t, the same numbers as torch.randint from the same generator
    assert torch.equal(draw(64, timestep_logit_std=None), torch.randint(0, 1000, (64,), generator=torch.Generator().manual_seed(0)))
    t = draw(200_000)
    assert t.dtype == torch.int64 and t.min() >= 0 and t.max() <= 999
    # P(t < k) = P(sigmoid(z) < k / T) = Phi(logit(k / T)), up to sampling error
    normal = torch.distributions.Normal(0.0, 1.0)
    for k in (10, 100, 250, 500, 750, 900, 990):
        expected = normal.cdf(torch.logit(torch.tensor(k / 1000))).item()
        assert abs((t < k).double().mean().item() - expected) < 0.005, k
    # against uniform t (50% and 20%): the middle half drawn more often (2 Phi(logit(0.75)) - 1 = 72.8%),
    # the outer tenths far less (2 - 2 Phi(logit(0.9)) = 2.8%)
    middle, ends = ((t >= 250) & (t < 750)).double().mean(), ((t < 100) | (t >= 900)).double().mean()
    assert 0.723 < middle < 0.733 and 0.026 < ends < 0.030
    # a wider spread is nearer uniform at the ends
    assert ((draw(200_000, timestep_logit_std=3.0) < 100).double().mean() > (t < 100).double().mean())


def test_resuming_a_run_saved_before_the_t_option_says_its_t_was_uniform(digits, tmp_path):
    """A checkpoint without timestep_logit_std (or min_snr_gamma, lr_cooldown) was trained the seed's way:
    resuming it with today's defaults is a change of recipe, and train() says so; with the old values it is not
    (the constant lr of old runs is still the default)."""
    path = tmp_path / "checkpoint.pt"
    old = dict(min_snr_gamma=None, timestep_logit_std=None, lr_cooldown=None)
    train(tiny_unet(), digits, TrainConfig(num_steps=2, **FAST, **old), checkpoint_path=path, progress=False)
    checkpoint = torch.load(path, weights_only=True)
    for name in old:
        del checkpoint["train_config"][name]  # as an older ddpm_helpers wrote it
    torch.save(checkpoint, path)
    with pytest.warns(TrainingWarning, match=r"different \['min_snr_gamma', 'timestep_logit_std'\]"):
        train(tiny_unet(), digits, TrainConfig(num_steps=3, **FAST), checkpoint_path=path, progress=False)
    torch.save(checkpoint, path)
    with warnings.catch_warnings():
        warnings.simplefilter("error", TrainingWarning)
        state = train(tiny_unet(), digits, TrainConfig(num_steps=3, **FAST, **old), checkpoint_path=path,
                      progress=False)
    assert state.step == 3


def test_learning_rate_warms_up_holds_and_cools_down():
    """lr_s = lr * min(1, (s + 1) / warmup) * min(1, (1 - done) / c), done = s / num_steps or the share of
    time_budget_s that is over, whichever is larger; c = None keeps the lr constant after warmup."""
    def as_written(s, done, c=0.2, warmup=100, lr=1e-3):
        return lr * min(1, (s + 1) / warmup) * min(1, (1 - done) / c)

    by_steps = TrainConfig(num_steps=1000, lr_cooldown=0.2)
    for s in [0, 50, 99, 500, 799, 800, 900, 999]:
        assert learning_rate_at(s, by_steps) == pytest.approx(as_written(s, s / 1000), rel=1e-12)
    assert learning_rate_at(799, by_steps) == 1e-3 and learning_rate_at(999, by_steps) == pytest.approx(5e-6)
    by_time = TrainConfig(num_steps=None, time_budget_s=300, lr_cooldown=0.5)
    assert [learning_rate_at(200, by_time, e) for e in (0, 150, 225, 300, 400)] == pytest.approx([1e-3, 1e-3, 5e-4, 0, 0])
    both = TrainConfig(num_steps=1000, time_budget_s=300, lr_cooldown=0.2)
    assert learning_rate_at(900, both, 60) == pytest.approx(as_written(900, 0.9))  # the steps are further along
    assert learning_rate_at(100, both, 270) == pytest.approx(as_written(100, 0.9))  # the clock is
    constant = TrainConfig(num_steps=1000, lr_cooldown=None)
    assert [learning_rate_at(s, constant, 1e9) for s in (99, 999, 5000)] == [1e-3] * 3


def test_the_optimizer_steps_at_the_scheduled_learning_rate(digits):
    config = TrainConfig(num_steps=10, **dict(FAST, warmup_steps=0), lr_cooldown=0.5)
    state = train(tiny_unet(), digits, config, progress=False)
    assert state.optimizer.param_groups[0]["lr"] == pytest.approx(1e-3 * (1 - 9 / 10) / 0.5)  # the last step's


def test_a_timed_cooldown_counts_this_calls_budget(digits, tmp_path):
    """time_budget_s is per train() call, and so is its cooldown: a resumed call starts again at the full lr
    (were it counted from the run's first second, done would be > 1 and every lr 0: AdamW would not move)."""
    path = tmp_path / "checkpoint.pt"
    config = TrainConfig(num_steps=None, time_budget_s=0.5, lr_cooldown=1.0, **FAST)
    first = train(tiny_unet(), digits, config, checkpoint_path=path, progress=False)
    before = [p.detach().clone() for p in first.model.parameters()]
    again = train(tiny_unet(), digits, config, checkpoint_path=path, progress=False)
    assert again.step > first.step and again.elapsed >= 1.0
    assert any(not torch.equal(a, b) for a, b in zip(before, again.model.parameters()))


def test_min_snr_changes_training_only_through_the_weights(digits):
    def run(**options):
        torch.manual_seed(0)
        return train(tiny_unet(), digits, TrainConfig(num_steps=5, **FAST, **options), progress=False)

    plain, huge_gamma, gamma = run(min_snr_gamma=None), run(min_snr_gamma=1e12), run(min_snr_gamma=1.0)
    # gamma above every SNR: every weight is 1, the same run bit for bit
    for a, b in zip(plain.model.parameters(), huge_gamma.model.parameters()):
        assert torch.equal(a, b)
    assert plain.losses[0] == gamma.losses[0]  # the same first batch, noise and t (the weights act on the gradient)
    assert any(not torch.equal(a, b) for a, b in zip(plain.model.parameters(), gamma.model.parameters()))
