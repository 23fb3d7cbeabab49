"""Lesson 6's exercise: where the steps of a fast sampler fall ("trailing" spacing).

``check_trailing_timesteps(fn)`` calls ``fn(num_train_timesteps, num_inference_steps)`` and
compares what it returns with ``DDIMScheduler(timestep_spacing="trailing").set_timesteps(n)``:

    t_k = round(T - k T / n) - 1,   k = 0, 1, ..., n - 1      (Lin et al. 2024, arXiv 2305.08891, Table 2)

so the first step is t = T - 1 (pure noise) and the steps are T / n apart, rounded. Usual
mistakes each get their own hint: "leading" spacing, no "- 1", ascending order, the integer gap
T // n, and floor instead of round.
"""

import math

import torch

from ._feedback import NotYet, call, exercise_check, name

TRAILING = "t_k = round(T - k * T / n) - 1 for k = 0, 1, ..., n - 1 (Lin et al. 2024, Table 2)"
CASES = ((1000, 20), (1000, 7), (1000, 3), (50, 8))  # n = 7 and 3: T / n is not a whole number


def trailing_timesteps(T, n):
    """The reference, written as the formula: [round(T - k T / n) - 1 for k = 0..n-1] (Python's
    round() rounds halves to even, as torch.round does in DDIMScheduler)."""
    return [round(T - k * T / n) - 1 for k in range(n)]


def _as_int_list(result, T, n):
    """The learner's timesteps as a list of python ints, or NotYet saying what they are instead."""
    if result is None:
        raise NotYet("your function returned None: it computes the timesteps but does not `return` them.")
    if isinstance(result, torch.Tensor):
        if result.ndim != 1:
            raise NotYet(f"your function returned a tensor of shape {tuple(result.shape)}; return n = {n} "
                         "timesteps, a 1-d list or tensor.")
        if result.is_floating_point():
            raise NotYet(f"your timesteps are floats ({result.dtype}); timesteps are whole numbers.",
                         "Round each one, then subtract 1; .round().long() makes integers of a float tensor.")
        result = result.tolist()
    if not isinstance(result, (list, tuple, range)):
        raise NotYet(f"your function returned a {type(result).__name__}; return the timesteps as a list of "
                     "ints (or a 1-d integer tensor).")
    values = []
    for value in result:
        if isinstance(value, float) and not value.is_integer():
            raise NotYet(f"your timesteps are not whole numbers ({value!r} among them).",
                         "Round each one with round(...), then subtract 1.", TRAILING)
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise NotYet(f"your list holds a {type(value).__name__}; each timestep is one int.")
        values.append(int(value))
    if len(values) != n:
        raise NotYet(f"for T = {T} and n = {n} steps you returned {len(values)} timesteps; return exactly n.",
                     "One timestep per step: k runs over 0, 1, ..., n - 1 (range(n)).", TRAILING)
    return values


def _mistakes(T, n):
    gap = T / n
    return [
        ([k * (T // n) for k in range(n - 1, -1, -1)], (
            "these are the \"leading\" timesteps: they end at t = 0, so the first step treats pure noise as "
            f"x_{(n - 1) * (T // n)}.", "Count back from the end instead: the first timestep is T - 1.", TRAILING)),
        ([round(T - k * gap) for k in range(n)], (
            f"every timestep is one too large: the first is {T}, but timesteps run 0, ..., T - 1 = {T - 1}.",
            "Subtract 1 after rounding: the noisiest timestep is T - 1.", TRAILING)),
        (sorted(trailing_timesteps(T, n)), (
            "the right timesteps, in the wrong order.", "A sampler starts at the noisiest step: the list must "
            "go down, from T - 1 to the smallest.", TRAILING)),
        ([T - 1 - k * (T // n) for k in range(n)], (
            f"right for T = 1000 and n = 20, off when T / n is not a whole number (T = {T}, n = {n}).",
            "The gap T // n is rounded down once and then the error piles up with k; round each timestep "
            "instead: use the exact gap T / n.", TRAILING)),
        ([math.floor(T - k * gap) - 1 for k in range(n)], (
            f"some timesteps are one too small when T / n is not a whole number (T = {T}, n = {n}).",
            "int() and math.floor() round down; the scheduler rounds to the nearest integer: round().",
            TRAILING)),
    ]


@exercise_check("num_train_timesteps", "num_inference_steps")
def check_trailing_timesteps(fn):
    """Check ``fn(num_train_timesteps, num_inference_steps) -> timesteps`` (a list of ints or a 1-d integer
    tensor, in sampling order) against ``DDIMScheduler(timestep_spacing="trailing")`` for (T, n) =
    (1000, 20), (1000, 7), (1000, 3), (50, 8)."""
    from .scheduler import DDIMScheduler

    for T, n in CASES:
        reference = DDIMScheduler(num_train_timesteps=T, timestep_spacing="trailing")
        reference.set_timesteps(n)
        expected = reference.timesteps.tolist()
        mine = _as_int_list(call(fn, T, n), T, n)
        if mine == expected:
            continue
        for wrong, hints in _mistakes(T, n):
            if mine == wrong:
                raise NotYet(*hints)
        first = next(k for k, (a, b) in enumerate(zip(mine, expected)) if a != b)
        raise NotYet(f"for T = {T}, n = {n} your timestep number {first} is {mine[first]}; the scheduler's is "
                     f"{expected[first]}.", "The first timestep is T - 1; the others follow T / n apart, each "
                     "rounded to the nearest integer.", TRAILING)
    return (f"{name(fn)} gives DDIMScheduler's \"trailing\" timesteps for "
            + ", ".join(f"T = {T}, n = {n}" for T, n in CASES) + ".")
