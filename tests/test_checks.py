"""ddpm_helpers._checks: each rule returns the canonical value or raises the documented error,
whose message names the argument and what is allowed; NaN passes no range check."""

import math

import numpy as np
import pytest
import torch

from ddpm_helpers import _checks

NAN, INF = float("nan"), float("inf")


def raises(error, call, *words):
    """``call()`` raises ``error`` and its message contains every word."""
    with pytest.raises(error) as info:
        call()
    for word in words:
        assert word in str(info.value), f"{word!r} not in {str(info.value)!r}"
    return str(info.value)


# --- integers, seeds, flags, reals, choices ---------------------------------------------------

def test_integer_accepts_python_numpy_and_one_element_integer_tensors():
    assert _checks.integer(3, "n") == 3 and type(_checks.integer(np.int64(3), "n")) is int
    assert _checks.integer(torch.tensor(7), "n") == 7 and _checks.integer(torch.tensor([7]), "n") == 7
    assert _checks.integer(16, "n", low=8, multiple_of=8) == 16


@pytest.mark.parametrize("value", [3.0, "3", None, True, torch.tensor(3.0), torch.tensor([1, 2]), [3]])
def test_integer_refuses_other_kinds_with_a_type_error(value):
    raises(TypeError, lambda: _checks.integer(value, "steps"), "steps", "must be an int")


def test_integer_bounds_and_multiples_are_value_errors():
    raises(ValueError, lambda: _checks.integer(0, "n", low=1), "n must be >= 1, got 0")
    raises(ValueError, lambda: _checks.integer(11, "t", 0, 10), "t must be in [0, 10], got 11")
    raises(ValueError, lambda: _checks.integer(12, "size", multiple_of=8), "size must be a multiple of 8, got 12")
    raises(ValueError, lambda: _checks.positive_int(-2, "batch_size", hint="e.g. 64"), "batch_size", ">= 1", "e.g. 64")


def test_seed_is_a_64_bit_non_negative_int():
    assert _checks.seed(2**63 - 1) == 2**63 - 1
    raises(ValueError, lambda: _checks.seed(-1), "seed must be in [0, 9223372036854775807]")
    raises(TypeError, lambda: _checks.seed(1.5), "seed must be an int")


def test_flag_takes_only_bools():
    assert _checks.flag(True, "shuffle") is True and _checks.flag(np.bool_(False), "shuffle") is False
    for value in (1, 0, None, "yes"):
        raises(TypeError, lambda: _checks.flag(value, "shuffle"), "shuffle must be True or False")


def test_real_is_finite_and_nan_passes_no_range():
    assert _checks.real(torch.tensor(0.5), "lr") == 0.5 and _checks.real(np.float32(2), "lr") == 2.0
    raises(ValueError, lambda: _checks.real(NAN, "lr", 0, 1), "lr must be a finite number in [0, 1], got nan")
    raises(ValueError, lambda: _checks.real(INF, "lr"), "lr must be a finite number")
    raises(ValueError, lambda: _checks.real(0.0, "lr", 0, 1, low_open=True), "lr must be in (0, 1], got 0")
    raises(ValueError, lambda: _checks.real(1.0, "p", 0, 1, high_open=True), "p must be in [0, 1), got 1")
    raises(TypeError, lambda: _checks.real("0.1", "lr"), "lr must be a number")
    raises(TypeError, lambda: _checks.real(True, "lr"), "lr must be a number")


def test_one_of_and_instance():
    assert _checks.one_of("test", "split", ("train", "test")) == "test"
    raises(ValueError, lambda: _checks.one_of("val", "split", ("train", "test")), "split must be one of 'train', 'test'")
    raises(ValueError, lambda: _checks.one_of([1], "split", {"a"}), "split must be one of 'a'")  # unhashable
    raises(TypeError, lambda: _checks.instance(3, "model", torch.nn.Module, "a torch.nn.Module"),
           "model must be a torch.nn.Module, got int")


def test_nonempty_and_existing_path(tmp_path):
    assert _checks.nonempty([1], "keep") == [1]
    raises(ValueError, lambda: _checks.nonempty([], "keep", "a list of timesteps"), "keep is empty",
           "a list of timesteps of at least one item")
    raises(TypeError, lambda: _checks.nonempty(5, "keep"), "keep must be a sequence with a length")
    (tmp_path / "f.txt").write_text("x")
    assert _checks.existing_path(str(tmp_path / "f.txt"), "path") == tmp_path / "f.txt"
    assert _checks.existing_path(tmp_path, "folder", "dir") == tmp_path
    raises(FileNotFoundError, lambda: _checks.existing_path(tmp_path / "no", "path"), "path must be an existing file")
    raises(ValueError, lambda: _checks.existing_path(tmp_path, "path"), "path must be a file")
    raises(TypeError, lambda: _checks.existing_path(3, "path"), "path must be a path")


# --- tensors --------------------------------------------------------------------------------

def test_float_tensor_kind_dimensions_and_finiteness():
    x = torch.zeros(2, 3)
    assert _checks.float_tensor(x, "x", ndim=2) is x and _checks.float_tensor(x, "x", ndim=(1, 2)) is x
    raises(TypeError, lambda: _checks.float_tensor([0.0], "x"), "x must be a float tensor, got list")
    raises(TypeError, lambda: _checks.float_tensor(torch.zeros(2, dtype=torch.long), "x"), "dtype torch.int64",
           ".float()")
    raises(ValueError, lambda: _checks.float_tensor(x, "x", ndim=4), "x must have 4 dimensions, got shape (2, 3)")
    raises(ValueError, lambda: _checks.float_tensor(torch.tensor([0.0, NAN]), "x"), "x contains NaN", "finite")
    raises(ValueError, lambda: _checks.float_tensor(torch.tensor([0.0, -INF]), "x"), "x contains inf")
    assert _checks.finite(torch.zeros(0), "x").numel() == 0  # nothing to check


@pytest.mark.parametrize("bad", [NAN, INF, -INF])
def test_nan_and_inf_pass_no_range_check(bad):
    x = torch.tensor([0.0, bad, 0.5])
    raises(ValueError, lambda: _checks.in_range(x, "alphas", 0, 1), "alphas contains")
    raises(ValueError, lambda: _checks.image_range(x, "x0"), "x0 contains")
    raises(ValueError, lambda: _checks.image_range(x, "x_t", noised=True), "x_t contains")
    if bad != bad:  # NaN in bf16 too: aminmax propagates it
        raises(ValueError, lambda: _checks.image_range(x.bfloat16(), "x0"), "x0 contains NaN")


def test_image_range_is_one_rule_with_float_rounding_only():
    edge = 1 + 0.9 * _checks.IMAGE_RANGE_TOLERANCE  # float rounding of a [-1, 1] image, e.g. after a resize
    assert _checks.image_range(torch.tensor([-edge, edge], dtype=torch.float64)) is not None
    raises(ValueError, lambda: _checks.image_range(torch.tensor([0.0, 1.01])), "x0 must be scaled to [-1, 1]",
           "span [0, 1.01]", "to_model_range")
    raises(ValueError, lambda: _checks.image_range(torch.full((2,), 255.0), "samples"), "samples must be scaled",
           "x / 127.5 - 1")
    raises(TypeError, lambda: _checks.image_range(torch.zeros(2, dtype=torch.uint8)), "x0 must be a float tensor "
           "scaled to [-1, 1], got dtype torch.uint8")


def test_noised_images_are_allowed_up_to_the_bound_from_equation_4():
    # x_t = sqrt(a) x0 + sqrt(1 - a) eps with |x0| <= 1, |eps| <= 6: at most sqrt(1 + 36) (Cauchy-Schwarz)
    assert _checks.NOISED_IMAGE_BOUND == pytest.approx(math.sqrt(37))
    a = torch.linspace(0, 1, 1001)
    worst = (a.sqrt() * 1 + (1 - a).sqrt() * 6).max()
    assert worst <= _checks.NOISED_IMAGE_BOUND + 1e-6 and worst >= _checks.NOISED_IMAGE_BOUND - 1e-3
    noised = torch.tensor([-6.0, 3.0, 6.08])
    assert _checks.image_range(noised, "x_t", noised=True) is noised
    raises(ValueError, lambda: _checks.image_range(noised, "x_t"), "x_t must be scaled to [-1, 1]")
    raises(ValueError, lambda: _checks.image_range(torch.tensor([0.0, 255.0]), "x_t", noised=True),
           "x_t must be images in [-1, 1] or noised images x_t (|x| <= 6.08)")


def test_images_batch_shape_channels_and_size():
    x = torch.zeros(2, 1, 32, 32)
    assert _checks.images(x, "samples", channels=(1,), size=32) is x
    raises(ValueError, lambda: _checks.images(torch.zeros(1, 32, 32), "samples"), "samples must have 4 dimensions")
    raises(ValueError, lambda: _checks.images(torch.zeros(0, 1, 8, 8), "samples"), "samples is an empty batch")
    raises(ValueError, lambda: _checks.images(torch.zeros(2, 2, 8, 8), "samples"), "C = 1 or 3", "(2, 2, 8, 8)")
    raises(ValueError, lambda: _checks.images(x, "samples", size=28), "H = W = 28")


# --- timesteps ------------------------------------------------------------------------------

@pytest.mark.parametrize("t", [3, np.int64(3), torch.tensor(3), torch.tensor([3]), torch.tensor([3, 3, 3, 3])])
def test_timesteps_broadcast_one_value_or_take_one_per_image(t):
    out = _checks.timesteps(t, 10, batch_size=4)
    assert out.shape == (4,) and out.dtype == torch.int64 and out.tolist() == [3, 3, 3, 3]


def test_timesteps_without_a_batch_and_small_integer_dtypes_become_int64():
    out = _checks.timesteps(torch.tensor([1, 2], dtype=torch.uint8), 10)
    assert out.dtype == torch.int64 and out.tolist() == [1, 2]  # uint8 would index as a mask
    assert _checks.timesteps(torch.tensor([2.5]), 10, allow_float=True).dtype == torch.float32


@pytest.mark.parametrize("t, error, words", [
    (2.0, TypeError, ["t must hold integers in [0, 9]", "float32"]),
    (torch.tensor([1.0]), TypeError, ["t must hold integers", ".long()"]),
    (True, TypeError, ["t must be an int or an integer tensor"]),
    ([1, 2], TypeError, ["t must be an int or an integer tensor"]),
    (torch.tensor([True]), TypeError, ["t must hold integers"]),
    (10, ValueError, ["t must be in [0, 9]", "num_train_timesteps=10"]),
    (torch.tensor([-1, 0, 1, 2]), ValueError, ["t must be in [0, 9]", "from -1 to 2"]),
    (torch.tensor([1, 2]), ValueError, ["t must be an int", "(1,) or (4,)", "(2,)"]),
    (torch.zeros(2, 2, dtype=torch.long), ValueError, ["t must be an int", "(2, 2)"]),
])
def test_timesteps_refused(t, error, words):
    raises(error, lambda: _checks.timesteps(t, 10, batch_size=4, name="t"), *words)


def test_float_timesteps_when_allowed_still_pass_no_nan():
    raises(ValueError, lambda: _checks.timesteps(torch.tensor([NAN]), 10, allow_float=True), "timesteps contains NaN")
