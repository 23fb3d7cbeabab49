"""Bad inputs to schedules, the schedulers, DPM-Solver++ and the sampling loops (issue 11).

Every case asserts the exception type (TypeError: wrong kind of value; ValueError: wrong value;
FileNotFoundError: no such file) and that the message names the argument and says what is allowed.
"""

import json
import math
import re
from types import SimpleNamespace

import pytest
import torch

from ddpm_helpers.dpm_solver import DPMSolverMultistepScheduler
from ddpm_helpers.sampling import default_num_inference_steps, denoising_steps, sample
from ddpm_helpers.scheduler import DDIMScheduler, DDPMScheduler
from ddpm_helpers.schedules import cosine_betas, linear_betas, make_betas, scaled_linear_betas

X = torch.zeros(2, 1, 8, 8)  # an image batch in [-1, 1], and a noise prediction of the same shape
SHAPE = (2, 1, 8, 8)


def eps_model(x_t, t):
    return 0.1 * x_t


def ddim(n=10):
    scheduler = DDIMScheduler()
    scheduler.set_timesteps(n)
    return scheduler


def dpm(n=10):
    scheduler = DPMSolverMultistepScheduler()
    scheduler.set_timesteps(n)
    return scheduler


def custom_ddpm():
    scheduler = DDPMScheduler()
    scheduler.set_timesteps(timesteps=[900, 500, 100])
    return scheduler


def dpm_after_first_step():
    scheduler = dpm()
    scheduler.step(X, scheduler.timesteps[0], X)
    return scheduler


class Conditional(torch.nn.Module):
    """A stand-in class-conditional model: 10 digits, label 10 is "no label"."""

    config = SimpleNamespace(num_class_embeds=11, in_channels=1, sample_size=8)

    def forward(self, x, t, class_labels=None, return_dict=True):
        return (0.1 * x,)


class Unconditional(torch.nn.Module):
    config = SimpleNamespace(in_channels=1, sample_size=8)

    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor(0.1))

    def forward(self, x, t):
        return self.scale * x


class NotOurs:
    """A scheduler the course has no step-count default for."""

    config = SimpleNamespace(num_train_timesteps=1000)
    timesteps = torch.arange(10)

    def set_timesteps(self, n):
        pass

    def step(self, *args, **kwargs):
        pass


def pipeline_folder(tmp_path):
    DDPMScheduler().save_config(tmp_path / "scheduler")
    return tmp_path


def written(tmp_path, text):
    (tmp_path / "scheduler_config.json").write_text(text)
    return tmp_path


# (id, call, exception type, the argument's name, what is allowed): both names are regexes
CASES = [
    # schedules.py
    ("T zero", lambda: linear_betas(0), ValueError, "num_train_timesteps", ">= 1"),
    ("T float", lambda: linear_betas(1000.0), TypeError, "num_train_timesteps", "must be an int"),
    ("T bool", lambda: make_betas("linear", True), TypeError, "num_train_timesteps", "must be an int"),
    ("betas reversed", lambda: linear_betas(1000, 0.02, 1e-4), ValueError, "beta_end", "greater than beta_start"),
    ("beta_end >= 1", lambda: scaled_linear_betas(1000, 1e-4, 1.5), ValueError, "beta_end", r"in \(0, 1\)"),
    ("beta_start NaN", lambda: linear_betas(1000, math.nan, 0.02), ValueError, "beta_start",
     r"finite number in \(0, 1\)"),
    ("beta_start str", lambda: linear_betas(1000, "1e-4", 0.02), TypeError, "beta_start", "must be a number"),
    ("unknown schedule", lambda: make_betas("cosine", 1000), ValueError, "beta_schedule", "'squaredcos_cap_v2'"),
    ("max_beta zero", lambda: cosine_betas(100, max_beta=0), ValueError, "max_beta", r"in \(0, 1\]"),
    # scheduler constructors
    ("prediction v", lambda: DDPMScheduler(prediction_type="v_prediction"), ValueError, "prediction_type", "'epsilon'"),
    ("variance learned", lambda: DDPMScheduler(variance_type="learned"), ValueError, "variance_type",
     "'fixed_small', 'fixed_large'"),
    ("clip_sample str", lambda: DDPMScheduler(clip_sample="yes"), ValueError, "clip_sample", "True, False"),
    ("clip range zero", lambda: DDIMScheduler(clip_sample_range=0), ValueError, "clip_sample_range", "> 0"),
    ("spacing linspace", lambda: DDIMScheduler(timestep_spacing="linspace"), ValueError, "timestep_spacing",
     "'leading', 'trailing'"),
    ("offset negative", lambda: DDIMScheduler(steps_offset=-1), ValueError, "steps_offset", ">= 0"),
    ("alpha_to_one None", lambda: DDIMScheduler(set_alpha_to_one=None), ValueError, "set_alpha_to_one", "True, False"),
    ("scheduler T zero", lambda: DDPMScheduler(num_train_timesteps=0), ValueError, "num_train_timesteps", ">= 1"),
    # add_noise
    ("add_noise float t", lambda: DDPMScheduler().add_noise(X, X, torch.tensor([0.5, 1.0])), TypeError, "timesteps",
     r"integers in \[0, 999\]"),
    ("add_noise python float t", lambda: DDPMScheduler().add_noise(X, X, 2.5), TypeError, "timesteps", "integers"),
    ("add_noise t list", lambda: DDPMScheduler().add_noise(X, X, [1, 2]), TypeError, "timesteps",
     "an int or an integer tensor"),
    ("add_noise t range", lambda: DDPMScheduler().add_noise(X, X, torch.tensor([0, 1000])), ValueError, "timesteps",
     r"in \[0, 999\]"),
    ("add_noise t negative", lambda: DDPMScheduler().add_noise(X, X, -1), ValueError, "timesteps", r"in \[0, 999\]"),
    ("add_noise t length", lambda: DDPMScheduler().add_noise(X, X, torch.tensor([1, 2, 3])), ValueError, "timesteps",
     r"shape \(1,\) or \(2,\)"),
    ("add_noise noise shape", lambda: DDPMScheduler().add_noise(X, torch.zeros(2, 3, 8, 8), 5), ValueError, "noise",
     r"noise must have x0.s shape.*x0 \(2, 1, 8, 8\) and noise \(2, 3, 8, 8\)"),
    ("add_noise 0-255", lambda: DDPMScheduler().add_noise(X + 128, X, 5), ValueError, "original_samples",
     r"\[-1, 1\]"),
    ("add_noise NaN", lambda: DDPMScheduler().add_noise(X + math.nan, X, 5), ValueError, "original_samples", "NaN"),
    ("add_noise int images", lambda: DDPMScheduler().add_noise(X.long(), X, 5), TypeError, "original_samples",
     r"float tensor scaled to \[-1, 1\]"),
    # step
    ("step float t", lambda: ddim().step(X, 500.0, X), TypeError, "timestep", r"integers in \[0, 999\]"),
    ("step t range", lambda: DDPMScheduler().step(X, 1000, X), ValueError, "timestep", r"in \[0, 999\]"),
    ("step two t", lambda: DDPMScheduler().step(X, torch.tensor([900, 800]), X), ValueError, "timestep",
     "one timestep"),
    ("step shapes", lambda: DDPMScheduler().step(torch.zeros(2, 3, 8, 8), 10, X), ValueError, "model_output",
     "same shape"),
    ("step NaN eps", lambda: DDPMScheduler().step(X + math.nan, 10, X), ValueError, "model_output", "NaN"),
    ("step numpy sample", lambda: DDPMScheduler().step(X, 10, X.numpy()), TypeError, "sample", "float tensor"),
    ("step generator int", lambda: DDPMScheduler().step(X, 10, X, generator=0), TypeError, "generator",
     "torch.Generator"),
    ("ddim before set_timesteps", lambda: DDIMScheduler().step(X, 999, X), ValueError, "set_timesteps",
     r"set_timesteps\(num_inference_steps\) first"),
    ("ddim eta range", lambda: ddim().step(X, 900, X, eta=-0.1), ValueError, "eta", r"in \[0, 1\]"),
    ("ddim eta str", lambda: ddim().step(X, 900, X, eta="0"), TypeError, "eta", "number"),
    ("custom t missing", lambda: custom_ddpm().step(X, 5, X), ValueError, "timestep 5", "scheduler.timesteps"),
    # set_timesteps
    ("steps 2.5", lambda: DDPMScheduler().set_timesteps(2.5), TypeError, "num_inference_steps", "must be an int"),
    ("steps bool", lambda: DDIMScheduler().set_timesteps(True), TypeError, "num_inference_steps", "must be an int"),
    ("steps zero", lambda: DDPMScheduler().set_timesteps(0), ValueError, "num_inference_steps", r"in \[1, 1000\]"),
    ("steps > T", lambda: DDIMScheduler(num_train_timesteps=100).set_timesteps(101), ValueError,
     "num_inference_steps", r"in \[1, 100\]"),
    ("steps missing", lambda: DDPMScheduler().set_timesteps(), ValueError, "num_inference_steps",
     r"set_timesteps\(50\)"),
    ("steps and timesteps", lambda: DDPMScheduler().set_timesteps(3, timesteps=[9, 5, 1]), ValueError,
     "num_inference_steps or timesteps", "not both"),
    ("timesteps increasing", lambda: DDPMScheduler().set_timesteps(timesteps=[100, 87, 50, 51, 0]), ValueError,
     "timesteps", "strictly decreasing"),
    ("timesteps too large", lambda: DDPMScheduler().set_timesteps(timesteps=[1000, 5]), ValueError, "timesteps",
     r"in \[0, 999\]"),
    ("timesteps floats", lambda: DDPMScheduler().set_timesteps(timesteps=[5.5, 1.0]), TypeError, "timesteps",
     "integers"),
    ("timesteps an int", lambda: DDPMScheduler().set_timesteps(timesteps=5), TypeError, "timesteps",
     "list of ints.*pass num_inference_steps"),
    ("timesteps empty", lambda: DDPMScheduler().set_timesteps(timesteps=[]), ValueError, "timesteps", "at least one"),
    ("ddim custom timesteps", lambda: DDIMScheduler().set_timesteps(timesteps=[900, 100]), ValueError,
     "custom timesteps", "timestep_spacing='trailing'"),
    ("ddim offset past T", lambda: DDIMScheduler(num_train_timesteps=100, steps_offset=1).set_timesteps(100),
     ValueError, "timesteps", r"in \[0, 99\].*steps_offset=1"),
    # from_config
    ("from_config str", lambda: DDPMScheduler.from_config("google/ddpm-cifar10-32"), TypeError, "config",
     "dict of scheduler options.*from_pretrained"),
    ("from_config typo", lambda: DDPMScheduler.from_config({"beta_shedule": "linear"}), TypeError,
     "unknown option 'beta_shedule'", "takes num_train_timesteps"),
    ("trained_betas", lambda: DDIMScheduler.from_config({"trained_betas": [0.1, 0.2]}), ValueError, "trained_betas",
     "supports trained_betas=None"),
    ("zero snr", lambda: DDPMScheduler.from_config({"rescale_betas_zero_snr": True}), ValueError,
     "rescale_betas_zero_snr", "supports rescale_betas_zero_snr=False"),
    ("thresholding 2", lambda: DDPMScheduler.from_config({"thresholding": True, "sample_max_value": 2.0}), ValueError,
     "sample_max_value=2.0", "sample_max_value=1.0 with thresholding=True"),
    ("thresholding str", lambda: DDPMScheduler.from_config({"thresholding": "yes"}), ValueError, "thresholding='yes'",
     "thresholding=False or True"),
    ("ddpm trailing", lambda: DDPMScheduler.from_config(DDIMScheduler(timestep_spacing="trailing").config),
     ValueError, "timestep_spacing='trailing'", "supports timestep_spacing='leading'"),
    ("karras sigmas", lambda: DPMSolverMultistepScheduler.from_config({"use_karras_sigmas": True}), ValueError,
     "use_karras_sigmas=True", "supports use_karras_sigmas=False"),
    ("heun", lambda: DPMSolverMultistepScheduler.from_config({"solver_type": "heun"}), ValueError,
     "solver_type='heun'", "supports solver_type='midpoint'"),
    # from_pretrained / save_config
    ("from_pretrained hub id", lambda tmp: DDPMScheduler.from_pretrained(str(tmp / "google/ddpm-cifar10-32")),
     FileNotFoundError, "No folder", "local folders only.*snapshot_download"),
    ("from_pretrained empty folder", lambda tmp: DDPMScheduler.from_pretrained(tmp), FileNotFoundError,
     "scheduler_config.json", "save_config"),
    ("from_pretrained pipeline", lambda tmp: DDIMScheduler.from_pretrained(pipeline_folder(tmp)), FileNotFoundError,
     "pipeline folder", "subfolder='scheduler'"),
    ("from_pretrained corrupt", lambda tmp: DDPMScheduler.from_pretrained(written(tmp, "{not json")), ValueError,
     "scheduler_config.json", "not a JSON scheduler config"),
    ("from_pretrained list", lambda tmp: DDPMScheduler.from_pretrained(written(tmp, "[1, 2]")), ValueError,
     "scheduler_config.json", "JSON object"),
    ("from_pretrained int", lambda: DDPMScheduler.from_pretrained(123), TypeError, "pretrained_model_name_or_path",
     "folder path"),
    ("save_config file", lambda tmp: DDPMScheduler().save_config(written(tmp, "{}") / "scheduler_config.json"),
     ValueError, "save_directory", "give a folder"),
    ("save_config None", lambda: DDPMScheduler().save_config(None), TypeError, "save_directory", "folder path"),
    # dpm_solver.py
    ("dpm order 3", lambda: DPMSolverMultistepScheduler(solver_order=3), ValueError, "solver_order", r"in \[1, 2\]"),
    ("dpm order float", lambda: DPMSolverMultistepScheduler(solver_order=2.0), TypeError, "solver_order",
     "must be an int"),
    ("dpm algorithm", lambda: DPMSolverMultistepScheduler(algorithm_type="dpmsolver"), ValueError, "algorithm_type",
     "'dpmsolver\\+\\+', 'sde-dpmsolver\\+\\+'"),
    ("dpm all steps", lambda: DPMSolverMultistepScheduler().set_timesteps(1000), ValueError,
     "num_inference_steps=1000", "at most 999 steps"),
    ("dpm before set_timesteps", lambda: DPMSolverMultistepScheduler().step(X, 999, X), ValueError, "set_timesteps",
     "first"),
    ("dpm foreign t", lambda: dpm().step(X, 998, X), ValueError, "timestep 998", "not in scheduler.timesteps"),
    ("dpm out of order", lambda: dpm_after_first_step().step(X, 999, X), ValueError, "timestep 999",
     "in order.*set_timesteps"),
    ("dpm custom increasing", lambda: DPMSolverMultistepScheduler().set_timesteps(timesteps=[10, 20]), ValueError,
     "timesteps", "strictly decreasing"),
    # sampling.py
    ("scheduler name", lambda: sample(Unconditional(), "ddim", 4), TypeError, "scheduler",
     "DDIMScheduler.from_config"),
    ("num_images zero", lambda: sample(Unconditional(), DDIMScheduler(), 0), ValueError, "num_images", ">= 1"),
    ("num_images float", lambda: sample(Unconditional(), DDIMScheduler(), 2.5), TypeError, "num_images", "an int"),
    ("batch_size zero", lambda: sample(Unconditional(), DDIMScheduler(), 4, batch_size=0), ValueError, "batch_size",
     ">= 1"),
    ("model without config", lambda: sample(eps_model, DDIMScheduler(), 2), TypeError, "model.config",
     "in_channels, image_size.*denoising_steps"),
    ("model not callable", lambda: denoising_steps("unet", DDIMScheduler(), SHAPE), TypeError, "model",
     r"callable as model\(x_t, t\)"),
    ("shape 3-d", lambda: denoising_steps(eps_model, DDIMScheduler(), (2, 1, 8)), TypeError, "shape",
     r"\(B, C, H, W\)"),
    ("shape zero", lambda: denoising_steps(eps_model, DDIMScheduler(), (2, 0, 8, 8)), ValueError, "shape",
     ">= 1"),
    ("loop steps float", lambda: denoising_steps(eps_model, DDIMScheduler(), SHAPE, 2.5), TypeError,
     "num_inference_steps", "an int"),
    ("loop steps > T", lambda: denoising_steps(eps_model, DDPMScheduler(), SHAPE, 2000), ValueError,
     "num_inference_steps", r"in \[1, 1000\]"),
    ("eta on DDPM", lambda: denoising_steps(eps_model, DDPMScheduler(), SHAPE, 10, eta=0.5), ValueError, "eta=0.5",
     "only applies to DDIMScheduler"),
    ("loop eta range", lambda: denoising_steps(eps_model, DDIMScheduler(), SHAPE, 10, eta=2.0), ValueError, "eta",
     r"in \[0, 1\]"),
    ("loop generator seed", lambda: denoising_steps(eps_model, DDIMScheduler(), SHAPE, 10, generator=42), TypeError,
     "generator", r"torch.Generator\(\).manual_seed"),
    ("device name", lambda: denoising_steps(eps_model, DDIMScheduler(), SHAPE, 10, device="gpu"), ValueError,
     "device='gpu'", "'cpu', 'cuda' or 'mps'"),
    ("device mismatch", lambda: denoising_steps(Unconditional(), DDIMScheduler(), SHAPE, 10, device="meta"),
     ValueError, "device=meta", r"model.to\('meta'\) or leave device=None"),
    ("no default steps", lambda: default_num_inference_steps(NotOurs()), ValueError, "num_inference_steps",
     "pass a number of steps"),
    ("labels unconditional", lambda: denoising_steps(eps_model, DDIMScheduler(), SHAPE, 5, class_labels=3),
     ValueError, "class_labels", "unconditional"),
    ("label too big", lambda: denoising_steps(Conditional(), DDIMScheduler(), SHAPE, 5, class_labels=11), ValueError,
     "class_labels", r"in \[0, 10\].*10 means 'no label'"),
    ("label negative", lambda: denoising_steps(Conditional(), DDIMScheduler(), SHAPE, 5,
                                               class_labels=torch.tensor([-1, 2])), ValueError, "class_labels",
     r"in \[0, 10\]"),
    ("labels float", lambda: denoising_steps(Conditional(), DDIMScheduler(), SHAPE, 5,
                                             class_labels=torch.tensor([1.0, 2.0])), TypeError, "class_labels",
     "integers"),
    ("labels python float", lambda: denoising_steps(Conditional(), DDIMScheduler(), SHAPE, 5, class_labels=3.0),
     TypeError, "class_labels", r"one int or a \(2,\) tensor"),
    ("labels list", lambda: denoising_steps(Conditional(), DDIMScheduler(), SHAPE, 5, class_labels=[1, 2]),
     TypeError, "class_labels", r"one int or a \(2,\) tensor"),
    ("labels length", lambda: sample(Conditional(), DDIMScheduler(), 4, 5, class_labels=torch.tensor([1, 2])),
     ValueError, "class_labels", r"shape \(4,\), one label per image"),
    ("guidance without labels", lambda: denoising_steps(Conditional(), DDIMScheduler(), SHAPE, 5,
                                                        guidance_scale=3.0), ValueError, "guidance_scale",
     "needs class_labels"),
    ("guidance negative", lambda: denoising_steps(Conditional(), DDIMScheduler(), SHAPE, 5, class_labels=3,
                                                  guidance_scale=-1.0), ValueError, "guidance_scale", ">= 0"),
    ("guidance NaN", lambda: denoising_steps(Conditional(), DDIMScheduler(), SHAPE, 5, class_labels=3,
                                             guidance_scale=math.nan), ValueError, "guidance_scale",
     "finite number >= 0"),
    ("guidance str", lambda: denoising_steps(Conditional(), DDIMScheduler(), SHAPE, 5, class_labels=3,
                                             guidance_scale="3"), TypeError, "guidance_scale", "a number"),
]


@pytest.mark.parametrize("call, error, name, allowed", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_names_the_argument_and_what_is_allowed(call, error, name, allowed, tmp_path):
    with pytest.raises(error) as caught:
        call(tmp_path) if call.__code__.co_argcount else call()
    message = str(caught.value)
    assert caught.type is error, (caught.type, message)
    assert re.search(name, message), f"{name!r} not in {message!r}"
    assert re.search(allowed, message), f"{allowed!r} not in {message!r}"


def test_enough_distinct_cases():
    assert len({c[0] for c in CASES}) == len(CASES) >= 30


def test_bad_config_file_is_not_half_written(tmp_path):
    """save_config writes atomically: the file is whole JSON after a save, and a later failing save
    (an unserialisable value) leaves the old file in place."""
    scheduler = DDPMScheduler()
    path = scheduler.save_config(tmp_path)
    before = path.read_text()
    object.__setattr__(scheduler, "config", {**scheduler.config, "clip_sample": object()})
    with pytest.raises(TypeError):
        scheduler.save_config(tmp_path)
    assert path.read_text() == before and json.loads(before)["_class_name"] == "DDPMScheduler"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scheduler_config.json"]
