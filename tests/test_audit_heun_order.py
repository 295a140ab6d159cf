"""diffusers' HeunDiscreteScheduler step has a local error of order k^3 in its sigma step k (a second-order
method), checked without the audit's driver, oracle or generated coefficients.

In diffusers' VE variables (y = x/alpha, sigma = sqrt((1 - abar)/abar)) the probability-flow trajectory of a
Gaussian target N(m, s^2) through z is y(sigma) = m + sqrt(s^2 + sigma^2) z, and the denoiser is
D(y, sigma) = m + s^2 (y - m)/(s^2 + sigma^2). Starting the scheduler's step from the exact state and feeding
it the exact model outputs (at the exact state, then at its own predictor) leaves only its local error,
~ C k^(p+1) for a method of order p. With linspace timesteps over n = 25 and n = 49 steps, timestep 499.5 is a
level of both grids (index 12 and 24), and the step from it halves in timestep; the one-step error then falls by
about 2^(p+1) in the sigma-step ratio: 8 for p = 2, 4 for p = 1. The test decides at exponent 2.5.

Negative control, on the same harness: the scheduler's first stage alone (its Euler predictor, which it returns
after the first call) is first order, exponent < 2.5. So the harness tells order 1 from order 2.
"""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")

M, S, Z = 0.7, 0.5, 1.3


def _exact(sg):
    return M + np.sqrt(S * S + sg * sg) * Z


def _eps(y, sg):
    """The exact noise prediction (y - D)/sigma of the VE state ``y`` (a tensor) at ``sigma``."""
    return (y - (M + S * S / (S * S + sg * sg) * (y - M))) / sg


def _one_step_errors(n: int) -> tuple[float, float, float]:
    """(|Heun step - exact|, |Euler predictor - exact|, sigma step) of the step from timestep 499.5."""
    sch = diffusers.HeunDiscreteScheduler(timestep_spacing="linspace")
    sch.set_timesteps(n)
    sch.sigmas = sch.sigmas.double()
    i = (n - 1) // 2
    assert float(sch.timesteps[2 * i]) == 499.5
    sch.set_begin_index(2 * i)
    s0, s1 = float(sch.sigmas[2 * i]), float(sch.sigmas[2 * i + 1])
    y = torch.tensor([_exact(s0)], dtype=torch.float64)
    yp = sch.step(_eps(y, s0), sch.timesteps[2 * i], y).prev_sample
    out = sch.step(_eps(yp, s1), sch.timesteps[2 * i + 1], yp).prev_sample
    exact = _exact(s1)
    return abs(float(out[0]) - exact), abs(float(yp[0]) - exact), s0 - s1


def test_diffusers_heun_step_is_second_order_and_its_predictor_first():
    e25, p25, k25 = _one_step_errors(25)
    e49, p49, k49 = _one_step_errors(49)
    assert min(e25, e49) > 1e-10   # truncation errors far above float64 rounding
    p_heun = np.log(e25 / e49) / np.log(k25 / k49)
    p_euler = np.log(p25 / p49) / np.log(k25 / k49)
    assert p_euler < 2.5 < p_heun, (p_heun, p_euler)
    assert abs(p_heun - 3.0) < 0.3 and abs(p_euler - 2.0) < 0.3, (p_heun, p_euler)
