"""Every ArviZ call of popsim, in one place, for ArviZ 0.x (Python 3.11) and 1.x (3.12+).

The InferenceData is written as netCDF groups (posterior, posterior_predictive,
log_likelihood, observed_data, sample_stats, constant_data, ...) from plain xarray
Datasets, which is the on-disk format of both ArviZ generations, so the file opens with
``arviz.from_netcdf`` whichever ArviZ the user has. Summaries and LOO go through ArviZ
and are normalised to the same column names in both generations.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import xarray as xr

GROUP_ORDER = ("posterior", "posterior_predictive", "log_likelihood", "sample_stats", "observed_data",
               "constant_data", "predictions", "prior")


def _arviz():
    # arviz.preview logs at INFO which of its optional packages are missing
    # ("arviz_stats not installed"); under the commands' INFO logging that reached the console.
    logging.getLogger("arviz.preview").setLevel(logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        import arviz

    return arviz


def arviz_version() -> str:
    return str(_arviz().__version__)


def write_inference_data(groups: Mapping[str, xr.Dataset], path: str | os.PathLike, attrs: Mapping | None = None) -> Path:
    """Write groups as one netCDF file that ``arviz.from_netcdf`` opens (atomic: written to a
    temporary file in the same folder, then renamed).

    Args:
        groups: ``{group name: Dataset}``; sample groups have dims ("chain", "draw", ...).
        attrs: attributes added to every group (e.g. popsim version, data source).
    """
    path = Path(path)
    tmp = path.with_name(path.name + ".partial")
    if tmp.exists():
        tmp.unlink()
    names = [g for g in GROUP_ORDER if g in groups] + [g for g in groups if g not in GROUP_ORDER]
    try:
        # The root group carries nothing; ArviZ lists the groups it finds.
        for i, name in enumerate(names):
            ds = groups[name].copy()
            ds.attrs.update({k: str(v) for k, v in (attrs or {}).items()})
            ds.to_netcdf(tmp, mode="w" if i == 0 else "a", group=name, engine="h5netcdf")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def load_inference_data(path: str | os.PathLike):
    """``arviz.from_netcdf(path)`` (InferenceData in 0.x, DataTree in 1.x)."""
    return _arviz().from_netcdf(str(path))


def group(idata, name: str) -> xr.Dataset:
    """One group as an xarray Dataset, for either ArviZ generation."""
    node = idata[name]
    return node.to_dataset() if hasattr(node, "to_dataset") else node


def summary(idata, var_names: Sequence[str], diagnostics: bool = True) -> pd.DataFrame:
    """Posterior summary with columns mean, sd, q5, q95, ess_bulk, ess_tail, r_hat.

    The 90 % interval is computed here (equal-tailed) so both ArviZ generations agree;
    ESS and r_hat (rank-normalised split-R-hat) come from ArviZ; ``diagnostics=False``
    (one chain of independent draws, e.g. SVI) leaves them NaN.
    """
    table = pd.DataFrame()
    if diagnostics:
        az = _arviz()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            table = az.summary(idata, var_names=list(var_names), round_to="none")
        table = table.rename(columns={"rhat": "r_hat", "ess_mean": "ess_bulk"})
    posterior = group(idata, "posterior")
    rows = {}
    for name in var_names:
        da = posterior[name].stack(sample=("chain", "draw"))
        extra = [d for d in da.dims if d != "sample"]
        flat = da.transpose(*extra, "sample").values.reshape(-1, da.sizes["sample"]) if extra else da.values[None]
        labels = _labels(name, da, extra)
        for label, values in zip(labels, flat):
            rows[label] = {"mean": float(np.mean(values)), "sd": float(np.std(values, ddof=1)),
                           "q5": float(np.quantile(values, 0.05)), "q95": float(np.quantile(values, 0.95))}
    out = pd.DataFrame.from_dict(rows, orient="index")
    for column in ("ess_bulk", "ess_tail", "r_hat"):
        out[column] = table[column].reindex(out.index).to_numpy(dtype=float) if column in table else np.nan
    return out


def _labels(name: str, da: xr.DataArray, extra: list[str]) -> list[str]:
    if not extra:
        return [name]
    grids = np.meshgrid(*[da[d].values for d in extra], indexing="ij")
    return [f"{name}[{', '.join(str(g.flat[i]) for g in grids)}]" for i in range(grids[0].size)]


def loo(idata, var_name: str = "y") -> dict:
    """PSIS-LOO of the observations: elpd, its standard error, effective parameters and
    Pareto k diagnostics (the same keys for both ArviZ generations)."""
    az = _arviz()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = az.loo(idata, var_name=var_name, pointwise=True)

    def get(*names):
        # 0.x: a pandas Series (items and attributes); 1.x: a dataclass (attributes).
        for n in names:
            value = getattr(result, n, None)
            if value is None:
                try:
                    value = result[n]
                except (KeyError, IndexError, TypeError, AttributeError):
                    value = None
            if value is not None:
                return value
        return None

    k = np.asarray(get("pareto_k"), float).ravel()
    return {
        "elpd_loo": float(get("elpd_loo", "elpd")),
        "se": float(get("se")),
        "p_loo": float(get("p_loo", "p")),
        "n_observations": int(k.size),
        "pareto_k_max": float(np.nanmax(k)) if k.size else float("nan"),
        "n_pareto_k_above_0_7": int(np.sum(k > 0.7)),
    }
