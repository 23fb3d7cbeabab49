"""benchmarks/bench_quality_curve.py's report: the table of stored rows (ranges over seeds) and its plot."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def row(recipe, seed, minutes, frechet, confident):
    return dict(recipe=recipe, seed=seed, minutes=minutes, train_s=60.0 * minutes, images=640 * minutes,
                confident=confident, class_min=0.05 + seed / 100, class_max=0.15 - seed / 100, frechet=frechet,
                frechet_floor=40.0, kid=1.0, kid_reference=0.0, heldout_loss=0.05)


def test_report_tables_and_plots_the_stored_rows(tmp_path):
    rows = [row("ours-plain", 0, 1, 400.0, 0.5), row("ours-plain", 0, 5, 120.0, 0.8),
            row("ours-plain", 1, 5, 100.0, 0.9), row("seed-fp32", 0, 5, 800.0, 0.4)]
    (tmp_path / "quality_curve.json").write_text(json.dumps(rows))
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_quality_curve.py"), "--report",
                           "--out", str(tmp_path)], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "| ours-plain | 1 | 1 | 640 | 50% | 5-15% | 10.0x | 0.0500 |" in lines
    # two seeds at 5 minutes: ranges, and the classes column spans both seeds
    assert "| ours-plain | 5 | 2 | 3,200 | 80-90% | 5-15% | 2.5-3.0x | 0.0500 |" in lines
    assert "| seed-fp32 | 5 | 1 | 3,200 | 40% | 5-15% | 20.0x | 0.0500 |" in lines
    assert (tmp_path / "quality_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
