"""Every way of running the tests gets the same environment: quick mode and offline mode.

A copy of the repository's pytest set-up (the root conftest.py, pyproject.toml and
tests/conftest.py) in a temporary folder, with a probe test file and a probe notebook that
assert the environment, is run by pytest in a subprocess whose own environment has none
of the variables, the four ways people run tests.
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
VARIABLES = ("DDPM_QUICK", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "MPLBACKEND")
PROBE = """\
import os

from ddpm_helpers import config

assert os.environ.get("DDPM_QUICK") == "1" and config.QUICK, "quick mode is off"
assert os.environ.get("HF_HUB_OFFLINE") == "1" and os.environ.get("HF_DATASETS_OFFLINE") == "1", "online"
assert os.environ.get("MPLBACKEND") == "Agg"
"""


@pytest.fixture(scope="module")
def repo_copy(tmp_path_factory):
    root = tmp_path_factory.mktemp("repo")
    (root / "tests").mkdir()
    (root / "notebooks").mkdir()
    for name in ("conftest.py", "pyproject.toml", "tests/conftest.py"):
        shutil.copy(ROOT / name, root / name)
    (root / "tests" / "test_probe.py").write_text(f"def test_environment():\n{_indent(PROBE)}")
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(PROBE)])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(notebook, root / "notebooks" / "probe.ipynb")
    return root


def _indent(code):
    return "".join(f"    {line}\n" if line else "\n" for line in code.splitlines())


def _pytest(args, cwd):
    env = {k: v for k, v in os.environ.items() if k not in VARIABLES}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in [os.environ.get("PYTHONPATH")] if p])
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)
    return done.returncode, done.stdout + done.stderr


@pytest.mark.parametrize("args, where, expected", [
    ([], ".", 2),                                      # pytest: tests/ and notebooks/ (testpaths)
    (["tests"], ".", 1),                               # pytest tests
    (["notebooks/probe.ipynb"], ".", 1),               # one notebook alone: tests/conftest.py is not loaded
    (["test_probe.py"], "tests", 1),                   # cd tests && pytest test_x.py
], ids=["pytest", "pytest-tests", "pytest-one-notebook", "cd-tests"])
def test_every_way_of_running_pytest_sets_quick_and_offline_mode(repo_copy, args, where, expected):
    code, output = _pytest(args, repo_copy / where)
    assert code == 0, output
    assert re.search(rf"\b{expected} passed\b", output), output


def test_the_probe_fails_without_the_root_conftest(repo_copy, tmp_path):
    """The probe can fail: without the root conftest.py the same run reports quick mode off."""
    bare = tmp_path / "bare"
    shutil.copytree(repo_copy, bare)
    (bare / "conftest.py").unlink()
    code, output = _pytest(["notebooks/probe.ipynb"], bare)
    assert code != 0 and "quick mode is off" in output, output
