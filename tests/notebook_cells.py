"""The exercise cells of a lesson, read for the tests: each checked attempt, what it stored,
and the hints and solution folded in the markdown after it."""

import json
import re
from pathlib import Path

SOLUTION = re.compile(r"<summary>Solution.*?```python\n(.*?)```", re.S)


def stored_text(cell):
    """A code cell's stored text: its printed output and the text/plain of what it displayed."""
    return "".join("".join(o.get("text", "")) + "".join(o.get("data", {}).get("text/plain", ""))
                   for o in cell.get("outputs", []))


def exercise_cells(path, check_call):
    """For each code cell of notebook ``path`` that ``check_call`` (a regex) finds a check in:
    (its source, its stored text, the markdown after it up to the next code cell, the python
    code of the solution folded there or None)."""
    cells = json.loads(Path(path).read_text())["cells"]
    for i, cell in enumerate(cells):
        source = "".join(cell["source"])
        if cell["cell_type"] != "code" or not check_call.search(source):
            continue
        folded = []
        for later in cells[i + 1:]:
            if later["cell_type"] == "code":
                break
            folded.append("".join(later["source"]))
        folded = "\n".join(folded)
        solution = SOLUTION.search(folded)
        yield source, stored_text(cell), folded, solution.group(1) if solution else None
