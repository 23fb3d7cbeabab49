"""The slider widgets under both ipywidgets majors: 7 (what Colab preinstalls) and 8 (the venv).

ipywidgets 7 is pip-installed once into a cache folder outside the venv and put first on
PYTHONPATH of a subprocess, so the venv itself is never changed. The first run needs PyPI;
offline it is skipped, except under CI (CI=true), where it must run.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("DDPM_WIDGETS_CACHE", Path(tempfile.gettempdir()) / "ddpm_helpers-test-ipywidgets"))
# 7.7.1 is Colab's; 7.8.5 is the last 7.x. Both need ipython_genutils, which the venv lacks.
# The frontend packages (widgetsnbextension 3, jupyterlab_widgets 1) are not imported by the
# kernel side, so they are left out: --no-deps keeps pip from touching anything else.
IPYWIDGETS_7 = ["7.7.1", "7.8.5"]
ON_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

CHECK_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import ipywidgets
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.display import display
    from IPython.utils.capture import capture_output

    from ddpm_helpers.data import render_digits
    from ddpm_helpers.widgets import FrameSlider, forward_noising_slider
    import torch

    major = sys.argv[1]
    assert ipywidgets.__version__.startswith(major), (ipywidgets.__version__, ipywidgets.__file__)
    report = {"version": ipywidgets.__version__, "file": ipywidgets.__file__}

    # 1. a FrameSlider over made-up frames: moving it swaps the image
    import io
    from PIL import Image

    def png(i):
        buffer = io.BytesIO()
        Image.new("RGB", (40, 30), (40 * i, 100, 200)).save(buffer, format="png")
        return buffer.getvalue()

    frames = [png(i) for i in range(5)]
    fs = FrameSlider(frames, range(0, 50, 10))
    assert (fs.slider.min, fs.slider.max, fs.slider.step, fs.slider.value) == (0, 40, 10, 0)
    assert fs.image.value == frames[0]
    for value in (30, 10, 40):
        fs.slider.value = value
        assert fs.image.value == frames[value // 10], value
    # what the browser receives: the image's state carries the new frame's bytes
    state = fs.image.get_state()
    assert bytes(state["value"]) == frames[4]
    assert fs.widget.children == (fs.slider, fs.image)
    # uneven values (a reverse-process slider ending on the finished sample) use a SelectionSlider
    uneven = FrameSlider(frames[:3], [0, 20, 25])
    uneven.slider.value = 25
    assert uneven.image.value == frames[2]

    # 2. displaying it produces ONE output: a widget view of the VBox and a PNG filmstrip
    InteractiveShell.instance()
    with capture_output() as captured:
        display(fs)
    assert len(captured.outputs) == 1, captured.outputs
    bundle = captured.outputs[0].data
    view = bundle["application/vnd.jupyter.widget-view+json"]
    assert view["model_id"] == fs.widget.model_id, view
    assert view["version_major"] == 2, view
    import base64
    assert base64.b64decode(bundle["image/png"]).startswith(b"\\x89PNG")
    assert "VBox" not in bundle["text/plain"], bundle["text/plain"]

    # 3. the lesson-1 slider (quick mode: t = 0, 250, 500, 750)
    x0, _ = render_digits(4, seed=0)
    alphas_cumprod = torch.cumprod(1 - torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64), 0).float()
    lesson = forward_noising_slider(x0, alphas_cumprod, generator=torch.Generator().manual_seed(0))
    assert lesson.values == [0, 250, 500, 750], lesson.values
    assert lesson.image.value == lesson.frames[0] and lesson.frames[0].startswith(b"\\x89PNG")
    lesson.slider.value = 500
    assert lesson.image.value == lesson.frame_for(500) == lesson.frames[2]
    assert lesson.image.value != lesson.frames[0]
    report["lesson_frames"] = len(lesson.frames)
    print(json.dumps(report))
    """
)


def _run_check(major, pythonpath=None):
    env = dict(os.environ, DDPM_QUICK="1", MPLBACKEND="Agg")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (pythonpath, str(ROOT)) if p)
    done = subprocess.run(
        [sys.executable, "-c", CHECK_SCRIPT, major], env=env, cwd=ROOT,
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, f"ipywidgets {major}.x check failed:\n{done.stdout}\n{done.stderr}"
    return json.loads(done.stdout.strip().splitlines()[-1])


def _ipywidgets_7(version):
    """A folder holding ipywidgets==version (and ipython_genutils), installed once."""
    target = CACHE / version
    if (target / "ipywidgets" / "__init__.py").is_file():
        return target
    partial = CACHE / f"{version}.partial-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         "--no-deps", "--no-compile", "--retries", "1", "--timeout", "20", "--target", str(partial),
         f"ipywidgets=={version}", "ipython_genutils==0.2.0"],
        capture_output=True, text=True, timeout=600,
    )
    if done.returncode != 0:
        shutil.rmtree(partial, ignore_errors=True)
        message = f"could not pip-install ipywidgets=={version} (offline?): {done.stderr.strip()[-500:]}"
        if ON_CI:
            pytest.fail(message + "\nUnder CI (CI=true) this test must run: PyPI has to be reachable.")
        pytest.skip(message + "\nRun once with network access to PyPI to cache it in " + str(CACHE))
    try:
        partial.rename(target)  # atomic: a half-finished install is never taken for a cached one
    except OSError:  # another process got there first
        shutil.rmtree(partial, ignore_errors=True)
    return target


@pytest.mark.parametrize("version", IPYWIDGETS_7)
def test_sliders_work_under_ipywidgets_7(version):
    report = _run_check("7", pythonpath=str(_ipywidgets_7(version)))
    assert report["version"] == version and report["file"].startswith(str(CACHE))
    assert report["lesson_frames"] == 4


def test_sliders_work_under_ipywidgets_8():
    report = _run_check("8")
    assert report["lesson_frames"] == 4
