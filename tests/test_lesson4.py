"""Lesson 4's notebook as committed: exercises stored unsolved (first hint shown, more hints and a
solution folded, the solution right), every displayed formula followed by a cell that checks it,
quick mode in one settings cell, no stored progress bars, and no silent resume of an earlier run."""

import json
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F  # noqa: F401 - the notebook's exercise cells use it

from ddpm_helpers import exercises as checks
from notebook_cells import exercise_cells, stored_text

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "04_training_loop.ipynb"
CHECK_CALL = re.compile(r"^(check_\w+)\((my_\w+)\);?\s*$", re.M)


@pytest.fixture(scope="module")
def cells():
    return json.loads(NOTEBOOK.read_text())["cells"]


def source(cell):
    return "".join(cell["source"])


def exercises():
    return exercise_cells(NOTEBOOK, CHECK_CALL)


def with_solution(attempt, solution):
    """The attempt with each of its lines that the solution rewrites (same name assigned, or the
    return) replaced by the solution's line, at the attempt's indentation."""
    lines = attempt.splitlines()
    for new in solution.strip().splitlines():
        head = new.split("=")[0].strip() if not new.startswith("return") else "return"
        hits = [i for i, old in enumerate(lines) if old.strip().startswith(head) and "def " not in old]
        assert len(hits) == 1, (head, attempt)
        indent = lines[hits[0]][:len(lines[hits[0]]) - len(lines[hits[0]].lstrip())]
        lines[hits[0]] = indent + new.strip()
    return "\n".join(lines)


def test_lesson4_exercises_are_stored_unsolved_with_folded_hints(cells):
    found = list(exercises())
    assert [CHECK_CALL.search(s).group(1) for s, *_ in found] == ["check_training_loss", "check_ema_update"]
    for attempt, text, following, solution in found:
        assert text.startswith("Not yet. Hint 1 of "), text
        assert "Correct" not in text
        assert "<summary>Hint 2</summary>" in following and solution is not None
        assert "<details>" not in attempt


def test_lesson4_attempts_fail_and_folded_solutions_pass(cells, capsys):
    for attempt, _, _, solution in exercises():
        check_name, fn_name = CHECK_CALL.search(attempt).groups()
        for code, expected in [(attempt, False), (with_solution(attempt, solution), True)]:
            namespace = {"torch": torch, "F": F}
            exec(CHECK_CALL.sub("", code), namespace)  # noqa: S102 - our own notebook's cell
            capsys.readouterr()
            assert getattr(checks, check_name)(namespace[fn_name]) is expected, capsys.readouterr().out


def test_lesson4_title_and_more_markdown_than_code(cells):
    title = source(cells[0])
    assert "\n# Lesson 4 — " in title and "# # Lesson" not in title
    kinds = [cell["cell_type"] for cell in cells]
    assert kinds.count("markdown") >= kinds.count("code")


def test_every_displayed_formula_is_checked_by_the_next_code_cell(cells):
    """A markdown cell with a $$ formula is followed by a '# NBVAL_CHECK_OUTPUT' cell, or by the
    exercise that checks it (the title's equation is the exercise's: it is checked in section 2)."""
    for i, cell in enumerate(cells[1:], start=1):
        if cell["cell_type"] != "markdown" or "$$" not in source(cell):
            continue
        following = source(cells[i + 1])
        assert following.startswith("# NBVAL_CHECK_OUTPUT") or CHECK_CALL.search(following), source(cell)[:200]


def test_quick_mode_lives_in_one_settings_cell_and_no_progress_bar_is_stored(cells):
    code = [cell for cell in cells if cell["cell_type"] == "code"]
    with_quick = [i for i, cell in enumerate(code) if re.search(r"\bquick\(", source(cell))]
    assert len(with_quick) == 1 and with_quick[0] <= 2, with_quick  # the settings cell, near the top
    for cell in code:
        text = stored_text(cell)
        assert not re.search(r"\d+%\|| it/s| step/s|\?it/s|VBox\(|HBox\(|IntSlider\(", text), text[:300]
        assert not any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in cell["outputs"])
        if re.search(r"(?<![.\w])(train|sample)\(", source(cell)):  # the package's train() and sample()
            assert "progress=False" in source(cell), source(cell)[:200]


def test_the_training_run_never_resumes_silently(cells):
    settings = next(source(c) for c in cells if c["cell_type"] == "code" and "TRAIN_MINUTES =" in source(c))
    assert re.search(r"^RESUME = False\b", settings, re.M)
    run = next(source(c) for c in cells if c["cell_type"] == "code" and "time_budget_s=TRAIN_MINUTES" in source(c))
    assert "resume=RESUME" in run and "RESUME = False: a fresh run" in run


def test_no_false_sentences_of_the_old_lesson(cells):
    text = "\n".join(source(cell) for cell in cells if cell["cell_type"] == "markdown")
    for false in ["harmless with AdamW", "On a GPU the same cells", "several times", "~2×", "finishes in about a minute"]:
        assert false not in text, false
