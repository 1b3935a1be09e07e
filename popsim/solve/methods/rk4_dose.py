"""Classical RK4, one part per step unless the patient's own dose calls for two.

A step is taken in one RK4 part (4 field evaluations) unless one of the patient's doses
falls strictly inside it (split at the dose) or at its start (split at
``split_after_dose`` of the step, where the absorption transient just after the dose is
fastest); the step schedule (popsim.solve.schedule.mark_dose_splits) flags the steps in
which some patient of the batch has such a dose, and only those run two parts.

Measured (docs/performance.md, "Step methods"): at 4-hour steps every non-gonadorelin
regimen of docs/accuracy.md stays within the 1e-3 target in float32 and float64
(without the early split after a dose, 7e-3 to 1e-2 under the daily oral drugs and 2e-3
after the first TE injection), at half the evaluations of ``rk4``, which splits every
step.
"""

from __future__ import annotations

from popsim.solve.methods.rk4 import RK4

# Where a step with a dose of the patient at its start is split (the fraction of the step
# that RK4's split-at-the-start used, docs/accuracy.md).
SPLIT_AFTER_DOSE = 0.25


class RK4AtDoses(RK4):
    name = "rk4-dose"
    default_dt_days = 1.0 / 6.0
    always_split = False
    # Stage PK: right limits (post-dose) except at the end of the part (pre-dose).
    stage_strict = (False, False, True)
    split_after_dose = SPLIT_AFTER_DOSE


METHOD = RK4AtDoses()
