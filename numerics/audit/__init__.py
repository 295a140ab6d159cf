"""Audit of real sampler libraries against the exact oracles (``guidance-verify audit diffusers``).

The audit drives a library's schedulers with EXACT model outputs of targets whose laws are known and reports
measured disagreements with the mathematics (findings), each with the smallest configuration that reproduces
it.  Modules, one per concept:

``targets``          exact model outputs (epsilon, sample, v_prediction) of a Gaussian N(m, s^2 I) and of a
                     labelled 1-D or 2-D Gaussian mixture (unconditional, class-conditional, classifier-guided)
``diffusers_driver`` building diffusers' schedulers and running them in float64 (torch float64 tensors)
``oracle``           the package's derived discretisation (generated coefficients) on a scheduler's own grid
``checks``           the checks: one step, the whole run's law and order, finiteness over a config sweep, and
                     classifier-free guidance in diffusers' convention (per call, whole run, guidance_rescale,
                     the guided output laws in 1-D and 2-D)
``report``           JSON + Markdown report (atomic writes) and the comparison with a baseline
``command``          the ``audit`` subcommand (parser and runner; the CLI calls it)

Only ``numerics.cli`` imports this package (import-linter contract); diffusers and torch are imported lazily,
inside ``diffusers_driver``, so the package imports without the ``[audit]`` extra.
"""
