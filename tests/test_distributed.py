"""train() in two processes (torchrun, gloo, one thread each) = train() in one, on this CPU.

Two processes each take half of every batch; DDP averages their gradients. After the same
steps both hold identical weights, equal within float rounding to a one-process run with the
same global batch; only the main process writes the checkpoint; resuming in two processes
ends exactly where the uninterrupted two-process run did.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
import distributed_worker  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def max_abs_diff(a, b):
    return max((a[name] - b[name]).abs().max().item() for name in a)


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               str(Path(distributed_worker.__file__)), str(out)]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    ranks = [torch.load(out / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    return out, ranks, result


def test_both_processes_end_with_the_same_weights(two_processes):
    _, (rank0, rank1), _ = two_processes
    straight0, straight1 = rank0["straight"], rank1["straight"]
    assert straight0["num_processes"] == straight1["num_processes"] == 2
    assert straight0["is_main_process"] and not straight1["is_main_process"]
    assert max_abs_diff(straight0["params"], straight1["params"]) == 0.0  # started from different inits
    assert max_abs_diff(straight0["ema"], straight1["ema"]) == 0.0
    assert straight0["losses"] == straight1["losses"]  # the loss of the whole batch, on every process


def test_two_processes_match_one_process_with_the_same_global_batch(two_processes):
    _, (rank0, _), _ = two_processes
    one = distributed_worker.reference_run()
    two = rank0["straight"]
    assert two["step"] == one["step"] == 6
    # same images, noise and t; only the order of the float sums differs (two half-batch means, averaged),
    # which Adam's division by sqrt(v) amplifies for weights with tiny gradients: 8.6e-6 measured here,
    # against steps of up to lr = 1e-3 per weight
    assert max_abs_diff(two["params"], one["params"]) < 1e-4
    assert max_abs_diff(two["ema"], one["ema"]) < 1e-4
    torch.testing.assert_close(torch.tensor(two["losses"]), torch.tensor(one["losses"]), rtol=1e-5, atol=0)
    moved = max_abs_diff(two["params"], distributed_worker.snapshot_of_init())
    assert moved > 1e-3  # training changed the weights, so equal weights mean something


def test_only_the_main_process_writes_one_checkpoint(two_processes):
    out, (rank0, rank1), result = two_processes
    assert rank1["saves"] == []
    straight = str(out / "straight" / "checkpoint.pt")
    assert rank0["saves"].count(straight) == 3  # steps 2, 4, 6
    assert sorted(os.listdir(out / "straight")) == ["checkpoint.pt"]  # no second file, no temp file
    checkpoint = torch.load(straight, weights_only=True)
    assert checkpoint["step"] == 6 and checkpoint["num_processes"] == 2
    assert result.stderr.count(" 0/6 [") == 1  # one progress bar started: the main process's


def test_resume_in_two_processes_ends_where_the_straight_run_did(two_processes):
    _, ranks, _ = two_processes
    for rank in ranks:
        straight, resumed = rank["straight"], rank["resumed"]
        assert resumed["step"] == 6 and resumed["losses"] == straight["losses"]
        assert max_abs_diff(resumed["params"], straight["params"]) == 0.0
        assert max_abs_diff(resumed["ema"], straight["ema"]) == 0.0
