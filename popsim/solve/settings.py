"""Settings of the population integrator."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SolverSettings:
    """How the population is integrated.

    Attributes:
        dt_days: largest step of the fixed-step scheme (days). Each step is split at the
            first dose inside it and both parts take one classical RK4 step, so dose
            times are exact. The default (6 h) meets the accuracy targets of docs/accuracy.md for every
            drug but gonadorelin boluses, whose minutes-long pituitary stimulus needs
            dt_days <= 1/24 (the gonadorelin protocol configs set it).
        precision: "float32" (population default) or "float64" (reference, calibration).
        chunk_size: patients per compiled batch; bounds memory.
    """

    dt_days: float = 0.25
    precision: str = "float32"
    chunk_size: int = 4096

    def __post_init__(self):
        if not (isinstance(self.dt_days, (int, float)) and 0 < self.dt_days <= 2.0):
            raise ValueError(f"solver.dt_days must be in (0, 2] days, got {self.dt_days!r}")
        if self.precision not in ("float32", "float64"):
            raise ValueError(f"solver.precision must be 'float32' or 'float64', got {self.precision!r}")
        if not (isinstance(self.chunk_size, int) and self.chunk_size > 0):
            raise ValueError(f"solver.chunk_size must be a positive integer, got {self.chunk_size!r}")
