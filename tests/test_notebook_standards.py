"""What every lesson promises a reader who opens it on GitHub, nbviewer or a Colab preview,
without a kernel: a title that renders as a title, more explanation than code, no widget
shown as its text repr (each slider's cell also stores a picture of its frames), no stored
progress bar, and no exercise stored solved."""

import json
import re
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("[0-9][0-9]_*.ipynb"))
WIDGET = "application/vnd.jupyter.widget-view+json"
# what a widget or a tqdm bar looks like when only its text was stored
STORED_MACHINERY = re.compile(r"(VBox|HBox|IntSlider|FloatSlider|Output)\(children=|\d+%\|[ #█▏▎▍▌▋▊▉]*\|")


def cells(path):
    return json.loads(path.read_text(encoding="utf-8"))["cells"]


def texts(cell):
    """Every text a code cell's stored outputs show (stream, plain-text results, errors)."""
    for output in cell.get("outputs", []):
        yield "".join(output.get("text", ""))
        yield "".join(output.get("data", {}).get("text/plain", ""))


def test_the_lessons_are_numbered_one_to_n():
    assert [int(p.name[:2]) for p in NOTEBOOKS] == list(range(1, len(NOTEBOOKS) + 1))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_title_renders_as_lesson_n(path):
    first = "".join(cells(path)[0]["source"])
    headings = [line for line in first.splitlines() if line.startswith("#")]
    assert headings and headings[0].startswith(f"# Lesson {int(path.name[:2])} — "), headings[:1]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_more_explanation_than_code(path):
    kinds = [cell["cell_type"] for cell in cells(path)]
    assert kinds.count("markdown") >= kinds.count("code"), (kinds.count("markdown"), kinds.count("code"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_no_widget_repr_or_progress_bar_is_stored_as_text(path):
    found = [(i, text.strip()[:80]) for i, cell in enumerate(cells(path)) if cell["cell_type"] == "code"
             for text in texts(cell) if STORED_MACHINERY.search(text)]
    assert not found, found


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_widget_cell_stores_a_picture_too(path):
    for i, cell in enumerate(cells(path)):
        data = [output.get("data", {}) for output in cell.get("outputs", [])]
        if any(WIDGET in d for d in data):
            assert any("image/png" in d for d in data), f"cell {i} stores a widget and no picture of it"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_no_exercise_is_stored_solved(path):
    """A checker prints "Correct! ..." for a right answer: no stored output may show it."""
    solved = [i for i, cell in enumerate(cells(path)) if cell["cell_type"] == "code"
              and any(text.startswith("Correct!") for text in texts(cell))]
    assert not solved, f"cells {solved} store a solved exercise"


def test_the_pattern_sees_what_it_must():
    """The checks above cannot pass by matching nothing."""
    assert STORED_MACHINERY.search("VBox(children=(IntSlider(value=0, description='t'),))")
    assert STORED_MACHINERY.search("sampling:   0%|          | 0/50 [00:00<?, ?it/s]")
    assert STORED_MACHINERY.search("training:  40%|████      | 4/10")
    assert not STORED_MACHINERY.search("loss 0.0194 after 10,702 steps (100% of the budget)")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_quick_mode_shows_in_one_settings_cell_at_most(path):
    """The test suite's quick mode (config.quick) is machinery: one labelled settings cell, or none."""
    settings = [i for i, cell in enumerate(cells(path)) if cell["cell_type"] == "code"
                and "quick(" in "".join(cell["source"])]
    assert len(settings) <= 1, f"quick(...) in cells {settings}"
    if settings:
        before = "".join(cells(path)[settings[0] - 1]["source"])
        assert before.startswith("**Settings.**"), f"the cell before cell {settings[0]} must say what the settings do"
