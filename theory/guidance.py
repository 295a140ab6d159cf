r"""Guided scores and denoisers, symbolically.

* classifier guidance (CG):      :math:`s^{CG}_w = s + w\,g_y`,
* classifier-free guidance (CFG): :math:`s^{CFG}_w = w\,s_y + (1-w)\,s`,

where :math:`s=\nabla\log p_t`, :math:`s_y=\nabla\log p_t(\cdot\mid y)` and :math:`g_y=\nabla\log p_t(y\mid\cdot)`.
Bayes' rule gives :math:`s_y = s + g_y` for exact scores, and then :math:`s^{CG}_w = s^{CFG}_w` for every ``w``.
The guided denoiser follows from Tweedie's map :math:`D = (x + \sigma_t^2 s)/\alpha_t`, which is affine in
``s``: :math:`D_w = w D_y + (1-w) D`.
"""
from __future__ import annotations

import sympy as sp

from theory._validate import as_expr_or_matrix, as_scalar, check_int
from theory.targets import SymbolicMixture

__all__ = ["classifier_guided_score", "cfg_score", "guided_denoiser", "cg_minus_cfg", "w"]

#: The guidance weight.
w = sp.Symbol("w", nonnegative=True)


def classifier_guided_score(score, guidance, weight=w):
    r""":math:`s + w\,g`."""
    score, guidance = as_expr_or_matrix(score, "score"), as_expr_or_matrix(guidance, "guidance")
    weight = as_scalar(weight, "weight")
    return score + weight * guidance


def cfg_score(cond_score, score, weight=w):
    r""":math:`w\,s_y + (1-w)\,s`."""
    cond_score, score = as_expr_or_matrix(cond_score, "cond_score"), as_expr_or_matrix(score, "score")
    weight = as_scalar(weight, "weight")
    return weight * cond_score + (1 - weight) * score


def guided_denoiser(cond_denoiser, denoiser, weight=w):
    r""":math:`D_w = w D_y + (1-w) D = w D_y - (w-1) D` (Tweedie's map is affine in the score)."""
    cond_denoiser, denoiser = as_expr_or_matrix(cond_denoiser, "cond_denoiser"), as_expr_or_matrix(denoiser, "denoiser")
    weight = as_scalar(weight, "weight")
    return weight * cond_denoiser + (1 - weight) * denoiser


def cg_minus_cfg(mix: SymbolicMixture, y: int, weight=w) -> sp.Matrix:
    r""":math:`s^{CG}_w - s^{CFG}_w = w\,(g_y - s_y + s)` for the exact scores of ``mix``; identically zero."""
    if not isinstance(mix, SymbolicMixture):
        raise TypeError(f"mix: must be a SymbolicMixture, got {type(mix).__name__}")
    y = check_int(y, "y")
    if y not in mix.labels:
        raise ValueError(f"y: not a label of mix (labels {sorted(set(mix.labels))}), got {y}")
    weight = as_scalar(weight, "weight")
    s = mix.score()
    return classifier_guided_score(s, mix.guidance_vector(y), weight) - cfg_score(mix.score(y), s, weight)
