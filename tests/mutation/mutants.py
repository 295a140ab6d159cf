r"""The curated mutants of the mutation suite (``python -m tests.mutation.run``).

Each :class:`Mutant` is a realistic one-line bug in ``numerics/`` or ``theory/`` (a dropped
:math:`\alpha_t`, a sign, :math:`\sigma` for :math:`\sigma^2`, an index one step off, :math:`w` for
:math:`w - 1`, ...): ``original`` must occur exactly once in ``file`` and is replaced by ``replacement`` in a
temporary copy of the package.  A *claim* mutant names the claim globs (``--only`` of
``guidance-verify run``) expected to catch it: the stated run of those claims on the mutated copy must
fail (some claim VIOLATED or ERROR).  A *test* mutant (a purely numerical safeguard: a max shift of a
log-sum-exp, an ``expm1``) names instead a pytest node id expected to fail on the mutated copy; the two
kinds are scored separately.  ``regen`` mutants change a SymPy derivation in ``theory/``: the runner then
regenerates ``numerics/generated/integrator_coeffs.py`` in the copy (``python -m theory.codegen``), as a
developer who changes a derivation would, so the bug reaches the samplers the claims run.

Claims files (``numerics/papers/*/claims.py``) are never mutated: the suite measures the checks, it does
not change them.  Globs are kept to the few claims that concern each mutant (the suite runs in CI).
"""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Mutant", "MUTANTS", "by_id"]


@dataclass(frozen=True)
class Mutant:
    id: str
    file: str  #: path relative to the repository root, under numerics/ or theory/
    original: str  #: text that occurs exactly once in ``file``
    replacement: str
    description: str  #: the bug it models, one line
    claims: tuple[str, ...] = ()  #: claim globs expected to catch it (claim mutants)
    test: str | None = None  #: pytest node id expected to catch it (safeguard mutants)
    regen: bool = False  #: regenerate numerics/generated/integrator_coeffs.py from theory/ after mutating

    @property
    def kind(self) -> str:
        return "test" if self.test is not None else "claims"


K = "numerics/_kernels.py"
MIX = "numerics/mixture.py"
GEN = "numerics/generated/integrator_coeffs.py"
SAMP = "numerics/samplers.py"

MUTANTS: tuple[Mutant, ...] = (
    # ------------------------------------------------------------------ schedule, grids, methods
    Mutant("schedule_sigma2_half_rate", "numerics/schedule.py",
           "return math.exp(-t), -math.expm1(-2.0 * t)",
           "return math.exp(-t), -math.expm1(-t)",
           "scalar sigma_t^2 = 1 - e^{-t} instead of 1 - e^{-2t} (beta = 1 vs beta = 2 convention mixed up)",
           claims=("foundations.tweedie_first_order", "samplers.dpm_solver_1_is_ddim")),
    Mutant("grids_logsnr_inverse_factor", "numerics/grids.py",
           "    g = logsnr_inverse(lam)\n",
           "    g = logsnr_inverse(lam / 2.0)\n",
           "log-SNR grid built from the half log-SNR (log(alpha/sigma) for log(alpha^2/sigma^2))",
           claims=("samplers.convergence_orders",)),
    Mutant("grids_geometric_rate", "numerics/grids.py",
           "    factor = 1.0 + kappa\n",
           "    factor = 1.0 + 2.0 * kappa\n",
           "geometric tail of the support paper's grid shrinks by 1 + 2 kappa instead of 1 + kappa",
           claims=("support.rate_exponent", "support.subspace_contraction")),
    Mutant("samplers_score_at_step_end", SAMP,
           "    q = guided.q(method.q, x, t)\n",
           "    q = guided.q(method.q, x, s)\n",
           "the frozen quantity evaluated at the end of the step (time s) instead of its start (time t)",
           claims=("samplers.convergence_orders", "samplers.ddpm_exact_law_1d")),
    Mutant("samplers_eps_missing_sqrt", SAMP,
           "return -math.sqrt(-math.expm1(-2.0 * t)) * self.score(x, t)",
           "return math.expm1(-2.0 * t) * self.score(x, t)",
           "noise prediction eps = -sigma_t^2 s instead of -sigma_t s (missing sqrt)",
           claims=("samplers.dpm_solver_1_is_ddim",)),
    Mutant("samplers_cfg_sign", SAMP,
           "return w * s_y + (1.0 - w) * self._plain.score(x, t)",
           "return w * s_y + (w - 1.0) * self._plain.score(x, t)",
           "classifier-free guidance w s_y + (w - 1) s (sign of the unconditional term flipped)",
           claims=("support.distance_scales_with_sigma", "support.ddpm_close")),
    # ------------------------------------------------------------------ mixture kernels
    Mutant("kernel_denoiser_dropped_alpha", K,
           "            tab[k, _COEFM, j] = alpha * lam / c\n",
           "            tab[k, _COEFM, j] = lam / c\n",
           "Tweedie denoiser mu + S C^{-1}(x - alpha mu) with the alpha_t factor dropped",
           claims=("foundations.tweedie_first_order",)),
    Mutant("kernel_score_sigma_for_sigma2", K,
           "            out[l] = -resid[l] / sigma2\n",
           "            out[l] = -resid[l] / math.sqrt(sigma2)\n",
           "score of a singular component: the off-subspace part divided by sigma_t instead of sigma_t^2",
           claims=("foundations.tweedie_first_order", "support.subspace_contraction")),
    Mutant("kernel_logdet_half", K,
           "            ld += math.log1p(y) if y < 1e300 else math.log(a2 * lam) - math.log(sigma2)\n",
           "            ld += 0.5 * (math.log1p(y) if y < 1e300 else math.log(a2 * lam) - math.log(sigma2))\n",
           "component log-density with log sqrt(c_j) where log c_j belongs (the 1/2 applied twice)",
           claims=("foundations.tweedie_first_order",)),
    Mutant("kernel_posterior_cov_alpha", K,
           "                pj = pik * lam * s2 / (al * al * lam + s2)\n",
           "                pj = pik * lam * s2 / (al * lam + s2)\n",
           "posterior covariance sigma^2 S C^{-1} with alpha_t where alpha_t^2 belongs",
           claims=("foundations.tweedie_second_order", "foundations.hessian_identity")),
    Mutant("mixture_guidance_dropped_alpha", MIX,
           "            out = (p_not * (alpha / sigma2))[:, None] * (d_in - d_out)\n",
           "            out = (p_not / sigma2)[:, None] * (d_in - d_out)\n",
           "guidance vector p(not y|x) (alpha/sigma^2)(D_y - D_not_y) with alpha_t dropped",
           claims=("foundations.cg_equals_cfg",)),
    Mutant("mixture_guided_denoiser_w_minus_1", MIX,
           "out = p_in[:, None] * d_in + ((1.0 - w) * p_not)[:, None] * d_out + (w * p_not)[:, None] * d_in",
           "out = p_in[:, None] * d_in + ((2.0 - w) * p_not)[:, None] * d_out + ((w - 1.0) * p_not)[:, None] * d_in",
           "one-pass guided denoiser D + (w - 1)(sigma^2/alpha) g: w - 1 where w belongs (CFG convention)",
           claims=("samplers.fast_path_agrees",)),
    Mutant("mixture_conditional_wrong_class", MIX,
           "s_in, _, _, single, _, _ = self._average(x, t, K_.SCORE, self.labels == y)",
           "s_in, _, _, single, _, _ = self._average(x, t, K_.SCORE, self.labels != y)",
           "class-conditional score of the other classes (wrong class index)",
           claims=("foundations.cg_equals_cfg",)),
    Mutant("mixture_hessian_alpha", MIX,
           "        c = alpha**2 / sigma2**2\n",
           "        c = alpha / sigma2**2\n",
           "guidance Hessian scale alpha_t/sigma_t^4 instead of alpha_t^2/sigma_t^4",
           claims=("foundations.hessian_identity", "ce_guidance.true_classifier_hessian")),
    # ------------------------------------------------------------------ generated coefficients
    Mutant("gen_ddpm_cx_dropped_alpha", GEN,
           "    c_x = a_h*sig2_s/(a2_h*sig2_s + sig2_h)\n",
           "    c_x = sig2_s/(a2_h*sig2_s + sig2_h)\n",
           "DDPM posterior mean coefficient of x_t without alpha_{t|s}",
           claims=("samplers.ddpm_is_ddim_eta1",)),
    Mutant("gen_ddpm_cz_variance_for_std", GEN,
           "    c_z = math.sqrt(sig2_h)*math.sqrt(sig2_s)/math.sqrt(a2_h*sig2_s + sig2_h)\n",
           "    c_z = sig2_h*sig2_s/(a2_h*sig2_s + sig2_h)\n",
           "DDPM noise scaled by the posterior variance instead of its standard deviation",
           claims=("samplers.ddpm_is_ddim_eta1",)),
    Mutant("gen_ddim_eta_eta_for_eta2", GEN,
           "    etam2 = (1 - eta)*(eta + 1)\n",
           "    etam2 = (1 - eta)\n",
           "DDIM-eta deterministic part sqrt(sigma_s^2 - eta c^2) instead of sqrt(sigma_s^2 - eta^2 c^2) "
           "(equal at eta = 0 and 1)",
           claims=("samplers.weak_orders",)),
    Mutant("gen_dpm2_slope_weight", GEN,
           "    c_q_prev = -1/2*a_h*a_s*sig2_h*",
           "    c_q_prev = -a_h*a_s*sig2_h*",
           "DPM-Solver++(2M) previous-denoiser weight h/h_p instead of h/(2 h_p)",
           claims=("samplers.convergence_orders",)),
    Mutant("gen_euler_maruyama_drift", GEN,
           "    c_x = h + 1\n    c_q = 2*h\n",
           "    c_x = h + 1\n    c_q = h\n",
           "Euler-Maruyama with the PF-ODE's score weight h instead of the reverse SDE's 2h",
           claims=("ce_guidance.discretisation_rate",)),
    Mutant("gen_ei_sde_code_noise", GEN,
           "    c_z = math.sqrt(2)*math.sqrt(em_h)\n",
           "    c_z = math.sqrt(em_h)\n",
           "support-code EI-SDE noise sqrt(e^h - 1) without the diffusion's sqrt(2)",
           claims=("support.ddpm_orthogonal_variance",)),
    # ------------------------------------------------------------------ theory (regenerated)
    Mutant("theory_sde_mean_drift", "theory/integrators.py",
           "    sde_mean = sp.exp(tau) * x_t + sp.integrate(sp.exp(tau - r) * 2 * q, (r, 0, tau))\n",
           "    sde_mean = sp.exp(tau) * x_t + sp.integrate(sp.exp(tau - r) * q, (r, 0, tau))\n",
           "score-frozen EI of the reverse SDE derived with the PF-ODE drift (score weight 1 for 2)",
           claims=("support.ddpm_orthogonal_variance", "discriminator.trained_2d"), regen=True),
    Mutant("theory_dpm2_slope", "theory/integrators.py",
           "    approx_slope = h_ell / 2 * (1 - sp.exp(-h_ell))\n",
           "    approx_slope = h_ell * (1 - sp.exp(-h_ell))\n",
           "DPM-Solver++(2M) slope weight derived without the 1/2",
           claims=("samplers.convergence_orders",), regen=True),
    Mutant("theory_ddpm_noise_variance", "theory/integrators.py",
           'c_z=sp.sqrt(post["variance_vp"]).subs(vals),',
           'c_z=post["variance_vp"].subs(vals),',
           "DDPM derived with the posterior variance as the noise coefficient (std expected)",
           claims=("samplers.ddpm_is_ddim_eta1",), regen=True),
    Mutant("theory_euler_sde_drift", "theory/integrators.py",
           "    euler_sde_mean = x_t + tau * (x_t + 2 * q)\n",
           "    euler_sde_mean = x_t + tau * (x_t + q)\n",
           "Euler-Maruyama derived with the PF-ODE drift (score weight 1 for 2)",
           claims=("ce_guidance.discretisation_rate",), regen=True),
    # ------------------------------------------------------------------ references
    Mutant("ref_exact_law_noise_std", "numerics/references/exact_gaussian.py",
           "            noise[:d, :d] = c[-1] ** 2 * I\n",
           "            noise[:d, :d] = c[-1] * I\n",
           "exact Gaussian law propagated with the noise std where its variance belongs",
           claims=("ce_guidance.discretisation_rate",)),
    Mutant("ref_grid_kernel_sd", "numerics/references/grid_density.py",
           "        sd = math.sqrt(v)\n        w = p * dx",
           "        sd = v\n        w = p * dx",
           "grid propagation with the transition variance used as its standard deviation",
           claims=("samplers.ddpm_exact_law_1d", "ce_guidance.end_to_end_kl")),
    Mutant("ref_mpmath_dropped_alpha", "numerics/references/mpmath_reference.py",
           "            v = mp.matrix([xv[l] - alpha * mu[l] for l in range(d)])\n",
           "            v = mp.matrix([xv[l] - mu[l] for l in range(d)])\n",
           "the 50-digit reference residual x - mu instead of x - alpha_t mu",
           claims=("foundations.tweedie_first_order",)),
    # ------------------------------------------------------------------ paper models
    Mutant("ce_settingG_pq_alpha", "numerics/papers/ce_guidance/classifier_error.py",
           "        f = 2 * self.alpha * self.m * (s + self.alpha * self.m)",
           "        f = 2 * self.alpha * self.m * (s + self.m)",
           "setting G's E[pq] with the class mean m where alpha_t m belongs",
           claims=("ce_guidance.small_delta_mse_kl_ratio", "ce_guidance.linear_rate_attained")),
    Mutant("ce_ripple_kl_direction", "numerics/papers/ce_guidance/classifier_error.py",
           "    kl = p * (lp - lph) + q * (lq - lqh)\n",
           "    kl = ph * (lph - lp) + qh * (lqh - lq)\n",
           "conditional KL taken in the reverse direction KL(p_hat || p)",
           claims=("ce_guidance.excess_ce_equals_kl",)),
    Mutant("dkl_riemann_right_point", "numerics/papers/discrete_kl/channel.py",
           'pts = {"left": ts[:-1], "right": ts[1:], "mid": 0.5 * (ts[:-1] + ts[1:])}.get(rule)',
           'pts = {"left": ts[1:], "right": ts[1:], "mid": 0.5 * (ts[:-1] + ts[1:])}.get(rule)',
           "Lemma 2's Riemann sum with the right point M(t_k) instead of the left point M(t_{k-1})",
           claims=("discrete_kl.lemma2_riemann_gap",)),
    Mutant("dkl_posterior_dropped_snr", "numerics/papers/discrete_kl/channel.py",
           "np.einsum(\"kab,nkb->nka\", S, y[:, None, :] - t * self.means[None])",
           "np.einsum(\"kab,nkb->nka\", S, y[:, None, :] - self.means[None])",
           "posterior mean of a component with y - mu where y - t mu belongs (dropped SNR factor)",
           claims=("discrete_kl.immse", "discrete_kl.lemma2_riemann_gap")),
    Mutant("dkl_gain_dropped_snr", "numerics/papers/discrete_kl/channel.py",
           "np.linalg.solve(eye + t * S, S)",
           "np.linalg.solve(eye + S, S)",
           "posterior covariance Sigma (I + Sigma)^{-1} with the SNR t dropped (Sigma (I + t Sigma)^{-1})",
           claims=("discrete_kl.rate_one_over_n", "discrete_kl.theorem1_bound")),
    Mutant("dkl_two_point_skew_sign", "numerics/papers/discrete_kl/channel.py",
           "    side = np.where(gamma < 0, -1.0, 1.0)\n",
           "    side = np.where(gamma > 0, -1.0, 1.0)\n",
           "two-point law matching the third moment with the skewness sign flipped (rare point on the wrong side)",
           claims=("discrete_kl.moment_matching",)),
    Mutant("disc_marginal_alpha_not_squared", "numerics/papers/discriminator/refined_1d.py",
           "        return Marginal(self.w, self.m * a, self.v * a * a - math.expm1(-2.0 * t))\n",
           "        return Marginal(self.w, self.m * a, self.v * a - math.expm1(-2.0 * t))\n",
           "1-D mixture marginal variance alpha_t v + sigma_t^2 instead of alpha_t^2 v + sigma_t^2",
           claims=("discriminator.base_kl_identity", "discriminator.bayes_exact_correction")),
    Mutant("disc_dsm_target_sigma2", "numerics/papers/discriminator/refined_1d.py",
           "    return a * x0 + np.sqrt(s2) * z, t, -z / np.sqrt(s2)\n",
           "    return a * x0 + np.sqrt(s2) * z, t, -z / s2\n",
           "denoising-score-matching target -z/sigma_t^2 instead of -z/sigma_t (gradient-matching fit)",
           claims=("discriminator.overfitting",)),
    Mutant("support_region_score_dropped_alpha", "numerics/papers/support/region_targets.py",
           "        return (lam * self._mean(x2, t) - x2) / s2\n",
           "        return (self._mean(x2, t) - x2) / s2\n",
           "region-mixture score (D - x)/sigma^2 instead of (alpha_t D - x)/sigma^2",
           claims=("support.three_disks",)),
    Mutant("support_kernel_tau_missing_sqrt", "numerics/papers/support/region_targets.py",
           "            mu, tau = x / lam, math.sqrt(s2) / lam\n",
           "            mu, tau = x / lam, s2 / lam\n",
           "planar region kernel width sigma_t^2/alpha_t instead of sigma_t/alpha_t (missing sqrt)",
           claims=("support.score_identity",)),
    Mutant("support_crescent_no_cross_break", "numerics/papers/support/region_targets.py",
           "        br += [float(q[0]) for q in self._isect]\n",
           "",
           "crescent quadrature without a panel edge where its two circles cross (the slice length's kink)",
           claims=("support.geometry_oracle",)),
    Mutant("ce_t1_laplacian_true_curvature_dropped", "numerics/papers/ce_guidance/theorem1_steps.py",
           "    lap = -hq * (g * g + hv * hv) + p * q * g * g + lap_lin\n",
           "    lap = -hq * (g * g + hv * hv) + lap_lin\n",
           "Laplacian of the log-probability error without the true logit's curvature term pq|grad f|^2",
           claims=("ce_guidance.theorem1_steps",)),
    Mutant("ce_dx_variance_fixed_point", "numerics/papers/ce_guidance/discretisation_exact.py",
           "    e = (h / 2.0) / (1.0 - h / 2.0) * (-math.expm1(2.0 * N * lr))\n",
           "    e = (h / 2.0) * (-math.expm1(2.0 * N * lr))\n",
           "Euler-Maruyama variance excess with the fixed point 1/(1 - h/2) taken to first order in h",
           claims=("ce_guidance.discretisation_exact",)),
    Mutant("dkl_readout_noise_std_as_variance", "numerics/papers/discrete_kl/readout_2d.py",
           "        steps.append((t_f, c(dk), c(math.sqrt(dk)) ** 2))\n",
           "        steps.append((t_f, c(dk), c(math.sqrt(dk))))\n",
           "2-D read-out sampler's step noise variance sqrt(delta_k) where delta_k belongs (std taken for variance)",
           claims=("discrete_kl.readout_2d",)),
    # ------------------------------------------------------------------ fast kernel path
    Mutant("fast_kernel_alpha_not_squared", "numerics/fast/kernels.py",
           "    v2 = x2 - 2.0 * alpha * xb[r, k] + alpha * alpha * mu2[k]\n",
           "    v2 = x2 - 2.0 * alpha * xb[r, k] + alpha * mu2[k]\n",
           "fast GEMM-form |x - alpha mu|^2 with alpha |mu|^2 where alpha^2 |mu|^2 belongs",
           claims=("samplers.fast_path_agrees",)),
    # ------------------------------------------------------------------ numerical safeguards (unit tests)
    Mutant("safeguard_schedule_expm1", "numerics/schedule.py",
           "    return -np.expm1(-2.0 * ",
           "    return 1.0 - np.exp(-2.0 * ",
           "sigma_t^2 = 1 - exp(-2t) instead of -expm1(-2t): no relative accuracy at tiny t",
           test="tests/test_forward.py::test_numeric_coefficients_match_sympy"),
    Mutant("safeguard_decay_expm1", GEN,
           "    return (math.exp(-v), -math.expm1(-v), math.exp(-2*v), -math.expm1(-2*v))\n",
           "    return (math.exp(-v), -math.expm1(-v), math.exp(-2*v), 1 - math.exp(-2*v))\n",
           "generated primitive 1 - e^{-2v} by subtraction instead of -expm1(-2v)",
           test="tests/test_codegen.py::test_generated_matches_mpmath"),
    Mutant("safeguard_mix1d_score_derivative_one_pass", "numerics/papers/discriminator/refined_1d.py",
           "        d = lc[k] - s\n",
           "        d = lc[k]\n        b -= pk[k] * s * s\n",
           "1-D mixture score derivative as E[s_k^2] - s^2 (one pass: cancels for |x| >> sqrt(v))",
           test="tests/test_discriminator.py::test_mixture1d_score_derivative_far_out_against_mpmath"),
    Mutant("safeguard_two_point_rare_probability", "numerics/papers/discrete_kl/channel.py",
           "    p = 2.0 / (r * (r + np.abs(gamma)))\n",
           "    p = 0.5 * (1.0 - np.abs(gamma) / r)\n",
           "two-point law's rare probability 1/2 (1 - |g|/r) by subtraction (cancels for |skewness| > 1e8)",
           test="tests/test_discrete_kl.py::test_two_point_moments_at_extreme_skewness"),
    # (the class log masses are relative to the reference logit since issue 20 item 4, at most log K above 0, so
    # a log-sum-exp over classes without the max shift no longer overflows: that mutant became equivalent)
    Mutant("safeguard_logit_gap_absolute", K,
           "    if bound_b <= kv[_FA, k] + kv[_FA, r]:\n",
           "    if False:\n",
           "logit differences always from the absolute logits (the common |x|^2/sigma^2 cancels far from the data)",
           test="tests/test_mixture_far.py::test_old_formula_fails_the_new_tolerance_far_out"),
    Mutant("safeguard_logit_gap_always_difference_form", K,
           "    if bound_b <= kv[_FA, k] + kv[_FA, r]:\n",
           "    if True:\n",
           "logit differences always in the (b - a).(2x - a - b) - E_k + E_r form (cancels near the data at small t)",
           test="tests/test_mixture_far.py::test_near_data_small_t_keeps_the_absolute_form"),
    Mutant("safeguard_class_mass_fixed_shift", K,
           "                if ell > m:\n                    sums[i, c]",
           "                if m == -np.inf:\n                    sums[i, c]",
           "per-class log-sum-exp shifted by the first component's logit instead of the running maximum",
           test="tests/test_mixture.py::test_class_log_mass_kernel_shifts_by_the_running_maximum"),
    Mutant("kernel_online_lse_no_rescale", K,
           "        scale = math.exp(m - ell)\n",
           "        scale = 1.0\n",
           "online log-sum-exp that raises its running max without rescaling the accumulated sum",
           claims=("foundations.tweedie_first_order",)),
)


def by_id() -> dict[str, Mutant]:
    """``id -> Mutant``."""
    return {m.id: m for m in MUTANTS}
