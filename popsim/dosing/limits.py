"""Dose limits per product and drug, in the canonical dose unit (popsim.dosing.drugs).

``usual_high`` is the most a clinic or a steroid user plausibly gives in one dose (above
it a configuration or a lab file gets a warning); ``high`` is beyond any real dose (an
error: usually a unit mistake, e.g. ug written as mg). docs/inputs.md lists them.
"""

from __future__ import annotations

from typing import NamedTuple


class DoseLimit(NamedTuple):
    usual_high: float
    high: float


DOSE_LIMITS: dict[str, DoseLimit] = {
    # testosterone products, mg per dose
    "enanthate": DoseLimit(1000.0, 10000.0),
    "cypionate": DoseLimit(1000.0, 10000.0),
    "undecanoate": DoseLimit(2000.0, 20000.0),
    "gel": DoseLimit(200.0, 5000.0),
    # protocol drugs, per dose
    "hcg": DoseLimit(10000.0, 100000.0),      # IU
    "clomiphene": DoseLimit(150.0, 2000.0),   # mg
    "enclomiphene": DoseLimit(100.0, 1000.0),  # mg
    "tamoxifen": DoseLimit(80.0, 1000.0),     # mg
    "anastrozole": DoseLimit(10.0, 200.0),    # mg
    "gonadorelin": DoseLimit(1000.0, 20000.0),  # ug
    "fsh": DoseLimit(600.0, 10000.0),         # IU
}
