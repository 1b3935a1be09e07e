"""Settings of the population integrator."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from popsim.solve.methods import DEFAULT_METHOD, METHODS


@dataclass(frozen=True)
class SolverSettings:
    """How the population is integrated.

    Attributes:
        method: step method (popsim.solve.methods): "rk4-dose-ros34pw2" (default):
            RK4 in one part per step (two where one of the patient's doses falls inside
            the step or at its start) while doses are recent, ROS34PW2 (L-stable,
            Rosenbrock-W) one day at a time on quiet stretches; "rk4-ros34pw2": the same
            with every RK4 step split in two (the default before); "rk4-dose", "rk4"
            (every step split in two: the original integrator, kept for comparison and as
            a fallback) and "ros34pw2" alone. Doses act at their exact times with each
            (docs/accuracy.md, docs/performance.md).
        dt_days: largest RK4 step (days; ROS34PW2 alone: its step); None = the method's
            default, the largest step that keeps hormones within 1e-3 (relative) and
            recovery times within 1 day of a tight reference (docs/accuracy.md): 4 h for
            the RK4 methods (gonadorelin boluses need 1/48 d and a 90-min pump 1/24 d;
            the gonadorelin protocol configs set it), 1 day for ros34pw2.
        quiet_after_days, quiet_half_lives, quiet_dt_days: a combined method's quiet
            stretches (no dose within max(quiet_after_days, quiet_half_lives x the
            longest PK half-life)) and its step there.
        precision: "float32" (population default) or "float64" (reference, calibration).
        chunk_size: patients per compiled batch; bounds memory.
    """

    dt_days: Optional[float] = None
    precision: str = "float32"
    chunk_size: int = 4096
    method: str = DEFAULT_METHOD
    quiet_after_days: Optional[float] = None
    quiet_half_lives: Optional[float] = None
    quiet_dt_days: Optional[float] = None

    def __post_init__(self):
        if not isinstance(self.method, str) or self.method not in METHODS:
            raise ValueError(f"solver.method must be one of {sorted(METHODS)}, got {self.method!r}")
        method = METHODS[self.method]
        if self.dt_days is None:
            object.__setattr__(self, "dt_days", method.default_dt_days)
        for key in ("quiet_after_days", "quiet_half_lives", "quiet_dt_days"):
            value = getattr(self, key)
            if value is None:
                object.__setattr__(self, key, getattr(method, "default_" + key, 1.0))
            elif isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 \
                    or (key == "quiet_dt_days" and value > 2.0) or value != value:
                raise ValueError(f"solver.{key} must be a positive number of days"
                                 f"{' <= 2' if key == 'quiet_dt_days' else ''}, got {value!r}")
        if (isinstance(self.dt_days, bool) or not isinstance(self.dt_days, (int, float))
                or not 0 < self.dt_days <= 2.0):
            raise ValueError(f"solver.dt_days must be in (0, 2] days, got {self.dt_days!r}")
        if self.precision not in ("float32", "float64"):
            raise ValueError(f"solver.precision must be 'float32' or 'float64', got {self.precision!r}")
        if isinstance(self.chunk_size, bool) or not (isinstance(self.chunk_size, int) and self.chunk_size > 0):
            raise ValueError(f"solver.chunk_size must be a positive integer, got {self.chunk_size!r}")
