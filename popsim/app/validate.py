"""The ``popsim-validate`` command: the default model against published evidence.

Runs every target of popsim/evidence/targets.yaml (C1-C8) as the studies were run,
writes ``validation.json`` (per metric: model value, Monte Carlo error, published value,
acceptance interval, pass/fail), ``validation.md`` and one figure per target into the
Hydra run directory, and exits with status 1 when a metric fails unless
``report_only=true``. ``fast=true`` runs small cohorts with a wider Monte Carlo tolerance
(the test suite's version).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

import hydra
from hydra import initialize_config_module
from hydra.core.config_store import ConfigStore
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from popsim.app import preflight
from popsim.app.outputs import staged_outputs
from popsim.config.schema import SolverConfig
from popsim.plotting.validation_figures import target_figure
from popsim.report.validation import render_validation
from popsim.solve.settings import SolverSettings
from popsim.validation.run import TargetResult, to_json, validate
from popsim.validation.scenarios import Options
from popsim.validation.targets import TARGET_IDS

log = logging.getLogger("popsim.validate")
CONFIG_NAME = "validate"


@dataclass
class ValidateConfig:
    """popsim-validate settings.

    Attributes:
        targets: which targets to run (default all of C1-C8).
        size: virtual men per cohort (full run).
        fast: small cohorts (fast_size) and a wider tolerance (fast_tolerance).
        fast_size: men per cohort in fast mode.
        tolerance: Monte Carlo tolerance in SEs of the full run (0: the point estimate
            must lie inside the published interval).
        fast_tolerance: tolerance of the fast run.
        seed: root seed (common random numbers).
        report_only: write the report and exit 0 even when a metric fails.
        figures: write one figure per target.
        solver: integrator settings.
    """

    targets: List[str] = field(default_factory=lambda: list(TARGET_IDS))
    size: int = 2000
    fast: bool = False
    fast_size: int = 200
    tolerance: float = 0.0
    fast_tolerance: float = 3.0
    seed: int = 20060415
    report_only: bool = False
    figures: bool = True
    solver: SolverConfig = field(default_factory=SolverConfig)


def register() -> None:
    ConfigStore.instance().store(name="validate_schema", node=ValidateConfig)


# Men per cohort beyond which a validation run is not practical on one machine (the
# largest target, C5, runs four cohorts of this size).
MAX_SIZE = 1_000_000


def _check(cfg: ValidateConfig) -> Optional[str]:
    if not cfg.targets:
        return f"targets: empty; give at least one of {list(TARGET_IDS)} (e.g. targets=[C1,C4]) or leave it out for all"
    bad = [t for t in cfg.targets if t not in TARGET_IDS]
    if bad:
        return f"targets: {bad} unknown; valid targets are {list(TARGET_IDS)}"
    if len(set(cfg.targets)) != len(cfg.targets):
        return f"targets: {list(cfg.targets)} names a target twice"
    for key in ("size", "fast_size"):
        value = getattr(cfg, key)
        if not 1 <= value <= MAX_SIZE:
            return f"{key}: {value} is outside the valid range [1, {MAX_SIZE:,}] men per cohort"
    for key in ("tolerance", "fast_tolerance"):
        value = getattr(cfg, key)
        if not (0 <= value <= 100):
            return f"{key}: {value:g} is outside the valid range [0, 100] Monte Carlo standard errors"
    if not 0 <= cfg.seed < 2 ** 63:
        return f"seed: {cfg.seed} is outside the valid range [0, 2^63)"
    try:
        _settings(cfg.solver)
    except ValueError as e:
        return str(e)
    return None


def _settings(s: SolverConfig) -> SolverSettings:
    return SolverSettings(dt_days=SolverSettings.dt_days if s.dt_days is None else s.dt_days,
                          precision=s.precision, chunk_size=s.chunk_size)


SCHEMA = preflight.DataclassSchema(ValidateConfig)


def check_validate(argv: list[str]) -> preflight.Checked:
    """Check a popsim-validate command line before Hydra creates its run folder."""
    overrides, runs = preflight.split_overrides(argv)
    preflight.parse(overrides)
    if preflight.is_multirun(argv):
        raise preflight.Rejected("popsim-validate runs one validation at a time; sweeps (-m) are not supported")
    register()
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module=preflight.CONFIG_MODULE, version_base="1.3"):
        cfg = preflight.compose_checked(CONFIG_NAME, overrides, SCHEMA)
        unknown = SCHEMA.unknown(preflight.app_container(cfg))
        if unknown:
            raise preflight.Rejected(preflight.unknown_key_message(*unknown))
        if not runs:
            return preflight.Checked([])
        try:
            typed = OmegaConf.to_object(preflight.without_hydra(cfg))
        except Exception as e:  # noqa: BLE001 - OmegaConf conversion errors
            raise preflight.Rejected(preflight.explain_compose_error(e, overrides, SCHEMA)) from None
        error = _check(typed)
        if error:
            raise preflight.Rejected(error)
        preflight.check_output_dir(*preflight.output_dir_of(cfg, argv))
    return preflight.Checked([])


@hydra.main(config_path="pkg://popsim.configs", config_name=CONFIG_NAME, version_base="1.3")
def _run(cfg: DictConfig) -> None:
    logging.getLogger("jax._src.xla_bridge").setLevel(logging.WARNING)
    typed: ValidateConfig = OmegaConf.to_object(cfg)
    error = _check(typed)
    if error:
        print(f"popsim-validate: error: {error}", file=sys.stderr)
        sys.exit(2)
    size = typed.fast_size if typed.fast else typed.size
    tolerance = typed.fast_tolerance if typed.fast else typed.tolerance
    settings = _settings(typed.solver)
    options = Options(size=size, seed=typed.seed, settings=settings)
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    started = time.perf_counter()

    def progress(r: TargetResult) -> None:
        log.info("%s: %d/%d metrics pass (%.0f s)", r.id, sum(m.passed for m in r.metrics), len(r.metrics), r.seconds)

    results = validate(typed.targets, options, tolerance, on_target=progress)
    info = {"size": size, "seed": typed.seed, "tolerance": tolerance, "fast": typed.fast,
            "targets": list(typed.targets), "dt_days": settings.dt_days, "precision": settings.precision,
            "elapsed_s": round(time.perf_counter() - started, 1)}
    payload = to_json(results, info)
    with staged_outputs(run_dir) as tmp:
        (tmp / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
        figures = {}
        if typed.figures:
            (tmp / "figures").mkdir()
            for r in results:
                fig = target_figure(r)
                name = f"figures/{r.id}.png"
                fig.savefig(tmp / name, dpi=110)
                figures[r.id] = name
        (tmp / "validation.json").write_text(json.dumps(payload, indent=2, allow_nan=False))
        (tmp / "validation.md").write_text(render_validation(results, figures, info))
    n_failed = payload["n_failed"]
    print(f"popsim-validate: {payload['n_metrics'] - n_failed}/{payload['n_metrics']} metrics pass; "
          f"outputs written to {run_dir}")
    for r in results:
        for m in r.metrics:
            if not m.passed:
                print(f"  FAIL {m.target}.{m.name}: model {m.model:.4g} (MC SE {m.mc_se:.2g}), "
                      f"acceptance {m.interval}")
    if n_failed and not typed.report_only:
        sys.exit(1)


def main() -> None:
    """Entry point of the ``popsim-validate`` command."""
    register()
    preflight.run_guarded("popsim-validate", check_validate, lambda _: _run())


if __name__ == "__main__":
    main()
