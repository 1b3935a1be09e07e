"""Layout of the physiological state vector (slow states of the HPG axis).

Every state is normalised so that an untreated man sits at exactly 1 (his own
baseline), which makes the untreated steady state hold by construction.
"""

from __future__ import annotations

# Number of compartments of the germ-cell pipeline (Erlang delay). 12 stages give a
# transit-time CV of 1/sqrt(12) = 0.29, so first sperm reach the ejaculate no earlier
# than ~6 weeks after support returns (MODEL.md mechanism 9).
N_GERM_STAGES = 12

FEEDBACK_ANDROGEN = 0  # androgen (free T) feedback signal seen by the hypothalamus
FEEDBACK_ESTROGEN = 1  # estrogen-receptor feedback signal
PITUITARY_RESERVE = 2  # gonadotroph reserve, adapts to GnRH stimulation
GNRH_RESPONSIVENESS = 3  # GnRH-receptor responsiveness (desensitised by continuous GnRH)
LEYDIG_CAPACITY = 4  # Leydig steroidogenic capacity
SHBG = 5  # SHBG relative to baseline
SERTOLI_FUNCTION = 6  # Sertoli function (FSH-driven)
SPERMATOGONIAL_RESERVE = 7  # spermatogonial reserve feeding the pipeline
GERM_FIRST = 8  # first germ-cell stage
GERM_LAST = GERM_FIRST + N_GERM_STAGES - 1
EPIDIDYMAL_SPERM = GERM_LAST + 1
# Slow structural states that carry the memory of long or intense suppression (the men
# who take testosterone for years recover more slowly and less completely than the
# contraception volunteers; docs/model.md "Long-term suppression").
HYPOTHALAMIC_CAPACITY = EPIDIDYMAL_SPERM + 1  # GnRH pulse-generator capacity (androgen-suppressed)
LEYDIG_CELL_MASS = HYPOTHALAMIC_CAPACITY + 1  # Leydig cell number (lost without LH, regrows slowly)
STEM_CELL_POOL = LEYDIG_CELL_MASS + 1  # spermatogonial stem cells that reseed an emptied reserve
N_STATES = STEM_CELL_POOL + 1

STATE_NAMES: tuple[str, ...] = (
    "feedback_androgen", "feedback_estrogen", "pituitary_reserve", "gnrh_responsiveness",
    "leydig_capacity", "shbg_relative", "sertoli_function", "spermatogonial_reserve",
    *(f"germ_stage_{i + 1}" for i in range(N_GERM_STAGES)), "epididymal_sperm",
    "hypothalamic_capacity", "leydig_cell_mass", "stem_cell_pool",
)
assert len(STATE_NAMES) == N_STATES
