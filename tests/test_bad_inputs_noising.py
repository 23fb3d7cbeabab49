"""Bad inputs to lesson 1's forward process (noising) and to the course settings (config).

Each case asserts the exception type and that the message names the argument and says what
is allowed: a learner's mistake gets an error that says how to fix the call, never a
traceback from inside torch and never a silent wrong result.
"""

import pytest
import torch

from ddpm_helpers import config
from ddpm_helpers.noising import noise_step_by_step, q_sample, q_step

T = 1000
BETAS = torch.linspace(1e-4, 0.02, T, dtype=torch.float64)
ALPHAS_CUMPROD = torch.cumprod(1 - BETAS, dim=0).float()
X0 = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
NOISE = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(1))
NAN = float("nan")


def q(**kwargs):
    args = {"x0": X0, "t": 3, "alphas_cumprod": ALPHAS_CUMPROD, "noise": NOISE, **kwargs}
    return lambda: q_sample(**args)


def with_nan(x):
    x = x.clone()
    x.view(-1)[1] = NAN
    return x


CASES = {
    # q_sample: timesteps
    "t past the schedule": (q(t=T), ValueError, ["t must be in [0, 999]", "0-indexed"]),
    "t negative": (q(t=-1), ValueError, ["t must be in [0, 999]"]),
    "t of the wrong length": (q(t=torch.tensor([1, 2])), ValueError, ["t must be an int", "(1,) or (4,)"]),
    "t 2-d": (q(t=torch.tensor([[1]])), ValueError, ["t must be an int", "shape (1, 1)"]),
    "t a python float": (q(t=0.5), TypeError, ["t must hold integers in [0, 999]"]),
    "t a float tensor": (q(t=torch.tensor([3.0])), TypeError, ["t must hold integers", ".long()"]),
    "t a string": (q(t="3"), TypeError, ["t must be an int or an integer tensor"]),
    "t a bool": (q(t=True), TypeError, ["t must be an int or an integer tensor"]),
    "t beyond int64": (q(t=10**30), ValueError, ["t must be in [0, 999]"]),
    # q_sample: images and noise
    "x0 in [0, 255]": (q(x0=X0 * 255), ValueError, ["x0 must be scaled to [-1, 1]", "to_model_range"]),
    "x0 slightly out of range": (q(x0=X0 * 1.01), ValueError, ["x0 must be scaled to [-1, 1]"]),
    "x0 uint8": (q(x0=(X0 * 100).to(torch.uint8)), TypeError, ["x0 must be a float tensor scaled to [-1, 1]"]),
    "x0 with NaN": (q(x0=with_nan(X0)), ValueError, ["x0 contains NaN", "finite"]),
    "x0 a list": (q(x0=X0.tolist()), TypeError, ["x0 must be a float tensor"]),
    "x0 0-d": (q(x0=torch.tensor(0.5), noise=torch.tensor(0.1)), ValueError, ["noise must have x0's shape",
                                                                               "a batch"]),
    "noise of another shape": (q(noise=torch.randn(4, 1, 4, 4)), ValueError, ["noise must have x0's shape",
                                                                              "randn_like"]),
    "noise with NaN": (q(noise=with_nan(NOISE)), ValueError, ["noise contains NaN"]),
    # q_sample: the schedule
    "betas given as alphas_cumprod": (q(alphas_cumprod=BETAS.float()), ValueError,
                                      ["alphas_cumprod must be non-increasing", "did you pass betas?"]),
    "alphas_cumprod above 1": (q(alphas_cumprod=ALPHAS_CUMPROD + 1), ValueError, ["alphas_cumprod must be in [0, 1]"]),
    "alphas_cumprod a list": (q(alphas_cumprod=ALPHAS_CUMPROD.tolist()), TypeError,
                              ["alphas_cumprod must be a float tensor"]),
    "alphas_cumprod 2-d": (q(alphas_cumprod=ALPHAS_CUMPROD[None]), ValueError, ["alphas_cumprod must be a (T,) tensor"]),
    "alphas_cumprod empty": (q(alphas_cumprod=torch.zeros(0)), ValueError, ["alphas_cumprod must be a (T,) tensor"]),
    "alphas_cumprod with NaN": (q(alphas_cumprod=with_nan(ALPHAS_CUMPROD)), ValueError, ["alphas_cumprod contains NaN"]),
    # q_step (eq. 2)
    "beta_t above 1": (lambda: q_step(X0, 1.5, NOISE), ValueError, ["beta_t must be in [0, 1]"]),
    "beta_t NaN": (lambda: q_step(X0, NAN, NOISE), ValueError, ["beta_t must be a finite number in [0, 1]"]),
    "beta_t a string": (lambda: q_step(X0, "0.1", NOISE), TypeError, ["beta_t must be a number"]),
    "beta_t of a shape that does not broadcast": (lambda: q_step(X0, torch.full((3,), 0.1), NOISE), ValueError,
                                                   ["beta_t must be a float or a tensor that broadcasts to x_prev's"]),
    "q_step noise of another shape": (lambda: q_step(X0, 0.1, NOISE[:2]), ValueError, ["noise must have x_prev's shape"]),
    # noise_step_by_step
    "keep empty": (lambda: noise_step_by_step(X0, BETAS, keep=[]), ValueError, ["keep is empty", "list of timesteps"]),
    "keep past the schedule": (lambda: noise_step_by_step(X0, BETAS, keep=[10, 1000]), ValueError,
                               ["keep must be in [0, 999]"]),
    "keep a float": (lambda: noise_step_by_step(X0, BETAS, keep=[2.5]), TypeError, ["keep must be an int"]),
    "keep not a list": (lambda: noise_step_by_step(X0, BETAS, keep=5), TypeError, ["keep must be a list of timesteps"]),
    "betas with NaN": (lambda: noise_step_by_step(X0, with_nan(BETAS), keep=[1]), ValueError, ["betas contains NaN"]),
    "generator a seed": (lambda: noise_step_by_step(X0, BETAS, keep=[1], generator=0), TypeError,
                         ["generator must be a torch.Generator or None"]),
    # config
    "device misspelled": (lambda: config.default_device("gpu"), ValueError, ["device 'gpu' is not a device", "'cpu', 'cuda'"]),
    "device a number": (lambda: config.default_device(0), TypeError, ["device must be a string", "'cpu', 'cuda'"]),
    "device absent here": (
        (lambda: config.default_device("cuda")) if not torch.cuda.is_available() else
        (lambda: config.default_device(f"cuda:{torch.cuda.device_count()}")),
        ValueError, ["device 'cuda", "no CUDA GPU" if not torch.cuda.is_available() else "GPU(s) here"]),
    "DDPM_QUICK not understood": (lambda: config._read_quick("maybe"), ValueError, ["DDPM_QUICK must be one of", "'1'",
                                                                                    "'0'"]),
}


@pytest.mark.parametrize("call, error, words", CASES.values(), ids=CASES.keys())
def test_bad_input_is_refused_with_a_message_that_names_it_and_what_is_allowed(call, error, words):
    with pytest.raises(error) as info:
        call()
    for word in words:
        assert word in str(info.value), f"{word!r} not in {str(info.value)!r}"


def test_quick_mode_reads_the_usual_spellings():
    assert [config._read_quick(v) for v in ("1", "true", " Yes ", "ON")] == [True] * 4
    assert [config._read_quick(v) for v in ("", "0", "false", "no", "off")] == [False] * 5
