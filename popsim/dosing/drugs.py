"""Catalogue of what a regimen can dose: testosterone products and protocol drugs.

Each entry names the PK species its doses enter (popsim.model.pk.SPECIES) with the share
of the dose each receives, and the canonical unit of its dose.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Product:
    """A dosable product.

    Attributes:
        name: identifier used in regimens and configs.
        dose_unit: canonical dose unit ("mg", "IU" or "ug").
        species: the PK species each dose enters in full (clomiphene enters both the
            trans and the cis chain; their bioavailabilities split the dose).
        typical: a one-line typical regimen, for error messages and docs.
    """

    name: str
    dose_unit: str
    species: tuple[str, ...]
    typical: str


TRT_PRODUCTS: dict[str, Product] = {
    "enanthate": Product("enanthate", "mg", ("testosterone_enanthate",), "100-200 mg IM every 7-14 days"),
    "cypionate": Product("cypionate", "mg", ("testosterone_cypionate",), "100-200 mg IM every 7-14 days"),
    "undecanoate": Product("undecanoate", "mg", ("testosterone_undecanoate",), "1000 mg IM every 10-14 weeks"),
    "gel": Product("gel", "mg", ("testosterone_gel",), "50-100 mg testosterone gel daily"),
}

PROTOCOL_DRUGS: dict[str, Product] = {
    "hcg": Product("hcg", "IU", ("hcg",), "500-3000 IU SC every 2-3 days"),
    "clomiphene": Product("clomiphene", "mg", ("clomiphene_trans", "zuclomiphene"),
                          "25-50 mg orally daily or every other day"),
    "enclomiphene": Product("enclomiphene", "mg", ("enclomiphene",), "12.5-25 mg orally daily"),
    "tamoxifen": Product("tamoxifen", "mg", ("tamoxifen",), "10-20 mg orally daily"),
    "anastrozole": Product("anastrozole", "mg", ("anastrozole",), "0.5-1 mg orally daily to twice weekly"),
    "gonadorelin": Product("gonadorelin", "ug", ("gonadorelin",),
                           "100 ug SC twice weekly, or a pump of 5-20 ug every 90-120 min"),
    "fsh": Product("fsh", "IU", ("fsh",), "75-150 IU SC three times a week"),
}
