"""Labelled trajectories: simulator outputs as an ``xarray.Dataset`` with units."""

from __future__ import annotations

from typing import Mapping

import numpy as np
import xarray as xr

# core output name -> (dataset variable, unit, long name)
OBSERVABLE_LABELS: dict[str, tuple[str, str, str]] = {
    "total_testosterone_nmol_l": ("total_testosterone", "nmol/L", "serum total testosterone"),
    "free_testosterone_pmol_l": ("free_testosterone", "pmol/L", "serum free testosterone (Vermeulen)"),
    "lh_iu_l": ("lh", "IU/L", "serum LH"),
    "fsh_iu_l": ("fsh", "IU/L", "serum FSH (endogenous + exogenous)"),
    "estradiol_pg_ml": ("estradiol", "pg/mL", "serum estradiol"),
    "inhibin_b_pg_ml": ("inhibin_b", "pg/mL", "serum inhibin B"),
    "shbg_nmol_l": ("shbg", "nmol/L", "serum SHBG"),
    "itt_nmol_l": ("itt", "nmol/L", "intratesticular testosterone"),
    "sperm_concentration_m_ml": ("sperm_concentration", "M/mL", "latent sperm concentration (production)"),
    "sperm_concentration_sample_m_ml": ("sperm_concentration_sample", "M/mL",
                                        "sperm concentration in one semen sample (0 = no sperm seen)"),
    "total_motile_count_m": ("total_motile_count", "M", "total motile sperm count in one sample"),
    "exogenous_testosterone_nmol_l": ("exogenous_testosterone", "nmol/L", "serum T from TRT"),
    "hcg_iu_l": ("hcg", "IU/L", "serum hCG"),
    "fsh_exogenous_iu_l": ("fsh_exogenous", "IU/L", "serum recombinant FSH"),
    "enclomiphene_ng_ml": ("enclomiphene", "ng/mL", "serum enclomiphene"),
    "zuclomiphene_ng_ml": ("zuclomiphene", "ng/mL", "serum zuclomiphene"),
    "tamoxifen_ng_ml": ("tamoxifen", "ng/mL", "serum tamoxifen (+ N-desmethyl)"),
    "anastrozole_ng_ml": ("anastrozole", "ng/mL", "serum anastrozole"),
    "gonadorelin_effect_ug": ("gonadorelin_effect", "ug", "gonadorelin in the pituitary effect compartment"),
    "spermatogenic_support": ("spermatogenic_support", "1", "hormonal support of spermatogenesis (1 = baseline)"),
    "leydig_capacity": ("leydig_capacity", "1", "Leydig steroidogenic capacity (1 = baseline)"),
    "pituitary_reserve": ("pituitary_reserve", "1", "gonadotroph reserve (1 = baseline)"),
    "spermatogonial_reserve": ("spermatogonial_reserve", "1", "spermatogonial reserve (1 = baseline)"),
    "hypothalamic_capacity": ("hypothalamic_capacity", "1", "capacity of the GnRH pulse generator (1 = baseline)"),
    "leydig_cell_mass": ("leydig_cell_mass", "1", "Leydig cell number (1 = baseline)"),
    "stem_cell_pool": ("stem_cell_pool", "1", "spermatogonial stem-cell pool (1 = baseline)"),
}


def to_dataset(outputs: Mapping[str, np.ndarray], failed: np.ndarray, patient_ids: np.ndarray,
               times_days: np.ndarray, attrs: Mapping[str, object] | None = None) -> xr.Dataset:
    """Build the (patient, time) Dataset.

    Args:
        outputs: ``{core output name: (n_patients, n_times)}``.
        failed: ``(n_patients,)`` bool numerical-failure flags.
        patient_ids: ``(n_patients,)`` ids.
        times_days: ``(n_times,)`` output times.
        attrs: extra dataset attributes.
    """
    data_vars = {}
    for name, values in outputs.items():
        var, unit, long_name = OBSERVABLE_LABELS[name]
        data_vars[var] = (("patient", "time"), np.asarray(values), {"units": unit, "long_name": long_name})
    data_vars["failed"] = (("patient",), np.asarray(failed, bool),
                           {"long_name": "numerical failure in this patient (outputs not to be used)"})
    ds = xr.Dataset(data_vars, coords={
        "patient": ("patient", np.asarray(patient_ids), {"long_name": "virtual patient id"}),
        "time": ("time", np.asarray(times_days, float), {"units": "day", "long_name": "time since simulation start"}),
    })
    ds.attrs.update({"title": "popsim trajectories", **(attrs or {})})
    ds.attrs["n_failed"] = int(np.sum(failed))
    return ds
