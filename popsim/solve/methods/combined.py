"""A combined step method: one method while doses are recent, another on quiet stretches.

``rk4-dose-ros34pw2`` (the default) takes RK4 (4-hour steps, split only at the patient's
own doses) and ``rk4-ros34pw2`` RK4 with every step split in two, in every output
interval within max(``quiet_after_days``, ``quiet_half_lives`` PK half-lives) of one of
the patient's doses, and ROS34PW2 (L-stable, one step per day) in every other interval:
long off-treatment follow-up, where the feedback loop is stiff and nothing is dosed.
Which intervals are quiet is the step schedule's decision per patient
(popsim.solve.schedule.patient_quiet); a batch runs each method where some patient
needs it.

Measured (docs/performance.md): on treatment an explicit method at 4 h is what meets
the 1e-3 target on the suppressed hormones (ROS34PW2 has a far larger error constant
there: 8e-3 at 3-hour steps), while on quiet stretches ROS34PW2 at 1 day meets it at 7
evaluations per day instead of 48.
"""

from __future__ import annotations


class Combined:
    always_split = False

    def __init__(self, name: str, active, quiet, quiet_after_days: float, quiet_half_lives: float,
                 quiet_dt_days: float):
        self.name = name
        self.active = active
        self.quiet = quiet
        self.default_dt_days = active.default_dt_days
        self.default_quiet_after_days = quiet_after_days
        self.default_quiet_half_lives = quiet_half_lives
        self.default_quiet_dt_days = quiet_dt_days

    def evaluations(self, n_states: int) -> int:
        return self.active.evaluations(n_states)
