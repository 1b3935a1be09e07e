"""Recovery endpoints of MODEL.md ("Outcomes") for a chunk of patients.

Each endpoint is a threshold crossing from a per-patient origin, measured on the latent
trajectory (interpolated daily values) and, for semen endpoints, on a sampling schedule
(e.g. monthly samples, as the contraception trials did), right-censored at the horizon.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from popsim.model.observation import sample_semen
from popsim.outcomes.endpoints import first_crossing, suppression_depth
from popsim.units import DAYS_PER_MONTH

ORIGINS = ("first_missed_dose", "last_dose", "protocol_start")

# Adult reference ranges, IU/L (model-facts.md 7.3): LH ~1.7-8.6; FSH 1.5-12.4 (the
# ranges of normozoospermic men up to 50 y, rounded to the common clinical range).
LH_LOWER_LIMIT_IU_L = 1.7
LH_UPPER_LIMIT_IU_L = 8.6
FSH_LOWER_LIMIT_IU_L = 1.5
FSH_UPPER_LIMIT_IU_L = 12.4
# Hypogonadism threshold, nmol/L (300 ng/dL, AUA; model-facts.md 7.1).
TESTOSTERONE_THRESHOLD_NMOL_L = 10.4


@dataclass(frozen=True)
class EndpointSpec:
    """Which endpoints to compute.

    Attributes:
        sperm_thresholds_m_ml: recovery to sperm concentration >= each threshold.
        baseline_fractions: recovery to >= each fraction of the man's own baseline.
        tmc_threshold_m: recovery to total motile count >= this (million).
        sampling_interval_days: interval of the semen-sample schedule (0: latent only).
        first_sample_offset_days: first sample after the origin.
        hormone_baseline_fraction: LH, FSH and total T count as back at the man's own
            baseline at this fraction of it (a hormone approaching its baseline from
            below reaches 100% only asymptotically; 0.9 is within a typical assay CV).
        hormone_months: months after the origin at which each man's LH, FSH and total T
            are stored as fractions of his own baseline (columns
            ``<hormone>_fraction_of_baseline_<m>mo``; their means are the group curves).
        pre_origin_sample_days: semen samples also taken this many days before the
            origin (e.g. ``(60, 30, 0)``), reported as ``sample_<d>d_before_origin_m_ml``;
            their draws are independent of the follow-up samples'.
    """

    sperm_thresholds_m_ml: tuple[float, ...] = (1.0, 3.0, 5.0, 10.0, 15.0, 16.0, 20.0)
    baseline_fractions: tuple[float, ...] = (0.5, 0.85)
    tmc_threshold_m: float = 5.0
    sampling_interval_days: float = 30.0
    first_sample_offset_days: float = 30.0
    hormone_baseline_fraction: float = 0.9
    hormone_months: tuple[float, ...] = (1.0, 2.0, 3.0, 4.0, 6.0, 9.0, 12.0, 18.0, 24.0)
    pre_origin_sample_days: tuple[float, ...] = ()

    def validate(self) -> None:
        if any(not d >= 0 for d in self.pre_origin_sample_days) or len(set(self.pre_origin_sample_days)) != len(
                self.pre_origin_sample_days):
            raise ValueError("outcomes.pre_origin_sample_days must be distinct numbers of days >= 0 before the origin")
        if any(t <= 0 for t in self.sperm_thresholds_m_ml):
            raise ValueError("outcomes.sperm_thresholds_m_ml must be > 0")
        if any(not 0 < f <= 2 for f in self.baseline_fractions):
            raise ValueError("outcomes.baseline_fractions must be in (0, 2]")
        if self.sampling_interval_days < 0 or self.first_sample_offset_days < 0:
            raise ValueError("outcomes.sampling_interval_days and first_sample_offset_days must be >= 0")
        if any(not (m >= 0 and m == m) for m in self.hormone_months):
            raise ValueError(f"outcomes.hormone_months must be >= 0, got {list(self.hormone_months)}")
        if not 0 < self.hormone_baseline_fraction <= 1.5:
            raise ValueError(f"outcomes.hormone_baseline_fraction must be in (0, 1.5], got {self.hormone_baseline_fraction}")


# Sample indices of the pre-origin samples: far from the follow-up samples' 0, 1, 2, ...
PRE_ORIGIN_SAMPLE_INDEX = 1_000_000


def _at_times(times_days: np.ndarray, values: np.ndarray, at: np.ndarray) -> np.ndarray:
    """``values`` (n, n_times) linearly interpolated at ``at`` (n, k) (clipped to the grid)."""
    idx = np.clip(np.searchsorted(times_days, at) - 1, 0, times_days.size - 2)
    t0, t1 = times_days[idx], times_days[idx + 1]
    w = np.clip((at - t0) / (t1 - t0), 0.0, 1.0)
    rows = np.arange(values.shape[0])[:, None]
    return (1 - w) * values[rows, idx] + w * values[rows, idx + 1]


def _label(x: float) -> str:
    return f"{x:g}".replace(".", "p")


def endpoint_names(spec: EndpointSpec) -> list[str]:
    """Names of the endpoints ``spec`` produces, in column order."""
    names = [f"conc_ge_{_label(t)}" for t in spec.sperm_thresholds_m_ml]
    names += [f"conc_ge_{int(round(f * 100))}pct_baseline" for f in spec.baseline_fractions]
    names += [f"tmc_ge_{_label(spec.tmc_threshold_m)}", "any_sperm"]
    return names + hormone_endpoint_names(spec)


def hormone_endpoint_names(spec: EndpointSpec) -> list[str]:
    """Hormone endpoints: each of LH, FSH and total T back in its reference range and back
    at the man's own baseline, and all three in range at once (hormonal recovery)."""
    pct = f"{int(round(spec.hormone_baseline_fraction * 100))}pct_baseline"
    return ["testosterone_ge_10p4", "lh_in_range", "fsh_in_range", f"testosterone_ge_{pct}", f"lh_ge_{pct}",
            f"fsh_ge_{pct}", "hormonal_recovery"]


def _return_above(times_days, values, origin_days, threshold, horizon_days):
    """Return above ``threshold`` after the post-treatment fall below it.

    Exogenous T still circulates at the origin (and LH may not yet be fully suppressed
    after a weak regimen), so recovery is the first crossing upwards after the first
    value below the threshold; time 0 (observed) if the value never fell below it.
    """
    fall = first_crossing(times_days, values, origin_days, np.asarray(threshold) - 1e-6, rising=False,
                          interpolate=False, horizon_days=horizon_days)
    start = np.where(fall.observed, origin_days + fall.time_days, origin_days)
    event = first_crossing(times_days, values, start, threshold, horizon_days=np.maximum(
        horizon_days - (start - origin_days), 0.0))
    return (np.where(fall.observed, event.time_days + (start - origin_days), 0.0),
            np.where(fall.observed, event.observed, True))


def hormone_outcomes(times_days, outputs, params, origin_days, horizon_days, spec: EndpointSpec):
    """Per-patient hormone recovery times (days from the origin) and event flags.

    Args:
        times_days: ``(n_times,)`` daily grid.
        outputs: ``{observable: (n, n_times)}`` with total_testosterone_nmol_l, lh_iu_l
            and fsh_iu_l.
        params: ``{parameter: (n,)}`` with the baselines t_base_nmol_l, lh_base_iu_l and
            fsh_base_iu_l (the untreated steady state of each man).
        origin_days: ``(n,)``; horizon_days: follow-up after the origin.

    Returns:
        ``{<endpoint>_days, <endpoint>_observed}`` for hormone_endpoint_names(spec).
    """
    t, lh, fsh = outputs["total_testosterone_nmol_l"], outputs["lh_iu_l"], outputs["fsh_iu_l"]
    pct = f"{int(round(spec.hormone_baseline_fraction * 100))}pct_baseline"
    frac = spec.hormone_baseline_fraction
    targets = {
        "testosterone_ge_10p4": (t, TESTOSTERONE_THRESHOLD_NMOL_L),
        "lh_in_range": (lh, LH_LOWER_LIMIT_IU_L),
        "fsh_in_range": (fsh, FSH_LOWER_LIMIT_IU_L),
        f"testosterone_ge_{pct}": (t, frac * np.asarray(params["t_base_nmol_l"], float)),
        f"lh_ge_{pct}": (lh, frac * np.asarray(params["lh_base_iu_l"], float)),
        f"fsh_ge_{pct}": (fsh, frac * np.asarray(params["fsh_base_iu_l"], float)),
    }
    out = {}
    for name, (values, threshold) in targets.items():
        out[f"{name}_days"], out[f"{name}_observed"] = _return_above(times_days, values, origin_days, threshold,
                                                                     horizon_days)
    # Hormonal recovery: the first day from the origin on which LH and FSH are inside
    # their reference ranges and total T is at or above 10.4 nmol/L, all at once.
    in_range = ((lh >= LH_LOWER_LIMIT_IU_L) & (lh <= LH_UPPER_LIMIT_IU_L) & (fsh >= FSH_LOWER_LIMIT_IU_L)
                & (fsh <= FSH_UPPER_LIMIT_IU_L) & (t >= TESTOSTERONE_THRESHOLD_NMOL_L))
    event = first_crossing(times_days, in_range.astype(np.float32), origin_days, 0.5, interpolate=False,
                           horizon_days=horizon_days)
    out["hormonal_recovery_days"], out["hormonal_recovery_observed"] = event.time_days, event.observed
    rows = np.arange(t.shape[0])
    for name, values, base in (("lh", lh, "lh_base_iu_l"), ("fsh", fsh, "fsh_base_iu_l"),
                               ("testosterone", t, "t_base_nmol_l")):
        for months in spec.hormone_months:
            at = origin_days + months * DAYS_PER_MONTH
            idx = np.clip(np.searchsorted(times_days, at - 1e-9), 0, times_days.size - 1)
            value = values[rows, idx] / np.asarray(params[base], float)
            beyond = (at > times_days[-1] + 1e-9) | (months * DAYS_PER_MONTH > horizon_days + 1e-9)
            out[hormone_fraction_column(name, months)] = np.where(beyond, np.nan, value).astype(np.float32)
    return out


def hormone_fraction_column(hormone: str, months: float) -> str:
    """Outcome column of ``hormone`` ("lh", "fsh", "testosterone") over own baseline at a month."""
    return f"{hormone}_fraction_of_baseline_{_label(months)}mo"


def compute_outcomes(times_days: np.ndarray, outputs: dict[str, np.ndarray], params: dict[str, np.ndarray],
                     origin_days: np.ndarray, horizon_days: float, trt_start_days: np.ndarray,
                     trt_end_days: np.ndarray, spec: EndpointSpec, semen_key, patient_ids: np.ndarray
                     ) -> dict[str, np.ndarray]:
    """Per-patient recovery and suppression outcomes of one chunk.

    Args:
        times_days: ``(n_times,)`` daily grid.
        outputs: ``{observable: (n, n_times)}`` with sperm_concentration_m_ml,
            total_testosterone_nmol_l, lh_iu_l and fsh_iu_l.
        params: ``{parameter: (n,)}`` (baselines, semen observation parameters).
        origin_days: ``(n,)`` recovery origin.
        horizon_days: follow-up after the origin (censoring time).
        trt_start_days, trt_end_days: ``(n,)`` TRT window (end = first missed dose).
        spec: endpoints to compute.
        semen_key: PRNG key of the semen-sample stream.
        patient_ids: ``(n,)`` ids (keys of the per-patient samples).

    Returns:
        ``{column: (n,)}``: for each endpoint ``<name>_days`` and ``<name>_observed`` on
        the latent trajectory, ``sampled_<name>_days``/``_observed`` on the schedule for
        semen endpoints, plus suppression columns.
    """
    sperm = outputs["sperm_concentration_m_ml"]
    out: dict[str, np.ndarray] = {}
    volume_motile = params["semen_volume_ml"] * params["motility_fraction"]
    latent = {f"conc_ge_{_label(t)}": (sperm, t) for t in spec.sperm_thresholds_m_ml}
    latent.update({f"conc_ge_{int(round(f * 100))}pct_baseline": (sperm, f * params["sperm_base_m_ml"])
                   for f in spec.baseline_fractions})
    latent[f"tmc_ge_{_label(spec.tmc_threshold_m)}"] = (sperm * volume_motile[:, None], spec.tmc_threshold_m)
    latent["any_sperm"] = (sperm, params["azoospermia_limit_m_ml"])
    semen_names = list(latent)
    for name, (values, threshold) in latent.items():
        event = first_crossing(times_days, values, origin_days, threshold, horizon_days=horizon_days)
        out[f"{name}_days"] = event.time_days
        out[f"{name}_observed"] = event.observed
    out.update(hormone_outcomes(times_days, outputs, params, origin_days, horizon_days, spec))

    if spec.sampling_interval_days > 0:
        n_samples = int(np.floor((horizon_days - spec.first_sample_offset_days) / spec.sampling_interval_days)) + 1
        offsets = spec.first_sample_offset_days + spec.sampling_interval_days * np.arange(max(n_samples, 0))
        sample_times = origin_days[:, None] + offsets[None, :]
        rows = np.arange(sperm.shape[0])
        # Latent concentration at each sample time (linear interpolation of the daily grid).
        idx = np.clip(np.searchsorted(times_days, sample_times) - 1, 0, times_days.size - 2)
        t0, t1 = times_days[idx], times_days[idx + 1]
        w = np.clip((sample_times - t0) / (t1 - t0), 0.0, 1.0)
        latent_at = (1 - w) * sperm[rows[:, None], idx] + w * sperm[rows[:, None], idx + 1]
        valid = sample_times <= times_days[-1]
        latent_at = latent_at.astype(np.float32)
        conc, _ = sample_semen(semen_key, jnp.asarray(patient_ids), jnp.arange(offsets.size),
                               jnp.asarray(latent_at), *(jnp.asarray(np.asarray(params[k], np.float32)) for k in
                                                          ("semen_cv_within", "azoospermia_limit_m_ml",
                                                           "semen_volume_ml", "motility_fraction")))
        conc = np.where(valid, np.asarray(conc), np.nan)
        sampled = {name: conc for name in semen_names}
        sampled[f"tmc_ge_{_label(spec.tmc_threshold_m)}"] = conc * volume_motile[:, None]
        for name in semen_names:
            values, threshold = latent[name]
            thr = np.broadcast_to(np.asarray(threshold, float), (sperm.shape[0],))
            if name == "any_sperm":
                met = sampled[name] > 0
            else:
                met = sampled[name] >= thr[:, None]
            met &= valid
            has = met.any(axis=1)
            first = np.where(has, met.argmax(axis=1), 0)
            last_valid = np.maximum(valid.sum(axis=1) - 1, 0)
            out[f"sampled_{name}_days"] = np.where(has, offsets[first], offsets[last_valid] if offsets.size else 0.0)
            out[f"sampled_{name}_observed"] = has

    # The state at the origin (for selecting men, e.g. azoospermic when they stopped).
    at_origin = {name: _at_times(times_days, outputs[key], origin_days[:, None])[:, 0]
                 for name, key in (("origin_sperm_m_ml", "sperm_concentration_m_ml"),
                                   ("origin_testosterone_nmol_l", "total_testosterone_nmol_l"),
                                   ("origin_lh_iu_l", "lh_iu_l"))}
    out.update(at_origin)
    out["azoospermic_at_origin"] = at_origin["origin_sperm_m_ml"] < params["azoospermia_limit_m_ml"]
    if spec.pre_origin_sample_days:
        before = np.asarray(spec.pre_origin_sample_days, float)
        sample_times = origin_days[:, None] - before[None, :]
        latent_before = _at_times(times_days, sperm, sample_times).astype(np.float32)
        conc, _ = sample_semen(semen_key, jnp.asarray(patient_ids), jnp.arange(before.size) + PRE_ORIGIN_SAMPLE_INDEX,
                               jnp.asarray(latent_before), *(jnp.asarray(np.asarray(params[k], np.float32)) for k in
                                                             ("semen_cv_within", "azoospermia_limit_m_ml",
                                                              "semen_volume_ml", "motility_fraction")))
        conc = np.where(sample_times >= times_days[0], np.asarray(conc), np.nan)
        for j, d in enumerate(before):
            out[f"sample_{_label(d)}d_before_origin_m_ml"] = conc[:, j]

    during = np.isfinite(trt_start_days)
    out["suppression_min_sperm_fraction"] = suppression_depth(times_days, sperm, np.where(during, trt_start_days, np.inf),
                                                              trt_end_days, params["sperm_base_m_ml"])
    out["suppression_min_lh_fraction"] = suppression_depth(times_days, outputs["lh_iu_l"], np.where(during, trt_start_days, np.inf),
                                                           trt_end_days, params["lh_base_iu_l"])
    to_1 = first_crossing(times_days, sperm, trt_start_days, 1.0, rising=False,
                          horizon_days=np.maximum(trt_end_days - trt_start_days, 0.0))
    out["suppression_to_conc_le_1_days"] = to_1.time_days
    out["suppression_to_conc_le_1_observed"] = to_1.observed
    below_limit = sperm < params["azoospermia_limit_m_ml"][:, None]
    in_trt = (times_days[None, :] >= trt_start_days[:, None]) & (times_days[None, :] <= trt_end_days[:, None])
    out["azoospermic_during_trt"] = (below_limit & in_trt).any(axis=1)
    return out
