"""Linear pharmacokinetics of every dosed species, solved in closed form.

Each species is a two-compartment chain ``dose * F -> A1 --k1--> A2 --k2--> out``:
for testosterone products A1 is the injection site (or skin) and the exposure is the
release flux ``k2 * A2`` (mg T/day); for the other drugs A1 is the absorption site and
the exposure is the concentration ``A2 / V``. Because the chains are linear and are not
driven by the physiology, amounts at any time follow exactly from the amounts at the
start of a step plus a geometric sum over the periodic doses inside the step; no dose
time is ever rounded to the step grid.
"""

from __future__ import annotations

from typing import Mapping, NamedTuple

import jax.numpy as jnp

# Species of the linear PK chains. Order is part of the dose-table format.
SPECIES: tuple[str, ...] = (
    "testosterone_enanthate",
    "testosterone_cypionate",
    "testosterone_undecanoate",
    "testosterone_gel",
    "hcg",
    "fsh",
    "enclomiphene",
    "clomiphene_trans",
    "zuclomiphene",
    "tamoxifen",
    "anastrozole",
    "gonadorelin",
)
SPECIES_INDEX = {name: i for i, name in enumerate(SPECIES)}
N_SPECIES = len(SPECIES)
TESTOSTERONE_SPECIES = SPECIES[:4]


class ChainRates(NamedTuple):
    """Per-species chain constants, each of shape ``(n_species,)``.

    Attributes:
        k1_per_day: transfer A1 -> A2.
        k2_per_day: loss from A2 (release or elimination).
        bioavailability: fraction of the dose entering A1 (T content of an ester,
            absorbed fraction of a gel, 1 for the others).
        volume_l: divisor turning A2 into a concentration (1 for T products).
    """

    k1_per_day: jnp.ndarray
    k2_per_day: jnp.ndarray
    bioavailability: jnp.ndarray
    volume_l: jnp.ndarray


def chain_rates(params: Mapping[str, jnp.ndarray]) -> ChainRates:
    """Assemble the chain constants of one patient from the parameter mapping."""
    p = params
    one = jnp.ones_like(p["k_oil_dispersion_per_day"])
    k_oral = p["k_absorption_oral_per_day"]
    k1 = [p["k_oil_dispersion_per_day"]] * 3 + [p["k_skin_uptake_per_day"],
          p["k_absorption_hcg_per_day"], p["k_absorption_fsh_per_day"],
          k_oral, k_oral, k_oral, k_oral, k_oral, p["k_absorption_gonadorelin_per_day"]]
    k2 = [p["k_release_enanthate_per_day"], p["k_release_cypionate_per_day"],
          p["k_release_undecanoate_per_day"], p["k_skin_release_per_day"],
          p["k_elimination_hcg_per_day"], p["k_elimination_fsh_per_day"],
          p["k_elimination_enclomiphene_per_day"], p["k_elimination_enclomiphene_per_day"],
          p["k_elimination_zuclomiphene_per_day"],
          p["k_elimination_tamoxifen_per_day"], p["k_elimination_anastrozole_per_day"],
          p["k_effect_gonadorelin_per_day"]]
    f = [p["t_content_enanthate"], p["t_content_cypionate"], p["t_content_undecanoate"],
         p["gel_absorbed_fraction"], one, one, one,
         1.0 - p["zuclomiphene_fraction"], p["zuclomiphene_fraction"], one, one, one]
    # Concentrations: IU / L for hCG and FSH; mg / L * 1000 = ng/mL for oral drugs.
    v = [one, one, one, one, p["v_hcg_l"], p["v_fsh_l"],
         p["v_enclomiphene_l"] / 1000.0, p["v_enclomiphene_l"] / 1000.0, p["v_zuclomiphene_l"] / 1000.0,
         p["v_tamoxifen_l"] / 1000.0, p["v_anastrozole_l"] / 1000.0, one]
    return ChainRates(jnp.stack(k1), jnp.stack(k2), jnp.stack(f), jnp.stack(v))


def _phi(rate_gap: jnp.ndarray, span: jnp.ndarray) -> jnp.ndarray:
    """(1 - exp(-rate_gap * span)) / rate_gap, stable as rate_gap -> 0."""
    small = jnp.abs(rate_gap) < 1e-6
    safe = jnp.where(small, 1.0, rate_gap)
    return jnp.where(small, span, -jnp.expm1(-safe * span) / safe)


def propagate(a1: jnp.ndarray, a2: jnp.ndarray, rates: ChainRates,
              span_days: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Advance chain amounts without doses over ``span_days`` (exact)."""
    k1, k2 = rates.k1_per_day, rates.k2_per_day
    e1 = jnp.exp(-k1 * span_days)
    e2 = jnp.exp(-k2 * span_days)
    # A2 gains k1*A1*exp(-k2 (span - s)) exp(-k1 s) ds = k1 A1 e2 phi(k1 - k2, span).
    a2_new = a2 * e2 + k1 * a1 * e2 * _phi(k1 - k2, span_days)
    return a1 * e1, a2_new


class DoseWindow(NamedTuple):
    """Doses of each dose-table entry that fall inside a window of a step.

    All fields have shape ``(n_entries,)``; offsets are days from the step start.
    """

    count: jnp.ndarray
    last_offset_days: jnp.ndarray


class EntryRates(NamedTuple):
    """Chain constants gathered per dose-table entry, each ``(n_entries,)``; computed once
    per patient so that the inner loop does no gathers or matrix products.

    Attributes:
        k1_per_day, k2_per_day: rates of the species the entry doses.
        dose_scale: bioavailability times dose amount.
        denominator1, denominator2: expm1(-k * interval) of the geometric dose sums.
        onehot: ``(n_entries, n_species)`` species of each entry (0 rows for padding).
    """

    k1_per_day: jnp.ndarray
    k2_per_day: jnp.ndarray
    dose_scale: jnp.ndarray
    denominator1: jnp.ndarray
    denominator2: jnp.ndarray
    onehot: jnp.ndarray


def entry_rates(rates: ChainRates, onehot: jnp.ndarray, amount: jnp.ndarray,
                interval_days: jnp.ndarray) -> EntryRates:
    """Gather the chain constants of each entry's species (once per patient)."""
    k1 = jnp.sum(onehot * rates.k1_per_day, axis=1)
    k2 = jnp.sum(onehot * rates.k2_per_day, axis=1)
    f = jnp.sum(onehot * rates.bioavailability, axis=1)
    # Padding rows have zero one-hot; give them harmless positive rates.
    k1 = jnp.where(k1 > 0, k1, 1.0)
    k2 = jnp.where(k2 > 0, k2, 0.5)
    # The summed Bateman form divides by k1 - k2; should variability make the two rates
    # (nearly) equal, separate them by 0.1% (a relative error of that order in A2).
    k1 = jnp.where(jnp.abs(k1 - k2) < 1e-3 * k1, k2 * 1.001 + 1e-6, k1)
    return EntryRates(k1, k2, f * amount, jnp.expm1(-k1 * interval_days), jnp.expm1(-k2 * interval_days), onehot)


def dose_sums(entries: EntryRates, interval_days: jnp.ndarray, window: DoseWindow,
              until_days: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Amounts in A1 and A2 at ``until_days`` due to the doses inside ``window``.

    Args:
        entries: per-entry constants (entry_rates).
        interval_days: ``(n_entries,)`` dosing interval.
        window: doses per entry inside [step start, until].
        until_days: scalar offset from the step start at which amounts are wanted.

    Returns:
        ``(a1, a2)`` each ``(n_species,)``.
    """
    m = window.count
    lag = jnp.maximum(until_days - window.last_offset_days, 0.0)
    k1, k2 = entries.k1_per_day, entries.k2_per_day

    def geometric(rate, denominator):
        # sum_{j<m} exp(-rate (lag + j interval)) over the m most recent doses.
        ratio = jnp.where(m > 0, jnp.expm1(-rate * interval_days * m) / denominator, 0.0)
        return jnp.exp(-rate * lag) * ratio

    s1 = geometric(k1, entries.denominator1)
    s2 = geometric(k2, entries.denominator2)
    a1 = entries.dose_scale * s1
    # Bateman chain: k1/(k1-k2) (exp(-k2 d) - exp(-k1 d)) summed over doses.
    gap = k1 - k2
    safe_gap = jnp.where(jnp.abs(gap) < 1e-6, 1e-6, gap)
    a2 = entries.dose_scale * k1 * (s2 - s1) / safe_gap
    return (jnp.sum(entries.onehot * a1[:, None], axis=0), jnp.sum(entries.onehot * a2[:, None], axis=0))


# Exposure produced by each species: (exposure name, kind) with kind "release" (flux
# k2*A2, testosterone products), "concentration" (A2/V) or "amount" (A2).
SPECIES_EXPOSURE: tuple[tuple[str, str], ...] = (
    ("testosterone_release_mg_day", "release"), ("testosterone_release_mg_day", "release"),
    ("testosterone_release_mg_day", "release"), ("testosterone_release_mg_day", "release"),
    ("hcg_iu_l", "concentration"), ("fsh_exogenous_iu_l", "concentration"),
    ("enclomiphene_ng_ml", "concentration"), ("enclomiphene_ng_ml", "concentration"),
    ("zuclomiphene_ng_ml", "concentration"), ("tamoxifen_ng_ml", "concentration"),
    ("anastrozole_ng_ml", "concentration"), ("gonadorelin_effect_ug", "amount"),
)
EXPOSURE_NAMES: tuple[str, ...] = tuple(dict.fromkeys(name for name, _ in SPECIES_EXPOSURE))
ALL_SPECIES: tuple[int, ...] = tuple(range(N_SPECIES))


def select(rates: ChainRates, species: tuple[int, ...]) -> ChainRates:
    """Chain constants of a subset of species (static indices)."""
    index = jnp.asarray(species, jnp.int32)
    return ChainRates(*(a[index] for a in rates))


def exposures(a2: jnp.ndarray, rates: ChainRates, species: tuple[int, ...] = ALL_SPECIES
              ) -> dict[str, jnp.ndarray | None]:
    """Exposure of each drug from the A2 amounts of the simulated ``species``.

    Args:
        a2: ``(len(species),)`` amounts; rates: the matching chain constants.
        species: static indices into SPECIES of the simulated chains.

    Returns:
        ``{name: value}`` for every name in EXPOSURE_NAMES: the testosterone release flux
        (mg/day), drug concentrations (IU/L or ng/mL) and the gonadorelin effect amount
        (ug); None for a drug whose species are not simulated (known zero at compile
        time, so its terms drop out of the compiled model).
    """
    out: dict[str, jnp.ndarray | None] = {name: None for name in EXPOSURE_NAMES}
    for j, s in enumerate(species):
        name, kind = SPECIES_EXPOSURE[s]
        if kind == "release":
            value = rates.k2_per_day[j] * a2[j]
        elif kind == "concentration":
            value = a2[j] / rates.volume_l[j]
        else:
            value = a2[j]
        out[name] = value if out[name] is None else out[name] + value
    return out
