r"""The package's derived updates on a scheduler's own grid, and their float64 rounding bounds.

A step from OU time :math:`t` to :math:`s` uses the generated coefficients of
:mod:`numerics.generated.integrator_coeffs` (derived by :mod:`theory.integrators`, proofs_notes/integrators.md):

* ``ddim``  :math:`x_s = c_x x_t + c_D D(x_t)`  (§1; = DPM-Solver-1 (§3) = diffusers' Euler step in VE coordinates,
  which freezes :math:`\hat\varepsilon` over the step: :math:`x/\alpha` advances by :math:`(\sigma_s/\alpha_s-\sigma_t/\alpha_t)\hat\varepsilon`);
* ``dpm2``  :math:`x_s = c_x x_t + c_D D(x_t) + c_p D(x_{t'})`  (§4, DPM-Solver++(2M); order-1 steps are ``ddim``);
* ``ddpm``  :math:`x_s = c_x x_t + c_D D(x_t) + c_z z`  (§2);
* ``dpm3``  :math:`x_s = c_x x_t + \alpha_s(\psi_0 D_t + \psi_1\delta_1 + (2\psi_2 + h_p\psi_1)\delta_2)`
  (§4b, DPM-Solver++(3M), Newton divided differences of :math:`D` in :math:`\ell`; its rounding bound, with the
  extra roundings of the longer formula counted, is :func:`dpm3_prediction`'s);
* ``dpm3e``  :math:`x_s = (\alpha_s/\alpha_t)x_t - \sigma_s(\varphi_0\varepsilon_t + \varphi_1\delta_1
  + (2\varphi_2 + h_p\varphi_1)\delta_2)` (§4j, DPM-Solver-3M in the noise form, diffusers' ``algorithm_type=
  "dpmsolver"``: Newton divided differences of :math:`\varepsilon` in :math:`\ell`; order-1 and order-2 steps are
  ``dpm1e`` and ``dpm2e``; :func:`dpm3e_prediction`);
* ``dpm2s``, ``dpm2sh``  :math:`x_t = (\sigma_t/\sigma_{s_1})x_{s_1} + \alpha_t(\psi_0 D_{s_1} + w\,\delta)`
  (§4d, DPM-Solver++(2S) midpoint / heun: restarts from the state at :math:`s_1` with the slope through the model
  call at the intermediate level :math:`s_0`; :func:`dpm2s_prediction`);
* ``dpm3s``, ``dpm3sh``  :math:`x_t = (\sigma_t/\sigma_{s_2})x_{s_2} + \alpha_t(\psi_0 D_{s_2} + v_1\Delta_1 + v_0\Delta_0)`
  (§4i, DPM-Solver++(3S) midpoint / heun: restarts from the state at :math:`s_2` with the calls at the two
  intermediate levels :math:`s_1, s_0`, :math:`\Delta_j = D_{s_j} - D_{s_2}`; :func:`dpm3s_prediction`);
* ``heun``  :math:`x_s = c_x x_{t_p} + c_0 D_{t_p} + \tfrac{\alpha_s}2(e^h - 1)(D_p - D_{t_p})` (§4e, Heun's
  trapezoidal step of the PF-ODE in diffusers' VE variables: restarts from the state at :math:`t_p` with the model
  at the DDIM predictor :math:`x_p` at :math:`s`; :func:`heun_prediction`);
* ``lms``  :math:`x_s = \alpha_s(y_i + \sum_j c_{pj}(y_{i-j} - D_{i-j})/\sigma_{i-j})`, :math:`y = x/\alpha` (§4f,
  diffusers' linear multistep step: the exact Lagrange integrals on the last :math:`p` sigmas, plus quad's
  tolerance on diffusers' coefficients in the bound; :func:`lms_prediction`);
* ``deis``  :math:`x_s = (\alpha_s/\alpha_t)x_t - \sigma_s\sum_j W_{pj}\varepsilon_j` (§4g, diffusers' DEIS:
  the exact integrals over :math:`\rho = \sigma/\alpha` of the Lagrange basis in :math:`\log\rho` on the last
  :math:`p` calls, plus the cancellation of diffusers' antiderivative differences in the bound;
  :func:`deis_prediction`);
* ``unipc``  UniPC (bh2, §4h): a record is checked twice, the corrector UniC from the previous call's corrected
  state to the recorded corrected state (:func:`unipc_corrector_prediction`: the exact integral of the quadratic
  through the last three outputs at order 2, :math:`\alpha_t\psi_0(D_0 + D_t)/2` at order 1) and the predictor UniP
  from it (:func:`unipc_predictor_prediction`: ``ddim``, ``dpm2``), the model outputs at the predicted states.

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

from numerics.audit.targets import GaussianTarget, MixtureTarget
from numerics.generated import integrator_coeffs as IC

__all__ = ["U64", "U32", "K32", "k32", "k_step", "step_coeffs", "step_prediction", "run_oracle", "dpm3_coeffs",
           "dpm3_prediction", "divided_differences", "step_kind", "EPS_KINDS", "K2E_EXTRA", "K32_2E_EXTRA",
           "eps_coeffs", "eps_prediction", "K3_EXTRA", "K32_3_EXTRA",
           "SINGLESTEP_KINDS", "K2S_EXTRA", "K32_2S_EXTRA", "dpm2s_coeffs", "dpm2s_prediction",
           "SINGLESTEP3_KINDS", "K3S_EXTRA", "K32_3S_EXTRA", "dpm3s_coeffs", "dpm3s_prediction", "bound_counts", "rounding_tolerance",
           "DPM3E_KIND", "K3E_EXTRA", "K32_3E_EXTRA", "dpm3e_coeffs", "dpm3e_prediction",
           "HEUN_KIND", "KH_EXTRA", "K32H_EXTRA", "heun_coeffs", "heun_prediction",
           "LMS_KIND", "KL_EXTRA", "K32L_EXTRA", "QUAD_EPSREL", "QUAD_EPSABS", "KL_COEF", "lms_coeffs",
           "lms_coeff_allowance", "lms_prediction",
           "DEIS_KIND", "KD_EXTRA", "K32D_EXTRA", "KD_COEF", "KD_DIFFUSERS_OPS", "deis_coeffs", "deis_coeff_allowance",
           "deis_prediction", "UNIPC_KIND", "KU_EXTRA", "K32U_EXTRA", "unipc_corrector_coeffs",
           "unipc_corrector_prediction", "unipc_predictor_prediction",
           "run_tolerance", "euler_ve_step", "gamma", "cfg_eps", "guidance_bounds", "guided_run", "ddpm_guided_law"]

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


def dpm3_coeffs(t: float, s: float, t_prev: float, t_prev2: float) -> dict:
    r"""DPM-Solver++(3M) step ``t -> s`` after calls at ``t_prev2 > t_prev > t`` (proofs_notes/integrators.md §4b):
    ``cx`` (:math:`\sigma_s/\sigma_t`), ``c`` = :math:`\alpha_s(\psi_0, \psi_1, 2\psi_2 + h_p\psi_1)` (weights of
    :math:`D_t, \delta_1, \delta_2`), the half log-SNR steps ``h, h0, h1`` (:math:`\ell_s - \ell_t`,
    :math:`\ell_t - \ell_{t_p}`, :math:`\ell_{t_p} - \ell_{t_{p2}}`), and ``w``: the weights of
    :math:`D_t, D_{t_p}, D_{t_{p2}}` once the divided differences are expanded (for the propagation gains)."""
    a_s = math.exp(-s)
    h, h0, h1 = (IC.half_logsnr_step(u, v)[0] for u, v in ((t, s), (t_prev, t), (t_prev2, t_prev)))
    c = tuple(a_s * w for w in IC.dpm_solver_3_weights(h, h0))
    e2 = c[2] / (h0 + h1)
    w = (c[0] + c[1] / h0 + e2 / h0, -c[1] / h0 - e2 / h0 - e2 / h1, e2 / h1)
    return {"cx": IC.ddim_coeffs(t, s)[0], "c": c, "h": h, "h0": h0, "h1": h1, "w": w}


def divided_differences(m0: np.ndarray, m1: np.ndarray, m2: np.ndarray, h0: float, h1: float) -> tuple:
    r"""Newton divided differences of the denoiser in :math:`\ell` at :math:`\ell_t, \ell_t - h_0, \ell_t - h_0 - h_1`:
    ``(delta_1, delta_1b, delta_2)``, :math:`\delta_1 = (m_0 - m_1)/h_0`, :math:`\delta_{1b} = (m_1 - m_2)/h_1`,
    :math:`\delta_2 = (\delta_1 - \delta_{1b})/(h_0 + h_1)`."""
    d1, d1b = (m0 - m1) / h0, (m1 - m2) / h1
    return d1, d1b, (d1 - d1b) / (h0 + h1)


#: extra roundings of the third-order path per element: the divided differences (two subtractions and two
#: divisions, their difference and the division by h0 + h1: 6; diffusers: two more products of its D1, D2) and
#: the two extra products and sums of the update (4), plus 4 for the two further conversions of history values
K3_EXTRA = 16.0
#: extra float32 roundings of the third-order coefficients as shipped: the four more table coefficients
#: (sqrt(abar), sqrt(1 - abar) at t_prev and t_prev2, and their logs) at 3 roundings each
K32_3_EXTRA = 12.0


def _conv_scale(x: np.ndarray, D: np.ndarray, t: float) -> np.ndarray:
    r"""Magnitudes on diffusers' routes to the data prediction at ``t``: :math:`(|x| + \sigma|\hat\varepsilon|)/\alpha`
    (epsilon), :math:`\alpha|x| + \sigma|\hat v|` (v), :math:`|D|` (sample)."""
    a, sig = math.exp(-t), math.sqrt(-math.expm1(-2.0 * t))
    eps = (x - a * D) / sig
    return (np.abs(x) + sig * np.abs(eps)) / a + a * np.abs(x) + sig * np.abs(a * eps - sig * D) + np.abs(D)


def _lambda_cond(*ts: float) -> float:
    r""":math:`\Lambda = \max_i(|\log\alpha_{t_i}| + |\log\sigma_{t_i}|) + 10` over the nodes of a step: the absolute
    error of a computed :math:`\ell = \log\alpha - \log\sigma` is at most :math:`\Lambda u` (two logs, their
    difference, and the roundings of :math:`\alpha, \sigma` from the tables)."""
    return max(t + abs(0.5 * math.log(-math.expm1(-2.0 * t))) for t in ts) + 10.0


def _newton_rounding(c1: float, c2: float, d1: np.ndarray, d1b: np.ndarray, d2: np.ndarray, h0: float,
                     h1: float) -> np.ndarray:
    r"""The magnitudes :math:`T` at which the third-order multistep steps round their divided differences (either
    side: the package's :math:`\delta_1, \delta_{1b}, \delta_2` of :func:`divided_differences`, diffusers'
    :math:`D_1 = h(\delta_1 + h_0\delta_2)`, :math:`D_2 = h^2\delta_2` through :math:`r_0 = h_0/h`,
    :math:`r_1 = h_1/h`), each intermediate weighted by the coefficient it reaches (:math:`c_1, c_2`: the weights of
    :math:`\delta_1, \delta_2`, data or noise form):
    :math:`T = c_1(|\delta_1| + |\delta_{1b}| + 2h_0|\delta_2| + |\delta_1 + h_0\delta_2|)
    + c_2((|\delta_1| + |\delta_{1b}|)/(h_0 + h_1) + |\delta_2|)`."""
    return c1 * (np.abs(d1) + np.abs(d1b) + 2.0 * h0 * np.abs(d2) + np.abs(d1 + h0 * d2)) \
        + c2 * ((np.abs(d1) + np.abs(d1b)) / (h0 + h1) + np.abs(d2))


def dpm3_prediction(target: GaussianTarget, x: np.ndarray, t: float, s: float, x_prev: np.ndarray, t_prev: float,
                    x_prev2: np.ndarray, t_prev2: float, float32_coeffs: bool = False) -> tuple[np.ndarray, np.ndarray]:
    r"""The derived DPM-Solver++(3M) update of ``x`` (VP, at ``t``) to ``s`` from the denoisers at ``x, x_prev,
    x_prev2`` and its per-element rounding bound:

    .. math::  \mathrm{tol} = (K(t) + K_3)\,u\,S_3 + [K_{32}(t, s) + K_{32,3}]\,u_{32}\,S_3,

    :math:`K_3` = :data:`K3_EXTRA`, :math:`K_{32,3}` = :data:`K32_3_EXTRA` (the second term with float32
    coefficients only), and :math:`S_3` the module docstring's :math:`S` for :math:`(c_x, c_0 = \alpha_s\psi_0)` plus

    * the history's conversions, :math:`|w_1|\,C(x_p) + |w_2|\,C(x_{p2})` (:func:`_conv_scale`, expanded weights);
    * the divided differences as either side forms them (diffusers' :math:`D_1 = h(\delta_1 + h_0\delta_2)`,
      :math:`D_2 = h^2\delta_2` through :math:`r_0 = h_0/h`, :math:`r_1 = h_1/h`): each rounding is relative to an
      intermediate, weighted by the coefficient it reaches,
      :math:`T = c_1(|\delta_1| + |\delta_{1b}| + 2h_0|\delta_2| + |\delta_1 + h_0\delta_2|)
      + c_2((|\delta_1| + |\delta_{1b}|)/(h_0 + h_1) + |\delta_2|)`;
    * the phi functions formed with :math:`e^{-h} - 1`: absolute errors :math:`2u`, :math:`(3/h + 2)u`,
      :math:`(4/h^2 + 2)u` of :math:`\psi_0`, :math:`\psi_1/h`, :math:`\psi_2/h^2`-type factors times
      :math:`|D_t|`, :math:`|D_1|`, :math:`|D_2|`: :math:`\alpha_s(2|D_t| + (3 + 2h)|\delta_1 + h_0\delta_2| + (4 + 2h^2)|\delta_2|)`;
    * the log-SNR steps: :math:`\ell` carries :math:`\Lambda u` (:func:`_lambda_cond`), so :math:`h, h_0, h_1` and
      the ratios carry relative :math:`2\Lambda u/h_{\min}`; every coefficient is homogeneous of degree at most 2
      in these relative errors: :math:`(2\Lambda/h_{\min})(|c_0 D_t| + 4T)` (with :math:`u_{32}` in place of
      :math:`u` this also covers float32 logs, inside the second term).
    """
    k = dpm3_coeffs(t, s, t_prev, t_prev2)
    c0, c1, c2 = k["c"]
    h, h0, h1 = k["h"], k["h0"], k["h1"]
    m0, m1, m2 = (target.denoiser(v, u) for v, u in ((x, t), (x_prev, t_prev), (x_prev2, t_prev2)))
    d1, d1b, d2 = divided_differences(m0, m1, m2, h0, h1)
    pred = k["cx"] * x + c0 * m0 + c1 * d1 + c2 * d2
    a_s = math.exp(-s)
    T = _newton_rounding(c1, c2, d1, d1b, d2, h0, h1)
    S = (_arith_scale(x, m0, t, s, k["cx"], c0) + np.abs(c1 * d1) + np.abs(c2 * d2)
         + abs(k["w"][1]) * _conv_scale(x_prev, m1, t_prev) + abs(k["w"][2]) * _conv_scale(x_prev2, m2, t_prev2)
         + T + a_s * (2.0 * np.abs(m0) + (3.0 + 2.0 * h) * np.abs(d1 + h0 * d2) + (4.0 + 2.0 * h * h) * np.abs(d2))
         + (2.0 * _lambda_cond(t, s, t_prev, t_prev2) / min(h, h0, h1)) * (np.abs(c0 * m0) + 4.0 * T))
    return pred, rounding_tolerance("dpm3", S, t, s, float32_coeffs=float32_coeffs)


#: the noise-form (diffusers' ``algorithm_type="dpmsolver"``) kinds: DPM-Solver-1 and DPM-Solver-2M midpoint / heun
EPS_KINDS = ("dpm1e", "dpm2e", "dpm2eh")
#: extra float64 roundings of the noise-form second-order path per element: the difference of the two noise
#: predictions, the ratio r0 = h0/h, its reciprocal and the product (4), the extra product and sum of the update
#: (2), and the previous call's conversion to a noise prediction (2)
K2E_EXTRA = 8.0
#: extra float32 roundings of its coefficients as shipped: alpha, sigma and their logs at the previous level
#: (the two table coefficients at 3 roundings each)
K32_2E_EXTRA = 6.0


def eps_coeffs(kind: str, t: float, s: float, t_prev: float | None = None) -> dict:
    r"""The noise-form step ``t -> s`` (proofs_notes/integrators.md §4c) as
    :math:`x_s = c_x x_t + c_e\varepsilon_t + c_p\varepsilon_p`: ``cx`` (:math:`\alpha_s/\alpha_t`), ``w0``
    (:math:`\sigma_s\varphi_0(h)`), ``w1`` (:math:`\sigma_s w(h)/h_p`, the weight of :math:`\varepsilon_t -
    \varepsilon_p`: :math:`w = \tfrac h2\varphi_0` for ``dpm2e``, :math:`\varphi_1` for ``dpm2eh``, 0 for ``dpm1e`` or
    without ``t_prev``), ``ce = -(w0 + w1)``, ``cp = w1``, and the half log-SNR steps ``h``, ``hp``."""
    h = IC.half_logsnr_step(t, s)[0]
    sig_s = math.sqrt(-math.expm1(-2.0 * s))
    p0, pm, ph = IC.dpm_solver_2_eps_weights(h)
    hp, w1 = math.inf, 0.0
    if kind != "dpm1e" and t_prev is not None:
        hp = IC.half_logsnr_step(t_prev, t)[0]
        w1 = sig_s * {"dpm2e": pm, "dpm2eh": ph}[kind] / hp
    w0 = sig_s * p0
    return {"cx": IC.dpm_solver_1_coeffs(t, s)[0], "w0": w0, "w1": w1, "ce": -(w0 + w1), "cp": w1, "h": h, "hp": hp}


def _eps_conv_scale(x: np.ndarray, D: np.ndarray, t: float) -> np.ndarray:
    r"""Magnitudes on diffusers' routes to the noise prediction at ``t``: :math:`|\hat\varepsilon|` (epsilon),
    :math:`\alpha|\hat v| + \sigma|x|` (v), :math:`(|x| + \alpha|D|)/\sigma` (sample)."""
    a, sig = math.exp(-t), math.sqrt(-math.expm1(-2.0 * t))
    eps = (x - a * D) / sig
    return np.abs(eps) + a * np.abs(a * eps - sig * D) + sig * np.abs(x) + (np.abs(x) + a * np.abs(D)) / sig


def eps_prediction(kind: str, target: GaussianTarget, x: np.ndarray, t: float, s: float,
                   x_prev: np.ndarray | None = None, t_prev: float | None = None,
                   float32_coeffs: bool = False) -> tuple[np.ndarray, np.ndarray]:
    r"""The derived noise-form update ``kind`` (:data:`EPS_KINDS`) of ``x`` (VP, at ``t``) to ``s``, from the noise
    predictions at ``x`` and (second order) ``x_prev``, and its per-element rounding bound

    .. math::  \mathrm{tol} = (K(t) + K_{2e})\,u\,S_e + [K_{32}(t, s) + K_{32,2e}]\,u_{32}\,S_e,

    :math:`K_{2e}` = :data:`K2E_EXTRA`, :math:`K_{32,2e}` = :data:`K32_2E_EXTRA` (the second term with float32
    coefficients only), :math:`S_e` the module docstring's :math:`S` for :math:`(c_x, 0)` plus

    * the terms :math:`w_0|\varepsilon_t| + w_1|\varepsilon_t - \varepsilon_p|` and the conversions to noise
      predictions weighted by the coefficients they reach, :math:`(w_0 + w_1)C_e(x_t) + w_1 C_e(x_p)`
      (:func:`_eps_conv_scale`), and :math:`w_1(|\varepsilon_t| + |\varepsilon_p|)` for diffusers' difference
      :math:`(\varepsilon_t - \varepsilon_p)/r_0`;
    * the phi functions formed as ``exp(h) - 1``: absolute error :math:`2e^h u` of :math:`\varphi_0`, and of the
      heun weight :math:`((e^h - 1)/h - 1)\,h` at most :math:`(2e^h + 2h)u` (the midpoint weight's
      :math:`h e^h u`): :math:`\sigma_s(2e^h|\varepsilon_t| + (2e^h + 2h)|\varepsilon_t - \varepsilon_p|/h_p)`;
    * the log-SNR steps, absolute :math:`2\Lambda u` (:func:`_lambda_cond`): :math:`\sigma_s\varphi_0` moves by
      :math:`\sigma_s e^h\,2\Lambda u`, and :math:`w/h_p` by the relative :math:`2\Lambda u(|d\log w/dh| + 1/h_p)
      \le 2\Lambda u(3/h_{\min} + 1)` (:math:`|d\log w/dh| \le 2/h + 1` for both weights):
      :math:`2\Lambda(\sigma_s e^h|\varepsilon_t| + (3/h_{\min} + 1)\,w_1|\varepsilon_t - \varepsilon_p|)`.
    """
    k = eps_coeffs(kind, t, s, t_prev)
    D0 = target.denoiser(x, t)
    e0 = target.model_output(x, t, "epsilon")
    pred = k["cx"] * x + k["ce"] * e0
    sig_s, eh = math.sqrt(-math.expm1(-2.0 * s)), math.exp(k["h"])
    second = k["w1"] != 0.0
    nodes = (t, s, t_prev) if second else (t, s)
    diff = 0.0 * e0
    S = _arith_scale(x, D0, t, s, k["cx"], 0.0) + k["w0"] * (np.abs(e0) + _eps_conv_scale(x, D0, t))
    if second:
        Dp = target.denoiser(x_prev, t_prev)
        ep = target.model_output(x_prev, t_prev, "epsilon")
        pred = pred + k["cp"] * ep
        diff = np.abs(e0 - ep)
        S = S + k["w1"] * (diff + _eps_conv_scale(x, D0, t) + _eps_conv_scale(x_prev, Dp, t_prev)
                           + np.abs(e0) + np.abs(ep))
    h_min = min(k["h"], k["hp"])
    S = S + sig_s * (2.0 * eh * np.abs(e0) + (2.0 * eh + 2.0 * k["h"]) * diff / k["hp"]) \
        + 2.0 * _lambda_cond(*nodes) * (sig_s * eh * np.abs(e0) + (3.0 / h_min + 1.0) * k["w1"] * diff)
    # a first step of a second-order kind (no ``t_prev``) is DPM-Solver-1 and has its counts
    return pred, rounding_tolerance(kind if second else "dpm1e", S, t, s, float32_coeffs=float32_coeffs)


#: the noise-form third-order kind (diffusers' DPMSolverMultistepScheduler, ``algorithm_type="dpmsolver"``,
#: ``solver_order=3``): DPM-Solver-3M; its order-1 and order-2 steps are ``dpm1e`` and ``dpm2e`` (the default
#: ``solver_type="midpoint"``)
DPM3E_KIND = "dpm3e"
#: extra float64 roundings of the noise-form third-order path per element, beyond K(t)'s one conversion and update
#: (each at most u times a term of S_3e, so their number times u S_3e bounds their sum):
#: diffusers: D1_0 = (1/r0)(m0 - m1) (the difference, r0 = h0/h, its reciprocal, the product: 4), D1_1 likewise
#: (4), D1_0 - D1_1 (1), D1 = D1_0 + (r0/(r0 + r1))(D1_0 - D1_1) (r0 + r1, the quotient, the product, the sum: 4),
#: D2 = (1/(r0 + r1))(D1_0 - D1_1) (r0 + r1, its reciprocal, the product: 3), the two extra terms of the update
#: (sigma_t times its phi factor, the product, the sum: 3 each: 6): 22;
#: the package: delta_1, delta_1b (a difference and a quotient each: 4), delta_2 (the difference, h0 + h1, the
#: quotient: 3), the two extra terms (sigma_s times the weight, the product, the sum: 3 each: 6): 13;
#: the two earlier calls: the model output fed to diffusers (at most 4), diffusers' conversion to a noise prediction
#: (at most 4) and the package's exact noise prediction (3): 11 each, 22;
#: 22 + 13 + 22 = 57
K3E_EXTRA = 57.0
#: extra float32 roundings of its coefficients as shipped: alpha and sigma at the two earlier levels and their logs
#: (the two table coefficients at 3 roundings each, per level: 12), and diffusers' float32 scalars of the order-3
#: path: r0, 1/r0, r1, 1/r1, r0 + r1 and r0/(r0 + r1), r0 + r1 and 1/(r0 + r1) (8), and the products of sigma_t with
#: the two extra phi factors (2): 22
K32_3E_EXTRA = 22.0


def dpm3e_coeffs(t: float, s: float, t_prev: float, t_prev2: float) -> dict:
    r"""DPM-Solver-3M in the noise form (proofs_notes/integrators.md §4j), the step ``t -> s`` after calls at
    ``t_prev2 > t_prev > t``: :math:`x_s = c_x x_t - (c_0\varepsilon_t + c_1\delta_1 + c_2\delta_2)`.  Returns ``cx``
    (:math:`\alpha_s/\alpha_t`), ``c`` = :math:`\sigma_s(\varphi_0, \varphi_1, 2\varphi_2 + h_p\varphi_1)` (the
    generated :func:`dpm_solver_3_eps_weights`), the half log-SNR steps ``h, h0, h1`` (:math:`\ell_s - \ell_t`,
    :math:`\ell_t - \ell_{t_p}`, :math:`\ell_{t_p} - \ell_{t_{p2}}`), and ``w``: the weights of
    :math:`\varepsilon_t, \varepsilon_{t_p}, \varepsilon_{t_{p2}}` in :math:`x_s = c_x x_t + \sum_j w_j\varepsilon_j`
    once the divided differences are expanded (for the propagation gains)."""
    if not (t_prev2 > t_prev > t > s):
        raise ValueError(f"t_prev2: need t_prev2 > t_prev > t > s, got {t_prev2!r}, {t_prev!r}, {t!r}, {s!r}")
    sig_s = math.sqrt(-math.expm1(-2.0 * s))
    h, h0, h1 = (IC.half_logsnr_step(u, v)[0] for u, v in ((t, s), (t_prev, t), (t_prev2, t_prev)))
    c = tuple(sig_s * w for w in IC.dpm_solver_3_eps_weights(h, h0))
    e2 = c[2] / (h0 + h1)
    w = (-(c[0] + c[1] / h0 + e2 / h0), c[1] / h0 + e2 / h0 + e2 / h1, -e2 / h1)
    return {"cx": IC.dpm_solver_1_coeffs(t, s)[0], "c": c, "h": h, "h0": h0, "h1": h1, "w": w}


def dpm3e_prediction(target: GaussianTarget, x: np.ndarray, t: float, s: float, x_prev: np.ndarray, t_prev: float,
                     x_prev2: np.ndarray, t_prev2: float,
                     float32_coeffs: bool = False) -> tuple[np.ndarray, np.ndarray]:
    r"""The derived DPM-Solver-3M update (noise form) of ``x`` (VP, at ``t``) to ``s`` from the noise predictions at
    ``x, x_prev, x_prev2`` (:func:`dpm3e_coeffs`) and its per-element rounding bound

    .. math::  \mathrm{tol} = (K(t) + K_{3e})\,u\,S_{3e} + [K_{32}(t, s) + K_{32,3e}]\,u_{32}\,S_{3e},

    :math:`K_{3e}` = :data:`K3E_EXTRA`, :math:`K_{32,3e}` = :data:`K32_3E_EXTRA` (the second term with float32
    coefficients only), and :math:`S_{3e}` the module docstring's :math:`S` for :math:`(c_x, 0)` plus

    * the update's terms :math:`|c_0\varepsilon_t| + |c_1\delta_1| + |c_2\delta_2|` and the three calls'
      conversions to noise predictions weighted by the expanded weights, :math:`\sum_j|w_j|\,C_e(x_j)`
      (:func:`_eps_conv_scale`);
    * the divided differences as either side forms them, :math:`T` of :func:`_newton_rounding` (as for
      :func:`dpm3_prediction`, with the noise-form :math:`c_1, c_2`);
    * the phi functions: diffusers forms :math:`A_0 = e^h - 1`, :math:`A_1 = (e^h - 1)/h - 1 = \varphi_1/h` and
      :math:`A_2 = (e^h - 1 - h)/h^2 - \tfrac12 = \varphi_2/h^2` with absolute errors at most :math:`2e^hu`,
      :math:`(2e^h + \varphi_0 + \varphi_1)u/h \le 4e^hu/h` and :math:`(2e^h + 3\varphi_1 + \varphi_2)u/h^2 \le
      6e^hu/h^2` (:math:`\varphi_k \le e^h`), times :math:`|\varepsilon_t|`, :math:`|D_1| = h|\delta_1 + h_0\delta_2|`,
      :math:`|D_2| = h^2|\delta_2|`; the package's closed forms (:math:`h \ge 1`; below, its Horner series of positive
      terms is inside :math:`K`'s coefficient allowance) :math:`\mathrm{expm1}(h)`, :math:`\mathrm{expm1}(h) - h`,
      :math:`\mathrm{expm1}(h) - h^2/2 - h` lose at most :math:`e^hu`, :math:`2e^hu`, :math:`4e^hu` (every partial sum
      below :math:`e^h`): :math:`\sigma_se^h(3|\varepsilon_t| + 4|\delta_1 + h_0\delta_2| + 2|\delta_1|
      + (14 + 2h_0)|\delta_2|)`;
    * the log-SNR steps: each :math:`\ell` carries :math:`\Lambda u` (:func:`_lambda_cond`), so :math:`h, h_0, h_1`
      and :math:`h_0 + h_1` carry absolute :math:`2\Lambda u` (the package's sum :math:`4\Lambda u`);
      :math:`|d\log\varphi_k/dh| \le (k + 1)/h + 1`, so :math:`\sigma_s\varphi_0` moves by :math:`\sigma_se^h\,2\Lambda u`,
      :math:`c_1\delta_1` by the relative :math:`2\Lambda u(3/h_{\min} + 1)`, :math:`c_2` by the relative
      :math:`2\Lambda u(4/h_{\min} + 1)` (:math:`3/h + 1` from :math:`\varphi_2`, :math:`1/h_0` from
      :math:`h_0\varphi_1`), and :math:`\delta_2` by :math:`(2\Lambda u/h_{\min})((|\delta_1| + |\delta_{1b}|)/(h_0
      + h_1) + 2|\delta_2|)`: :math:`2\Lambda(\sigma_se^h|\varepsilon_t| + (3/h_{\min} + 1)|c_1\delta_1| + (4/h_{\min}
      + 1)|c_2\delta_2| + (c_2/h_{\min})((|\delta_1| + |\delta_{1b}|)/(h_0 + h_1) + 2|\delta_2|))` (with
      :math:`u_{32}` in place of :math:`u` this also covers diffusers' float32 logs as shipped, inside the second
      term).  diffusers' update is the same formula with the :math:`\varphi_2` part of :math:`c_2` halved
      (proofs_notes/integrators.md §4j), whose sensitivities are those of :math:`c_2` or smaller.
    """
    k = dpm3e_coeffs(t, s, t_prev, t_prev2)
    c0, c1, c2 = k["c"]
    h, h0, h1 = k["h"], k["h0"], k["h1"]
    calls = ((x, t), (x_prev, t_prev), (x_prev2, t_prev2))
    Ds = [target.denoiser(v, u) for v, u in calls]
    e0, e1, e2 = (target.model_output(v, u, "epsilon") for v, u in calls)
    d1, d1b, d2 = divided_differences(e0, e1, e2, h0, h1)
    pred = k["cx"] * x - c0 * e0 - c1 * d1 - c2 * d2
    sig_s, eh = math.sqrt(-math.expm1(-2.0 * s)), math.exp(h)
    h_min = min(h, h0, h1)
    lam = _lambda_cond(t, s, t_prev, t_prev2)
    T = _newton_rounding(c1, c2, d1, d1b, d2, h0, h1)
    S = (_arith_scale(x, Ds[0], t, s, k["cx"], 0.0) + np.abs(c0 * e0) + np.abs(c1 * d1) + np.abs(c2 * d2)
         + sum(abs(w) * _eps_conv_scale(v, D, u) for w, (v, u), D in zip(k["w"], calls, Ds)) + T
         + sig_s * eh * (3.0 * np.abs(e0) + 4.0 * np.abs(d1 + h0 * d2) + 2.0 * np.abs(d1)
                         + (14.0 + 2.0 * h0) * np.abs(d2))
         + 2.0 * lam * (sig_s * eh * np.abs(e0) + (3.0 / h_min + 1.0) * np.abs(c1 * d1)
                        + (4.0 / h_min + 1.0) * np.abs(c2 * d2)
                        + (c2 / h_min) * ((np.abs(d1) + np.abs(d1b)) / (h0 + h1) + 2.0 * np.abs(d2))))
    return pred, rounding_tolerance(DPM3E_KIND, S, t, s, float32_coeffs=float32_coeffs)


#: the singlestep second-order kinds (diffusers' DPMSolverSinglestepScheduler, solver_order=2, dpmsolver++):
#: DPM-Solver++(2S) with the midpoint and the heun weight; their order-1 steps are ``ddim``
SINGLESTEP_KINDS = ("dpm2s", "dpm2sh")
#: extra float64 roundings of a 2S step per element: diffusers' D1 = (1/r0)(m0 - m1) (the difference, r0 = h0/h,
#: its reciprocal, the product: 4) and its extra product and sum (2); the package's difference quotient (2) and its
#: extra product and sum (2); the intermediate call's conversion to a data prediction (2)
K2S_EXTRA = 12.0
#: extra float32 roundings of its coefficients as shipped: alpha and sigma at the intermediate level, formed from
#: the float32 sigma (3 roundings each)
K32_2S_EXTRA = 6.0


def dpm2s_coeffs(kind: str, t: float, s: float, t_prev: float) -> dict:
    r"""The DPM-Solver++(2S) step (proofs_notes/integrators.md §4d) that restarts at ``t_prev`` (:math:`s_1`, the
    saved state), has its intermediate call at ``t`` (:math:`s_0`) and lands at ``s``:
    :math:`x_s = c_x x_{s_1} + c_0 D_{s_1} + c_1\delta`, :math:`\delta = (D_{s_0} - D_{s_1})/h_0`.  Returns ``cx``
    (:math:`\sigma_s/\sigma_{s_1}`), ``c0`` (:math:`\alpha_s\psi_0(h)`), ``c1`` (:math:`\alpha_s w(h)`, ``dpm2s``
    :math:`\tfrac h2\psi_0`, ``dpm2sh`` :math:`\psi_1`), the half log-SNR steps ``h`` (:math:`s_1 \to s`) and ``h0``
    (:math:`s_1 \to s_0`), and ``w``: the weights of :math:`D_{s_1}, D_{s_0}` once :math:`\delta` is expanded."""
    h, h0 = IC.half_logsnr_step(t_prev, s)[0], IC.half_logsnr_step(t_prev, t)[0]
    p0, pm, ph = IC.dpm_solver_2s_weights(h)
    a_s = math.exp(-s)
    c0, c1 = a_s * p0, a_s * {"dpm2s": pm, "dpm2sh": ph}[kind]
    return {"cx": IC.ddim_coeffs(t_prev, s)[0], "c0": c0, "c1": c1, "h": h, "h0": h0, "w": (c0 - c1 / h0, c1 / h0)}


def dpm2s_prediction(kind: str, target: GaussianTarget, x: np.ndarray, t: float, s: float, x_prev: np.ndarray,
                     t_prev: float, float32_coeffs: bool = False) -> tuple[np.ndarray, np.ndarray]:
    r"""The derived DPM-Solver++(2S) update ``kind`` (:data:`SINGLESTEP_KINDS`) from the saved state ``x_prev`` at
    ``t_prev`` (:math:`s_1`) to ``s``, with the intermediate state ``x`` at ``t`` (:math:`s_0`, where the model is
    called a second time), and its per-element rounding bound

    .. math::  \mathrm{tol} = (K(s_1) + K_{2s})\,u\,S_{2s} + [K_{32}(s_1, s) + K_{32,2s}]\,u_{32}\,S_{2s},

    :math:`K_{2s}` = :data:`K2S_EXTRA`, :math:`K_{32,2s}` = :data:`K32_2S_EXTRA` (the second term with float32
    coefficients only), :math:`S_{2s}` the module docstring's :math:`S` of the base step :math:`(c_x, c_0)` from
    :math:`s_1` plus, as for :func:`dpm3_prediction`,

    * :math:`|c_1\delta|` and the two calls' conversions reaching :math:`\delta`,
      :math:`(c_1/h_0)(C(x_{s_0}) + C(x_{s_1}))` (:func:`_conv_scale`);
    * the difference quotient as either side forms it (diffusers' :math:`D_1 = (m_0 - m_1)/r_0 = h\delta`), each
      rounding relative to an intermediate: :math:`T = c_1(|\delta| + (|D_{s_0}| + |D_{s_1}|)/h_0)`;
    * the psi functions formed with :math:`e^{-h} - 1` (absolute :math:`2u` of :math:`\psi_0`, :math:`(3/h + 2)u`
      of the :math:`\psi_1/h`-type factor times :math:`|D_1| = h|\delta|`, which also covers the midpoint's
      :math:`\tfrac12(e^{-h} - 1)`): :math:`\alpha_s(2|D_{s_1}| + (3 + 2h)|\delta|)`;
    * the log-SNR steps (:math:`\Lambda u` per :math:`\ell`, :func:`_lambda_cond`): relative :math:`2\Lambda u/h_{\min}`
      in :math:`h, h_0` and their ratio, coefficients homogeneous of degree at most 2:
      :math:`(2\Lambda/h_{\min})(|c_0D_{s_1}| + 4T)`.
    """
    k = dpm2s_coeffs(kind, t, s, t_prev)
    c0, c1, h, h0 = k["c0"], k["c1"], k["h"], k["h0"]
    m1, m0 = target.denoiser(x_prev, t_prev), target.denoiser(x, t)
    delta = (m0 - m1) / h0
    pred = k["cx"] * x_prev + c0 * m1 + c1 * delta
    T = c1 * (np.abs(delta) + (np.abs(m0) + np.abs(m1)) / h0)
    S = (_arith_scale(x_prev, m1, t_prev, s, k["cx"], c0) + np.abs(c1 * delta)
         + (c1 / h0) * (_conv_scale(x, m0, t) + _conv_scale(x_prev, m1, t_prev)) + T
         + math.exp(-s) * (2.0 * np.abs(m1) + (3.0 + 2.0 * h) * np.abs(delta))
         + (2.0 * _lambda_cond(t_prev, t, s) / min(h, h0)) * (np.abs(c0 * m1) + 4.0 * T))
    return pred, rounding_tolerance(kind, S, t, s, t_prev, float32_coeffs)


#: the singlestep third-order kinds (diffusers' DPMSolverSinglestepScheduler, solver_order=3, dpmsolver++):
#: DPM-Solver++(3S) midpoint (the line through the saved call and the second intermediate one) and heun (the
#: quadratic through the three calls); their order-1 steps are ``ddim``, their order-2 steps ``dpm2s``/``dpm2sh``
SINGLESTEP3_KINDS = ("dpm3s", "dpm3sh")
#: extra float64 roundings of a 3S step per element, beyond K's one conversion and update: diffusers' two
#: difference quotients D1_0 = (m1 - m2)/r1, D1_1 = (m0 - m2)/r0 (the difference, r, its reciprocal, the product:
#: 4 each), its D1 = (r0 D1_0 - r1 D1_1)/(r0 - r1) (two products, the difference, r0 - r1, the quotient: 5) and
#: D2 = 2 (D1_1 - D1_0)/(r0 - r1) (2), two extra products and sums of the update (4): 19; the package's two
#: differences Delta_1, Delta_0 (2), a and b (two products and a sum each: 6), the two extra products and sums (4):
#: 12; the two intermediate calls' conversions to a data prediction (2 each: 4); each rounding relative to a term
#: of S_3s: 19 + 12 + 4 = 35
K3S_EXTRA = 35.0
#: extra float32 roundings of its coefficients as shipped: alpha and sigma at the two intermediate levels, formed
#: from the float32 sigma (3 roundings each: 12)
K32_3S_EXTRA = 12.0


def dpm3s_coeffs(kind: str, t: float, s: float, t_prev: float, t_prev2: float) -> dict:
    r"""The DPM-Solver++(3S) step (proofs_notes/integrators.md §4i) that restarts at ``t_prev2`` (:math:`s_2`, the
    saved state), has its intermediate calls at ``t_prev`` (:math:`s_1`) and ``t`` (:math:`s_0`, the current call)
    and lands at ``s``: :math:`x_s = c_x x_{s_2} + c_0 D_{s_2} + v_1\Delta_1 + v_0\Delta_0`,
    :math:`\Delta_j = D_{s_j} - D_{s_2}`.  Returns ``cx`` (:math:`\sigma_s/\sigma_{s_2}`), ``c0``
    (:math:`\alpha_s\psi_0(h)`), ``ca, cb`` (:math:`\alpha_s\psi_1`, :math:`2\alpha_s\psi_2`: the weights of
    :math:`a, b`; heun), ``nodes`` (:math:`a_1, a_0, b_1, b_0`), ``v`` (:math:`v_1, v_0`: heun
    :math:`c_a a_j + c_b b_j`, midpoint :math:`(0, \alpha_s\psi_1/h_0)`), the half log-SNR steps ``h``
    (:math:`s_2 \to s`), ``h1`` (:math:`s_2 \to s_1`), ``g`` (:math:`s_1 \to s_0`), ``h0 = h1 + g``, and ``w``: the
    weights of :math:`D_{s_2}, D_{s_1}, D_{s_0}` (for the propagation gains)."""
    if kind not in SINGLESTEP3_KINDS:
        raise ValueError(f"kind: must be one of {SINGLESTEP3_KINDS}, got {kind!r}")
    if not (t_prev2 > t_prev > t > s):
        raise ValueError(f"t_prev2: need t_prev2 > t_prev > t > s, got {t_prev2!r}, {t_prev!r}, {t!r}, {s!r}")
    h, h1, g = (IC.half_logsnr_step(u, v)[0] for u, v in ((t_prev2, s), (t_prev2, t_prev), (t_prev, t)))
    p0, pa, pb, a1, a0, b1, b0, m0 = IC.dpm_solver_3s_weights(h, h1, g)
    a_s = math.exp(-s)
    c0, ca, cb = a_s * p0, a_s * pa, a_s * pb
    v = (ca * a1 + cb * b1, ca * a0 + cb * b0) if kind == "dpm3sh" else (0.0, a_s * m0)
    return {"cx": IC.ddim_coeffs(t_prev2, s)[0], "c0": c0, "ca": ca, "cb": cb, "nodes": (a1, a0, b1, b0), "v": v,
            "h": h, "h1": h1, "g": g, "h0": h1 + g, "w": (c0 - v[0] - v[1], v[0], v[1])}


def dpm3s_prediction(kind: str, target: GaussianTarget, x: np.ndarray, t: float, s: float, x_prev: np.ndarray,
                     t_prev: float, x_prev2: np.ndarray, t_prev2: float,
                     float32_coeffs: bool = False) -> tuple[np.ndarray, np.ndarray]:
    r"""The derived DPM-Solver++(3S) update ``kind`` (:data:`SINGLESTEP3_KINDS`) from the saved state ``x_prev2`` at
    ``t_prev2`` (:math:`s_2`) to ``s``, with the intermediate states ``x_prev`` at ``t_prev`` (:math:`s_1`) and ``x``
    at ``t`` (:math:`s_0`, where the model is called), and its per-element rounding bound

    .. math::  \mathrm{tol} = (K(s_2) + K_{3s})\,u\,S_{3s} + [K_{32}(s_2, s) + K_{32,3s}]\,u_{32}\,S_{3s},

    :math:`K_{3s}` = :data:`K3S_EXTRA`, :math:`K_{32,3s}` = :data:`K32_3S_EXTRA` (the second term with float32
    coefficients only), :math:`S_{3s}` the module docstring's :math:`S` of the base step :math:`(c_x, c_0)` from
    :math:`s_2` plus, as for :func:`dpm3_prediction`,

    * :math:`|v_1\Delta_1| + |v_0\Delta_0|` and the two calls' conversions reaching the update,
      :math:`|w_1|C(x_{s_1}) + |w_0|C(x_{s_0})` (:func:`_conv_scale`, expanded weights);
    * the differences and quotients as either side forms them, each rounding relative to an intermediate weighted
      by the coefficients it reaches (heun: diffusers' :math:`D_1 = ha`, :math:`D_2 = 2h^2b` through
      :math:`D_{1,0} = h(a + bh_1)`, :math:`D_{1,1} = h(a + bh_0)`):
      :math:`T = \sum_j (c_a|a_j| + c_b|b_j|)(|\Delta_j| + |D_{s_j}| + |D_{s_2}|) + c_a(|a| + |a + bh_1| + |a + bh_0|)
      + c_b|b|` (midpoint: :math:`T = |v_0|(|\Delta_0| + |D_{s_0}| + |D_{s_2}|)`);
    * the psi functions formed with :math:`e^{-h} - 1` (:math:`2u`, :math:`(3/h + 2)u`, :math:`(4/h^2 + 2)u` absolute
      in :math:`\psi_0, \psi_1/h, \psi_2/h^2`-type factors times :math:`|D_{s_2}|, |D_1|, |D_2|`):
      :math:`\alpha_s(2|D_{s_2}| + (3 + 2h)|a| + 2(4 + 2h^2)|b|)` (midpoint: :math:`(3 + 2h)|\Delta_0|/h_0` for the
      :math:`a`, :math:`b` terms);
    * the log-SNR steps: each :math:`\ell` carries :math:`\Lambda u` (:func:`_lambda_cond`), so :math:`h, h_1, h_0`
      and :math:`r_0 - r_1 = g/h` carry relative :math:`4\Lambda u/h_{\min}`, :math:`h_{\min} = \min(h, h_1, g)`;
      the coefficients are homogeneous of degree at most 2 in them: :math:`(4\Lambda/h_{\min})(|c_0D_{s_2}| + 4T)`.
    """
    k = dpm3s_coeffs(kind, t, s, t_prev, t_prev2)
    c0, ca, cb, h, h0, h1 = k["c0"], k["ca"], k["cb"], k["h"], k["h0"], k["h1"]
    m2, m1, m0 = (target.denoiser(v, u) for v, u in ((x_prev2, t_prev2), (x_prev, t_prev), (x, t)))
    d1, d0 = m1 - m2, m0 - m2
    pred = k["cx"] * x_prev2 + c0 * m2 + k["v"][0] * d1 + k["v"][1] * d0
    a_s = math.exp(-s)
    if kind == "dpm3sh":
        a1, a0, b1, b0 = k["nodes"]
        a, b = a1 * d1 + a0 * d0, b1 * d1 + b0 * d0
        T = ((ca * abs(a1) + cb * abs(b1)) * (np.abs(d1) + np.abs(m1) + np.abs(m2))
             + (ca * abs(a0) + cb * abs(b0)) * (np.abs(d0) + np.abs(m0) + np.abs(m2))
             + ca * (np.abs(a) + np.abs(a + b * h1) + np.abs(a + b * h0)) + cb * np.abs(b))
        psi_err = a_s * (2.0 * np.abs(m2) + (3.0 + 2.0 * h) * np.abs(a) + 2.0 * (4.0 + 2.0 * h * h) * np.abs(b))
    else:
        T = abs(k["v"][1]) * (np.abs(d0) + np.abs(m0) + np.abs(m2))
        psi_err = a_s * (2.0 * np.abs(m2) + (3.0 + 2.0 * h) * np.abs(d0) / h0)
    w = k["w"]
    S = (_arith_scale(x_prev2, m2, t_prev2, s, k["cx"], c0) + np.abs(k["v"][0] * d1) + np.abs(k["v"][1] * d0)
         + abs(w[1]) * _conv_scale(x_prev, m1, t_prev) + abs(w[2]) * _conv_scale(x, m0, t) + T + psi_err
         + (4.0 * _lambda_cond(t_prev2, t_prev, t, s) / min(h, h1, k["g"])) * (np.abs(c0 * m2) + 4.0 * T))
    return pred, rounding_tolerance(kind, S, t, s, t_prev, float32_coeffs, t_prev2=t_prev2)


#: Heun's kind (diffusers' HeunDiscreteScheduler): its order-1 records are ``ddim`` (the Euler predictor, and the
#: last step, Euler to sigma = 0), its order-2 records the whole step from the saved state (:func:`heun_prediction`)
HEUN_KIND = "heun"
#: extra float64 roundings of a Heun step per element: diffusers' second slope (y_p - D_p)/sigma_s (2), the average
#: (d_0 + d_p)/2 (2), the second call's conversion to a data prediction (2) and the model input's scaling (1); the
#: package's difference D_p - D_t and its extra product and sum (3)
KH_EXTRA = 10.0
#: extra float32 roundings of its coefficients as shipped: sqrt(sigma_s^2 + 1) of the second call's input scaling
#: and of its v conversion (3 roundings each)
K32H_EXTRA = 6.0


def heun_coeffs(t: float, s: float, t_prev: float) -> dict:
    r"""Heun's step (proofs_notes/integrators.md §4e) from the saved state at ``t_prev`` (the step's start) to
    ``s``, the second model call at the DDIM predictor at ``t`` (:math:`= s` on diffusers' grid):
    :math:`x_s = c_x x_{t_p} + c_0 D_{t_p} + c_1(D_p - D_{t_p})`.  Returns ``cx, c0`` (the DDIM coefficients of
    the step :math:`t_p \to s`: :math:`\sigma_s/\sigma_{t_p}`, :math:`\alpha_s\psi_0(h)`), ``c1``
    (:math:`\alpha_s\tfrac12\varphi_0(h) = \tfrac{\alpha_s}2(e^h - 1)`), the half log-SNR step ``h``
    (:math:`t_p \to s`) and ``w``: the weights of :math:`D_{t_p}, D_p` once the difference is expanded."""
    h = IC.half_logsnr_step(t_prev, s)[0]
    cx, c0 = IC.ddim_coeffs(t_prev, s)
    c1 = math.exp(-s) * IC.heun_weights(h)[1]
    return {"cx": cx, "c0": c0, "c1": c1, "h": h, "w": (c0 - c1, c1)}


def heun_prediction(target: GaussianTarget, x: np.ndarray, t: float, s: float, x_prev: np.ndarray, t_prev: float,
                    float32_coeffs: bool = False) -> tuple[np.ndarray, np.ndarray]:
    r"""The derived Heun step from the saved state ``x_prev`` at ``t_prev`` to ``s``, with the predictor ``x`` at
    ``t`` where the model is called a second time, and its per-element rounding bound

    .. math::  \mathrm{tol} = (K(t_p) + K_H)\,u\,S_H + [K_{32}(t_p, s) + K_{32,H}]\,u_{32}\,S_H,

    :math:`K_H` = :data:`KH_EXTRA`, :math:`K_{32,H}` = :data:`K32H_EXTRA` (the second term with float32
    coefficients only), :math:`\delta = D_p - D_{t_p}`, and :math:`S_H` the module docstring's :math:`S` of the
    predictor :math:`(c_x, c_0)` from :math:`t_p` plus

    * :math:`c_1(|\delta| + |D_{t_p}| + |D_p|)`: the correction and the difference as the package forms it;
    * :math:`c_1 C(x_p)` (:func:`_conv_scale`): the second call's conversion to a data prediction and diffusers'
      slope :math:`(y_p - D_p)/\tilde\sigma_s`, whose terms :math:`|y_p| = |x_p|/\alpha_s` and :math:`|D_p|` reach
      the output with weight :math:`\alpha_s|d\tilde\sigma|/(2\tilde\sigma_s) = c_1`;
    * :math:`(c_1/\alpha_s)A`, :math:`A` the predictor's :math:`S` (the first term): diffusers' slope uses its own
      predictor :math:`x_p` itself, not only the model output there, so its output is the derived step minus
      :math:`(c_1/\alpha_s)(x_p - x_p^{\rm DDIM})` (:math:`\alpha_s\,d\tilde\sigma/(2\tilde\sigma_s)\cdot
      x_p/\alpha_s`), and the predictor's own rounding (its ``ddim`` bound, :math:`K(t_p)\,u\,A`) reaches the
      output amplified by :math:`c_1/\alpha_s = (e^h - 1)/2`;
    * the log-SNR step: :math:`h` carries :math:`2\Lambda u` (:func:`_lambda_cond`), so
      :math:`e^h - 1` the relative :math:`2\Lambda u\,e^h/(e^h - 1) \le 2\Lambda(1 + 1/h)u`:
      :math:`2\Lambda(1 + 1/h)|c_1\delta|`.
    """
    k = heun_coeffs(t, s, t_prev)
    c1 = k["c1"]
    m0, mp = target.denoiser(x_prev, t_prev), target.denoiser(x, t)
    delta = mp - m0
    pred = k["cx"] * x_prev + k["c0"] * m0 + c1 * delta
    S = ((1.0 + c1 / math.exp(-s)) * _arith_scale(x_prev, m0, t_prev, s, k["cx"], k["c0"])
         + c1 * (np.abs(delta) + np.abs(m0) + np.abs(mp) + _conv_scale(x, mp, t))
         + 2.0 * _lambda_cond(t_prev, s) * (1.0 + 1.0 / k["h"]) * np.abs(c1 * delta))
    return pred, rounding_tolerance(HEUN_KIND, S, t, s, t_prev, float32_coeffs)


#: LMS's kind (diffusers' LMSDiscreteScheduler): every step, of order min(step + 1, 4), is :func:`lms_prediction`
LMS_KIND = "lms"
#: extra float64 roundings of an LMS step per element: the three history slopes' conversions to a data prediction
#: and their divisions by sigma (3 each), the extra products and sums of the update (2 each), on both sides: 16
KL_EXTRA = 16.0
#: extra float32 roundings of its coefficients as shipped: sqrt(sigma^2 + 1) of the three history calls' input
#: scaling (3 roundings each) and their v conversions (1 each)
K32L_EXTRA = 12.0
#: the tolerances diffusers passes to scipy.integrate.quad for each LMS coefficient: epsrel = 1e-4 (its argument),
#: epsabs = 1.49e-8 (quad's default); quad's documented target is |c_quad - c| <= max(epsabs, epsrel |c|)
QUAD_EPSREL = 1e-4
QUAD_EPSABS = 1.49e-8
#: float64 roundings of the package's LMS coefficient from the OU times (sigma = sqrt(expm1(2t)) per node, 2 + 4t
#: relative through t = log1p(sigma^2)/2 and back, are counted in the node term; the generated positive form: 40)
KL_COEF = 40.0


def _ve_sigma(u: float) -> float:
    """diffusers' sigma = sigma_t/alpha_t = sqrt(e^{2u} - 1) of OU time ``u`` (0 at 0)."""
    return math.sqrt(math.expm1(2.0 * u)) if u > 0.0 else 0.0


def lms_coeffs(t: float, s: float, t_hist) -> dict:
    r"""The LMS step (proofs_notes/integrators.md §4f) from the call at ``t`` to ``s`` with the earlier calls at
    ``t_hist`` (latest last; order ``p = 1 + len(t_hist)`` <= 4): ``c`` (:math:`c_{p0}, \dots, c_{p,p-1}`, the exact
    Lagrange integrals, generated :func:`lms_weights`), ``sig`` (the nodes :math:`\sigma_i, \sigma_{i-1}, \dots`),
    ``sig_e`` (:math:`\sigma_{i+1}`), and ``A``, ``kappa``: per coefficient :math:`A_j = k\prod_{m\ne j}
    (\sigma_{i-m} - \sigma_{i+1})/|\sigma_{i-m} - \sigma_{i-j}|` (:math:`\ge \int|\ell_j|`: each factor of the
    basis is largest in modulus at an end of the step) and the condition number
    :math:`\kappa_j = \sum_{m\ne j}\big((\sigma_{i-m} + \sigma_i)/(\sigma_{i-m} - \sigma_{i+1}) + (\sigma_{i-m} +
    \sigma_{i-j})/|\sigma_{i-m} - \sigma_{i-j}|\big) + (\sigma_i + \sigma_{i+1})/k` of :math:`c_j` to relative
    perturbations of the nodes: :math:`|\Delta c_j| \le \varepsilon A_j\kappa_j` to first order."""
    p = 1 + len(t_hist)
    sig = [_ve_sigma(t)] + [_ve_sigma(u) for u in reversed(list(t_hist))]
    sig_e = _ve_sigma(s)
    k = sig[0] - sig_e
    gaps = [sig[m] - sig[m - 1] for m in range(1, p)] + [1.0] * (4 - p)
    allc = IC.lms_weights(k, *gaps[:3])
    start = p * (p - 1) // 2
    c = tuple(allc[start:start + p])
    A, kappa = [], []
    for j in range(p):
        a, kp = k, (sig[0] + sig_e) / k
        for m in range(p):
            if m != j:
                a *= (sig[m] - sig_e) / abs(sig[m] - sig[j])
                kp += (sig[m] + sig[0]) / (sig[m] - sig_e) + (sig[m] + sig[j]) / abs(sig[m] - sig[j])
        A.append(a)
        kappa.append(kp)
    return {"c": c, "sig": sig, "sig_e": sig_e, "k": k, "A": tuple(A), "kappa": tuple(kappa), "p": p}


def lms_coeff_allowance(kc: dict, float32_coeffs: bool, t_max: float) -> tuple[float, ...]:
    r"""Per LMS coefficient, how far diffusers' ``get_lms_coefficient`` may lie from the package's exact integral:
    quad's documented tolerance for the arguments diffusers passes, :math:`\max(\epsilon_{abs}, \epsilon_{rel}|c_j|)`
    (:data:`QUAD_EPSABS`, :data:`QUAD_EPSREL`), plus diffusers' integrand rounding (its factors formed in the
    sigmas' precision :math:`u_\sigma`, ``u32`` as shipped: :math:`2u_\sigma A_j(\kappa_j + 3p + 2)`) and the
    package's (nodes from OU times, relative :math:`(8 + 4t_{\max})u`, and the generated form, :data:`KL_COEF`):
    :math:`(8 + 4t_{\max})u A_j\kappa_j + K_{L,c}uA_j`."""
    u_sig = U32 if float32_coeffs else U64
    p, out = kc["p"], []
    for c, a, kp in zip(kc["c"], kc["A"], kc["kappa"]):
        out.append(max(QUAD_EPSABS, QUAD_EPSREL * (abs(c) + 2.0 * u_sig * a * (kp + 3 * p + 2)))
                   + 2.0 * u_sig * a * (kp + 3 * p + 2) + (8.0 + 4.0 * t_max) * U64 * a * kp + KL_COEF * U64 * a)
    return tuple(out)


def lms_prediction(target: GaussianTarget, x: np.ndarray, t: float, s: float, x_hist, t_hist,
                   float32_coeffs: bool = False, quad: bool = True) -> tuple[np.ndarray, np.ndarray]:
    r"""The derived LMS step of ``x`` (VP, at ``t``) to ``s`` from the slopes at ``x`` and the earlier states
    ``x_hist`` at ``t_hist`` (latest last), :math:`x_s = \alpha_s(y_i + \sum_j c_j d_{i-j})`,
    :math:`y = x/\alpha`, :math:`d = (y - D)/\sigma`, and its per-element rounding bound

    .. math::  \mathrm{tol} = (K(t) + K_L)\,u\,S_L + [K_{32}(t, s) + K_{32,L}]\,u_{32}\,S_L
               + \alpha_s\sum_j \Delta c_j\,|d_{i-j}|,

    :math:`K_L` = :data:`KL_EXTRA`, :math:`K_{32,L}` = :data:`K32L_EXTRA` (float32 coefficients only),
    :math:`S_L = \alpha_s(|y_i| + \sum_j|c_jd_{i-j}| + \sum_j|c_j|(|y_{i-j}| + |D_{i-j}| + C(x_{i-j}))/\sigma_{i-j})
    + |x_s|` (:func:`_conv_scale`: every term either side forms), and :math:`\Delta c_j` the coefficient allowance
    of :func:`lms_coeff_allowance` (with ``quad=False`` without quad's tolerance: the rounding part alone)."""
    kc = lms_coeffs(t, s, t_hist)
    a_s = math.exp(-s)
    xs = [x] + list(reversed(list(x_hist)))
    ts = [t] + list(reversed(list(t_hist)))
    pred_ve = x / math.exp(-t)
    S = np.abs(pred_ve)
    extra = 0.0 * x
    allow = lms_coeff_allowance(kc, float32_coeffs, max(ts))
    if not quad:
        allow = tuple(a - max(QUAD_EPSABS, QUAD_EPSREL * (abs(c) + 2.0 * (U32 if float32_coeffs else U64) * A
                                                           * (kp + 3 * kc["p"] + 2)))
                      for a, c, A, kp in zip(allow, kc["c"], kc["A"], kc["kappa"]))
    for c, xj, tj, sj, dc in zip(kc["c"], xs, ts, kc["sig"], allow):
        aj = math.exp(-tj)
        Dj = target.denoiser(xj, tj)
        yj = xj / aj
        dj = (yj - Dj) / sj
        pred_ve = pred_ve + c * dj
        S = S + abs(c) * (np.abs(dj) + (np.abs(yj) + np.abs(Dj) + _conv_scale(xj, Dj, tj)) / sj)
        extra = extra + dc * np.abs(dj)
    pred = a_s * pred_ve
    S = a_s * S + np.abs(pred)
    return pred, rounding_tolerance(LMS_KIND, S, t, s, float32_coeffs=float32_coeffs) + a_s * extra


#: DEIS's kind (diffusers' DEISMultistepScheduler, ``algorithm_type="deis"``): every step, of order 1 to 3 (the
#: scheduler's warm-up and lower_order_final), is :func:`deis_prediction`
DEIS_KIND = "deis"
#: extra float64 roundings of a DEIS step per element, beyond K(t)'s one conversion and update: diffusers' conversion
#: of the current call's data prediction back to a noise prediction, (x - alpha x0)/sigma (3); the two history
#: calls' conversions to a data prediction and back (4 + 3 each: 14); the two extra products and sums of the
#: update (2 each: 4); the package's noise predictions from the exact denoiser at the three calls (3 each: 9) and
#: its two extra products and sums (4): 34
KD_EXTRA = 34.0
#: extra float32 roundings of its coefficients as shipped: alpha = (sigma^2 + 1)^(-1/2) and sigma * alpha at the two
#: history levels, formed from the float32 sigma (3 roundings each: 12); with K32 = 12 for the two levels of the step
#: (:func:`bound_counts`: no k32 condition terms, DEIS forms no 1 - abar)
K32D_EXTRA = 12.0
#: float64 relative error of the package's generated DEIS weight (integrators.md §7 style: the sign-definite phi
#: combination of at most 3 terms, each phi_k within 15 roundings (phi_stable's closed form at h >= 1, the series
#: below), the products and quotients by the log-SNR steps (at most 6), the sum (2): 3 * 15 + 6 + 2 = 53, rounded up)
KD_COEF = 60.0
#: floating-point operations of diffusers' coefficient per weight: one antiderivative ``rho * Q(log rho)`` at most 12
#: (order 3's numerator polynomial in the logs and the product with rho), its denominator (a product of two log
#: differences: 3) and the quotient (1), counted once per end of the step, and their difference (1): 16 per end
KD_DIFFUSERS_OPS = 16


def _log_rho(u: float) -> float:
    r""":math:`\log\rho = \log(\sigma_u/\alpha_u) = \tfrac12\log(e^{2u} - 1)` of OU time ``u > 0``."""
    return 0.5 * math.log(math.expm1(2.0 * u))


def deis_coeffs(t: float, s: float, t_hist) -> dict:
    r"""The DEIS step (proofs_notes/integrators.md §4g) from the call at ``t`` to ``s`` with the earlier calls at
    ``t_hist`` (latest last; order ``p = 1 + len(t_hist)`` <= 3):
    :math:`x_s = c_x x_t - \sigma_s\sum_j W_j\varepsilon_j`.  Returns ``cx`` (:math:`\alpha_s/\alpha_t`), ``W``
    (:math:`W_{p0}, \dots`, the generated :func:`deis_weights`), ``w`` (:math:`-\sigma_sW_j`, the weights of the
    noise predictions at :math:`t`, then the history latest first), the half log-SNR steps ``h, hp, hp2``
    (``inf`` where unused), ``ts`` (the calls' OU times, current first), ``L`` (their :math:`\log\rho`),
    ``L_s`` (:math:`\log\rho_s`), ``den`` (per weight :math:`\prod_{m\ne j}|\log\rho_j - \log\rho_m|`) and ``p``."""
    t_hist = list(t_hist)
    p = 1 + len(t_hist)
    if p > 3:
        raise ValueError(f"t_hist: DEIS uses at most 2 earlier calls, got {len(t_hist)}")
    if not (0.0 < s <= t and all(u > v for u, v in zip(t_hist, t_hist[1:] + [t]))):
        # s = t: the zero step to a repeated last sigma (Karras / exponential grids), the identity on both sides
        raise ValueError(f"t_hist: need t_hist (increasing to the past) > t >= s > 0, got {t_hist!r}, t={t!r}, s={s!r}")
    ts = [float(t)] + [float(u) for u in reversed(t_hist)]
    h = IC.half_logsnr_step(t, s)[0]
    hs = [IC.half_logsnr_step(ts[m + 1], ts[m])[0] for m in range(p - 1)] + [math.inf] * (3 - p)
    allw = IC.deis_weights(h, *(v if math.isfinite(v) else 1.0 for v in hs[:2]))
    start = p * (p - 1) // 2
    W = tuple(allw[start:start + p])
    sig_s = math.sqrt(-math.expm1(-2.0 * s))
    L = [_log_rho(u) for u in ts]
    den = tuple(math.prod(abs(L[j] - L[m]) for m in range(p) if m != j) for j in range(p))
    return {"cx": IC.dpm_solver_1_coeffs(t, s)[0], "W": W, "w": tuple(-sig_s * v for v in W), "h": h,
            "hp": hs[0], "hp2": hs[1], "ts": ts, "L": L, "L_s": _log_rho(s), "den": den, "p": p, "s": float(s)}


def deis_coeff_allowance(kc: dict, float32_coeffs: bool) -> tuple[float, ...]:
    r"""Per DEIS weight, how far diffusers' coefficient :math:`c_j = \int_{\rho_t}^{\rho_s}L_j(\log\rho)\,d\rho`
    (in :math:`y = x/\alpha`) may lie from the package's :math:`-\rho_sW_j` (first order in the unit roundoff
    :math:`u_c` of diffusers' coefficient arithmetic: ``u32`` as shipped, else ``u``).

    diffusers forms :math:`c_j = (F_j(\rho_s) - F_j(\rho_t))/d_j` with the antiderivative
    :math:`F_j = \rho\,Q_j(\log\rho)`, :math:`Q_j` a polynomial of degree :math:`p - 1` in :math:`\log\rho` and the
    other nodes' logs, and :math:`d_j = \prod_{m\ne j}(\log\rho_j - \log\rho_m)`.  With :math:`B = 1 + \max|\log\rho|`
    over the nodes and :math:`\rho_s`: each :math:`\rho` carries relative :math:`2u_c` (:math:`\sigma\alpha/\alpha`),
    each log the absolute :math:`\epsilon_L = (B + 2)u_c`; the sum of the moduli of :math:`Q_j`'s monomials is at
    most :math:`\bar Q = (2B)^{p-1} + 1` and of its partial derivatives in the logs :math:`Q' = 2(p-1)(2B)^{p-2}`
    (order 2: :math:`Q = L - L_c - 1`; order 3: the product of two such factors plus a linear part, bounded
    monomial by monomial), so

    .. math::  |\Delta c_j| \le \frac{(\rho_s + \rho_t)\big(Q'\epsilon_L + (\gamma_{m} + 2u_c)\bar Q\big)}{d_j}
               + |c_j|\Big(\sum_{m\ne j}\frac{2\epsilon_L}{|\log\rho_j - \log\rho_m|} + (p + 1)u_c\Big),

    :math:`m` = :data:`KD_DIFFUSERS_OPS`.  Order 1 goes through :math:`\sigma_s(e^{h} - 1)` with :math:`h` a
    difference of :math:`\ell = \log\alpha - \log\sigma` (absolute :math:`\Lambda u_c` each, :func:`_lambda_cond`):
    relative :math:`((2\Lambda + 1)(1 + 1/h) + 4)u_c` (:math:`e^h/(e^h - 1) \le 1 + 1/h`), added to the above.
    The package's own weight: relative :data:`KD_COEF` :math:`u` and the log-SNR steps' absolute :math:`2\Lambda u`,
    :math:`|d\log W/dh| \le p/h + 1` (:math:`\varphi_{k-1}/\varphi_k \le (k + 1)/h + 1`) and
    :math:`|d\log W/dh_{p\cdot}| \le 2p/h_{\min}`: :math:`\rho_s|W_j|(K_{D,c} + 2\Lambda(p/h + 1 + 2p/h_{\min}))u`.
    """
    u_c = U32 if float32_coeffs else U64
    p, L, Ls = kc["p"], kc["L"], kc["L_s"]
    if kc["h"] == 0.0:   # a zero step: both sides' coefficients are exactly 0 (the same arithmetic on equal ends)
        return (0.0,) * p
    rho_s, rho_t = math.exp(Ls), math.exp(L[0])
    B = 1.0 + max(abs(v) for v in L + [Ls])
    eps_L = (B + 2.0) * u_c
    qbar = (2.0 * B) ** (p - 1) + 1.0
    qder = 2.0 * (p - 1) * (2.0 * B) ** (p - 2) if p > 1 else 0.0
    g_m = KD_DIFFUSERS_OPS * u_c / (1.0 - KD_DIFFUSERS_OPS * u_c)
    lam_s = _lambda_cond(*kc["ts"], kc["s"])
    h_min = min(kc["h"], kc["hp"], kc["hp2"])
    out = []
    for j, W in enumerate(kc["W"]):
        c = rho_s * abs(W)
        dc = (rho_s + rho_t) * (qder * eps_L + (g_m + 2.0 * u_c) * qbar) / kc["den"][j] \
            + c * (sum(2.0 * eps_L / abs(L[j] - L[m]) for m in range(p) if m != j) + (p + 1) * u_c)
        if p == 1:
            dc += c * ((2.0 * lam_s + 1.0) * (1.0 + 1.0 / kc["h"]) + 4.0) * u_c
        dc += c * (KD_COEF + 2.0 * lam_s * (p / kc["h"] + 1.0 + 2.0 * p / h_min)) * U64
        out.append(dc)
    return tuple(out)


def deis_prediction(target: GaussianTarget, x: np.ndarray, t: float, s: float, x_hist, t_hist,
                    float32_coeffs: bool = False) -> tuple[np.ndarray, np.ndarray]:
    r"""The derived DEIS step of ``x`` (VP, at ``t``) to ``s`` from the noise predictions at ``x`` and at the earlier
    states ``x_hist`` at ``t_hist`` (latest last, at most 2), :math:`x_s = (\alpha_s/\alpha_t)x_t -
    \sigma_s\sum_j W_j\varepsilon_j` (:func:`deis_coeffs`), and its per-element rounding bound

    .. math::  \mathrm{tol} = (K(t) + K_D)\,u\,S_D + [K_{32}(t, s) + K_{32,D}]\,u_{32}\,S_D
               + \alpha_s\sum_j \Delta c_j\,|\varepsilon_j|,

    :math:`K_D` = :data:`KD_EXTRA`, :math:`K_{32,D}` = :data:`K32D_EXTRA` (float32 coefficients only),
    :math:`\Delta c_j` of :func:`deis_coeff_allowance`, and :math:`S_D` the module docstring's :math:`S` for
    :math:`(c_x, 0)` plus, per call :math:`j`, :math:`\sigma_s|W_j|\,(|\varepsilon_j| + (\alpha_j/\sigma_j)C(x_j) +
    (|x_j| + \alpha_j|D_j|)/\sigma_j)`: the noise prediction, diffusers' data prediction's magnitudes
    (:func:`_conv_scale`) carried into the noise prediction by :math:`\alpha_j/\sigma_j`, and the terms of
    :math:`(x - \alpha\hat x_0)/\sigma` (either side's noise prediction)."""
    x_hist, t_hist = list(x_hist), list(t_hist)
    if len(x_hist) != len(t_hist):
        raise ValueError(f"x_hist: need one state per time of t_hist, got {len(x_hist)} and {len(t_hist)}")
    kc = deis_coeffs(t, s, t_hist)
    xs = [x] + list(reversed(x_hist))
    pred = kc["cx"] * x
    S = _arith_scale(x, target.denoiser(x, t), t, s, kc["cx"], 0.0)
    extra = 0.0 * x
    for w, xj, tj, dc in zip(kc["w"], xs, kc["ts"], deis_coeff_allowance(kc, float32_coeffs)):
        aj, sj = math.exp(-tj), math.sqrt(-math.expm1(-2.0 * tj))
        Dj = target.denoiser(xj, tj)
        ej = target.model_output(xj, tj, "epsilon")
        pred = pred + w * ej
        S = S + abs(w) * (np.abs(ej) + (aj / sj) * _conv_scale(xj, Dj, tj) + (np.abs(xj) + aj * np.abs(Dj)) / sj)
        extra = extra + dc * np.abs(ej)
    return pred, rounding_tolerance(DEIS_KIND, S, t, s, float32_coeffs=float32_coeffs) + math.exp(-s) * extra


#: UniPC's kind (diffusers' UniPCMultistepScheduler, solver_order=2, bh2, predict_x0): a record's step is the
#: corrector UniC of the previous step (to the state the step restarts from, :func:`unipc_corrector_prediction`) and
#: the predictor UniP from there (:func:`unipc_predictor_prediction`: DDIM at order 1, DPM-Solver++(2M) at order 2,
#: with the model outputs at the predicted states)
UNIPC_KIND = "unipc"
#: extra float64 roundings of a UniC step per element: the differences D_i - D_0 and their divisions by r_i (2 per
#: earlier output, at most 2 outputs: 4), the products with rho and their sum (4), the product with B(h) and the sum
#: with the DDIM part (2); the package's divided differences (6) and its extra products and sums (4); the two
#: further calls' conversions to a data prediction (2 each: 4): 24
KU_EXTRA = 24.0
#: extra float32 roundings of its coefficients as shipped: alpha and sigma at the third level and their logs (3 each)
K32U_EXTRA = 6.0


def unipc_corrector_coeffs(s0: float, t: float, t1: float | None = None) -> dict:
    r"""UniC (bh2, proofs_notes/integrators.md §4h) from the (corrected) state at ``s0`` to the level ``t`` of the new
    model call, order 1 (``t1`` None) or 2 (with the output at ``t1 > s0``): :math:`x^c_t = c_x x^c_{s_0} +
    \sum_j w_jD_j`.  Returns ``cx`` (:math:`\sigma_t/\sigma_{s_0}`), ``w`` (the weights of :math:`D_0, D_t` and, at
    order 2, :math:`D_1`, from the generated :func:`unipc_corrector_weights` times :math:`\alpha_t`: order 1
    :math:`(\psi_0 - \psi_0/2, \psi_0/2)`; order 2 the divided differences expanded), ``c`` (:math:`\alpha_t` times
    the four weights), the half log-SNR steps ``h`` (:math:`s_0 \to t`) and ``hp`` (:math:`t_1 \to s_0`, ``inf`` at
    order 1) and ``rinv`` (:math:`\|R^{-1}\|_\infty` of diffusers' order conditions, 1 at order 1)."""
    if not (0.0 < t < s0 and (t1 is None or t1 > s0)):
        raise ValueError(f"t1: need t1 > s0 > t > 0, got s0={s0!r}, t={t!r}, t1={t1!r}")
    h = IC.half_logsnr_step(s0, t)[0]
    a_t = math.exp(-t)
    c = tuple(a_t * v for v in IC.unipc_corrector_weights(h))
    cx = IC.ddim_coeffs(s0, t)[0]
    if t1 is None:
        return {"cx": cx, "w": (c[0] - c[1], c[1]), "c": c, "h": h, "hp": math.inf, "rinv": 1.0}
    hp = IC.half_logsnr_step(t1, s0)[0]
    e2 = c[3] / (h + hp)
    wt = c[2] / h + e2 / h
    w1 = e2 / hp
    r1 = -hp / h
    return {"cx": cx, "w": (c[0] - wt - w1, wt, w1), "c": c, "h": h, "hp": hp,
            "rinv": (1.0 + max(1.0, abs(r1))) / abs(1.0 - r1)}


def unipc_corrector_prediction(target: GaussianTarget, x_start: np.ndarray, s0: float, t: float, x0: np.ndarray,
                               x_t: np.ndarray, x1: np.ndarray | None = None, t1: float | None = None,
                               float32_coeffs: bool = False) -> tuple[np.ndarray, np.ndarray]:
    r"""The derived UniC step from the corrected state ``x_start`` at ``s0`` to ``t``, with the model outputs at the
    predicted states ``x0`` (at ``s0``), ``x_t`` (at ``t``) and, at order 2, ``x1`` (at ``t1``), and its per-element
    rounding bound

    .. math::  \mathrm{tol} = (K(s_0) + K_U)\,u\,S_U + [K_{32}(s_0, t) + K_{32,U}]\,u_{32}\,S_U,

    :math:`K_U` = :data:`KU_EXTRA`, :math:`K_{32,U}` = :data:`K32U_EXTRA` (float32 coefficients only), :math:`S_U`
    the module docstring's :math:`S` of the DDIM part :math:`(c_x, \alpha_t\psi_0)` at ``x0`` plus
    :math:`|c_x x_{\rm start}|`,

    * every weighted output and its conversion, :math:`\sum_j|w_j|(|D_j| + C(x_j))` (:func:`_conv_scale`), and the
      divided differences as either side forms them, :math:`T = \alpha_t\psi_0(|D_t - D_0| + |D_1 - D_0|/|r_1|)
      + c_{d1}|\delta_1| + |c_{d2}|(|\delta_1| + |\delta_{1b}|)/(h + h_p) + |c_{d2}\delta_2|`;
    * diffusers' order conditions: :math:`b_1 = (e^{-h} - 1 + h)/(h(1 - e^{-h}))`-type quantities formed by the
      recursion :math:`h\varphi_{k+1} = h\varphi_k/(-h) - 1/k!` lose :math:`3u/\psi_0` and :math:`2(3/h + 2)u/\psi_0`
      absolute in :math:`b_1, b_2`, carried to :math:`\rho` by :math:`\|R^{-1}\|_\infty` and to the state by
      :math:`\alpha_t\psi_0|D_k - D_0|/|r_k|`: :math:`\alpha_t\|R^{-1}\|(11 + 6/h)(|D_t - D_0| + |D_1 - D_0|/|r_1|)`
      (with the solve's and the products' roundings, 4); at order 1 (:math:`\rho = 1/2` exact) the
      :math:`e^{-h} - 1` of :math:`B(h)`, :math:`2\alpha_t|D_t - D_0|`;
    * the log-SNR steps (:math:`\Lambda u` per :math:`\ell`, :func:`_lambda_cond`): relative :math:`2\Lambda u/h_{\min}`
      in :math:`h, h_p, r_1`, the coefficients homogeneous of degree at most 2 in them:
      :math:`(2\Lambda/h_{\min})(\alpha_t\psi_0|D_0| + 4T)`.
    """
    k = unipc_corrector_coeffs(s0, t, t1)
    D0, Dt = target.denoiser(x0, s0), target.denoiser(x_t, t)
    pred = k["cx"] * x_start + k["w"][0] * D0 + k["w"][1] * Dt
    a_t = math.exp(-t)
    cq, _, cd1, cd2 = k["c"]
    S = _arith_scale(x0, D0, s0, t, k["cx"], cq) + np.abs(k["cx"] * x_start) \
        + abs(k["w"][1]) * (np.abs(Dt) + _conv_scale(x_t, Dt, t)) + abs(k["w"][0]) * np.abs(D0)
    d1 = (Dt - D0) / k["h"]
    T = cq * np.abs(Dt - D0) + cd1 * np.abs(d1)
    nodes = (s0, t)
    rho_term = 2.0 * a_t * np.abs(Dt - D0)
    if t1 is not None:
        D1 = target.denoiser(x1, t1)
        pred = pred + k["w"][2] * D1
        d1b = (D0 - D1) / k["hp"]
        d2 = (d1 - d1b) / (k["h"] + k["hp"])
        r1 = k["hp"] / k["h"]
        T = T + cq * np.abs(D1 - D0) / r1 + abs(cd2) * ((np.abs(d1) + np.abs(d1b)) / (k["h"] + k["hp"]) + np.abs(d2))
        S = S + abs(k["w"][2]) * (np.abs(D1) + _conv_scale(x1, D1, t1))
        rho_term = a_t * k["rinv"] * (11.0 + 6.0 / k["h"]) * (np.abs(Dt - D0) + np.abs(D1 - D0) / r1)
        nodes = (t1, s0, t)
    h_min = min(k["h"], k["hp"])
    S = S + T + rho_term + (2.0 * _lambda_cond(*nodes) / h_min) * (np.abs(cq * D0) + 4.0 * T)
    return pred, rounding_tolerance(UNIPC_KIND, S, s0, t, float32_coeffs=float32_coeffs)


def unipc_predictor_prediction(target: GaussianTarget, x_start: np.ndarray, x: np.ndarray, t: float, s: float,
                               x_prev: np.ndarray | None = None, t_prev: float | None = None,
                               float32_coeffs: bool = False) -> tuple[np.ndarray, np.ndarray]:
    r"""UniP (bh2): the derived DDIM (order 1, ``t_prev`` None) or DPM-Solver++(2M) step (§§1, 4; :func:`step_coeffs`)
    from the corrected state ``x_start`` at ``t`` to ``s``, with the model outputs at the predicted states ``x``
    (at ``t``) and ``x_prev`` (at ``t_prev``), and its bound: that of the same kind (:func:`rounding_tolerance`),
    :math:`S` of the module docstring at ``x`` plus :math:`|c_x x_{\rm start}|` and :math:`|c_pD_p|`."""
    kind = "ddim" if t_prev is None else "dpm2"
    cx, cd, cp, _ = step_coeffs(kind, t, s, t_prev)
    D = target.denoiser(x, t)
    pred = cx * x_start + cd * D
    S = _arith_scale(x, D, t, s, cx, cd) + np.abs(cx * x_start)
    if t_prev is not None:
        Dp = target.denoiser(x_prev, t_prev)
        pred = pred + cp * Dp
        S = S + np.abs(cp * Dp)
    return pred, rounding_tolerance(kind, S, t, s, float32_coeffs=float32_coeffs)


def rounding_tolerance(kind: str, S: np.ndarray, t: float, s: float, t_prev: float | None = None,
                       float32_coeffs: bool = False, t_prev2: float | None = None) -> np.ndarray:
    r"""The per-element rounding bound of a step of ``kind``: :math:`K\,u\,S + [\text{float32}]\,K_{32}\,u_{32}\,S`
    with the counts ``(K, K32)`` of :func:`bound_counts` and the step's magnitude sum ``S``."""
    k64, k32_ = bound_counts(kind, t, s, t_prev, t_prev2)
    return k64 * U64 * S + (k32_ * U32 * S if float32_coeffs else 0.0)


def bound_counts(kind: str, t: float, s: float, t_prev: float | None = None,
                 t_prev2: float | None = None) -> tuple[float, float]:
    """The float64 and float32 rounding counts ``(K, K32)`` of a step of ``kind`` from the call at ``t`` to ``s``
    (``t_prev``: the saved state's level of a singlestep or Heun kind, whose step starts there), the factors of ``u S`` and
    ``u32 S`` in its bound; ``t_prev2``: the saved state's level of a third-order singlestep kind)."""
    if kind in SINGLESTEP3_KINDS:
        if t_prev2 is None:
            raise ValueError(f"t_prev2: the saved state's level is needed for {kind!r}")
        return k_step(t_prev2) + K3S_EXTRA, k32(t_prev2, s) + K32_3S_EXTRA
    if kind in SINGLESTEP_KINDS:
        return k_step(t_prev) + K2S_EXTRA, k32(t_prev, s) + K32_2S_EXTRA
    if kind == HEUN_KIND:
        return k_step(t_prev) + KH_EXTRA, k32(t_prev, s) + K32H_EXTRA
    if kind == LMS_KIND:
        return k_step(t) + KL_EXTRA, k32(t, s) + K32L_EXTRA
    if kind == UNIPC_KIND:   # the corrector, from the corrected state at t to the new call's level s
        return k_step(t) + KU_EXTRA, k32(t, s) + K32U_EXTRA
    if kind == DEIS_KIND:   # its float32 coefficients (alpha = (sigma^2 + 1)^(-1/2), sigma alpha, their ratios) form
        # no subtraction 1 - abar: K32's 12 roundings without k32's condition terms (the coefficient allowance
        # of deis_coeff_allowance carries the cancellation of its log-rho antiderivatives)
        return k_step(t) + KD_EXTRA, K32 + K32D_EXTRA
    k64, k32_ = k_step(t), k32(t, s)
    if kind == "dpm3":
        return k64 + K3_EXTRA, k32_ + K32_3_EXTRA
    if kind in ("dpm2e", "dpm2eh"):
        return k64 + K2E_EXTRA, k32_ + K32_2E_EXTRA
    if kind == DPM3E_KIND:
        return k64 + K3E_EXTRA, k32_ + K32_3E_EXTRA
    return k64, k32_


def step_prediction(kind: str, target: GaussianTarget, x: np.ndarray, t: float, s: float,
                    x_prev: np.ndarray | None = None, t_prev: float | None = None, z: np.ndarray | None = None,
                    float32_coeffs: bool = False, x_prev2: np.ndarray | None = None,
                    t_prev2: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The derived update of ``x`` (VP, at ``t``) to ``s`` and its per-element rounding bound (module docstring;
    ``dpm3``: :func:`dpm3_prediction`, ``dpm3e``: :func:`dpm3e_prediction`, with ``x_prev2, t_prev2``)."""
    if kind == "dpm3":
        return dpm3_prediction(target, x, t, s, x_prev, t_prev, x_prev2, t_prev2, float32_coeffs)
    if kind in EPS_KINDS:
        return eps_prediction(kind, target, x, t, s, x_prev, t_prev, float32_coeffs)
    if kind == DPM3E_KIND:
        return dpm3e_prediction(target, x, t, s, x_prev, t_prev, x_prev2, t_prev2, float32_coeffs)
    if kind in SINGLESTEP_KINDS:
        return dpm2s_prediction(kind, target, x, t, s, x_prev, t_prev, float32_coeffs)
    if kind in SINGLESTEP3_KINDS:
        return dpm3s_prediction(kind, target, x, t, s, x_prev, t_prev, x_prev2, t_prev2, float32_coeffs)
    if kind == HEUN_KIND:
        return heun_prediction(target, x, t, s, x_prev, t_prev, float32_coeffs)
    cx, cd, cp, cz = step_coeffs(kind, t, s, t_prev)
    D = target.denoiser(x, t)
    pred = cx * x + cd * D
    S = _arith_scale(x, D, t, s, cx, cd)
    if cp != 0.0:
        Dp = target.denoiser(x_prev, t_prev)
        pred = pred + cp * Dp
        S = S + np.abs(cp * Dp)
    if cz != 0.0 and z is not None:
        pred = pred + cz * z
        S = S + np.abs(cz * z)
    return pred, rounding_tolerance(kind, S, t, s, float32_coeffs=float32_coeffs)


def _arith_scale(x: np.ndarray, D: np.ndarray, t: float, s: float, cx: float, cd: float) -> np.ndarray:
    """:math:`S` of the module docstring without the ``c_p``/``c_z`` terms (the caller adds them)."""
    a_t, sig_t = math.exp(-t), math.sqrt(-math.expm1(-2.0 * t))
    a_s, sig_s = math.exp(-s), math.sqrt(-math.expm1(-2.0 * s))
    eps = (x - a_t * D) / sig_t
    v = a_t * eps - sig_t * D
    return np.abs(cx * x) + np.abs(cd * D) + (a_s / a_t) * (np.abs(x) + sig_t * np.abs(eps)) + sig_s * np.abs(eps) \
        + a_s * (np.abs(x) + np.abs(v))


def k32(t: float, s: float) -> float:
    """:math:`K_{32}(t, s)` of the module docstring (float32 coefficients)."""
    if s <= 0.0:
        return K32
    ab_s, r = math.exp(-2.0 * s), math.exp(-2.0 * (t - s))
    return K32 + 2.0 * (ab_s / -math.expm1(-2.0 * s) + r / -math.expm1(-2.0 * (t - s)))


#: the derived update of each order of a run of a kind (the data-prediction and the noise-form ladders)
_LADDER = {"ddim": ("ddim",), "dpm2": ("ddim", "dpm2"), "dpm3": ("ddim", "dpm2", "dpm3"), "dpm1e": ("dpm1e",),
           "dpm2e": ("dpm1e", "dpm2e"), "dpm2eh": ("dpm1e", "dpm2eh"), "dpm3e": ("dpm1e", "dpm2e", "dpm3e"), "dpm2s": ("ddim", "dpm2s"),
           "dpm2sh": ("ddim", "dpm2sh"), "dpm3s": ("ddim", "dpm2s", "dpm3s"),
           "dpm3sh": ("ddim", "dpm2sh", "dpm3sh"), "heun": ("ddim", "heun"),
           "lms": ("lms",) * 4, "deis": ("deis",) * 3,
           "unipc": ("unipc",) * 2}


def step_kind(kind: str, k: int, orders, n_hist: int) -> str:
    """The derived update of step ``k`` of a ``kind`` run (a key of ``_LADDER``) with ``n_hist`` earlier calls:
    the order the run uses there (``orders[k]``, default the kind's), capped by the history available."""
    ladder = _LADDER[kind]
    order = min(len(ladder), orders[k] if orders is not None else len(ladder), n_hist + 1)
    return ladder[order - 1]


def _run(kind: str, target: GaussianTarget, grid, x0: np.ndarray, orders, float32_coeffs: bool) -> tuple:
    """The derived run of :func:`run_oracle` and the majorant :math:`E_n` of :func:`run_tolerance`."""
    x = np.array(x0, dtype=np.float64)
    E = np.zeros_like(x)
    hist = []   # (x, t) of the earlier calls, latest last
    xc_prev = None   # UniPC: the corrected state of the last call
    for k in range(len(grid) - 1):
        t, s = float(grid[k]), float(grid[k + 1])
        use = step_kind(kind, k, orders, len(hist))
        if use == "dpm3":
            (xp2, tp2), (xp, tp) = hist[-2], hist[-1]
            new, tol = dpm3_prediction(target, x, t, s, xp, tp, xp2, tp2, float32_coeffs)
            c = dpm3_coeffs(t, s, tp, tp2)
            w = c["w"]
            rho = abs(c["cx"] + w[0] * target.gain(t)) + abs(w[1] * target.gain(tp)) + abs(w[2] * target.gain(tp2))
        elif use == DPM3E_KIND:   # the noise predictions' gains in x: (1 - alpha g)/sigma
            (xp2, tp2), (xp, tp) = hist[-2], hist[-1]
            new, tol = dpm3e_prediction(target, x, t, s, xp, tp, xp2, tp2, float32_coeffs)
            c = dpm3e_coeffs(t, s, tp, tp2)
            w = c["w"]
            rho = abs(c["cx"] + w[0] * _eps_gain(target, t)) + abs(w[1] * _eps_gain(target, tp)) \
                + abs(w[2] * _eps_gain(target, tp2))
        elif use in SINGLESTEP3_KINDS:   # restarts from the state two calls back, slopes through both later calls
            (xp2, tp2), (xp, tp) = hist[-2], hist[-1]
            new, tol = dpm3s_prediction(use, target, x, t, s, xp, tp, xp2, tp2, float32_coeffs)
            w = dpm3s_coeffs(use, t, s, tp, tp2)
            rho = abs(w["cx"] + w["w"][0] * target.gain(tp2)) + abs(w["w"][1] * target.gain(tp)) \
                + abs(w["w"][2] * target.gain(t))
        elif use in SINGLESTEP_KINDS:   # restarts from the saved state (the previous call's), slope through x
            xp, tp = hist[-1]
            new, tol = dpm2s_prediction(use, target, x, t, s, xp, tp, float32_coeffs)
            w = dpm2s_coeffs(use, t, s, tp)
            rho = abs(w["cx"] + w["w"][0] * target.gain(tp)) + abs(w["w"][1] * target.gain(t))
        elif use == LMS_KIND:   # the slopes at x and at the last (order - 1) calls
            p = min(4, orders[k] if orders is not None else 4, len(hist) + 1)
            th = [u for _, u in hist[len(hist) - p + 1:]] if p > 1 else []
            xh = [v for v, _ in hist[len(hist) - p + 1:]] if p > 1 else []
            new, tol = lms_prediction(target, x, t, s, xh, th, float32_coeffs)
            kc = lms_coeffs(t, s, th)
            a_s = math.exp(-s)
            rho = abs(a_s / math.exp(-t) + a_s * kc["c"][0] * (1.0 / math.exp(-t) - target.gain(t)) / kc["sig"][0])
            rho += sum(abs(a_s * c * (1.0 / math.exp(-u) - target.gain(u)) / sg)
                       for c, u, sg in zip(kc["c"][1:], reversed(th), kc["sig"][1:]))
        elif use == UNIPC_KIND:   # corrector (from the corrected state of the last call) then predictor
            p = min(2, orders[k] if orders is not None else 2, len(hist) + 1)
            xc, Ec = x, E
            if hist:
                (xq, tq), pc = hist[-1], min(2, orders[k - 1] if orders is not None else 2, len(hist))
                x1, t1 = hist[-2] if pc == 2 else (None, None)
                xc, tolc = unipc_corrector_prediction(target, xc_prev, tq, t, xq, x, x1, t1, float32_coeffs)
                kc = unipc_corrector_coeffs(tq, t, t1)
                gains = (target.gain(tq), target.gain(t)) + ((target.gain(t1),) if t1 is not None else ())
                Ec = (abs(kc["cx"]) + sum(abs(w * g) for w, g in zip(kc["w"], gains))) * E + tolc
            xp_, tp_ = hist[-1] if p == 2 else (None, None)
            new, tol = unipc_predictor_prediction(target, xc, x, t, s, xp_, tp_, float32_coeffs)
            cx, cd, cp, _ = step_coeffs("dpm2" if p == 2 else "ddim", t, s, tp_)
            rho_p = abs(cd * target.gain(t)) + (abs(cp * target.gain(tp_)) if p == 2 else 0.0)
            E = np.maximum(E, abs(cx) * np.maximum(E, Ec) + rho_p * E + tol)
            E = np.maximum(E, Ec)
            xc_prev = xc
            hist.append((x, t))
            x = new
            continue
        elif use == DEIS_KIND:   # the noise predictions at x and at the last (order - 1) calls
            p = min(3, orders[k] if orders is not None else 3, len(hist) + 1)
            th = [u for _, u in hist[len(hist) - p + 1:]] if p > 1 else []
            xh = [v for v, _ in hist[len(hist) - p + 1:]] if p > 1 else []
            new, tol = deis_prediction(target, x, t, s, xh, th, float32_coeffs)
            kc = deis_coeffs(t, s, th)
            rho = abs(kc["cx"] + kc["w"][0] * _eps_gain(target, t))
            rho += sum(abs(w * _eps_gain(target, u)) for w, u in zip(kc["w"][1:], kc["ts"][1:]))
        elif use == HEUN_KIND:   # restarts from the saved state, the second call at the predictor x
            xp, tp = hist[-1]
            new, tol = heun_prediction(target, x, t, s, xp, tp, float32_coeffs)
            w = heun_coeffs(t, s, tp)
            rho = abs(w["cx"] + w["w"][0] * target.gain(tp)) + abs(w["w"][1] * target.gain(t))
        elif use in EPS_KINDS:   # the noise prediction's gain in x: (1 - alpha g)/sigma
            xp, tp = hist[-1] if use != "dpm1e" else (None, None)
            new, tol = eps_prediction(use, target, x, t, s, xp, tp, float32_coeffs)
            c = eps_coeffs(use, t, s, tp)
            rho = abs(c["cx"] + c["ce"] * _eps_gain(target, t)) + (abs(c["cp"] * _eps_gain(target, tp)) if tp else 0.0)
        else:
            xp, tp = hist[-1] if (use == "dpm2") else (None, None)
            new, tol = step_prediction(use, target, x, t, s, xp, tp, float32_coeffs=float32_coeffs)
            cx, cd, cp, _ = step_coeffs(use, t, s, tp)
            rho = abs(cx + cd * target.gain(t)) + (abs(cp * target.gain(tp)) if use == "dpm2" else 0.0)
        E = np.maximum(E, rho * E + tol)
        hist.append((x, t))
        x = new
    return x, E


def _eps_gain(target: GaussianTarget, t: float) -> float:
    r""":math:`\partial\hat\varepsilon/\partial x = (1 - \alpha_t g_t)/\sigma_t` of the Gaussian target."""
    return (1.0 - math.exp(-t) * target.gain(t)) / math.sqrt(-math.expm1(-2.0 * t))


def run_oracle(kind: str, target: GaussianTarget, grid, x0: np.ndarray, orders=None) -> np.ndarray:
    """The derived deterministic discretisation ``kind`` (ddim, dpm2 or dpm3) on ``grid`` (OU times, decreasing, last
    may be 0) from ``x0`` (VP); ``orders[k]`` caps the order of step ``k`` (:func:`step_kind`)."""
    return _run(kind, target, grid, x0, orders, False)[0]


def run_tolerance(kind: str, target: GaussianTarget, grid, x0: np.ndarray, orders=None,
                  float32_coeffs: bool = False) -> np.ndarray:
    """:math:`E_n` of the module docstring for the run of :func:`run_oracle` (per element; a dpm3 step's gain
    :math:`\\rho = |c_x + w_0 g_t| + |w_1 g_{t_p}| + |w_2 g_{t_{p2}}|` bounds its three-step recursion in the
    max norm as the two-step one does)."""
    return _run(kind, target, grid, x0, orders, float32_coeffs)[1]



def euler_ve_step(target, x: np.ndarray, t: float, s: float) -> tuple[np.ndarray, np.ndarray]:
    r"""diffusers' EulerDiscreteScheduler step, derived in its own variables, returned in VP coordinates.

    EulerDiscrete holds :math:`x_{\rm VE} = x_{\rm VP}/\alpha_t = x_{\rm VP}\sqrt{1+\sigma^2}` at
    :math:`\sigma = \sqrt{(1-\bar\alpha)/\bar\alpha} = \sigma_t/\alpha_t`, feeds the model
    ``scale_model_input`` :math:`= x_{\rm VE}/\sqrt{1+\sigma^2} = x_{\rm VP}`, and takes the Euler step of the
    probability-flow ODE :math:`dx_{\rm VE}/d\sigma = \hat\varepsilon` (``derivative = (sample - x0_pred) / sigma``):
    :math:`x'_{\rm VE} = x_{\rm VE} + (\sigma' - \sigma)\hat\varepsilon`,
    :math:`\hat\varepsilon = (x_{\rm VP} - \alpha_t D)/\sigma_t`.  Back in VP coordinates,
    :math:`x'_{\rm VP} = \alpha_s x'_{\rm VE} = (\sigma_s/\sigma_t)\,x_{\rm VP} + (\alpha_s - \alpha_t\sigma_s/\sigma_t)\,D`:
    the DDIM update (proofs_notes/integrators.md §1), which is why the step check uses ``ddim`` for it.

    ``target``: anything with ``denoiser(x, t)``; ``t > s >= 0`` OU times.  Returns ``(x_VP', tol)`` with the
    same rounding bound as :func:`step_prediction` (``ddim``), the VE route's roundings (two scalings, the
    conversion and the update: at most 10) being inside :math:`K(t)`'s 16 for diffusers' path.
    """
    t, s = float(t), float(s)
    if not (t > 0.0 and 0.0 <= s < t and math.isfinite(t)):
        raise ValueError(f"s: need 0 <= s < t with t > 0 finite, got t={t!r}, s={s!r}")
    x = np.asarray(x, dtype=np.float64)
    a_t, sig_t = math.exp(-t), math.sqrt(-math.expm1(-2.0 * t))
    a_s, sig_s = math.exp(-s), math.sqrt(-math.expm1(-2.0 * s))
    D = target.denoiser(x, t)
    eps = (x - a_t * D) / sig_t
    x_ve = x / a_t + (sig_s / a_s - sig_t / a_t) * eps
    _, tol = step_prediction("ddim", target, x, t, s)
    return a_s * x_ve, tol


# ---------------------------------------------------------------------------------------------------- guidance
def gamma(n: int) -> float:
    r""":math:`\gamma_n = n u/(1 - n u)`, :math:`u = 2^{-53}`: the relative error of ``n`` float64 roundings."""
    if not (isinstance(n, (int, np.integer)) and not isinstance(n, bool) and 0 <= n < 2 ** 50):
        raise ValueError(f"n: must be an integer in [0, 2^50), got {n!r}")
    return n * U64 / (1.0 - n * U64)


def cfg_eps(eps_uncond: np.ndarray, eps_cond: np.ndarray, guidance_scale: float) -> np.ndarray:
    r"""diffusers' classifier-free guidance, as its pipelines write it (float64):
    :math:`\hat\varepsilon_u + g(\hat\varepsilon_c - \hat\varepsilon_u)`, ``g = guidance_scale``."""
    return eps_uncond + guidance_scale * (eps_cond - eps_uncond)


def _mask_average_err(c: dict, Q: np.ndarray, eps_k: np.ndarray, mask: np.ndarray, n_sum: int) -> tuple:
    """First-order error of a mixture average over the components in ``mask`` and its logsumexp (see
    :func:`guidance_bounds`): ``(dQ, dlogz, pm)``."""
    pm = c["pi"] * mask
    tot = pm.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        pm = np.where(tot > 0, pm / np.where(tot > 0, tot, 1.0), 0.0)
    ebar = np.sum(pm * eps_k, axis=1, keepdims=True)
    K = mask.size
    scale = np.max(np.where(mask, c["qmag"], 0.0), axis=1, keepdims=True)
    dQ = np.sum(pm * (eps_k + ebar) * np.abs(c["q"] - Q), axis=1, keepdims=True) + gamma(n_sum) * scale
    lead = np.max(np.where(mask & (pm >= 1.0 / K), c["logit"], 0.0), axis=1, keepdims=True)
    dlogz = ebar + gamma(n_sum) * (lead + math.log(K) + 1.0)
    return dQ, dlogz, pm


def guidance_bounds(target: MixtureTarget, x: np.ndarray, t: float, y: int, w: float, cg: bool = True) -> dict:
    r"""Per-element float64 rounding bounds of the guided quantities at points ``x`` (any shape in 1-D;
    ``(..., d)`` for a 2-D ``target``), OU time ``t``.

    Returns ``eps_u, eps_c, eps_cfg, eps_cg, D_w`` (the computed values) and ``identity`` (the tolerance of
    :math:`|\hat\varepsilon_{\rm cfg} - \hat\varepsilon_{\rm cg}|`), ``cfg`` (of :math:`|\hat\varepsilon_{\rm cfg}
    - \hat\varepsilon_w|`, exact :math:`\hat\varepsilon_w`) and ``D_w`` (of the guided denoiser), with
    :math:`\hat\varepsilon_{\rm cfg}` = :func:`cfg_eps` of the exact unconditional and class-``y`` outputs
    and :math:`\hat\varepsilon_{\rm cg}` = :meth:`MixtureTarget.cg_eps` (the exact class posterior's gradient).

    Derivation (first order in :math:`u = 2^{-53}`, :math:`\gamma_n` of :func:`gamma`; ``K`` components):

    * logit :math:`\ell_k = \log w_k - \tfrac d2\log(2\pi C_k) - |v_k|^2/(2C_k)`, :math:`v_k = x - \alpha\mu_k`
      (``d`` = ``target.d`` coordinates): :math:`v_{kl}` carries :math:`2u S_{kl}` (:math:`S_{kl} = |x_l| +
      \alpha|\mu_{kl}|`), so :math:`|v_k|^2/(2C_k)` carries :math:`\le 2u \sum_l S_{kl}^2/C_k`; with at most
      :math:`7 + d` roundings (8 in 1-D; each further coordinate adds one to the sums of squares and of log-det
      terms; the mixture kernels' eigenvectors of :math:`s_k^2 I` are columns of the identity, entries exactly 0
      and 1, so their projections are exact) of terms bounded by
      ``logit`` of :meth:`MixtureTarget.components`, :math:`|\delta\ell_k| \le \epsilon_k =
      \gamma_{7+d}(\mathrm{logit}_k + 1)`.  Every other term below is per coordinate (the component denoisers'
      coordinates are formed as in 1-D; the posterior weights are common to all coordinates).
    * a posterior average :math:`Q = \sum_k \pi_k q_k` over a set of components: :math:`\pi` is a softmax of the
      logits, :math:`\delta\pi_k = \pi_k(\delta\ell_k - \sum_j\pi_j\delta\ell_j)`, so
      :math:`|\delta Q| \le \sum_k \pi_k(\epsilon_k + \bar\epsilon)|q_k - Q| + \gamma_{2K+8}\max_k|q_k|`
      (:math:`\bar\epsilon = \sum_j\pi_j\epsilon_j`; the second term: 6 roundings of :math:`q_k` and the
      online accumulation with at most ``K`` rescalings, :mod:`numerics._kernels`); its log-sum-exp carries
      :math:`\bar\epsilon + \gamma_{2K+8}(|\ell_{\max}| + \log K + 1)`, :math:`|\ell_{\max}|` bounded by the
      ``logit`` of a component with :math:`\pi \ge 1/K` (the largest logit has one).
    * :math:`p_{\neg y} = 1/(1 + e^{\Delta})`, :math:`\Delta = \log Z_y - \log Z_{\neg y}`:
      :math:`|\delta p| \le p_y p_{\neg y}|\delta\Delta| + \gamma_4 p`.
    * :math:`\hat\varepsilon = (x - \alpha D)/\sigma`: :math:`(\alpha|\delta D| + \gamma_5(|x| + \alpha|D|))/\sigma`
      (3 operations and the roundings of :math:`\alpha, \sigma`);
      :math:`\sigma g_y = (\alpha/\sigma)p_{\neg y}(D_y - D_{\neg y})`:
      :math:`(\alpha/\sigma)(|\delta p_{\neg y}||D_y - D_{\neg y}| + p_{\neg y}(|\delta D_y| + |\delta D_{\neg y}|)) + \gamma_8\sigma|g_y|`.
    * CFG :math:`\hat\varepsilon_u + g(\hat\varepsilon_c - \hat\varepsilon_u)`: the inputs' errors times
      :math:`1 + |g|` and :math:`|g|`, plus :math:`\gamma_3(|\hat\varepsilon_u| + |g|(|\hat\varepsilon_c| + |\hat\varepsilon_u|))`;
      CG :math:`\hat\varepsilon_u - (g\sigma) g_y`: :math:`\delta\hat\varepsilon_u + |g|\,\delta(\sigma g_y) + \gamma_3(|\hat\varepsilon_u| + |g\sigma g_y|)`.
    * :math:`D_w = p_y D_y + ((1-w)p_{\neg y})D_{\neg y} + (w p_{\neg y}) D_y`: the inputs' errors times their
      coefficients plus :math:`\gamma_6` of the terms' magnitudes.

    Every first-order bound is doubled (the neglected second-order terms are below it while it is below 1/4, as
    for :func:`numerics.fast.agreement_bound`); ``identity`` is the sum of the two sides' bounds.  ``cg=False``
    skips the classifier-guided output (``eps_cg`` is then ``None``).
    """
    X = np.asarray(x, dtype=np.float64)
    shape = X.shape
    d = target.d
    xc = target._col(X)[0]
    y = target._label(y)
    a, sig = math.exp(-t), math.sqrt(-math.expm1(-2.0 * t))
    c = target.components(xc, t)
    K = target.n_classes
    coef = a * target.stds ** 2 / (a * a * target.stds ** 2 - math.expm1(-2.0 * t))
    qmag = np.abs(target.means) + (coef if d == 1 else coef[:, None]) * c["S"]
    eps_k = gamma(7 + d) * (c["logit"] + 1.0)
    n_sum = 2 * K + 8
    allm, ym = np.ones(K, dtype=bool), np.arange(K) == y
    D_u = target.denoiser(xc, t)
    D_y = target.denoiser(xc, t, y)
    p_y = c["pi"][:, y:y + 1]
    p_n = np.maximum(1.0 - p_y, 0.0)
    po = np.where(ym, 0.0, c["pi"])   # the other classes' average, from the component terms (inside the bound only)
    tot = po.sum(axis=1, keepdims=True)
    cols = []
    for l in range(d):   # per coordinate: the component denoisers' coordinate l, common posterior weights
        cl = {**c, "q": c["q"] if d == 1 else c["q"][:, :, l], "qmag": qmag if d == 1 else qmag[:, :, l]}
        dDu, _, _ = _mask_average_err(cl, D_u[:, l:l + 1], eps_k, allm, n_sum)
        dDy, dlzy, _ = _mask_average_err(cl, D_y[:, l:l + 1], eps_k, ym, n_sum)
        D_o = np.sum(po * cl["q"], axis=1, keepdims=True) / np.where(tot > 0, tot, 1.0)
        dDo, dlzo, _ = _mask_average_err(cl, D_o, eps_k, ~ym, n_sum) if K > 1 else (0.0 * D_o, 0.0 * D_o, None)
        cols.append((dDu, dDy, D_o, dDo))
    dDu, dDy, D_o, dDo = (np.concatenate(v, axis=1) for v in zip(*cols))
    d_delta = dlzy + dlzo
    dpn = p_y * p_n * d_delta + gamma(4) * p_n
    dpy = p_y * p_n * d_delta + gamma(4) * p_y
    eps_u = (xc - a * D_u) / sig
    eps_c = (xc - a * D_y) / sig
    e_u = (a * dDu + gamma(5) * (np.abs(xc) + a * np.abs(D_u))) / sig
    e_c = (a * dDy + gamma(5) * (np.abs(xc) + a * np.abs(D_y))) / sig
    sgy = (a / sig) * p_n * (D_y - D_o)
    e_sg = (a / sig) * (dpn * np.abs(D_y - D_o) + p_n * (dDy + dDo)) + gamma(8) * np.abs(sgy)
    g = float(w)
    e_cfg = e_u + abs(g) * (e_c + e_u) + gamma(3) * (np.abs(eps_u) + abs(g) * (np.abs(eps_c) + np.abs(eps_u)))
    e_cg = e_u + abs(g) * e_sg + gamma(3) * (np.abs(eps_u) + abs(g) * np.abs(sgy))
    D_w = target.guided_denoiser(xc, t, y, g)
    e_Dw = ((p_y + abs(g) * p_n) * dDy + abs(1.0 - g) * p_n * dDo + dpy * np.abs(D_y)
            + dpn * (abs(1.0 - g) * np.abs(D_o) + abs(g) * np.abs(D_y))
            + gamma(6) * (p_y * np.abs(D_y) + abs(1.0 - g) * p_n * np.abs(D_o) + abs(g) * p_n * np.abs(D_y)))
    r = lambda v: np.asarray(v, dtype=np.float64).reshape(shape)  # noqa: E731
    return {"eps_u": r(eps_u), "eps_c": r(eps_c), "eps_cfg": r(cfg_eps(eps_u, eps_c, g)),
            "eps_cg": r(target.cg_eps(xc, t, y, g)) if cg else None, "D_w": r(D_w),
            "identity": r(2.0 * (e_cfg + e_cg)), "cfg": r(2.0 * e_cfg), "D_w_tol": r(2.0 * e_Dw)}


def _gain_matrix(cx: float, cd: float, G: np.ndarray, d: int) -> np.ndarray:
    r""":math:`c_x I + c_D G` per point: per element in 1-D, ``(..., d, d)`` in 2-D (``G`` the denoiser's gain,
    :meth:`MixtureTarget.guided_gain`)."""
    return cx + cd * G if d == 1 else cx * np.eye(d) + cd * G


def _apply(M: np.ndarray, v: np.ndarray, d: int) -> np.ndarray:
    """``M v`` per point: a product of elements in 1-D; in 2-D a matrix times a vector ``(..., d)`` or a matrix
    ``(..., d, d)``."""
    if d == 1:
        return M * v
    return M @ v if v.ndim == M.ndim else np.einsum("...ij,...j->...i", M, v)


def guided_run(kind: str, target: MixtureTarget, grid, x0: np.ndarray, y: int, w: float,
               orders=None, f32: float | None = None, jacobian: bool = False) -> tuple:
    r"""The package's guided deterministic discretisation ``kind`` (``ddim`` or ``dpm2``) on ``grid`` (OU times,
    decreasing, the last may be 0) from ``x0`` (VP, any shape; ``(..., d)`` for a 2-D ``target``), with the
    classifier-guided denoiser :math:`D_w` (:meth:`MixtureTarget.guided_denoiser`, ``w`` = diffusers'
    ``guidance_scale``), and the per-element tolerance of a run that feeds the scheduler :func:`cfg_eps` of the
    exact outputs.

    Tolerance: step :math:`j` (:math:`t \to s`) contributes :math:`\mathrm{tol}_j = K(t)\,u\,S_j + |c_D|\,\delta_j +
    |c_p|\,\delta_{j'}` with :math:`S_j` of the module docstring at :math:`D_w` and
    :math:`\delta = (\sigma_t/\alpha_t)\,\mathrm{tol}_{\rm cfg} + \mathrm{tol}_{D_w}` (:func:`guidance_bounds`: the
    scheduler's model output differs from the exact :math:`\hat\varepsilon_w` by at most ``cfg``, which its
    conversion :math:`\hat x_0 = (x - \sigma\hat\varepsilon)/\alpha` scales by :math:`\sigma/\alpha`; the oracle's
    :math:`D_w` by at most ``D_w_tol``).  Propagation as
    :func:`run_tolerance` with the local gain :math:`G = \partial D_w/\partial x` (:meth:`MixtureTarget.guided_gain`)
    in place of the Gaussian's: :math:`\rho_j = |c_x + c_D G_j| + |c_p G_{j'}|`, in 2-D the matrix of elementwise
    absolute values of :math:`c_x I + c_D G_j` and :math:`c_p G_{j'}` applied to the vector of per-coordinate
    majorants (:math:`|e_{j+1}| \le |M_j||e_j| + \dots` coordinatewise); the propagated majorant is
    doubled (first order).  ``f32``: also allow float32 sample arithmetic with ``f32`` roundings and float32
    coefficients, :math:`(f_{32} + K_{32}(t, s))\,u_{32}\,S_j` per step (the float32 bound that classifies a
    float64 run computed in float32).  Returns ``(x_out, tol)``, or ``(x_out, tol, tol32)`` with ``f32``;
    ``jacobian=True`` appends :math:`J = \partial x_{\rm out}/\partial x_0` (per element in 1-D, ``(..., d, d)`` in
    2-D), propagated with the steps: :math:`J_s = (c_x + c_D G_t)J_t + c_p G_{t'} J_{t'}` (exact: the chain rule
    through each step's formula; matrix products in 2-D).
    """
    if kind not in ("ddim", "dpm2"):
        raise ValueError(f"kind: must be 'ddim' or 'dpm2', got {kind!r}")
    d = target.d
    x = np.array(x0, dtype=np.float64)
    E = np.zeros_like(x)
    E32 = np.zeros_like(x)
    x_prev = t_prev = G_prev = delta_prev = J_prev = None
    J = np.ones_like(x) if d == 1 else np.broadcast_to(np.eye(d), x.shape + (d,)).copy()
    for k in range(len(grid) - 1):
        t, s = float(grid[k]), float(grid[k + 1])
        use = "ddim" if (kind == "ddim" or (orders is not None and orders[k] == 1) or t_prev is None) else "dpm2"
        cx, cd, cp, _ = step_coeffs(use, t, s, t_prev if use == "dpm2" else None)
        b = guidance_bounds(target, x, t, y, w, cg=False)
        D = b["D_w"]
        a_t, sig_t = math.exp(-t), math.sqrt(-math.expm1(-2.0 * t))
        delta = (sig_t / a_t) * b["cfg"] + b["D_w_tol"]
        G = target.guided_gain(x, t, y, w)
        new = cx * x + cd * D
        S = _arith_scale(x, D, t, s, cx, cd)
        tol = abs(cd) * delta
        M = _gain_matrix(cx, cd, G, d)
        rho = np.abs(M)
        J_new = _apply(M, J, d)
        if use == "dpm2":
            Dp = target.guided_denoiser(x_prev, t_prev, y, w)
            new = new + cp * Dp
            S = S + np.abs(cp * Dp)
            tol = tol + abs(cp) * delta_prev
            rho = rho + np.abs(cp * G_prev)
            J_new = J_new + _apply(cp * G_prev, J_prev, d)
        E = np.maximum(E, _apply(rho, E, d) + tol + k_step(t) * U64 * S)
        if f32 is not None:
            E32 = np.maximum(E32, _apply(rho, E32, d) + tol + (k_step(t) * U64 + (f32 + k32(t, s)) * U32) * S)
        x_prev, t_prev, G_prev, delta_prev, x = x, t, G, delta, new
        J_prev, J = J, J_new
    out = (x, 2.0 * E) if f32 is None else (x, 2.0 * E, 2.0 * E32)
    return out + (J,) if jacobian else out


def ddpm_guided_law(target: MixtureTarget, grid, y: int, w: float, x: np.ndarray, start_var: float = 1.0,
                    f32: float | None = None) -> dict:
    r"""The exact law of the guided DDPM chain on ``grid`` (OU times, decreasing) from :math:`N(0, \mathrm{start\_var})`
    at ``grid[0]``, as a CDF at known points, and the error terms of that CDF and of a chain fed :func:`cfg_eps`.

    Each step :math:`t \to s` is the derived transition :math:`x_s \mid x_t \sim N(c_x x_t + c_D D_w(x_t), c_z^2)`
    (generated ``ddpm`` coefficients, :math:`D_w` = :meth:`MixtureTarget.guided_denoiser`), propagated on the
    uniform space grid ``x`` by :func:`numerics.references.grid_density.propagate`.  A last step with
    :math:`c_z = 0` (it lands at :math:`\bar\alpha = 1`, :math:`s = 0`) is the deterministic map
    :math:`m(u) = c_x u + c_D D_w(u)`; where :math:`m' = c_x + c_D\,\partial_x D_w > 0` (checked at every grid point,
    :meth:`MixtureTarget.guided_gain`) the output CDF is :math:`F_{\rm out}(m(u)) = F_{n-1}(u)`, so the CDF is
    known at the points :math:`m(x_i)` (else at the points ``x``).

    Returns a dict: ``points``, ``cdf`` (:math:`F` there: the cumulative trapezoid sum of the propagated density
    from the grid's left end), ``density`` (before a deterministic last step), and the CDF error terms

    * ``escaped``: mass of the start law outside the grid plus the kernels' mass that left it (``propagate``);
    * ``refinement``: L1 distance to the run on the halved spacing (``refinement_error``; the rule is the
      trapezoid rule of a smooth integrand, spectrally convergent once the spacing resolves the narrowest kernel,
      so the estimate bounds the finer run's error; the L1 error bounds the CDF error);
    * ``cdf_sum``: the cumulative trapezoid sum's error, :math:`\Delta^3/12` times the sum over cells of
      :math:`\max_{\rm cell}|p''|` (the cell's two ends' central second differences, the larger);
    * ``rounding``: how far a chain fed the scheduler's model output :func:`cfg_eps` of the exact outputs
      (instead of the exact :math:`\hat\varepsilon_w`) can move the CDF: its transition mean differs by at most
      :math:`\delta_k = |c_D|(\sigma_t/\alpha_t)\,\mathrm{cfg} + K(t)\,u\,(S + Z|c_z|)` (:func:`guidance_bounds`
      ``cfg``; :math:`S` of the module docstring; the noise :math:`|z| \le Z = 8`), the total variation between
      :math:`N(m, c_z^2)` and :math:`N(m + \delta, c_z^2)` is at most :math:`\delta/(\sqrt{2\pi}c_z)`, and a
      deterministic last step moves the CDF by at most :math:`\max p_{\rm out}\,\delta`; summed over the steps;
      ``f32``: a chain whose step rounds the sample to float32 (EulerAncestralDiscrete casts it in ``step``) with
      float64 coefficients (the tables cast to float64) carries :math:`f_{32}\,u_{32}\,(S + Z|c_z|)` more per step
      (``f32`` float32 roundings of terms bounded by :math:`S`; no :math:`K_{32}`: the coefficients are float64);
      ``z_tail``: the chance :math:`P(|z| > Z)` of one draw (the caller multiplies by the number of draws).

    The same chain is the law of every scheduler whose step is the DDPM posterior step between its levels: DDPM,
    DDIM with ``eta = 1`` (proofs_notes/integrators.md §2) and EulerAncestralDiscrete, whose ancestral split
    :math:`\sigma_{\rm up}^2 = \sigma_s^2(\sigma_t^2 - \sigma_s^2)/\sigma_t^2`, :math:`\sigma_{\rm down} =
    \sigma_s^2/\sigma_t` in its VE variables is that posterior (proofs_notes/integrators.md, "Ancestral steps").
    """
    from scipy.special import ndtr

    from numerics.references.grid_density import gaussian_on_grid, propagate, refinement_error, spacing

    y = target._label(y)
    ts = [float(t) for t in grid]
    steps = len(ts) - 1
    co = [IC.ddpm_coeffs(ts[k], ts[k + 1]) if ts[k + 1] > 0.0 else (0.0, 1.0, 0.0) for k in range(steps)]
    det_last = steps > 0 and co[-1][2] == 0.0
    n_prop = steps - 1 if det_last else steps
    x = np.asarray(x, dtype=np.float64)
    dx = spacing(x)

    def mean(u, k):
        return co[k][0] * u + co[k][1] * target.guided_denoiser(u, ts[k], y, w)

    def run(g):
        return propagate(gaussian_on_grid(g, 0.0, start_var), g, mean, lambda k: co[k][2] ** 2, n_prop)

    res = run(x)
    p = res.density
    sd0 = math.sqrt(start_var)
    escaped = res.escaped + float(ndtr((x[0] - 0.5 * dx) / sd0) + ndtr(-(x[-1] + 0.5 * dx) / sd0))
    refinement = refinement_error(lambda g: run(g).density, x)
    cdf = (np.cumsum(p) - 0.5 * p) * dx
    # the composite trapezoid rule errs by at most dx^3 max|p''| / 12 per cell (max over a cell: its two ends'
    # central second differences, the larger)
    p2 = np.abs(np.gradient(np.gradient(p, dx), dx))
    cdf_sum = float(dx ** 3 / 12.0 * np.sum(np.maximum(p2[1:], p2[:-1])))
    Z = 8.0
    rounding = 0.0
    points = x
    for k in range(steps):
        t, s = ts[k], ts[k + 1]
        cx, cd, cz = co[k]
        b = guidance_bounds(target, x, t, y, w, cg=False)
        a_t, sig_t = math.exp(-t), math.sqrt(-math.expm1(-2.0 * t))
        S = _arith_scale(x, b["D_w"], t, s, cx, cd) + Z * abs(cz)
        k_u = k_step(t) * U64 + (0.0 if f32 is None else f32 * U32)
        delta = float(np.max(abs(cd) * (sig_t / a_t) * b["cfg"] + k_u * S))
        if k == steps - 1 and det_last:
            slope = cx + cd * target.guided_gain(x, t, y, w)
            if not np.all(slope > 0.0):
                raise ValueError("the last (deterministic) step's map is not increasing on the grid: its output "
                                 "CDF is not the pushforward of the grid CDF")
            points = mean(x, k)
            rounding += float(np.max(p / slope)) * delta
        else:
            rounding += delta / (math.sqrt(2.0 * math.pi) * cz)
    return {"points": points, "cdf": cdf, "density": p, "escaped": escaped, "refinement": refinement,
            "cdf_sum": cdf_sum, "rounding": rounding, "z_tail": float(2.0 * ndtr(-Z))}
