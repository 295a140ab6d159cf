"""mpmath's GMP backend (gmpy2, a dependency for speed) must not change a reference: the foundations oracles (50-digit
scores, denoisers, log densities, posteriors, covariances, Hessians and error bounds), five special functions and a
quadrature, evaluated with the backend mpmath picked and, in a subprocess, with the pure-Python one
(MPMATH_NOGMPY=1), agree digit for digit."""
import os
import subprocess
import sys

SCRIPT = r"""
import numpy as np
import mpmath as mp
from numerics.papers.foundations.claims import labelled_mixture, marginal_points, mp_second_order, MP_DPS
from numerics.references.mpmath_reference import mp_reference

rng = np.random.default_rng(11)
gm = labelled_mixture(rng, 3, 5, 2)
out = [mp.libmp.BACKEND]
for t in (1e-3, 0.3, 2.0):
    for x in marginal_points(gm, rng, t, 2):
        ref = mp_reference(gm, x, t, MP_DPS)
        so = mp_second_order(gm, ref, x, t)
        with mp.workdps(60):
            vals = ref.score + ref.denoiser + [ref.log_density] + ref.class_log_posterior + so["cov"] + so["hess"]
            vals += [so["bound"], so["scale"], so["hround"]]
            out += [mp.nstr(v, 60) for v in vals]
with mp.workdps(50):
    out += [mp.nstr(f, 50) for f in (mp.erfc(mp.mpf(7.25)), mp.log1p(mp.mpf("1e-30")), mp.besseli(3.5, 40),
                                     mp.quad(lambda u: mp.exp(-u * u) * mp.cos(3 * u), [0, 2, mp.inf]),
                                     mp.expm1(mp.mpf(-1e-12)), mp.ncdf(-12))]
print("\n".join(out))
"""


def _run(nogmpy: bool) -> list[str]:
    env = dict(os.environ)
    env.pop("MPMATH_NOGMPY", None)
    if nogmpy:
        env["MPMATH_NOGMPY"] = "1"
    done = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, check=True)
    return done.stdout.split("\n")


def test_gmp_backend_gives_the_pure_python_references() -> None:
    gmp, pure = _run(False), _run(True)
    assert gmp[0] == "gmpy" and pure[0] == "python"  # the dependency is installed and picked up; the switch works
    assert len(gmp) == len(pure) > 100
    assert gmp[1:] == pure[1:]
