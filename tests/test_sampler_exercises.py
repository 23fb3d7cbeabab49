"""Lesson 6's checker: the trailing spacing formula is the scheduler's, and each usual mistake gets its hint."""

import math

import torch

from ddpm_helpers.exercises import check_trailing_timesteps, show_hint
from ddpm_helpers._sampler_exercises import CASES, trailing_timesteps
from ddpm_helpers.scheduler import DDIMScheduler


def test_the_formula_is_the_schedulers_trailing_spacing():
    for T, n in CASES + ((1000, 50), (1000, 999), (10, 3)):
        scheduler = DDIMScheduler(num_train_timesteps=T, timestep_spacing="trailing")
        scheduler.set_timesteps(n)
        assert trailing_timesteps(T, n) == scheduler.timesteps.tolist()


def test_right_answers_pass(capsys):
    assert check_trailing_timesteps(trailing_timesteps) is True
    assert check_trailing_timesteps(lambda T, n: torch.tensor(trailing_timesteps(T, n))) is True
    assert "Correct!" in capsys.readouterr().out


def _first_hint(fn, capsys):
    assert check_trailing_timesteps(fn) is False
    return capsys.readouterr().out


def test_each_usual_mistake_gets_its_own_hint(capsys):
    cases = {
        "leading": lambda T, n: [k * (T // n) for k in range(n - 1, -1, -1)],
        "one too large": lambda T, n: [round(T - k * T / n) for k in range(n)],
        "wrong order": lambda T, n: sorted(trailing_timesteps(T, n)),
        "T / n is not a whole number": lambda T, n: [T - 1 - k * (T // n) for k in range(n)],
        "one too small": lambda T, n: [math.floor(T - k * T / n) - 1 for k in range(n)],
        "returned None": lambda T, n: None,
        "floats": lambda T, n: torch.tensor(trailing_timesteps(T, n), dtype=torch.float32),
        "returned 19 timesteps": lambda T, n: trailing_timesteps(T, n)[1:],
        "raised ZeroDivisionError": lambda T, n: 1 / 0,
    }
    for words, fn in cases.items():
        assert words in _first_hint(fn, capsys), words


def test_hints_go_on_to_the_formula(capsys):
    check_trailing_timesteps(lambda T, n: [k * (T // n) for k in range(n - 1, -1, -1)])
    show_hint()
    show_hint()
    out = capsys.readouterr().out
    assert "round(T - k * T / n) - 1" in out and "last hint" in out


def test_a_non_function_is_a_hint_not_an_error(capsys):
    assert check_trailing_timesteps([999, 949]) is False
    assert check_trailing_timesteps(lambda T: T) is False
    assert "Not yet" in capsys.readouterr().out
