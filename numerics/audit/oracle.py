r"""The package's derived updates on a scheduler's own grid, and their float64 rounding bounds.

A step from OU time :math:`t` to :math:`s` uses the generated coefficients of
:mod:`numerics.generated.integrator_coeffs` (derived by :mod:`theory.integrators`, proofs_notes/integrators.md):

* ``ddim``  :math:`x_s = c_x x_t + c_D D(x_t)`  (§1; = DPM-Solver-1 (§3) = diffusers' Euler step in VE coordinates,
  which freezes :math:`\hat\varepsilon` over the step: :math:`x/\alpha` advances by :math:`(\sigma_s/\alpha_s-\sigma_t/\alpha_t)\hat\varepsilon`);
* ``dpm2``  :math:`x_s = c_x x_t + c_D D(x_t) + c_p D(x_{t'})`  (§4, DPM-Solver++(2M); order-1 steps are ``ddim``);
* ``ddpm``  :math:`x_s = c_x x_t + c_D D(x_t) + c_z z`  (§2).

Rounding bound of one step (per element, unit roundoff :math:`u = 2^{-53}`):

.. math::  |x^{\rm lib}_s - x^{\rm pkg}_s| \le K(t)\,u\,S + K_{32}\,u_{32}\,S_{\rm coef},

with :math:`S = |c_x x_t| + |c_D D| + |c_p D_p| + |c_z z| + (\alpha_s/\alpha_t)(|x_t| + \sigma_t|\hat\varepsilon|)
+ \sigma_s|\hat\varepsilon| + \alpha_s(|x_t| + |\hat v|)` (every term either evaluation forms: the package's
coefficient products, and diffusers' routes through :math:`\hat x_0 = (x - \sigma\hat\varepsilon)/\alpha` or
:math:`\alpha x - \sigma\hat v` and back), and

* :math:`K(t) = (40 + 4\max(t, 1)) + 16 + 10`: the generated coefficients' relative error
  (integrators.md §7), at most 16 roundings on diffusers' longest path per element (pow, sub, mul, div of the
  prediction conversion, the two products and the sum of the update, the VE<->VP scalings of the driver), and 10
  for the exact model output (denoiser 4, noise prediction 3, v 3);
* :math:`K_{32}(t, s) = 12 + 2\big(\tfrac{\bar\alpha_s}{1-\bar\alpha_s} + \tfrac{r}{1-r}\big)`, :math:`u_{32} = 2^{-24}`,
  :math:`r = \bar\alpha_t/\bar\alpha_s`, only when the scheduler forms its coefficients in float32
  (``tables="native"``): each of the four table coefficients (:math:`\sqrt{\bar\alpha_t}, \sqrt{1-\bar\alpha_t},
  \sqrt{\bar\alpha_s}, \sqrt{1-\bar\alpha_s}`) takes at most 3 float32 roundings (12), and the two float32
  subtractions :math:`1-\bar\alpha_s` and (DDPM) :math:`1 - \bar\alpha_t/\bar\alpha_s` amplify one rounding of
  their operand by their condition numbers :math:`\bar\alpha_s/(1-\bar\alpha_s)` and :math:`r/(1-r)` (a term is 0
  when :math:`\bar\alpha_s = 1`, where the subtraction is exact); :math:`S_{\rm coef} = S`.

Whole run: an error :math:`e_k` at step :math:`k` reaches the output through the later steps' affine gains.  With
:math:`\rho_j = |c_x + c_D g_j| + |c_p g_{j'}|` (:math:`g` the denoiser's gain) the majorant
:math:`E_{j+1} = \max(E_j, \rho_j E_j + \mathrm{tol}_j)` bounds :math:`\max(e_{j+1}, e_j)` (two-step recursion in
the max norm), and :math:`E_n` is the tolerance of the run's output.
"""
from __future__ import annotations

import math

import numpy as np

from numerics.audit.targets import GaussianTarget
from numerics.generated import integrator_coeffs as IC

__all__ = ["U64", "U32", "K32", "k32", "k_step", "step_coeffs", "step_prediction", "run_oracle",
           "run_tolerance"]

U64 = 2.0 ** -53
U32 = 2.0 ** -24
K32 = 12.0


def k_step(t: float) -> float:
    """:math:`K(t)` of the module docstring."""
    return (40.0 + 4.0 * max(t, 1.0)) + 16.0 + 10.0


def step_coeffs(kind: str, t: float, s: float, t_prev: float | None) -> tuple:
    """``(c_x, c_D, c_p, c_z)`` of one derived step ``t -> s`` (``c_p``: the previous denoiser, dpm2 only)."""
    if kind == "ddim" or (kind == "dpm2" and t_prev is None):
        cx, cd = IC.ddim_coeffs(t, s)
        return cx, cd, 0.0, 0.0
    if kind == "dpm2":
        cx, cd, cp = IC.dpm_solver_2_coeffs(t, s, t_prev)
        return cx, cd, cp, 0.0
    if kind == "ddpm":
        cx, cd, cz = IC.ddpm_coeffs(t, s)
        return cx, cd, 0.0, cz
    raise ValueError(f"kind: unknown derived update {kind!r}")


def step_prediction(kind: str, target: GaussianTarget, x: np.ndarray, t: float, s: float,
                    x_prev: np.ndarray | None = None, t_prev: float | None = None, z: np.ndarray | None = None,
                    float32_coeffs: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The derived update of ``x`` (VP, at ``t``) to ``s`` and its per-element rounding bound (module docstring)."""
    cx, cd, cp, cz = step_coeffs(kind, t, s, t_prev)
    D = target.denoiser(x, t)
    a_t, sig_t = math.exp(-t), math.sqrt(-math.expm1(-2.0 * t))
    a_s, sig_s = math.exp(-s), math.sqrt(-math.expm1(-2.0 * s))
    eps = (x - a_t * D) / sig_t
    v = a_t * eps - sig_t * D
    pred = cx * x + cd * D
    S = np.abs(cx * x) + np.abs(cd * D) + (a_s / a_t) * (np.abs(x) + sig_t * np.abs(eps)) + sig_s * np.abs(eps) \
        + a_s * (np.abs(x) + np.abs(v))
    if cp != 0.0:
        Dp = target.denoiser(x_prev, t_prev)
        pred = pred + cp * Dp
        S = S + np.abs(cp * Dp)
    if cz != 0.0 and z is not None:
        pred = pred + cz * z
        S = S + np.abs(cz * z)
    tol = k_step(t) * U64 * S + (k32(t, s) * U32 * S if float32_coeffs else 0.0)
    return pred, tol


def k32(t: float, s: float) -> float:
    """:math:`K_{32}(t, s)` of the module docstring (float32 coefficients)."""
    if s <= 0.0:
        return K32
    ab_s, r = math.exp(-2.0 * s), math.exp(-2.0 * (t - s))
    return K32 + 2.0 * (ab_s / -math.expm1(-2.0 * s) + r / -math.expm1(-2.0 * (t - s)))


def run_oracle(kind: str, target: GaussianTarget, grid, x0: np.ndarray, orders=None) -> np.ndarray:
    """The derived deterministic discretisation ``kind`` (ddim or dpm2) on ``grid`` (OU times, decreasing, last may
    be 0) from ``x0`` (VP); ``orders[k] == 1`` forces a DDIM step (dpm2's first-order steps)."""
    x, x_prev, t_prev = np.array(x0, dtype=np.float64), None, None
    for k in range(len(grid) - 1):
        t, s = float(grid[k]), float(grid[k + 1])
        use = "ddim" if (kind == "ddim" or (orders is not None and orders[k] == 1) or t_prev is None) else "dpm2"
        cx, cd, cp, _ = step_coeffs(use, t, s, t_prev if use == "dpm2" else None)
        new = cx * x + cd * target.denoiser(x, t)
        if use == "dpm2":
            new = new + cp * target.denoiser(x_prev, t_prev)
        x_prev, t_prev, x = x, t, new
    return x


def run_tolerance(kind: str, target: GaussianTarget, grid, x0: np.ndarray, orders=None,
                  float32_coeffs: bool = False) -> np.ndarray:
    """:math:`E_n` of the module docstring for the run of :func:`run_oracle` (per element)."""
    x, x_prev, t_prev = np.array(x0, dtype=np.float64), None, None
    E = np.zeros_like(x)
    for k in range(len(grid) - 1):
        t, s = float(grid[k]), float(grid[k + 1])
        use = "ddim" if (kind == "ddim" or (orders is not None and orders[k] == 1) or t_prev is None) else "dpm2"
        new, tol = step_prediction(use, target, x, t, s, x_prev, t_prev if use == "dpm2" else None,
                                   float32_coeffs=float32_coeffs)
        cx, cd, cp, _ = step_coeffs(use, t, s, t_prev if use == "dpm2" else None)
        rho = abs(cx + cd * target.gain(t)) + (abs(cp * target.gain(t_prev)) if use == "dpm2" else 0.0)
        E = np.maximum(E, rho * E + tol)
        x_prev, t_prev, x = x, t, new
    return E
