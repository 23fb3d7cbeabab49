"""Lesson 7's check: the classifier-free guidance combination (Ho & Salimans 2022, eq. 6).

    eps_hat = eps_uncond + w * (eps_cond - eps_uncond)

with diffusers' w (``guidance_scale``): w = 0 is the unconditional prediction, w = 1 the
conditional one. The usual mistakes each get their own hint: w on the wrong term, the two
predictions swapped, the unconditional term left out, the paper's own w (one less than ours).
"""

import torch

from ._feedback import call, diagnose, exercise_check, expect_tensor, name, NotYet

EQ6 = "eps_hat = eps_uncond + w * (eps_cond - eps_uncond): start from the unconditional guess, then move w times " \
      "the difference the label makes (Ho & Salimans 2022, eq. 6, with diffusers' w)"
SCALES = (3.0, 0.0, 1.0, 7.5)  # w = 3 first: at w = 1 several mistakes happen to be right


def _guidance_mistakes(u, c, w):
    direction = "The difference eps_cond - eps_uncond is the direction the label points in; w scales it."
    return [
        (w * u + (c - u), ("w multiplies the wrong term: it should scale the difference the label makes, "
                           "not the unconditional prediction.", direction, EQ6)),
        (c + w * (u - c), ("the two predictions are swapped: at w = 0 your result is the conditional guess, "
                           "but w = 0 must give the unconditional one.", "Start from eps_uncond and move "
                           "towards eps_cond.", EQ6)),
        (w * (c - u), ("your result has no starting point: the unconditional term is missing, so at w = 0 it "
                       "is 0 instead of eps_uncond.", "The difference only says where to go; add it to eps_uncond.",
                       EQ6)),
        (c + w * (c - u), ("close: that is the paper's way of writing it, where w counts from 0 at the "
                           "conditional model. The course (and diffusers' guidance_scale) counts from 0 at the "
                           "unconditional model: w = 1 must give eps_cond exactly.",
                           "Ho & Salimans' (1 + w) eps_cond - w eps_uncond is ours with w + 1.", EQ6)),
        (u + w * c, ("you add w * eps_cond to eps_uncond; guidance adds w times the *difference* "
                     "eps_cond - eps_uncond.", direction, EQ6)),
        (w * c, ("your result is eps_cond scaled by w: at w = 0 it is 0, but it must be the unconditional "
                 "prediction.", "Guidance starts from eps_uncond and adds w times the difference.", EQ6)),
        (c, ("your result is eps_cond whatever w is: the guidance scale is not used.", direction, EQ6)),
        (u, ("your result is eps_uncond whatever w is: the label's part is missing.", direction, EQ6)),
        ((1 - w) * c + w * u, ("the two predictions are swapped: at w = 0 your result is the conditional "
                               "guess.", "Start from eps_uncond and move towards eps_cond.", EQ6)),
    ]


@exercise_check("eps_uncond", "eps_cond", "w")
def check_guidance(fn, seed=0):
    """Check ``fn(eps_uncond, eps_cond, w) -> eps_hat``, the classifier-free guidance combination

        eps_hat = eps_uncond + w * (eps_cond - eps_uncond)      (Ho & Salimans 2022, eq. 6, diffusers' w)

    fn receives two float32 (4, 1, 8, 8) tensors, the model's noise predictions without and with the
    label, and w, a python float (tried: 3.0, 0.0, 1.0, 7.5). It returns eps_hat, float32 (4, 1, 8, 8).
    """
    g = torch.Generator().manual_seed(seed)
    eps_uncond, eps_cond = torch.randn((4, 1, 8, 8), generator=g), torch.randn((4, 1, 8, 8), generator=g)
    for w in SCALES:
        result = call(fn, eps_uncond, eps_cond, w)
        if result is Ellipsis:
            raise NotYet("your function still returns the placeholder `...`. Write eps_hat from the two "
                         "predictions and w: which of them must it equal at w = 0, and which at w = 1?",
                         "At w = 0 guidance ignores the label (eps_uncond); at w = 1 it is the plain conditional "
                         "model (eps_cond); in between and beyond it moves along the line through both.", EQ6)
        result = expect_tensor(result, eps_uncond, "eps_hat")
        expected = eps_uncond + w * (eps_cond - eps_uncond)
        if not torch.allclose(result, expected, rtol=1e-5, atol=1e-5):
            if w == 0.0 and torch.allclose(result, eps_cond, atol=1e-5):
                raise NotYet("at w = 0 your result is the conditional prediction; w = 0 must give eps_uncond "
                             "(no guidance: the label is ignored).", EQ6)
            diagnose(result, expected, _guidance_mistakes(eps_uncond, eps_cond, w), (
                f"at w = {w:g} your eps_hat differs from the guidance combination by up to {{worst:.3g}}.",
                "Check it at w = 0 (it must be eps_uncond) and w = 1 (eps_cond) first.", EQ6))
    return (f"{name(fn)} is classifier-free guidance: eps_uncond at w = 0, eps_cond at w = 1, and beyond it "
            "for w > 1 (tried w = " + ", ".join(f"{w:g}" for w in SCALES) + ").")
