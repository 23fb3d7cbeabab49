"""benchmarks/bench_quality_curve.py: the table of stored rows (ranges over seeds), its plot, and a cooldown recipe's runs."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

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


def test_report_adds_the_sde_samplers_columns_where_rows_have_them(tmp_path):
    with_sde = row("ours-min-snr", 0, 5, 120.0, 0.8)
    with_sde["sde"] = dict(confident=0.85, class_min=0.07, class_max=0.12, frechet=60.0, frechet_floor=40.0,
                           kid=0.5, kid_reference=0.0)
    rows = [with_sde, row("seed-fp32", 0, 5, 800.0, 0.4)]  # an older row, measured with 2M only
    (tmp_path / "quality_curve.json").write_text(json.dumps(rows))
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_quality_curve.py"), "--report",
                           "--out", str(tmp_path)], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == ("| recipe | minutes | seeds | images | confident (>= 0.9) | classes (min-max) | Frechet / floor "
                        "| SDE: confident | SDE: classes | SDE: Frechet / floor | held-out loss |")
    assert "| ours-min-snr | 5 | 1 | 3,200 | 80% | 5-15% | 3.0x | 85% | 7-12% | 1.5x | 0.0500 |" in lines
    assert "| seed-fp32 | 5 | 1 | 3,200 | 40% | 5-15% | 20.0x | - | - | - | 0.0500 |" in lines


def test_screen_report_tables_each_variant_over_its_seeds(tmp_path):
    """benchmarks/bench_screen.py --report: one line per variant, ranges over seeds, both samplers."""
    def screened(variant, seed, frechet, confident):
        sde = dict(confident=confident + 0.05, class_min=0.06, class_max=0.13, frechet=frechet / 2,
                   frechet_floor=40.0, kid=0.5, kid_reference=0.0)
        return dict(row(variant, seed, 5, frechet, confident), variant=variant, steps=1334, images=42688, sde=sde)

    rows = [screened("logit-normal-1", 0, 120.0, 0.76), screened("uniform-t", 0, 100.0, 0.74),
            screened("uniform-t", 1, 80.0, 0.78)]
    (tmp_path / "screen.json").write_text(json.dumps(rows))
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_screen.py"), "--report",
                           "--out", str(tmp_path)], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert ("| variant | seeds | images | steps | confident (>= 0.9) | classes (min-max) | Frechet / floor "
            "| SDE: confident | SDE: classes | SDE: Frechet / floor | held-out loss |") in lines
    # VARIANTS' order, not the file's
    assert lines.index("| uniform-t | 2 | 42,688 | 1,334 | 74-78% | 5-15% | 2.0-2.5x | 79-83% | 6-13% | 1.0-1.2x "
                       "| 0.0500 |") < lines.index("| logit-normal-1 | 1 | 42,688 | 1,334 | 76% | 5-15% | 3.0x | 81% "
                                                  "| 6-13% | 1.5x | 0.0500 |")


def test_a_screen_variants_unet_options_build_the_model_it_trains(monkeypatch):
    """bench_screen.screen: a variant's "unet" options go to UNet(), the rest to TrainConfig."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import bench_screen
    from ddpm_helpers.data import DigitsDataset

    tiny = dict(sample_size=16, block_out_channels=(8, 16, 16), norm_num_groups=4)
    monkeypatch.setitem(bench_screen.VARIANTS, "tiny-3", dict(batch_size=8, warmup_steps=1, log_every=1000, unet=tiny))
    seen = {}

    def measure(model, num_samples, dataset):
        seen.update(widths=tuple(model.config.block_out_channels), samples=num_samples)
        return {}

    monkeypatch.setattr(bench_screen, "measure", measure)
    row = bench_screen.screen("tiny-3", 24, 0, "no", DigitsDataset(64, image_size=16), 4)
    assert seen == dict(widths=(8, 16, 16), samples=4)
    assert (row["steps"], row["images"]) == (3, 24)  # 24 images at the variant's 8 per step
    assert bench_screen.VARIANTS["tiny-3"]["unet"] == tiny  # the variant itself is left as it was, for the next seed


def test_a_cooldown_recipes_mark_is_its_own_run_branched_off_a_constant_lr_trunk(tmp_path, monkeypatch):
    """OursRun with lr_cooldown=c: the trunk trains (1 - c) of a mark at a constant lr; finish() trains a copy
    for the rest with the lr falling to 0 and leaves the trunk (and its checkpoint) as it was."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    from bench_quality_curve import OursRun
    from ddpm_helpers.data import DigitsDataset

    tiny = dict(sample_size=16, block_out_channels=(8, 16), norm_num_groups=4)
    options = dict(mixed_precision="no", batch_size=8, warmup_steps=1, log_every=1000, unet=tiny, lr_cooldown=0.5)
    run = OursRun(options, DigitsDataset(n=64, image_size=16), 0, tmp_path)
    minutes = 0.05  # 3 s: the trunk 1.5 s, the branch the rest (a step under load can overrun by a second)
    assert run.trunk_seconds(minutes) == 1.5
    run.advance(run.trunk_seconds(minutes))
    trunk_step, trunk_lr = run.state.step, run.state.optimizer.param_groups[0]["lr"]
    trunk_file = (tmp_path / "checkpoint.pt").read_bytes()
    model, seconds, images = run.finish(minutes)
    assert trunk_lr == 1e-3  # constant after the warm-up
    assert seconds >= minutes * 60 and images > run.images == trunk_step * 8
    assert (tmp_path / "checkpoint.pt").read_bytes() == trunk_file and not (tmp_path / "branch.pt").exists()
    assert not model.training
    # a mark that the trunk has already passed (its last step overran): the trunk's own model, with a warning
    with pytest.warns(UserWarning, match="no time left for its cooldown"):
        model, seconds, images = run.finish(run.elapsed / 60 / 2)
    assert (seconds, images) == (run.elapsed, run.images) and model is not None
