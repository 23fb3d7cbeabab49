"""The command line, run in-process through main(argv): bad input gives one line and status 2,
checked before any training; --resume; the seed recipe (offline and on a local folder)."""

import json

import pytest
import torch
from PIL import Image

from ddpm_helpers import recipes
from ddpm_helpers.__main__ import main
from ddpm_helpers.pipeline import load_pipeline
from ddpm_helpers.training import load_checkpoint, load_model
from ddpm_helpers.unet import UNetConfig

SMALL = ["--channels", "8,16", "--num-images", "32", "--batch-size", "8", "--samples", "2", "--sample-steps", "2",
         "--image-size", "16"]


def cli(capsys, *argv):
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def assert_one_line_error(capsys, argv, *fragments):
    status, out, err = cli(capsys, *argv)
    assert status == 2, (status, out, err)
    # 🤗 datasets' own progress bars ("Generating train split: 12 examples") may come first
    lines = [line for line in err.strip().splitlines() if not line.rstrip().endswith("examples/s]")]
    assert len(lines) == 1, err
    assert "Traceback" not in err + out
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


@pytest.fixture
def run_folder(tmp_path, capsys):
    """A finished 3-step run in tmp_path/run."""
    out = tmp_path / "run"
    status, _, err = cli(capsys, "train", "--steps", "3", "--out", out, *SMALL)
    assert status == 0, err
    return out


@pytest.fixture
def a_file(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("a regular file")
    return path


ERRORS = [  # (arguments after "train", what the one line must name)
    (["--steps", "0"], ["--steps", "positive whole number", "0"]),
    (["--steps", "-3"], ["--steps", "positive whole number"]),
    (["--steps", "ten"], ["--steps", "positive whole number", "'ten'"]),
    (["--minutes", "-1"], ["--minutes", "positive number", "-1"]),
    (["--minutes", "nan"], ["--minutes", "positive number"]),
    (["--epochs", "0"], ["--epochs", "positive whole number"]),
    (["--steps", "5", "--epochs", "2"], ["--epochs", "not allowed with argument --steps"]),
    (["--batch-size", "0"], ["--batch-size", "positive whole number"]),
    (["--lr", "0"], ["--lr", "positive number"]),
    (["--lr", "-0.001"], ["--lr", "positive number"]),
    (["--seed", "-1"], ["--seed", ">= 0"]),
    (["--label-dropout", "1"], ["--label-dropout", "[0, 1)"]),
    (["--min-snr-gamma", "0"], ["--min-snr-gamma", "positive number", '"off"']),
    (["--timestep-logit-std", "-1"], ["--timestep-logit-std", "positive number", '"off"']),
    (["--lr-cooldown", "1.5"], ["--lr-cooldown", "(0, 1]", '"off"']),
    (["--sample-steps", "0"], ["--sample-steps", "positive whole number"]),
    (["--sample-steps", "5000"], ["--sample-steps", "at most 1000"]),
    (["--samples", "0"], ["--samples", "positive whole number"]),
    (["--channels", "0,16"], ["--channels", "positive ints"]),
    (["--channels", "a,b"], ["--channels", "positive ints"]),
    (["--image-size", "30"], ["image_size", "multiple of 8"]),
    (["--recipe", "butterflies"], ["--recipe", "invalid choice", "'seed'"]),
    (["--mixed-precision", "fp32"], ["--mixed-precision", "invalid choice", "'bf16'"]),
    (["--mixed-precision", "fp16"], ["--mixed-precision", "needs a GPU", "'bf16'"]),
    (["--device", "gpu"], ["--device", "not a device", "'cuda'"]),
    (["--device", "cuda"], ["--device", "no CUDA GPU", "'cpu'"]),
    (["--dataset", "/no/such/folder"], ["'/no/such/folder' does not exist", "'digits'"]),
    (["--dataset", "huggan/smithsonian_butterflies_subset"], ["Cannot reach the Hugging Face hub", "'digits'"]),
    (["--recipe", "seed"], ["Cannot reach the Hugging Face hub", "smithsonian_butterflies", "'digits'"]),
    (["--recipe", "seed", "--channels", "16,32"], ["--channels", "recipe's model is fixed"]),
    (["--unknown-option"], ["unrecognized arguments: --unknown-option"]),
]


@pytest.mark.parametrize("argv, fragments", ERRORS, ids=[" ".join(a) for a, _ in ERRORS])
def test_bad_train_arguments_give_one_line_and_status_2(capsys, tmp_path, monkeypatch, argv, fragments):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert_one_line_error(capsys, ["train", *argv, "--out", tmp_path / "run"], *fragments)
    assert not (tmp_path / "run" / "checkpoint.pt").exists()  # refused before training


def test_out_below_or_at_a_regular_file_is_refused_before_training(capsys, a_file):
    assert_one_line_error(capsys, ["train", "--steps", "1", "--out", a_file / "run"], "--out", "is a file, not a folder")
    assert_one_line_error(capsys, ["train", "--steps", "1", "--out", a_file], "--out", "is a file, but must be a folder")


def test_an_empty_image_folder_is_refused(capsys, tmp_path):
    (tmp_path / "images").mkdir()
    assert_one_line_error(capsys, ["train", "--dataset", tmp_path / "images", "--out", tmp_path / "run"],
                          "is a folder with no images", "put image files in it")


def test_resume_without_a_checkpoint_is_refused(capsys, tmp_path):
    assert_one_line_error(capsys, ["train", "--resume", "--out", tmp_path / "new"], "--resume", "no", "drop --resume")


def test_a_finished_run_is_neither_overwritten_nor_resumed_backwards(capsys, run_folder):
    assert_one_line_error(capsys, ["train", "--steps", "5", "--out", run_folder], "exists", "--resume")
    assert_one_line_error(capsys, ["train", "--resume", "--steps", "2", "--out", run_folder],
                          "--steps 2", "already at step 3", "a larger --steps")


def test_resume_continues_the_run(capsys, run_folder):
    status, out, err = cli(capsys, "train", "--resume", "--steps", "5", "--out", run_folder, *SMALL)
    assert status == 0, err
    assert load_checkpoint(run_folder / "checkpoint.pt")["step"] == 5
    assert json.loads((run_folder / "train_log.json").read_text())["step"] == 5


def test_resume_with_a_corrupt_checkpoint_says_so_in_one_line(capsys, tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "checkpoint.pt").write_bytes(b"PK\x03\x04" + bytes(100))
    assert_one_line_error(capsys, ["train", "--resume", "--out", tmp_path / "run"], "corrupt or truncated")


@pytest.mark.parametrize("make_argv, fragments", [
    (lambda d, f: ["export", d / "missing.pt", d / "w.safetensors"], ["No checkpoint at", "python -m ddpm_helpers "
                                                                       "train"]),
    (lambda d, f: ["export", f, d / "w.safetensors"], ["is not a ddpm_helpers training checkpoint"]),
    (lambda d, f: ["export", d, d / "w.safetensors"], ["is a folder, not a checkpoint file"]),
    (lambda d, f: ["export", d / "c.pt", d / "w.safetensors", "--dtype", "fp8"], ["--dtype", "invalid choice",
                                                                                 "'fp16'"]),
    (lambda d, f: ["export", d / "c.pt"], ["the following arguments are required: out"]),
    (lambda d, f: ["export", d / "c.pt", f / "w.safetensors"], ["out_path", "is a file, not a folder"]),
    (lambda d, f: ["export", d / "c.pt", d], ["out_path", "is a folder, but must be a file"]),
    (lambda d, f: [], ["the following arguments are required: command"]),
    (lambda d, f: ["fly"], ["invalid choice: 'fly'", "'train'"]),
])
def test_bad_export_arguments_give_one_line_and_status_2(capsys, tmp_path, a_file, make_argv, fragments):
    (tmp_path / "c.pt").write_bytes(b"PK\x03\x04" + bytes(100))
    assert_one_line_error(capsys, make_argv(tmp_path, a_file), *fragments)


def test_debug_shows_the_traceback(capsys, tmp_path):
    status, _, err = cli(capsys, "export", tmp_path / "missing.pt", tmp_path / "w.safetensors", "--debug")
    assert status == 2 and "Traceback" in err and err.strip().splitlines()[-1].endswith("load_pretrained().")


def test_help_names_the_true_default_widths(capsys):
    status, out, _ = cli(capsys, "train", "--help")
    assert status == 0
    widths = ",".join(map(str, UNetConfig().block_out_channels))
    assert f"the UNet's {widths}" in " ".join(out.split())


# ---- the seed recipe and conditional training from the command line ----

def rgb_folder(folder, n=12, size=40):
    """A small folder of RGB images: coloured squares on noise."""
    folder.mkdir(parents=True)
    generator = torch.Generator().manual_seed(0)
    for i in range(n):
        pixels = torch.randint(0, 256, (size, size, 3), generator=generator, dtype=torch.uint8)
        pixels[8:24, 8 + i:24 + i] = torch.tensor([255 * (i % 2), 40 * (i % 6), 255 - 20 * i], dtype=torch.uint8)
        Image.fromarray(pixels.numpy()).save(folder / f"{i}.png")
    return folder


def run_seed_recipe(capsys, tmp_path):
    out = tmp_path / "seed"
    status, stdout, err = cli(capsys, "train", "--recipe", "seed", "--dataset", rgb_folder(tmp_path / "images"),
                              "--steps", "2", "--batch-size", "4", "--samples", "2", "--sample-steps", "2",
                              "--out", out)
    assert status == 0, err
    log = json.loads((out / "train_log.json").read_text())
    assert log["recipe"] == "seed" and log["step"] == 2
    assert log["config"]["learning_rate"] == 4e-4 and log["config"]["warmup_steps"] == 0
    assert log["config"]["grad_clip"] is None and log["config"]["beta_schedule"] == "squaredcos_cap_v2"
    assert log["config"]["min_snr_gamma"] is None  # the seed's plain mean
    assert log["config"]["timestep_logit_std"] is None  # the seed's uniform t
    assert log["config"]["lr_cooldown"] is None  # the seed's constant lr
    for name in ("checkpoint.pt", "loss.png", "samples.png"):
        assert (out / name).is_file(), name
    model, _ = load_model(out / "checkpoint.pt")
    assert model.config.in_channels == 3 and tuple(model.config.block_out_channels) == (64, 128, 128, 256)
    return out, stdout


def test_seed_recipe_on_a_local_folder_with_our_unet(capsys, tmp_path):
    out, stdout = run_seed_recipe(capsys, tmp_path)
    assert (out / "pipeline" / "model_index.json").is_file()
    reloaded, _ = load_pipeline(out / "pipeline")
    assert tuple(reloaded.config.block_out_channels) == (64, 128, 128, 256)


def test_seed_recipe_on_a_local_folder_with_diffusers_unet_standing_in(capsys, tmp_path, monkeypatch):
    """The recipe's wiring (data, optimizer, schedule, outputs) with diffusers' UNet2DModel as the model."""
    diffusers = pytest.importorskip("diffusers")
    monkeypatch.setattr(recipes, "build_unet", lambda **options: diffusers.UNet2DModel(**options))
    out, stdout = run_seed_recipe(capsys, tmp_path)
    assert type(load_model(out / "checkpoint.pt")[0]).__name__ == "UNet2DModel"


def test_conditional_digits_from_the_command_line(capsys, tmp_path):
    status, _, err = cli(capsys, "train", "--conditional", "--steps", "2", "--out", tmp_path / "c", *SMALL)
    assert status == 0, err
    model, _ = load_model(tmp_path / "c" / "checkpoint.pt")
    assert model.config.num_class_embeds == 11
    assert load_checkpoint(tmp_path / "c" / "checkpoint.pt")["train_config"]["label_dropout"] == 0.1


@pytest.mark.parametrize("option, key, default, other", [("--min-snr-gamma", "min_snr_gamma", 5.0, 3.0),
                                                          ("--timestep-logit-std", "timestep_logit_std", 1.0, 2.0),
                                                          ("--lr-cooldown", "lr_cooldown", None, 1.0)])
def test_the_recipe_options_from_the_command_line(capsys, tmp_path, option, key, default, other):
    """The default, a number, and "off" (the seed's way: TrainConfig's None) reach the checkpoint."""
    def saved(folder):
        return load_checkpoint(tmp_path / folder / "checkpoint.pt")["train_config"][key]

    for folder, given in [("default", []), ("other", [option, str(other)]), ("off", [option, "off"])]:
        status, _, err = cli(capsys, "train", *given, "--steps", "2", "--out", tmp_path / folder, *SMALL)
        assert status == 0, err
    assert (saved("default"), saved("other"), saved("off")) == (default, other, None)
    # --resume without the option continues with the run's own setting (no "different config" warning)
    status, _, err = cli(capsys, "train", "--resume", "--steps", "3", "--out", tmp_path / "off", *SMALL)
    assert status == 0 and "different" not in err, err
    assert saved("off") is None and load_checkpoint(tmp_path / "off" / "checkpoint.pt")["step"] == 3


def test_conditional_needs_labels(capsys, tmp_path):
    images = rgb_folder(tmp_path / "flat")  # no class subfolders: no labels
    assert_one_line_error(capsys, ["train", "--conditional", "--dataset", images, "--out", tmp_path / "c",
                                   "--steps", "1"], "--conditional needs a labelled dataset")



def test_init_from_starts_the_conditional_model_as_the_unconditional_one(capsys, run_folder, tmp_path):
    """--init-from copies every weight; the zero label embedding makes every label (and "no label")
    give exactly the unconditional model's prediction, so training starts from that model."""
    from ddpm_helpers.__main__ import _init_from
    from ddpm_helpers.checkpoints import export_weights, load_pretrained
    from ddpm_helpers.unet import UNet

    weights = tmp_path / "w.safetensors"
    export_weights(run_folder / "checkpoint.pt", weights)
    plain, _ = load_pretrained(weights)
    conditional = _init_from(UNet(**{**plain.config.__dict__, "num_class_embeds": 11}).eval(), weights)
    x, t = torch.randn(11, 1, 16, 16, generator=torch.Generator().manual_seed(0)), torch.full((11,), 500)
    with torch.no_grad():
        expected = plain(x, t).sample
        got = conditional(x, t, class_labels=torch.arange(11)).sample
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    status, out, err = cli(capsys, "train", "--conditional", "--init-from", weights, "--steps", "2",
                           "--out", tmp_path / "c", *SMALL)
    assert status == 0, err


def test_init_from_refuses_what_it_cannot_use(capsys, run_folder, tmp_path):
    from ddpm_helpers.checkpoints import export_weights

    weights = tmp_path / "w.safetensors"
    export_weights(run_folder / "checkpoint.pt", weights)
    assert_one_line_error(capsys, ["train", "--init-from", tmp_path / "none.safetensors", "--out", tmp_path / "a",
                                   *SMALL], "--init-from", "no weights file")
    assert_one_line_error(capsys, ["train", "--init-from", weights, "--resume", "--out", run_folder, *SMALL],
                          "--init-from starts a new run")
    other = [a if a != "8,16" else "8,8" for a in SMALL]
    assert_one_line_error(capsys, ["train", "--init-from", weights, "--out", tmp_path / "b", *other],
                          "--init-from", "another architecture", "--channels")
