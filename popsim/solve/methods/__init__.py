"""Step methods of the population integrator, one small module each.

A step method advances the slow physiological states of one patient over one *part* of
a step, ``[u0, u1]`` (days from the step start), given the vector field and the drug
amounts (closed-form PK, popsim.model.pk) at the stage times it asks for. What the
parts are, and how long the steps, is the step schedule's business
(popsim.solve.schedule); the two are independent the way diffrax separates a solver
from its step-size controller. Adding a method is a new module here and one line in
``METHODS``.

Interface of a method object:

* ``name``: the value of ``solver.method``.
* ``default_dt_days``: its default largest step (the step that meets the accuracy
  targets, docs/accuracy.md).
* ``always_split``: True when every step is taken as two parts (split at the first dose
  inside it, else at a fixed fraction: ``rk4``); False when a step is one part unless
  the schedule flags it (some patient of the batch has a dose inside it, or at its start
  for a method with ``split_after_dose``), and then each patient splits at his own dose
  (a patient without one takes his step whole and a second part of zero length).
* ``split_after_dose`` (optional): fraction of the step at which a step with one of the
  patient's doses at its start is split.
* ``stage_times(u0, u1)``: the times (days from the step start) at which the part
  needs the PK, the last one ``u1`` (evaluated as a left limit: a dose at ``u1`` is not
  yet given).
* ``evaluations(n_states)``: vector-field evaluations per part, Jacobian-vector
  products counted as one evaluation each.
* ``advance(field, y, u0, u1, stages)``: the state at ``u1``; ``field(y, a2, u)`` is the
  vector field at step-relative time ``u`` with PK amounts ``a2``, ``stages`` the PK
  amounts at ``stage_times``.
"""

from __future__ import annotations

from popsim.solve.methods import rk4, rk4_dose, ros34pw2
from popsim.solve.methods.combined import Combined

METHODS = {m.name: m for m in (
    rk4.METHOD, rk4_dose.METHOD, ros34pw2.METHOD,
    Combined("rk4-ros34pw2", rk4.METHOD, ros34pw2.METHOD, quiet_after_days=28.0, quiet_half_lives=10.0,
             quiet_dt_days=1.0),
    Combined("rk4-dose-ros34pw2", rk4_dose.METHOD, ros34pw2.METHOD, quiet_after_days=28.0, quiet_half_lives=10.0,
             quiet_dt_days=1.0))}
DEFAULT_METHOD = "rk4-dose-ros34pw2"


def get_method(name: str):
    """The step method called ``name``.

    Raises:
        ValueError: naming ``solver.method`` and the valid values.
    """
    try:
        return METHODS[name]
    except (KeyError, TypeError):
        raise ValueError(f"solver.method must be one of {sorted(METHODS)}, got {name!r}") from None
