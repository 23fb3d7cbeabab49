"""Bad inputs to the lessons' exercise checks and sliders (issue 11).

A check never raises: every mistake of a learner comes back as False and a hint that names what
was wrong. A slider given a bad argument raises a TypeError (wrong kind of value) or a ValueError
(wrong value) whose message names the argument and what is allowed.
"""

import io

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from ddpm_helpers import exercises
from ddpm_helpers.scheduler import DDPMScheduler
from ddpm_helpers.widgets import FrameSlider, forward_noising_slider, reverse_process_slider, schedule_comparison_slider

SCHEDULER = DDPMScheduler(beta_schedule="squaredcos_cap_v2")
AC = SCHEDULER.alphas_cumprod


def right_q_sample(x0, t, ac, noise):
    a = ac[t].view(-1, 1, 1, 1)
    return a.sqrt() * x0 + (1 - a).sqrt() * noise


def stub(*args):
    raise NotImplementedError


def needs_an_import(x0, t, ac, noise):
    return math.sqrt(ac[t]) * x0  # noqa: F821 - the learner never imported math


def uses_undefined(x0, t, ac, noise):
    return alpha_bar_t.sqrt() * x0  # noqa: F821 - a name the learner forgot to define


def forgot_return(x0, t, ac, noise):
    right_q_sample(x0, t, ac, noise)


def edits_in_place(x0, t, ac, noise):
    x0.mul_(0)  # the check passes copies, so this changes nothing of the check's own tensors
    return right_q_sample(x0, t, ac, noise)


# (check, its extra arguments, the learner's "function", what the first hint must say)
CHECKER_CASES = [
    ("check_q_sample", (), lambda x0, t, ac, n: [1.0, 2.0], "returned a list"),
    ("check_q_sample", (), lambda x0, t, ac, n: "x_t", "returned the str 'x_t'"),
    ("check_q_sample", (), forgot_return, "returned None"),
    ("check_q_sample", (), lambda x0, t, ac, n: 0.5, "returned the float 0.5"),
    ("check_q_sample", (), lambda x0, t, ac, n: right_q_sample(x0, t, ac, n)[:, 0], "shape (6, 8, 8)"),
    ("check_q_sample", (), lambda x0, t, ac, n: right_q_sample(x0, t, ac, n).double(), "torch.float64 tensor"),
    ("check_q_sample", (), lambda x0, t, ac, n: right_q_sample(x0, t, ac, n).half(), "torch.float16 tensor"),
    ("check_q_sample", (), lambda x0, t, ac, n: (right_q_sample(x0, t, ac, n) > 0), "dtype torch.bool"),
    ("check_q_sample", (), lambda x0, t, ac, n: right_q_sample(x0, t, ac, n).long(), "dtype torch.int64"),
    ("check_q_sample", (), lambda x0, t, ac, n: right_q_sample(x0, t, ac, n).numpy(), "a numpy array"),
    ("check_q_sample", (), lambda x0, t, ac, n: (right_q_sample(x0, t, ac, n),), "a tuple"),
    ("check_q_sample", (), lambda x0, t, ac, n: right_q_sample(x0, t, ac, n) / 0, "contains inf"),
    ("check_q_sample", (), lambda x0, t, ac, n: (ac[t] - 2).sqrt().view(-1, 1, 1, 1) * x0, "contains NaN"),
    ("check_q_sample", (), lambda x0, t, ac, n: ..., "`...`, a placeholder"),
    ("check_q_sample", (), stub, "raised NotImplementedError"),
    ("check_q_sample", (), lambda x0, t, ac, n: 1 / 0, "raised ZeroDivisionError"),
    ("check_q_sample", (), needs_an_import, "raised NameError: name 'math' is not defined"),
    ("check_q_sample", (), uses_undefined, "of your function: `return alpha_bar_t.sqrt() * x0"),
    ("check_q_sample", (), lambda x0, t, ac, n: ac[t] * x0, "must match the size of tensor"),
    ("check_q_sample", (), lambda x0, t: x0, "takes the arguments (x0, t)"),
    ("check_q_sample", (), 42, "needs your function itself"),
    ("check_q_sample", (), torch.zeros(6, 1, 8, 8), "needs your function itself"),
    ("check_q_sample", (), None, "needs your function itself"),
    ("check_q_sample", (), torch.nn.Module, "needs your function itself"),
    ("check_q_sample", ("not a tensor",), right_q_sample, "the check itself could not run"),
    ("check_add_noise", (), lambda x0, n, t: x0, "needs the scheduler as its second argument"),
    ("check_add_noise", ("noise_scheduler",), lambda x0, n, t: x0, "needs the scheduler"),
    ("check_predict_x0", (), lambda x_t, t, ac, n: x_t[0], "shape (1, 8, 8)"),
    ("check_posterior_mean", (), lambda x0, x_t, t, ac: [x0, x_t], "returned a list"),
    ("check_posterior_mean", (), lambda x0, x_t, t, ac: None, "returned None"),
    ("check_posterior_mean", (AC,), lambda x0, x_t, t, ac: x0, "needs the scheduler"),
    ("check_step", (), lambda eps, t, x_t, noise: x_t, "needs the scheduler"),
    ("check_step", (SCHEDULER,), lambda eps, t, x_t, noise: x_t + noise * noise, "not a multiple of `noise`"),
    ("check_step", (SCHEDULER,), lambda eps, t, x_t, noise: torch.stack([x_t, x_t]), "shape (2, 4, 1, 8, 8)"),
    ("check_training_loss", (), lambda m, s, x0, t, n: None, "returned None"),
    ("check_training_loss", (), lambda m, s, x0, t, n: float("nan"), "python number"),
    ("check_training_loss", (), lambda m, s, x0, t, n: torch.tensor(float("nan")), "NaN or inf"),
    ("check_training_loss", (), lambda m, s, x0, t, n: torch.ones(6), "shape (6,)"),
    ("check_training_loss", (), lambda m, s, x0, t, n: torch.tensor(3), "dtype torch.int64"),
    ("check_training_loss", (), lambda m, s, x0, t, n: F.mse_loss(m(s.add_noise(x0, n, t - 1 - t), t).sample, n),
     "timesteps must be in [0, 999]"),
    ("check_training_loss", ("my_model",), lambda m, s, x0, t, n: None, "needs a model"),
    ("check_training_loss", (torch.nn.Linear(2, 2),), lambda m, s, x0, t, n: None, "model.config"),
    ("check_ddim_step", (), lambda eps, t, prev_t, x_t, ac: x_t.tolist(), "returned a list"),
    ("check_ddim_step", (), lambda eps, t, x_t, ac: x_t, "takes the arguments (eps, t, x_t, ac)"),
    ("check_ema_update", (), lambda ema, param, decay: decay, "returned the float 0.9"),
    ("check_sampling_loop", (), lambda model, scheduler, shape, generator: None, "needs the model"),
]


@pytest.mark.parametrize("check, extra, fn, hint", CHECKER_CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(CHECKER_CASES)])
def test_a_checker_turns_a_bad_answer_into_a_hint(check, extra, fn, hint, capsys):
    assert getattr(exercises, check)(fn, *extra) is False
    out = capsys.readouterr().out
    assert out.startswith("Not yet. Hint 1 of "), out
    assert hint in out, out
    assert "Traceback" not in out


def test_a_learner_editing_the_inputs_in_place_changes_nothing(capsys):
    assert exercises.check_q_sample(edits_in_place) is False  # x0 was zeroed: x_t is pure noise
    assert "Traceback" not in capsys.readouterr().out


def test_check_answer_never_raises_on_odd_answers(capsys):
    class Weird:
        def __eq__(self, other):
            raise RuntimeError("no comparing me")

    for answer in (Weird(), None, torch.ones(2, 3), np.zeros(3), {"a": 1}, float("nan")):
        assert exercises.check_answer(answer, (2, 3), hint="a shape") is False
        assert "a shape" in capsys.readouterr().out


def test_show_hint_never_raises(capsys):
    exercises.check_q_sample(lambda x0, t, ac, n: None)
    for level in ("2", 0, -1, 2.5, True):
        exercises.show_hint(level)
        assert "show_hint takes a hint number" in capsys.readouterr().out


# --- the sliders ------------------------------------------------------------------------------


def png(i):
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (i, 0, 0)).save(buffer, format="png")
    return buffer.getvalue()


X0 = torch.rand(2, 1, 8, 8) * 2 - 1


@pytest.mark.parametrize(
    "call, error, words",
    [
        (lambda: FrameSlider([], []), ValueError, ["frames is empty"]),
        (lambda: FrameSlider([png(0), png(1)], [0, 10, 20]), ValueError, ["one frame per value", "2 frames", "3 values"]),
        (lambda: FrameSlider([png(0), png(1)], [10, 0]), ValueError, ["values", "increase strictly"]),
        (lambda: FrameSlider([png(0), png(1)], [5, 5]), ValueError, ["values[1] = 5", "increase strictly"]),
        (lambda: FrameSlider([png(0), png(1)], [0, 1.5]), TypeError, ["values[1]", "must be an int"]),
        (lambda: FrameSlider([png(0)], [True]), TypeError, ["values[0]", "must be an int"]),
        (lambda: FrameSlider([png(0), "frame"], [0, 1]), TypeError, ["frames[1]", "PNG bytes"]),
        (lambda: FrameSlider([png(0), b"not a png"], [0, 1]), ValueError, ["frames[1]", "not a PNG"]),
        (lambda: FrameSlider(b"\x89PNG", [0]), TypeError, ["frames", "list of PNG"]),
        (lambda: FrameSlider([png(0)], 5), TypeError, ["values", "sequence of ints"]),
        (lambda: FrameSlider([png(0)], [0], description=3), TypeError, ["description", "str"]),
        (lambda: forward_noising_slider(X0[:0], AC), ValueError, ["x0", "no images", "batch size 0"]),
        (lambda: forward_noising_slider(X0[0], AC), ValueError, ["x0", "(B, C, H, W)", "x[None]"]),
        (lambda: forward_noising_slider(X0.tolist(), AC), TypeError, ["x0", "float tensor"]),
        (lambda: forward_noising_slider((X0 * 127.5 + 127.5).to(torch.uint8), AC), TypeError, ["x0", "[-1, 1]"]),
        (lambda: forward_noising_slider(torch.full_like(X0, float("nan")), AC), ValueError, ["x0", "NaN"]),
        (lambda: forward_noising_slider(X0 * 3, AC), ValueError, ["x0", "[-1, 1]"]),
        (lambda: forward_noising_slider(X0, AC, step=0), ValueError, ["step", "in [1, 999]"]),
        (lambda: forward_noising_slider(X0, AC, step=1000), ValueError, ["step", "in [1, 999]"]),
        (lambda: forward_noising_slider(X0, AC, step=2.5), TypeError, ["step", "must be an int"]),
        (lambda: forward_noising_slider(X0, SCHEDULER.betas * 100), ValueError, ["alphas_cumprod", "[0, 1]", "betas"]),
        (lambda: forward_noising_slider(X0, AC.view(10, 100)), ValueError, ["alphas_cumprod", "1 dimensions"]),
        (lambda: forward_noising_slider(X0, AC[:0]), ValueError, ["alphas_cumprod", "empty"]),
        (lambda: forward_noising_slider(X0, torch.full((10,), float("nan"))), ValueError, ["alphas_cumprod", "NaN"]),
        (lambda: forward_noising_slider(X0, AC, noise=torch.randn(3, 1, 8, 8)), ValueError, ["noise", "(2, 1, 8, 8)"]),
        (lambda: forward_noising_slider(X0, AC, noise=torch.full_like(X0, float("inf"))), ValueError, ["noise", "inf"]),
        (lambda: forward_noising_slider(X0, AC, generator=0), TypeError, ["generator", "torch.Generator"]),
        (lambda: schedule_comparison_slider(X0, {}), TypeError, ["schedules", "non-empty dict"]),
        (lambda: schedule_comparison_slider(X0, [AC]), TypeError, ["schedules", "dict"]),
        (lambda: schedule_comparison_slider(X0, {"a": AC, "b": AC[:500]}), ValueError, ["same number of timesteps", "b: 500"]),
        (lambda: schedule_comparison_slider(X0, {"a": "linear"}), TypeError, ["schedules['a']", "float tensor"]),
        (lambda: reverse_process_slider([]), ValueError, ["states is empty", "denoising_steps"]),
        (lambda: reverse_process_slider(torch.zeros(3, 1, 8, 8)), TypeError, ["states", "SampleStep"]),
        (lambda: reverse_process_slider([X0]), TypeError, ["states[0]", "SampleStep"]),
        (lambda: reverse_process_slider(_states(nan=True)), ValueError, ["states[1].x_t", "NaN", "diverged"]),
        (lambda: reverse_process_slider(_states(batch=0)), ValueError, ["states[0].x_t", "no images"]),
        (lambda: reverse_process_slider(_states(), every=0), ValueError, ["every", ">= 1"]),
        (lambda: reverse_process_slider(_states(), every="5"), TypeError, ["every", "must be an int"]),
    ],
)
def test_a_slider_given_a_bad_argument_says_which_and_what_is_allowed(call, error, words):
    with pytest.raises(error) as raised:
        call()
    for word in words:
        assert word in str(raised.value), str(raised.value)


def _states(nan=False, batch=2):
    from ddpm_helpers.sampling import SampleStep

    states = [SampleStep(t=t, x_t=torch.zeros(batch, 1, 8, 8), pred_x0=torch.zeros(batch, 1, 8, 8)) for t in (1, 0, -1)]
    if nan:
        states[1].x_t[0, 0, 0, 0] = float("nan")
    return states
