"""Exact, symbolic objects of guided diffusion (SymPy only; never imports ``numerics``)."""
from theory.forward import GENERAL, OU, VPSchedule, cosine_schedule, linear_schedule

__all__ = ["GENERAL", "OU", "VPSchedule", "cosine_schedule", "linear_schedule"]
