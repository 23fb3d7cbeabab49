"""How the exercise checks talk to a learner: hints in levels, the learner's code run safely.

A check never raises. Whatever the learner's function does -- return a list, None, a number,
a tensor of the wrong shape or dtype, raise inside, or not be a function at all -- ends as a
``NotYet`` whose first hint names the problem. Hints go from a nudge (level 1) to the formula
(the last level), never to the code of the fix: the notebooks keep the solution folded.
"""

import functools
import inspect
import os
import re
import traceback
from dataclasses import dataclass

import torch

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
_TORCH_DIR = os.path.dirname(os.path.abspath(torch.__file__))
_last = None  # the Feedback of the last check that ran, for show_hint()


class NotYet(Exception):
    """Stops a check at the first problem found; ``hints`` go from a nudge to the formula."""

    def __init__(self, *hints):
        super().__init__(hints[0] if hints else "")
        self.hints = tuple(hints)


@dataclass
class Feedback:
    """What a check found: ``ok``, or the hints that say why not (level 1 is printed at once)."""

    ok: bool
    hints: tuple = ()
    shown: int = 1  # hints printed so far


def report(feedback, message=""):
    """Print ``feedback`` (the first hint, or "Correct!" and ``message``); remember it for show_hint()."""
    global _last
    _last = feedback
    if feedback.ok:
        print(f"Correct! {message}")
    else:
        more = len(feedback.hints) - 1
        print(f"Not yet. Hint 1 of {len(feedback.hints)}: {feedback.hints[0]}")
        if more:
            print("   (Stuck? show_hint() prints the next hint; the notebook has them folded below the exercise.)")
    return feedback.ok


def show_hint(level=None):
    """Print the next hint of the last check that said "Not yet", or hint number ``level``."""
    feedback = _last
    if feedback is None:
        print("No check has run yet: run the exercise's cell (the one that calls check_...) first.")
        return
    if feedback.ok:
        print("The last check passed: there is nothing to hint.")
        return
    count = len(feedback.hints)
    if level is None:
        level = min(feedback.shown + 1, count)
    if isinstance(level, bool) or not isinstance(level, int) or not 1 <= level <= count:
        print(f"show_hint takes a hint number from 1 to {count}, e.g. show_hint(2); got {level!r}.")
        return
    print(f"Hint {level} of {count}: {feedback.hints[level - 1]}")
    if level == count:
        print("   That was the last hint: the formula. The solution is folded in the notebook, below the exercise.")
    feedback.shown = max(feedback.shown, level)


def exercise_check(*arg_names):
    """Decorate a check whose first argument is the learner's function, called with ``arg_names``.

    The check returns a success message or raises NotYet; the decorator prints it, returns
    True or False, and turns any other error (a bad argument to the check itself, say) into a
    hint too, so that a notebook always runs to its end.
    """
    def decorate(check):
        @functools.wraps(check)
        def run(fn=None, *args, **kwargs):
            try:
                _check_callable(fn, check.__name__, arg_names)
                return report(Feedback(True), check(fn, *args, **kwargs))
            except NotYet as not_yet:
                return report(Feedback(False, not_yet.hints))
            except Exception as error:  # noqa: BLE001 - a check never raises
                return report(Feedback(False, (
                    f"the check itself could not run: {type(error).__name__}: {error}. Look at the "
                    f"arguments given to {check.__name__} (see help({check.__name__})).",)))
        return run
    return decorate


def _describe(value):
    """'a tensor of shape (2, 3)', 'a list, [1, 2]', 'a numpy array of shape (4,)', 'the int 42' ..."""
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {tuple(value.shape)}"
    kind = type(value).__name__
    if kind == "ndarray":
        return f"a numpy array of shape {tuple(value.shape)}"
    text = repr(value)
    if value is None:
        return "None"
    if isinstance(value, (bool, int, float, str)):
        return f"the {kind} {text}" if len(text) <= 40 else f"a {kind}"
    return f"a {kind}, {text}" if len(text) <= 40 else f"a {kind}"


def _check_callable(fn, check_name, arg_names):
    example = f"{check_name}(my_function)"
    if not callable(fn) or isinstance(fn, type):
        raise NotYet(f"{check_name} needs your function itself, as in {example}: its name without "
                     f"parentheses, so the check can call it. It got {_describe(fn)}.")
    try:
        inspect.signature(fn).bind(*arg_names)
    except TypeError:
        raise NotYet(f"your function takes the arguments ({_parameters(fn)}), but the check calls it "
                     f"with {len(arg_names)}: ({', '.join(arg_names)}). Change its first line to "
                     f"def ...({', '.join(arg_names)}):") from None
    except ValueError:  # a builtin without a signature: try it
        pass


def _parameters(fn):
    try:
        return ", ".join(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        return "?"


def _learner_line(error):
    """' (line 5: `return ...`)' for the deepest frame of the learner's own code, or ''."""
    frames = traceback.extract_tb(error.__traceback__)[1:]  # [0] is our own call
    own = [f for f in frames if not os.path.abspath(f.filename).startswith((_PACKAGE_DIR, _TORCH_DIR))]
    if not own or not own[-1].line:
        return ""
    return f" (line {own[-1].lineno} of your function: `{own[-1].line.strip()}`)"


def _error_hints(error):
    """Hints for an exception raised inside the learner's function."""
    message = str(error).split("\n")[0]
    first = f"your function raised {type(error).__name__}{': ' + message if message else ''}{_learner_line(error)}."
    if isinstance(error, NotImplementedError) or "ellipsis" in message:
        return (first + " It still holds a placeholder: replace each `...` (or the raise) with your code.",)
    if "must match the size of tensor" in message or "expanded size" in message:
        return (first, "a shape problem: alphas_cumprod[t] with a tensor t of B timesteps has shape (B,), one "
                       "number per image, and (B,) lines up with the *last* axis of a (B, C, H, W) image.",
                "give the per-image number the shape (B, 1, 1, 1) (with .view(-1, 1, 1, 1)), so that it "
                "multiplies a whole image.")
    if "SchedulerOutput" in message:
        return (first + " scheduler.step returns an output object: the next sample is its .prev_sample.",)
    if re.search(r"\b\w*(Output|Prediction)\b", message):  # UNetOutput, UNet2DOutput, the checks' NoisePrediction
        return (first + " The model returns an output object, like diffusers' models: the predicted "
                        "noise is its .sample, model(x_t, t).sample.",)
    if isinstance(error, NameError):
        return (first + " Did you run the cells above it (the imports, the scheduler)?",)
    if "out of bounds" in message or "timesteps must be in" in message:
        return (first, "timesteps are 0-indexed: 0 <= t <= T - 1. Did you shift t by one somewhere?")
    return (first,)


def call(fn, *args):
    """``fn(*args)`` on copies of the tensors (a learner's in-place edit changes nothing here);
    an exception becomes NotYet with a hint that names it and the learner's line."""
    args = [a.clone() if isinstance(a, torch.Tensor) else a for a in args]
    try:
        return fn(*args)
    except Exception as error:  # noqa: BLE001 - a learner's error is a hint, never a crash
        raise NotYet(*_error_hints(error)) from None


def expect_tensor(result, like, what):
    """Return ``result`` if it is a tensor with ``like``'s shape and dtype and finite values;
    otherwise raise NotYet saying what was wrong. ``what`` names it in the hint ("x_t")."""
    shape = tuple(like.shape)
    if result is None:
        raise NotYet(f"your function returned None: it computes {what} but does not `return` it.")
    if result is Ellipsis:
        raise NotYet("your function returns `...`, a placeholder: replace it with your code.")
    if isinstance(result, tuple) and len(result) == 1 and isinstance(result[0], torch.Tensor):
        raise NotYet(f"your function returned a tuple (one tensor and a comma): return the tensor {what} "
                     "itself. Is there a trailing comma after the return value?")
    if not isinstance(result, torch.Tensor):
        fix = (" Stay in torch: use torch operations (x.sqrt(), torch.sqrt(x)) and do not call .numpy()."
               if type(result).__name__ == "ndarray" else "")
        raise NotYet(f"your function returned {_describe(result)}; return {what} as one torch tensor of "
                     f"shape {shape}.{fix}")
    if not result.is_floating_point():
        raise NotYet(f"your function returned a tensor of dtype {result.dtype}; {what} holds real numbers, "
                     f"{like.dtype} like the inputs (an integer or bool tensor means something was rounded, "
                     "indexed or compared).")
    if tuple(result.shape) != shape:
        raise NotYet(f"your function returned a tensor of shape {tuple(result.shape)}; {what} must have shape "
                     f"{shape}.", "Look for an operation that broadcast the wrong axes: one number per image "
                     "(like alphas_cumprod[t] for B timesteps, shape (B,)) needs the shape (B, 1, 1, 1) "
                     "(.view(-1, 1, 1, 1)) to scale whole images.")
    if result.dtype != like.dtype:
        raise NotYet(f"your function returned a {result.dtype} tensor; {what} must be {like.dtype} like the "
                     f"inputs (the model would refuse {result.dtype}). Did a float64 number sneak in?")
    if not torch.isfinite(result).all():
        bad = "NaN (not a number)" if torch.isnan(result).any() else "inf"
        raise NotYet(f"{what} contains {bad}: a square root of a negative number, or a division by zero "
                     "(at t = 0 or after the last step)?")
    return result


def diagnose(result, expected, mistakes, fallback, rtol=1e-5, atol=1e-5):
    """Raise NotYet with the hints of the first mistake in ``mistakes`` ((tensor, hints) pairs)
    that ``result`` matches; else the ``fallback`` hints, the first one with the largest error."""
    for wrong, hints in mistakes:
        if wrong.shape == result.shape and torch.allclose(result, wrong, rtol=rtol, atol=atol):
            raise NotYet(*hints)
    worst = (result - expected).abs().max().item()
    raise NotYet(fallback[0].format(worst=worst), *fallback[1:])


def same_again(fn, args, first, what):
    """Call ``fn(*args)`` again: a different result means the learner draws random numbers inside."""
    again = call(fn, *args)
    if isinstance(again, torch.Tensor) and again.shape == first.shape and not torch.equal(again, first):
        raise NotYet(f"two calls with the same inputs gave different {what}: your function draws random "
                     "numbers of its own.", "Use the arguments it is given (the `noise`, the `t`): the check "
                     "-- and the training loop of lesson 4 -- must know which noise made x_t.")


def name(fn):
    """The learner's function's name for a message, or "your function" (for a lambda)."""
    text = getattr(fn, "__name__", "")
    return text if text.isidentifier() else "your function"


def per_image(values, like):
    """(B,) -> (B, 1, 1, 1): one number per image, broadcast over ``like``'s other axes."""
    return values.view(-1, *([1] * (like.ndim - 1)))


def alphas_cumprod_of(scheduler, check_name):
    """``scheduler.alphas_cumprod`` as float32, or NotYet saying the check needs a scheduler."""
    ac = getattr(scheduler, "alphas_cumprod", None)
    if not isinstance(ac, torch.Tensor) or ac.ndim != 1 or not hasattr(scheduler, "config"):
        raise NotYet(f"{check_name} needs the scheduler as its second argument, e.g. "
                     f"{check_name}(my_function, noise_scheduler); it got {_describe(scheduler)}.")
    return ac.float()


def predict_noise(model, x, t):
    """eps_pred = model(x, t) as a bare tensor, for our UNet, diffusers' UNet2DModel or a function."""
    try:
        out = model(x, t, return_dict=False)
    except TypeError:  # a plain function without return_dict
        out = model(x, t)
    if isinstance(out, tuple):
        out = out[0]
    return getattr(out, "sample", out)
