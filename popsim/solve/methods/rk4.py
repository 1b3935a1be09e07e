"""Classical RK4 on each part of a step (the integrator before dose-aware steps).

Each step is split at the first dose inside it (or, with a dose at its start, at
``SPLIT_FRACTION`` of the step, else at its midpoint) and each part takes one RK4
step: 4 field evaluations per part, 8 per step. Explicit, so stability bounds the step
where the feedback loop is active (eigenvalue about -10/day): the default 4-hour step
is set by accuracy on the dose transients (docs/accuracy.md).
"""

from __future__ import annotations


class RK4:
    name = "rk4"
    default_dt_days = 1.0 / 6.0
    always_split = True

    @staticmethod
    def stage_times(u0, u1):
        return (u0, 0.5 * (u0 + u1), u1)

    @staticmethod
    def evaluations(n_states: int) -> int:
        return 4

    @staticmethod
    def advance(field, y, u0, u1, stages):
        a2a, a2m, a2b = stages
        dt = u1 - u0
        um = 0.5 * (u0 + u1)
        k1 = field(y, a2a, u0)
        k2 = field(y + 0.5 * dt * k1, a2m, um)
        k3 = field(y + 0.5 * dt * k2, a2m, um)
        k4 = field(y + dt * k3, a2b, u1)
        return y + dt / 6.0 * (k1 + 2.0 * k2 + 2.0 * k3 + k4)


METHOD = RK4()
