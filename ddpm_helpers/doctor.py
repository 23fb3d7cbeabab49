"""The training doctor: spots the classic failures of a diffusion training run and says what to do.

    NaN loss                  -> stop, name the usual causes (learning rate, bf16 overflow, image range)
    loss stuck near 1         -> the model predicts zeros: E[eps^2] = 1 (output not wired to x_t or t?)
    loss not falling          -> learning rate too high, or the data is wrong

``train()`` calls it every ``log_every`` steps; ``smooth`` is the smoothed loss curve it and the plots use.
"""

import math
import warnings

import numpy as np

from . import _checks


def smooth(values, beta=None):
    """Bias-corrected exponential moving average of a list (as in Adam): the smoothed curve.
    ``beta=None`` averages over ~1/20 of the list (beta = 1 - 20 / len), at most 0.98."""
    if beta is None:
        beta = min(0.98, max(0.0, 1 - 20 / max(len(values), 1)))
    out, avg = [], 0.0
    for i, v in enumerate(values):
        avg = beta * avg + (1 - beta) * v
        out.append(avg / (1 - beta ** (i + 1)))
    return out


class TrainingWarning(UserWarning):
    """The TrainingDoctor's warnings: training runs, but probably not the way you want."""


class TrainingDoctor:
    """Spots the classic failures early and says what to do (called every ``log_every`` steps)."""

    def __init__(self, stuck_after=300, window=100):
        self.stuck_after, self.window, self.warned = stuck_after, window, set()

    @staticmethod
    def check_batch(clean_images):
        _checks.image_range(clean_images, "training images", hint="the noise scale assumes [-1, 1]; map [0, 1] "
                            "images with data.to_model_range(x) = 2 x - 1")

    def __call__(self, state):
        losses, step = state.losses, state.step
        if losses and not math.isfinite(losses[-1]):
            raise FloatingPointError(
                f"loss is {losses[-1]} at step {step}. Usual causes: learning rate too high (try "
                f"{state.config.learning_rate / 10:g}, or more warmup_steps); bf16 overflow (try "
                "mixed_precision='no'); images not in [-1, 1]. Resume from the last checkpoint after fixing it.")
        w = min(self.window, len(losses) // 3)
        if step < self.stuck_after or w == 0:
            return
        first, last = np.mean(losses[:w]), np.mean(losses[-w:])
        if abs(last - 1.0) < 0.1:
            self._warn("stuck", f"loss is still {last:.3f} after {step} steps: that is what predicting zeros "
                       "scores (E[eps^2] = 1). Is the model output wired to its input and to t? Is the "
                       "learning rate too small?")
        elif last >= first:
            self._warn("flat", f"loss is not falling: mean of the last {w} steps {last:.3f} >= first {w} "
                       f"steps {first:.3f}. Try a lower learning rate or check the data.")

    def _warn(self, key, message):
        if key not in self.warned:
            self.warned.add(key)
            warnings.warn(message, TrainingWarning, stacklevel=3)
