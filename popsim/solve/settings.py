"""Settings of the population integrator."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SolverSettings:
    """How the population is integrated.

    Attributes:
        dt_days: largest step of the fixed-step scheme (days). Each step is split at the
            first dose inside it and both parts take one classical RK4 step, so dose
            times are exact. The default (4 h) keeps hormones within 1e-3 (relative) and recovery
            times within 1 day of a tight reference for every product and drug but
            gonadorelin (docs/accuracy.md); gonadorelin boluses need 1/48 d and a
            90-min pump 1/24 d (the gonadorelin protocol configs set it). 4 h also puts
            daily, twice-weekly and weekly doses on step boundaries.
        precision: "float32" (population default) or "float64" (reference, calibration).
        chunk_size: patients per compiled batch; bounds memory.
    """

    dt_days: float = 1.0 / 6.0
    precision: str = "float32"
    chunk_size: int = 4096

    def __post_init__(self):
        if not (isinstance(self.dt_days, (int, float)) and 0 < self.dt_days <= 2.0):
            raise ValueError(f"solver.dt_days must be in (0, 2] days, got {self.dt_days!r}")
        if self.precision not in ("float32", "float64"):
            raise ValueError(f"solver.precision must be 'float32' or 'float64', got {self.precision!r}")
        if not (isinstance(self.chunk_size, int) and self.chunk_size > 0):
            raise ValueError(f"solver.chunk_size must be a positive integer, got {self.chunk_size!r}")
