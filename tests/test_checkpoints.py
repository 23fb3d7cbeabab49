"""Checkpoint files: what each kind of unreadable file is called, and temp files of killed writers."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from ddpm_helpers import _io, checkpoints
from ddpm_helpers.data import DigitsDataset
from ddpm_helpers.recipes import build_unet
from ddpm_helpers.training import TrainConfig, export_weights, load_checkpoint, load_model, load_pretrained, train

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A 2-step run of a tiny UNet: (checkpoint path, exported weights path)."""
    folder = tmp_path_factory.mktemp("run")
    torch.manual_seed(0)
    model = build_unet(sample_size=16, block_out_channels=(8, 16), norm_num_groups=4)
    config = TrainConfig(num_steps=2, batch_size=4, checkpoint_every_s=None, mixed_precision="no")
    train(model, DigitsDataset(n=16, image_size=16), config, checkpoint_path=folder / "checkpoint.pt", progress=False)
    return folder / "checkpoint.pt", export_weights(folder / "checkpoint.pt", folder / "weights.safetensors")


PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4


@pytest.mark.parametrize("content, message", [
    (bytes(torch.randint(256, (4096,), generator=torch.Generator().manual_seed(0)).tolist()), "not a ddpm_helpers training checkpoint.*: its bytes are in neither"),
    (PNG, "not a ddpm_helpers training checkpoint.*: it is a PNG image"),
    (b"", "is empty"),
])
def test_a_file_that_is_not_a_checkpoint_is_not_called_corrupt_or_pickled(tmp_path, content, message):
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message) as error:
        load_checkpoint(path)
    assert "pickled" not in str(error.value) and "corrupt" not in str(error.value)


class Payload:
    pass


def test_pickled_code_is_named_and_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format": checkpoints.FORMAT, "payload": Payload()}, path)
    with pytest.raises(ValueError, match=r"holds pickled Python objects \(test_checkpoints\.Payload\).*refusing"):
        load_checkpoint(path)
    path.write_bytes(b"")  # and a whole module object pickled into a state_dict-like file
    torch.save({"layer": torch.nn.Linear(2, 2)}, path)
    with pytest.raises(ValueError, match=r"pickled Python objects \(torch\.nn\.modules\.linear\.Linear"):
        load_checkpoint(path)


@pytest.mark.parametrize("cut", [0.5, 0.9, 0.999])
def test_a_damaged_checkpoint_is_called_corrupt(run, tmp_path, cut):
    checkpoint, _ = run
    data = bytearray(checkpoint.read_bytes())
    damaged = tmp_path / "damaged.pt"
    damaged.write_bytes(bytes(data[: int(len(data) * cut)]))
    with pytest.raises(ValueError, match="corrupt or truncated"):
        load_checkpoint(damaged)


def test_a_flipped_byte_inside_the_pickle_is_corrupt_not_pickled_code(run, tmp_path):
    import zipfile

    checkpoint, _ = run
    with zipfile.ZipFile(checkpoint) as archive:
        info = next(i for i in archive.infolist() if i.filename.endswith("data.pkl"))
    data = bytearray(checkpoint.read_bytes())
    header = info.header_offset  # local file header: name and extra-field lengths at bytes 26 and 28
    start = header + 30 + int.from_bytes(data[header + 26:header + 28], "little") + int.from_bytes(
        data[header + 28:header + 30], "little")  # the stored (uncompressed) pickle starts here
    data[start] ^= 0xFF  # the pickle's first opcode
    damaged = tmp_path / "flipped.pt"
    damaged.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="corrupt or truncated"):
        load_checkpoint(damaged)


def test_weights_and_checkpoints_given_to_the_wrong_loader_point_to_the_right_one(run):
    checkpoint, weights = run
    with pytest.raises(ValueError, match=r"is a training checkpoint.*load_model\(.*python -m ddpm_helpers export"):
        load_pretrained(checkpoint)
    with pytest.raises(ValueError, match=r"is a \.safetensors weights file.*load_pretrained\("):
        load_checkpoint(weights)
    assert checkpoint.is_file()  # and nobody told anyone to delete a good file


def test_a_corrupt_weights_file_and_a_bare_state_dict(run, tmp_path):
    _, weights = run
    damaged = tmp_path / "w.safetensors"
    damaged.write_bytes(weights.read_bytes()[:200])
    with pytest.raises(ValueError, match="corrupt or truncated"):
        load_pretrained(damaged)
    bare = tmp_path / "state_dict.pt"
    torch.save(torch.nn.Linear(2, 2).state_dict(), bare)
    with pytest.raises(ValueError, match=r"not a ddpm_helpers training checkpoint.*bare state_dict"):
        load_checkpoint(bare)


def test_a_folder_given_as_checkpoint_points_inside(run):
    checkpoint, _ = run
    with pytest.raises(ValueError, match=r"is a folder.*did you mean .*checkpoint\.pt"):
        load_model(checkpoint.parent)


# ---- temp files of interrupted writes ----

WRITER = textwrap.dedent("""
    import sys, time
    from ddpm_helpers._io import atomic_write

    def write_slowly(tmp):
        with open(tmp, "wb") as f:
            f.write(b"half a checkpoint")
            f.flush()
            print("writing", flush=True)
            time.sleep(120)

    atomic_write(sys.argv[1], write_slowly)
""")


def start_writer(target):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(target)], env=env, stdout=subprocess.PIPE, text=True)
    assert writer.stdout.readline().strip() == "writing"
    return writer


def temp_files(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_a_killed_writers_temp_file_is_removed_by_the_next_save(tmp_path):
    target = tmp_path / "checkpoint.pt"
    writer = start_writer(target)
    os.kill(writer.pid, signal.SIGKILL)  # kill -9 in the middle of the write
    writer.wait()
    left = temp_files(tmp_path)
    assert len(left) == 1 and str(writer.pid) in left[0]
    _io.atomic_write(target, lambda tmp: Path(tmp).write_bytes(b"new"))
    assert temp_files(tmp_path) == [] and target.read_bytes() == b"new"


def test_a_live_writers_temp_file_is_never_touched(tmp_path):
    target = tmp_path / "checkpoint.pt"
    writer = start_writer(target)
    try:
        live = temp_files(tmp_path)
        _io.atomic_write(target, lambda tmp: Path(tmp).write_bytes(b"mine"))
        assert temp_files(tmp_path) == live  # still being written by the other process
        assert target.read_bytes() == b"mine"
    finally:
        writer.kill()
        writer.wait()


def test_other_hosts_and_other_files_temp_files_are_left_alone(tmp_path):
    target = tmp_path / "checkpoint.pt"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    keep = [f".checkpoint.pt.otherhost.{dead.pid}.abc.tmp",  # another machine on a shared disk
            f".weights.pt.{_io._HOST}.{dead.pid}.abc.tmp",  # another target
            ".checkpoint.pt.abc123.tmp"]  # an older ddpm_helpers' name: its writer is unknown
    stale = f".checkpoint.pt.{_io._HOST}.{dead.pid}.abc.tmp"
    for name in keep + [stale]:
        (tmp_path / name).write_bytes(b"x")
    time.sleep(0.01)
    assert _io.remove_stale_temp_files(target) == [tmp_path / stale]
    assert temp_files(tmp_path) == sorted(keep)
