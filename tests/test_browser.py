"""The sliders in a real browser: JupyterLab, headless Chromium, the notebook run top to bottom.

For each notebook below: open it as a learner who has just cloned the repository (untrusted,
no kernel output yet) and check that each slider's cell shows its stored PNG filmstrip and no
widget; then Run > Run All Cells, wait for the last cell, check that each slider's cell now
shows the live slider and NOT the filmstrip as well (one output, two views), then for
every slider press ArrowRight and End on its handle and check that the readout shows the new
value and that the picture's bytes (fetched from the <img>'s blob: URL in the page) are the
kernel's frame for that value. A cell added at the end asks the kernel for its frames'
SHA-256 and, after the moves, for the value it received. Screenshots of each slider before
and after go to $BROWSER_ARTIFACTS (default tests/artifacts/).

Needs Debian's Chromium and the playwright Python package (never `playwright install`):
    apt-get install chromium && pip install playwright
Without them the test is skipped, except under CI (CI=true), where it fails.
"""

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    # without these Chromium keeps calling home, which floods a closed network
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
ARTIFACTS = Path(os.environ.get("BROWSER_ARTIFACTS", ROOT / "tests" / "artifacts"))
ON_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
MARK = "BROWSER-CHECK "  # prefix of the kernel's answers, to find them among other output

# A 2-core laptop is slow: generous bounds, and explicit waits everywhere instead of sleeps.
SERVER_START_S = 120
RUN_ALL_S = 900
STEP_MS = 60_000

# (notebook, names of its FrameSlider variables in the order they appear on the page)
NOTEBOOKS = [
    pytest.param("01_forward_noising.ipynb", ["slider"], id="01_forward_noising"),
    pytest.param("02_noise_schedules.ipynb", ["slider"], id="02_noise_schedules"),
    pytest.param("05_sampling.ipynb", ["slider"], id="05_sampling"),
]
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def _require_browser():
    """Skip (or, under CI, fail) with the fix when Chromium or playwright is missing."""
    missing = []
    if not Path(CHROMIUM).is_file():
        missing.append(f"Chromium ({CHROMIUM})")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("the playwright Python package")
    if missing:
        message = (f"browser test needs {' and '.join(missing)}; enable it with "
                   "`apt-get install chromium && pip install playwright` (never `playwright install`)")
        if ON_CI:
            pytest.fail(message + " -- under CI (CI=true) it must run, not be skipped")
        pytest.skip(message)


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _write_lab_settings(settings_dir):
    """User settings for this test only: never autosave (the test adds a cell to a notebook
    of the repository), no virtual scrolling (every cell stays in the page), no news/updates."""
    settings = {
        "docmanager-extension/plugin": {"autosave": False},
        "notebook-extension/tracker": {"windowingMode": "none"},
        "apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
    }
    for name, values in settings.items():
        path = Path(settings_dir) / "@jupyterlab" / f"{name}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))


@pytest.fixture(scope="module")
def lab():
    """JupyterLab on 127.0.0.1 serving the repository, in quick and offline mode."""
    _require_browser()
    home = Path(tempfile.mkdtemp(prefix="ddpm-browser-test-"))
    _write_lab_settings(home / "settings")
    port, token = _free_port(), os.urandom(16).hex()
    # a fresh data dir holds no notebook signatures: the notebooks open untrusted, as after a clone
    env = dict(os.environ, DDPM_QUICK="1", HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1",
               JUPYTER_CONFIG_DIR=str(home / "config"), JUPYTER_RUNTIME_DIR=str(home / "runtime"),
               JUPYTER_DATA_DIR=str(home / "data"),
               JUPYTERLAB_SETTINGS_DIR=str(home / "settings"),
               JUPYTERLAB_WORKSPACES_DIR=str(home / "workspaces"))
    command = [
        sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
        "--port-retries=0", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={ROOT}",
        f"--LabApp.user_settings_dir={home / 'settings'}", f"--LabApp.workspaces_dir={home / 'workspaces'}",
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-root")
    log = open(home / "jupyterlab.log", "w")
    server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + SERVER_START_S
        while True:
            if server.poll() is not None:
                pytest.fail(f"JupyterLab exited with {server.returncode}:\n{(home / 'jupyterlab.log').read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=5) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"JupyterLab did not answer within {SERVER_START_S} s:\n"
                            f"{(home / 'jupyterlab.log').read_text()[-3000:]}")
            time.sleep(0.5)
        yield {"base": base, "token": token, "home": home}
    finally:
        try:  # a clean shutdown also stops the kernels it started
            request = urllib.request.Request(f"{base}/api/shutdown?token={token}", method="POST")
            urllib.request.urlopen(request, timeout=10).close()
            server.wait(timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            server.terminate()
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                server.kill()
        log.close()
        if ARTIFACTS.is_dir():  # the server's log, next to the screenshots, for when a test fails
            shutil.copy(home / "jupyterlab.log", ARTIFACTS / "jupyterlab.log")
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="module")
def browser_context(lab):
    from playwright.sync_api import sync_playwright

    profile = lab["home"] / "chromium-profile"  # a fresh profile every run
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True,
            viewport={"width": 1400, "height": 1000},
        )
        context.set_default_timeout(STEP_MS)
        yield context
        context.close()


# --- driving JupyterLab -------------------------------------------------------------------


def _wait_for_kernel(lab, notebook, timeout_s=180):
    """Until the server has started the notebook's kernel, the page is connected to it and
    it is idle. (The page's own status reads "idle" for a moment before any kernel exists,
    and cells run then are dropped.)"""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"{lab['base']}/api/sessions?token={lab['token']}", timeout=10) as answer:
            sessions = json.load(answer)
        kernels = [s["kernel"] for s in sessions if s.get("path", "").endswith(f"notebooks/{notebook}") and s.get("kernel")]
        if kernels and kernels[0].get("execution_state") == "idle" and kernels[0].get("connections", 0) > 0:
            return
        time.sleep(0.5)
    pytest.fail(f"the kernel of {notebook} was not started and idle within {timeout_s} s")


def _menu(page, menu, item):
    """Click ``menu`` in JupyterLab's menu bar, then its entry ``item``."""
    page.locator(".lm-MenuBar-itemLabel").get_by_text(menu, exact=True).click()
    page.locator(".lm-Menu-itemLabel").get_by_text(item, exact=True).click()


_PROMPTS = "() => [...document.querySelectorAll('.jp-Notebook .jp-CodeCell .jp-InputPrompt')].map(p => p.textContent.trim())"
_ERRORS = ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.error']"


def _run_all_cells(page, timeout_s):
    """Clear the stored outputs (so the stored execution counts cannot pass for new ones),
    Run All Cells, and wait until every code cell has an execution count. Fails at once
    when a cell raises (Run All then stops and leaves the rest unexecuted)."""
    _menu(page, "Edit", "Clear Outputs of All Cells")
    page.wait_for_function(f"({_PROMPTS})().every(p => p === '[ ]:')")
    _menu(page, "Run", "Run All Cells")
    deadline, stalled = time.monotonic() + timeout_s, 0
    while True:
        prompts = page.evaluate(_PROMPTS)
        if all(p[1:-2].isdigit() for p in prompts):
            return
        errors = page.locator(_ERRORS)
        if errors.count():
            pytest.fail(f"a cell raised during Run All:\n{errors.first.inner_text()[:3000]}")
        # nothing running or queued, yet some cells never ran: Run All stopped
        stalled = stalled + 1 if "[*]:" not in prompts else 0
        if stalled >= 5:
            pytest.fail(f"Run All stopped before the end; prompts: {prompts}")
        if time.monotonic() > deadline:
            pytest.fail(f"Run All did not finish within {timeout_s} s; prompts: {prompts}")
        time.sleep(1)


def _append_and_run_cell(page, code, timeout_s=120):
    """Add a code cell at the end of the notebook, run it, return its printed answer."""
    cells = page.locator(".jp-Notebook .jp-Cell")
    count = cells.count()
    cells.last.locator(".jp-InputPrompt").click()
    page.keyboard.press("Escape")  # command mode
    page.keyboard.press("b")  # insert a cell below
    page.wait_for_function(f"document.querySelectorAll('.jp-Notebook .jp-Cell').length === {count + 1}")
    page.keyboard.press("Enter")  # edit mode in the new cell
    page.keyboard.insert_text(code)  # as one paste: no auto-closed brackets, no auto-indent
    page.keyboard.press("Shift+Enter")
    new_cell = cells.nth(count)
    answer = new_cell.locator(".jp-OutputArea-output", has_text=MARK.strip())
    answer.or_(new_cell.locator(_ERRORS)).first.wait_for(timeout=timeout_s * 1000)
    if new_cell.locator(_ERRORS).count():
        pytest.fail(f"the test's check cell raised:\n{new_cell.locator(_ERRORS).first.inner_text()[:3000]}")
    text = answer.first.inner_text()
    return json.loads(text[text.index(MARK) + len(MARK):].strip().splitlines()[0])


def _kernel_frames_code(names):
    return (
        "import hashlib, json\n"
        "from ddpm_helpers.widgets import FrameSlider\n"
        "_sha = lambda data: hashlib.sha256(data).hexdigest()\n"
        f"_sliders = {{name: globals()[name] for name in {names!r}}}\n"
        "assert all(isinstance(s, FrameSlider) for s in _sliders.values())\n"
        f"print({MARK!r} + json.dumps({{name: {{'value': s.slider.value, 'values': s.values,\n"
        "    'frames': [_sha(s.frame_for(v)) for v in s.values], 'shown': _sha(s.image.value)}\n"
        "    for name, s in _sliders.items()}))"
    )


_IMAGE_SHA256 = """async (img) => {
    const bytes = await (await fetch(img.src)).arrayBuffer();
    const digest = await crypto.subtle.digest('SHA-256', bytes);
    return Array.from(new Uint8Array(digest), b => b.toString(16).padStart(2, '0')).join('');
}"""


def _move_and_check(page, handle, readout, image, key, expected_value, expected_sha):
    """Press ``key`` on the slider handle; wait for the readout and the picture to follow;
    return the SHA-256 of the picture the page now shows."""
    old_src = image.get_attribute("src")
    handle.focus()
    page.keyboard.press(key)
    try:
        page.wait_for_function("([el, v]) => el.textContent.trim() === v",
                               arg=[readout.element_handle(), str(expected_value)])
    except Exception as error:  # a timeout: say what the readout shows instead
        raise AssertionError(f"after {key} the readout shows {readout.inner_text()!r}, expected {expected_value}") from error
    try:  # the view swaps the <img>'s blob: URL when the model's value changes
        page.wait_for_function("([img, old]) => img.src !== old && img.complete",
                               arg=[image.element_handle(), old_src])
    except Exception as error:
        raise AssertionError(f"after {key} (t = {expected_value}) the picture did not change") from error
    shown = image.evaluate(_IMAGE_SHA256)
    assert shown == expected_sha, f"after {key} (t = {expected_value}) the page shows a picture that is not the kernel's frame"
    return shown


_PNG_OUTPUT = ".jp-OutputArea-output[data-mime-type='image/png']"


def _slider_cells(path):
    """{index among the notebook's code cells: stored filmstrip or not} for the cells whose stored
    output is a slider. (A notebook executed before sliders stored filmstrips has none.)"""
    cells = [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]
    sliders = {}
    for i, cell in enumerate(cells):
        for output in cell.get("outputs", []):
            text = "".join(output.get("data", {}).get("text/plain", ""))
            # a FrameSlider (or, stored before filmstrips, its VBox); not a progress bar's widget
            if WIDGET_VIEW in output.get("data", {}) and ("FrameSlider(" in text or "Slider(" in text):
                sliders[i] = "image/png" in output["data"]
    return sliders


def _check_stored_filmstrips(page, sliders):
    """Before anything runs, each slider's cell shows its stored filmstrip, and no widget."""
    code_cells = page.locator(".jp-Notebook .jp-CodeCell")
    for i in [i for i, has_png in sliders.items() if has_png]:
        cell = code_cells.nth(i)
        cell.locator(f"{_PNG_OUTPUT} img").first.wait_for()
        assert cell.locator(".widget-vbox").count() == 0
    assert page.get_by_text("Error displaying widget").count() == 0


def _check_live_sliders_only(page, indices):
    """After Run All, each slider's cell shows the live slider and not the filmstrip as well."""
    code_cells = page.locator(".jp-Notebook .jp-CodeCell")
    for i in indices:
        cell = code_cells.nth(i)
        cell.locator(".widget-vbox").first.wait_for()
        assert cell.locator(_PNG_OUTPUT).count() == 0, "the slider's cell shows its filmstrip beside the slider"


@pytest.mark.parametrize("notebook, names", NOTEBOOKS)
def test_slider_moves_the_picture_in_jupyterlab(lab, browser_context, notebook, names):
    path = ROOT / "notebooks" / notebook
    if not path.is_file():
        pytest.skip(f"notebooks/{notebook} does not exist yet")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    stem = path.stem
    file_before = hashlib.sha256(path.read_bytes()).hexdigest()
    timings, started = {}, time.monotonic()

    page = browser_context.new_page()
    try:
        # a workspace of its own per notebook: no other notebook's (hidden) tab holds matching elements
        page.goto(f"{lab['base']}/lab/workspaces/{stem}/tree/notebooks/{notebook}?reset&token={lab['token']}")
        page.locator(".jp-NotebookPanel .jp-Notebook .jp-Cell").first.wait_for()
        _wait_for_kernel(lab, notebook)
        page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").first.wait_for(timeout=120_000)
        timings["open_s"] = time.monotonic() - started
        slider_cells = _slider_cells(path)
        assert len(slider_cells) == len(names), f"{notebook}: stored slider outputs in code cells {slider_cells}"
        _check_stored_filmstrips(page, slider_cells)
        page.screenshot(path=ARTIFACTS / f"{stem}_opened.png", full_page=True)

        # 1. run the whole notebook, as a learner does
        t0 = time.monotonic()
        _run_all_cells(page, RUN_ALL_S)
        timings["run_all_s"] = time.monotonic() - t0
        assert page.get_by_text("Error displaying widget").count() == 0
        _check_live_sliders_only(page, list(slider_cells))

        # 2. find each slider and the picture it controls (a FrameSlider is VBox([IntSlider, Image]))
        boxes = page.locator(".jp-OutputArea-output .widget-vbox").filter(has=page.locator(".widget-slider"))
        boxes.first.wait_for()
        assert boxes.count() == len(names), f"expected {len(names)} slider(s) {names}, found {boxes.count()}"
        kernel = _append_and_run_cell(page, _kernel_frames_code(names))

        # 3. move each slider: one step right, then to the end
        for index, name in enumerate(names):
            box, frames = boxes.nth(index), kernel[name]
            handle, readout, image = box.locator(".noUi-handle").first, box.locator(".widget-readout").first, box.locator("img").first
            assert readout.inner_text().strip() == str(frames["value"]) == str(frames["values"][0])
            first = image.evaluate(_IMAGE_SHA256)
            assert first == frames["shown"] == frames["frames"][0], "the picture before moving is not the kernel's first frame"
            box.screenshot(path=ARTIFACTS / f"{stem}_{name}_before.png")

            expected = [("ArrowRight", 1), ("End", len(frames["values"]) - 1)]
            for key, i in expected:
                shown = _move_and_check(page, handle, readout, image, key, frames["values"][i], frames["frames"][i])
                assert shown != first, f"after {key} the picture did not change"
            box.screenshot(path=ARTIFACTS / f"{stem}_{name}_after.png")

        # 4. the kernel received the moves: its value and picture are the ones the page shows
        after = _append_and_run_cell(page, _kernel_frames_code(names))
        for name in names:
            assert after[name]["value"] == kernel[name]["values"][-1]
            assert after[name]["shown"] == kernel[name]["frames"][-1]
        timings["total_s"] = time.monotonic() - started
        (ARTIFACTS / f"{stem}_timings.json").write_text(json.dumps(timings, indent=1) + "\n")
        print(f"{notebook}: " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()))
    except BaseException:  # pytest.fail raises a BaseException
        page.screenshot(path=ARTIFACTS / f"{stem}_failure.png", full_page=True)
        raise
    finally:
        page.close()
    # the test added cells in the page only; autosave is off, so the file is untouched
    assert hashlib.sha256(path.read_bytes()).hexdigest() == file_before, f"{notebook} was modified on disk"
