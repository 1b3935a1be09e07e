"""ROS34PW2: a 4-stage, order-3, L-stable, stiffly accurate Rosenbrock-W method.

Rang & Angermann (2005), BIT 45:761-787. Each part of a step solves four linear systems
with the matrix ``W = I - gamma h J``:

    W k_i = h f(t0 + alpha_i h, y0 + sum_j a_ij k_j) + h J sum_j gamma_ij k_j,
    y1 = y0 + sum_i b_i k_i.

A W-method keeps its order 3 for *any* matrix J, which is what makes it cheap here: J is
the exact Jacobian (forward mode, one Jacobian-vector product per column) restricted to
the columns of the fast states (``STIFF_STATES``), the states whose own dynamics are fast
enough to limit an explicit step: the two hypothalamic feedback signals (rate
k_feedback times the loop gain, about -10/day off treatment) and the GnRH-receptor
responsiveness (desensitisation up to ~5/day under gonadorelin). Every other state is
slower than 0.2/day and is treated explicitly by the same formula (J's other columns
are zero), so the linear solve is a 3x3 one per patient. For the same reason the time
derivative of the field (the doses' PK) needs no extra term: the PK enters at the
stage times ``t0 + alpha_i h`` in closed form.

Cost per part: 4 field evaluations + len(STIFF_STATES) Jacobian-vector products.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from popsim.model import state as S

GAMMA = 4.3586652150845900e-01
A = ((),
     (8.7173304301691801e-01,),
     (8.4457060015369423e-01, -1.1299064236484185e-01),
     (0.0, 0.0, 1.0))
G = ((),
     (-8.7173304301691801e-01,),
     (-9.0338057013044082e-01, 5.4180672388095326e-02),
     (2.4212380706095346e-01, -1.2232505839045147e+00, 5.4526025533510214e-01))
B = (2.4212380706095346e-01, -1.2232505839045147e+00, 1.5452602553351020e+00, 4.3586652150845900e-01)
ALPHA = tuple(sum(row) for row in A)  # 0, 0.8717, 0.7316, 1

# Fast states by name (resolved against popsim.model.state, so a renamed state fails at
# import rather than silently dropping out of J).
STIFF_STATE_NAMES = ("feedback_androgen", "feedback_estrogen", "gnrh_responsiveness")


class ROS34PW2:
    always_split = False
    # PK at the stage times as right limits (after a dose there), at the end as a left limit.
    stage_strict = (False, False, False, True)

    def __init__(self, name: str, stiff_state_names=STIFF_STATE_NAMES, default_dt_days: float = 1.0):
        self.name = name
        self.default_dt_days = default_dt_days
        self.stiff_names = stiff_state_names

    def _stiff(self, n_states: int) -> tuple[int, ...]:
        if self.stiff_names is None:
            return tuple(range(n_states))
        return tuple(S.STATE_NAMES.index(s) for s in self.stiff_names)

    @staticmethod
    def stage_times(u0, u1):
        h = u1 - u0
        return (u0, u0 + ALPHA[1] * h, u0 + ALPHA[2] * h, u1)

    def evaluations(self, n_states: int) -> int:
        return 4 + len(self._stiff(n_states))

    def advance(self, field, y, u0, u1, stages):
        n = y.shape[0]
        idx = jnp.asarray(self._stiff(n))
        m = len(self._stiff(n))
        h = u1 - u0
        times = self.stage_times(u0, u1)
        basis = jnp.zeros((m, n), y.dtype).at[jnp.arange(m), idx].set(1.0)
        f0 = lambda z: field(z, stages[0], u0)  # noqa: E731
        fy0, jt = jax.linearize(f0, y)
        columns = jax.vmap(jt)(basis).T  # (n, m): J[:, stiff]
        w = jnp.eye(m, dtype=y.dtype) - (GAMMA * h) * columns[idx, :]
        lu = jax.scipy.linalg.lu_factor(w)

        def solve(r):
            k_s = jax.scipy.linalg.lu_solve(lu, r[idx])
            return r + (GAMMA * h) * (columns @ k_s)

        ks = []
        for i in range(4):
            if i == 0:
                fi = fy0
            else:
                yi = y + sum(A[i][j] * ks[j] for j in range(i) if A[i][j] != 0.0)
                fi = field(yi, stages[i], times[i])
            r = h * fi
            if i:
                corr = sum(G[i][j] * ks[j] for j in range(i))
                r = r + h * (columns @ corr[idx])
            ks.append(solve(r))
        return y + sum(b * k for b, k in zip(B, ks))


METHOD = ROS34PW2("ros34pw2")
