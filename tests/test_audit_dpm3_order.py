"""diffusers' third-order multistep DPM-Solver++ step has a local error of order h^3 (a second-order method), checked
without the audit's driver, oracle or generated coefficients.

On a Gaussian target N(m, s^2) the probability-flow trajectory through z is known in closed form,
x(alpha, sigma) = alpha m + sqrt(alpha^2 s^2 + sigma^2) z, and so is the denoiser. Feeding the scheduler the exact
state and model output at every call gives it an exact history, so its step at a fixed place of the grid
(the middle) differs from the exact trajectory by its local error alone, ~ C h^(p+1) for a method of order p.
Halving the step (25 -> 50 steps) divides that error by about 2^(p+1) in the log-SNR step ratio: 8 for p = 2,
16 for p = 3. The test decides between the two at the geometric mean, exponent 3.5.

Positive control, on the same harness: the exponential-integrator step with the quadratic interpolant of the
denoiser in log-SNR through the same three calls, integrated by 20-point Gauss-Legendre quadrature (exact to
rounding for this smooth integrand; written here, sharing nothing with the package's derivation) is third order,
exponent > 3.5. So the harness can see order 3 where there is one.
"""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")

M, S, Z = 0.7, 0.5, 1.3


def _exact(a, sg):
    return a * M + np.sqrt(a * a * S * S + sg * sg) * Z


def _denoiser(x, a, sg):
    return M + a * S * S / (a * a * S * S + sg * sg) * (x - a * M)


def _levels(sch, ac):
    """alpha, sigma and log-SNR of every timestep of ``sch``."""
    a = np.array([np.sqrt(float(ac[t])) for t in sch.timesteps])
    sg = np.array([np.sqrt(1.0 - float(ac[t])) for t in sch.timesteps])
    return a, sg, np.log(a / sg)


def _interpolated_step(a, sg, lam, i):
    """The step i -> i + 1 with D's quadratic interpolant in log-SNR through calls i - 2, i - 1, i, integrated
    exactly: x_{i+1} = (sigma_{i+1}/sigma_i) x_i + alpha_{i+1} int_0^h e^{u - h} P(lambda_i + u) du."""
    nodes = [i - 2, i - 1, i]
    d = [_denoiser(_exact(a[k], sg[k]), a[k], sg[k]) for k in nodes]
    poly = np.polyfit(lam[nodes] - lam[i], d, 2)
    h = lam[i + 1] - lam[i]
    u, w = np.polynomial.legendre.leggauss(20)
    u, w = 0.5 * h * (u + 1.0), 0.5 * h * w
    integral = float(np.sum(w * np.exp(u - h) * np.polyval(poly, u)))
    return sg[i + 1] / sg[i] * _exact(a[i], sg[i]) + a[i + 1] * integral


def _middle_step_errors(n: int) -> tuple[float, float, float]:
    """(|diffusers - exact|, |interpolated - exact|, log-SNR step) at the middle step of an n-step run."""
    sch = diffusers.DPMSolverMultistepScheduler(solver_order=3, algorithm_type="dpmsolver++",
                                                lower_order_final=False, final_sigmas_type="sigma_min",
                                                timestep_spacing="linspace")
    sch.set_timesteps(n)
    ac = sch.alphas_cumprod.double()
    a, sg, lam = _levels(sch, ac)
    i = n // 2
    for k, t in enumerate(sch.timesteps[:i + 1]):
        x = torch.tensor([_exact(a[k], sg[k])], dtype=torch.float64)
        eps = (x - a[k] * _denoiser(x, a[k], sg[k])) / sg[k]
        out = sch.step(eps, t, x).prev_sample
    exact = _exact(a[i + 1], sg[i + 1])
    return abs(float(out[0]) - exact), abs(_interpolated_step(a, sg, lam, i) - exact), lam[i + 1] - lam[i]


def test_diffusers_dpm3_step_is_second_order_and_the_interpolant_third():
    e25, q25, h25 = _middle_step_errors(25)
    e50, q50, h50 = _middle_step_errors(50)
    # errors far above diffusers' float32 arithmetic (~1e-7 here), so the ratios measure truncation
    assert min(e25, e50) > 1e-6 and min(q25, q50) > 1e-9
    p_diffusers = np.log(e25 / e50) / np.log(h25 / h50)
    p_interpolant = np.log(q25 / q50) / np.log(h25 / h50)
    assert p_diffusers < 3.5 < p_interpolant, (p_diffusers, p_interpolant)
