r"""Numerical constants shared by the whole package (one definition each).

``UNIT_ROUNDOFF``
    :math:`u = 2^{-53}`, the unit roundoff of IEEE float64 with round-to-nearest: every correctly
    rounded operation satisfies :math:`\mathrm{fl}(a \circ b) = (a \circ b)(1 + \epsilon)`,
    :math:`|\epsilon| \le u`. Rounding-error bounds in this package are written in :math:`u`
    (Higham, *Accuracy and Stability of Numerical Algorithms*, 2nd ed., section 2.2). The machine
    epsilon :math:`2^{-52} = 2u` (the gap from 1 to the next float) is *not* the unit roundoff.
``LOG_2PI``
    :math:`\log 2\pi`, in the normalising constant of Gaussian densities.
"""
from __future__ import annotations

import math

__all__ = ["LOG_2PI", "UNIT_ROUNDOFF"]

#: Unit roundoff of float64, :math:`u = 2^{-53}`.
UNIT_ROUNDOFF: float = 2.0**-53
#: :math:`\log(2\pi)`.
LOG_2PI: float = math.log(2.0 * math.pi)
