"""The "your turn" checks: they accept a right answer, name the classic mistakes with hints that
go from a nudge to the formula, and their references agree with the package's scheduler."""

import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from ddpm_helpers import exercises
from ddpm_helpers.exercises import (
    check_add_noise, check_answer, check_ddim_step, check_ema_update, check_posterior_mean, check_predict_x0,
    check_q_sample, check_sampling_loop, check_step, check_training_loss, show_hint,
)
from ddpm_helpers.scheduler import DDIMScheduler, DDPMScheduler
from notebook_cells import exercise_cells

ROOT = Path(__file__).resolve().parent.parent


def tiny_unet():
    """A small course UNet (8x8, widths 8 and 16)."""
    from ddpm_helpers.unet import UNet

    torch.manual_seed(0)
    return UNet(block_out_channels=(8, 16), norm_num_groups=8, sample_size=8)


SCHEDULER = DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2")
LINEAR = torch.cumprod(1 - torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64), 0).float()


def first_hint(capsys):
    out = capsys.readouterr().out
    assert out.startswith("Not yet. Hint 1 of "), out
    return out


# --- lesson 1 -------------------------------------------------------------------------------


def closed_form(x0, t, alphas_cumprod, noise):
    a = alphas_cumprod[t].view(-1, 1, 1, 1)
    return a.sqrt() * x0 + (1 - a).sqrt() * noise


def test_q_sample_check_accepts_a_correct_answer(capsys):
    assert check_q_sample(closed_form) is True
    assert capsys.readouterr().out.startswith("Correct!")


@pytest.mark.parametrize(
    "wrong, hint",
    [
        (lambda x0, t, ac, n: ac[t].view(-1, 1, 1, 1) * x0 + (1 - ac[t].view(-1, 1, 1, 1)).sqrt() * n,
         "its signal part is too weak: at t = 250 your x_t holds 0.52 x0 where eq. 4 holds 0.72 x0"),
        (lambda x0, t, ac, n: ac[t].view(-1, 1, 1, 1).sqrt() * x0 + (1 - ac[t].view(-1, 1, 1, 1)) * n,
         "its noise part is too weak"),
        (lambda x0, t, ac, n: closed_form(x0, t - 1, ac, n), "one timestep off"),
        (lambda x0, t, ac, n: closed_form(n, t, ac, x0), "the wrong way round"),
        (lambda x0, t, ac, n: closed_form(x0, t, ac, torch.randn_like(n)), "draws random numbers of its own"),
        (lambda x0, t, ac, n: ac[t].sqrt() * x0 + (1 - ac[t]).sqrt() * n, "must match the size of tensor"),
        (lambda x0, t, ac, n: closed_form(x0, t, ac, n).numpy(), "numpy array"),
    ],
)
def test_q_sample_check_names_the_classic_mistakes_gently(wrong, hint, capsys):
    assert check_q_sample(wrong) is False
    assert hint in first_hint(capsys)


def test_hints_go_from_a_nudge_to_the_formula(capsys):
    wrong = lambda x0, t, ac, n: ac[t].view(-1, 1, 1, 1) * x0 + (1 - ac[t].view(-1, 1, 1, 1)).sqrt() * n  # noqa: E731
    assert check_q_sample(wrong) is False
    first = first_hint(capsys)
    assert "sqrt" not in first and "show_hint()" in first  # the nudge names the symptom, not the fix
    show_hint()
    second = capsys.readouterr().out
    assert second.startswith("Hint 2 of 3:") and "variance" in second and "sqrt(" not in second
    show_hint()
    third = capsys.readouterr().out
    assert third.startswith("Hint 3 of 3:") and "sqrt(alpha_bar_t) * x0 + sqrt(1 - alpha_bar_t) * noise" in third
    assert "last hint" in third
    show_hint(1)
    assert capsys.readouterr().out.startswith("Hint 1 of 3:")
    show_hint(9)
    assert "from 1 to 3" in capsys.readouterr().out
    assert check_q_sample(closed_form) is True
    capsys.readouterr()
    show_hint()
    assert "nothing to hint" in capsys.readouterr().out


def test_predict_x0_check(capsys):
    right = lambda x_t, t, ac, n: (x_t - (1 - ac[t]).sqrt().view(-1, 1, 1, 1) * n) / ac[t].sqrt().view(-1, 1, 1, 1)  # noqa: E731
    assert check_predict_x0(right) is True
    capsys.readouterr()
    for wrong, hint in [
        (lambda x_t, t, ac, n: (x_t - (1 - ac[t]).view(-1, 1, 1, 1) * n) / ac[t].sqrt().view(-1, 1, 1, 1),
         "the noise you take away has the wrong size"),
        (lambda x_t, t, ac, n: (x_t - (1 - ac[t]).sqrt().view(-1, 1, 1, 1) * n) / ac[t].view(-1, 1, 1, 1),
         "comes out too large"),
        (lambda x_t, t, ac, n: (x_t + (1 - ac[t]).sqrt().view(-1, 1, 1, 1) * n) / ac[t].sqrt().view(-1, 1, 1, 1),
         "you add the noise"),
        (lambda x_t, t, ac, n: x_t, "returns x_t unchanged"),
    ]:
        assert check_predict_x0(wrong) is False
        assert hint in first_hint(capsys)


def test_add_noise_check_uses_the_schedulers_alphas_cumprod(capsys):
    assert check_add_noise(lambda x0, noise, t: SCHEDULER.add_noise(x0, noise, t), SCHEDULER) is True
    capsys.readouterr()
    assert check_add_noise(lambda x0, noise, t: closed_form(x0, t, LINEAR, noise), SCHEDULER) is False
    assert "another noise schedule" in first_hint(capsys)


# --- lesson 2 -------------------------------------------------------------------------------


def posterior(x0, x_t, t, ac, betas=None, prev_at_0=None, xt_coef_abar=False):
    abar = ac[t]
    abar_prev = ac[t - 1] if t > 0 else torch.tensor(1.0)
    if t == 0 and prev_at_0 is not None:
        abar_prev = prev_at_0
    beta = betas[t] if betas is not None else 1 - abar / abar_prev
    alpha = 1 - beta
    xt = (abar if xt_coef_abar else alpha).sqrt() * (1 - abar_prev) / (1 - abar)
    return abar_prev.sqrt() * beta / (1 - abar) * x0 + xt * x_t


def test_the_posterior_mean_reference_is_the_schedulers(capsys):
    """scheduler.step with clip_sample=False and the true noise: x0_pred = x0 and
    prev_sample = mu + sigma z, with z the generator's draw."""
    scheduler = DDPMScheduler(beta_schedule="squaredcos_cap_v2", clip_sample=False)
    g = torch.Generator().manual_seed(3)
    x0 = torch.rand((2, 1, 4, 4), generator=g) * 2 - 1
    for t in (999, 500, 1, 0):
        eps = torch.randn(x0.shape, generator=g)
        x_t = scheduler.add_noise(x0, eps, torch.tensor([t, t]))
        out = scheduler.step(eps, t, x_t, generator=torch.Generator().manual_seed(t))
        z = torch.randn(x0.shape, generator=torch.Generator().manual_seed(t))
        x0_pred, mean, sigma = exercises.reverse_step_parts(eps, t, x_t, scheduler)
        torch.testing.assert_close(x0_pred, out.pred_original_sample)
        torch.testing.assert_close(mean, exercises.posterior_mean(out.pred_original_sample, x_t, t, scheduler.alphas_cumprod))
        torch.testing.assert_close(mean + sigma * z, out.prev_sample)


def test_posterior_mean_check(capsys):
    assert check_posterior_mean(posterior, SCHEDULER) is True
    # beta_t from the scheduler's betas instead of the alpha_bar ratio: right to float32 precision
    assert check_posterior_mean(lambda *a: posterior(*a, betas=SCHEDULER.betas), SCHEDULER) is True
    assert check_posterior_mean(posterior) is True  # default scheduler: the seed's cosine schedule
    capsys.readouterr()
    for wrong, hint in [
        (lambda *a: posterior(*a, xt_coef_abar=True), "its x_t term is too small"),
        (lambda *a: posterior(*a, prev_at_0=SCHEDULER.alphas_cumprod[-1]), "at t = 0 (the last step of sampling)"),
        (lambda x0, x_t, t, ac: posterior(x_t, x0, t, ac), "the other way round"),
        (lambda x0, x_t, t, ac: x_t, "your mean is x_t itself"),
    ]:
        assert check_posterior_mean(wrong, SCHEDULER) is False
        assert hint in first_hint(capsys)
    show_hint()
    assert "alpha_bar_{t-1} is alphas_cumprod[t - 1]" in capsys.readouterr().out


def reverse_step(eps, t, x_t, noise, variance="posterior", clip=True, sqrt_in_x0=True, noise_at_0=False):
    """A reverse step over all T steps, written out; the flags plant the classic mistakes."""
    ac = SCHEDULER.alphas_cumprod
    abar, abar_prev = ac[t], (ac[t - 1] if t > 0 else torch.tensor(1.0))
    beta = 1 - abar / abar_prev
    x0 = (x_t - ((1 - abar).sqrt() if sqrt_in_x0 else (1 - abar)) * eps) / abar.sqrt()
    x0 = x0.clamp(-1, 1) if clip else x0
    mean = posterior(x0, x_t, t, ac)
    var = (1 - abar_prev) / (1 - abar) * beta if variance == "posterior" and t > 0 else beta
    return mean + var.sqrt() * noise if (t > 0 or noise_at_0) else mean  # beta_0 at t = 0: noise in the result


def test_step_check_accepts_a_correct_step(capsys):
    assert check_step(reverse_step, SCHEDULER) is True
    assert capsys.readouterr().out.startswith("Correct!")


@pytest.mark.parametrize(
    "kwargs, hint, more",
    [
        ({"variance": "beta"}, "the noise your step adds at t = 10 has the wrong size", "fixed_large"),
        ({"clip": False}, "far outside [-1, 1]", "clips x0_pred"),
        ({"sqrt_in_x0": False}, "is x0_pred right?", "coefficient included"),
        ({"noise_at_0": True}, "at t = 0, the last step, your step adds noise", "finished image"),
    ],
)
def test_step_check_names_the_mistake_then_says_more(kwargs, hint, more, capsys):
    assert check_step(lambda *args: reverse_step(*args, **kwargs), SCHEDULER) is False
    assert hint in first_hint(capsys)
    show_hint()
    assert more in capsys.readouterr().out


def test_step_check_points_at_a_wrong_posterior_mean(capsys):
    def step_with_wrong_mean(eps, t, x_t, noise):
        return reverse_step(eps, t, x_t, noise) + 0.05 * x_t  # the mean is off, the noise is right
    assert check_step(step_with_wrong_mean, SCHEDULER) is False
    assert "the mean of your step" in first_hint(capsys)
    show_hint()
    assert "check_posterior_mean" in capsys.readouterr().out


# --- lessons 3-5 ----------------------------------------------------------------------------


def test_check_answer_compares_shapes_numbers_and_tensors(capsys):
    assert check_answer((2, 128, 16, 16), torch.Size([2, 128, 16, 16]), hint="h") is True
    assert capsys.readouterr().out.startswith("Correct!")
    assert check_answer([2, 128, 8, 8], (2, 128, 16, 16), hint="halve twice") is False
    assert "halve twice" in first_hint(capsys)
    assert check_answer(0.1 + 0.2, 0.3, hint="h") is True
    assert check_answer(torch.ones(3), (2, 3), hint="a shape, not a tensor") is False
    assert "a tensor of shape (3,)" in capsys.readouterr().out
    assert check_answer("abc", 3, hint=("a number", "count the levels")) is False
    show_hint()
    assert "count the levels" in capsys.readouterr().out


def mse_loss(model, scheduler, x0, t, noise):
    x_t = scheduler.add_noise(x0, noise, t)
    return F.mse_loss(model(x_t, t).sample, noise)


def test_training_loss_check_accepts_both_ways_of_calling_the_model(capsys):
    assert check_training_loss(mse_loss) is True
    tuple_style = lambda m, s, x0, t, n: F.mse_loss(m(s.add_noise(x0, n, t), t, return_dict=False)[0], n)  # noqa: E731
    assert check_training_loss(tuple_style) is True
    assert check_training_loss(mse_loss, scheduler=DDPMScheduler()) is True  # linear schedule


@pytest.mark.parametrize(
    "wrong, hint",
    [
        (lambda m, s, x0, t, n: F.mse_loss(m(s.add_noise(x0, n, t), t).sample, x0), "wrong target"),
        (lambda m, s, x0, t, n: F.mse_loss(m(s.add_noise(x0, n, t), t).sample, s.add_noise(x0, n, t)), "wrong target"),
        (lambda m, s, x0, t, n: F.mse_loss(m(x0, t).sample, n), "the model is given the wrong image"),
        (lambda m, s, x0, t, n: F.mse_loss(m(s.add_noise(x0, n, t - 1), t).sample, n), "one timestep off"),
        (lambda m, s, x0, t, n: F.mse_loss(m(s.add_noise(x0, n, t), t - 1).sample, n), "a timestep one off"),
        (lambda m, s, x0, t, n: F.mse_loss(m(s.add_noise(x0, n, t), t).sample, n, reduction="sum"), "times too large"),
        (lambda m, s, x0, t, n: F.l1_loss(m(s.add_noise(x0, n, t), t).sample, n), "in another way than eq. 14"),
        (lambda m, s, x0, t, n: mse_loss(m, s, x0, t, n).item(), "without .item()"),
        (lambda m, s, x0, t, n: mse_loss(m, s, x0, t, n).detach(), "no gradient"),
        (lambda m, s, x0, t, n: mse_loss(m, s, x0, t, torch.randn_like(n)), "draws random numbers"),
        (lambda m, s, x0, t, n: F.mse_loss(m(s.add_noise(x0, n, t), t), n), ".sample"),
        (lambda m, s, x0, t, n: ((m(s.add_noise(x0, n, t), t).sample - n) ** 2).mean(dim=(1, 2, 3)), "shape (6,)"),
    ],
)
def test_training_loss_check_names_the_classic_mistakes(wrong, hint, capsys):
    assert check_training_loss(wrong) is False
    assert hint in first_hint(capsys)


def test_training_loss_check_without_square_roots(capsys):
    def no_sqrt(model, scheduler, x0, t, noise):
        a = scheduler.alphas_cumprod[t].view(-1, 1, 1, 1)
        return F.mse_loss(model(a * x0 + (1 - a) * noise, t).sample, noise)
    assert check_training_loss(no_sqrt) is False
    assert "noisy images x_t are wrong" in first_hint(capsys)
    show_hint()
    assert "square roots" in capsys.readouterr().out


def test_training_loss_check_with_the_course_unet(capsys):
    model = tiny_unet().train()
    from ddpm_helpers._feedback import predict_noise  # our UNet returns a tensor or an object with .sample

    loss = lambda m, s, x0, t, n: F.mse_loss(predict_noise(m, s.add_noise(x0, n, t), t), n)  # noqa: E731
    assert check_training_loss(loss, model, SCHEDULER) is True
    assert model.training  # put back in training mode
    assert check_training_loss(lambda m, s, x0, t, n: loss(m, s, x0, t, n) * 2, model, SCHEDULER) is False


def ddim(eps, t, prev_t, x_t, ac, clip=True, wrap=False, prev_coef_t=False):
    abar = ac[t]
    abar_prev = ac[prev_t] if (prev_t >= 0 or wrap) else torch.tensor(1.0)
    x0 = (x_t - (1 - abar).sqrt() * eps) / abar.sqrt()
    x0 = x0.clamp(-1, 1) if clip else x0
    ap = abar if prev_coef_t else abar_prev
    return ap.sqrt() * x0 + (1 - ap).sqrt() * eps


def test_ddim_check(capsys):
    assert check_ddim_step(ddim) is True
    assert check_ddim_step(ddim, SCHEDULER) is True  # a DDPMScheduler's config works too
    assert check_ddim_step(lambda *a: ddim(*a, clip=False), DDIMScheduler(clip_sample=False), 20) is True
    capsys.readouterr()
    for wrong, hint in [
        (lambda *a: ddim(*a, prev_coef_t=True), "the step goes nowhere"),
        (lambda *a: ddim(*a, clip=False), "lies outside"),
        (lambda *a: ddim(*a, wrap=True), "(prev_t = -100) your x_prev is still noisy"),
        (lambda e, t, p, x, ac: ddim(e, t, p, x, ac) + 0.01 * torch.randn_like(x), "adds random noise"),
        (lambda e, t, p, x, ac: ddim(e, t, t - 1, x, ac), "far too short"),
    ]:
        assert check_ddim_step(wrong) is False
        assert hint in first_hint(capsys)


def test_ema_check_accepts_the_update_and_names_the_swap(capsys):
    from ddpm_helpers.training import EMA

    assert check_ema_update(lambda ema, p, d: d * ema + (1 - d) * p) is True
    assert check_ema_update(lambda ema, p, d: (1 - d) * ema + d * p) is False
    assert "moves too fast" in capsys.readouterr().out
    # the package's EMA (without warm-up) does the same update
    model = torch.nn.Linear(2, 1)
    ema = EMA(model, decay=0.9, warmup=False)
    old = {k: v.clone() for k, v in ema.shadow.items()}
    with torch.no_grad():
        model.weight.add_(1.0)
    ema.update(model)
    torch.testing.assert_close(ema.shadow["weight"], 0.9 * old["weight"] + 0.1 * model.weight.detach())


def sampling_loop(model, scheduler, shape, generator, carry="prev_sample", sample_attr=True):
    x = torch.randn(shape, generator=generator)
    for t in scheduler.timesteps:
        with torch.no_grad():
            out = model(x, t)
            eps = out.sample if sample_attr and hasattr(out, "sample") else out
            x = getattr(scheduler.step(eps, t, x, generator=generator), carry)
    return x


def test_sampling_loop_check(capsys):
    model = tiny_unet().eval()
    assert check_sampling_loop(sampling_loop, model, SCHEDULER, num_inference_steps=5) is True
    capsys.readouterr()
    assert check_sampling_loop(lambda *a: sampling_loop(*a, carry="pred_original_sample"), model, SCHEDULER, 5) is False
    assert "wrong tensor" in first_hint(capsys)
    show_hint()
    assert "pred_original_sample" in capsys.readouterr().out


# --- the notebooks: exercises stored unsolved, their folded solutions right --------------------

LESSONS = {"01_forward_noising.ipynb": {}, "02_noise_schedules.ipynb": {"noise_scheduler": SCHEDULER}}
CHECK_CALL = re.compile(r"^(check_\w+)\((my_\w+)((?:, [^)]*)?)\);?\s*$", re.M)


@pytest.mark.parametrize("notebook", LESSONS)
def test_exercises_are_stored_unsolved_with_a_gentle_first_hint(notebook):
    found = list(exercise_cells(ROOT / "notebooks" / notebook, CHECK_CALL))
    assert len(found) >= 2
    for source, text, _, solution in found:
        assert text.startswith("Not yet. Hint 1 of "), f"stored output of an exercise: {text!r}"
        assert "Correct" not in text
        assert solution is not None, f"no folded solution after:\n{source}"
        assert "<details>" not in source


@pytest.mark.parametrize("notebook", LESSONS)
def test_the_folded_solutions_pass_their_checks(notebook, capsys):
    namespace = {"torch": torch, **LESSONS[notebook]}
    for source, _, _, solution in exercise_cells(ROOT / "notebooks" / notebook, CHECK_CALL):
        check_name, function_name, extra = CHECK_CALL.search(source).groups()
        exec(solution, namespace)  # noqa: S102 - our own notebook's solution
        check = getattr(exercises, check_name)
        args = eval(f"[{extra.lstrip(', ')}]", namespace) if extra else []  # noqa: S307
        assert check(namespace[function_name], *args) is True, capsys.readouterr().out


def test_sampling_loop_check_with_a_model_that_returns_an_output_object(capsys):
    """Models called like diffusers' return an object with .sample; a loop that forgets it gets a hint."""
    from ddpm_helpers._reverse_exercises import TinyNoiseModel

    model = TinyNoiseModel()
    assert check_sampling_loop(sampling_loop, model, SCHEDULER, num_inference_steps=3) is True
    capsys.readouterr()
    assert check_sampling_loop(lambda *a: sampling_loop(*a, sample_attr=False), model, SCHEDULER, 3) is False
    assert "model(x_t, t).sample" in first_hint(capsys)


def test_using_the_steps_output_object_as_a_tensor_gets_a_hint(capsys):
    def loop(model, scheduler, shape, generator):
        x = torch.randn(shape, generator=generator)
        for t in scheduler.timesteps:
            x = scheduler.step(model(x, t).sample, t, x, generator=generator)  # forgot .prev_sample
        return x
    from ddpm_helpers._reverse_exercises import TinyNoiseModel

    assert check_sampling_loop(loop, TinyNoiseModel(), SCHEDULER, 3) is False
    assert ".prev_sample" in first_hint(capsys)
