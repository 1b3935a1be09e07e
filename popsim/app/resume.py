"""Resuming an interrupted ``popsim`` run from its completed chunks.

While a run goes, each chunk's results (outcome columns and kept trajectories) are written
into ``<run dir>/chunks/`` atomically (a temporary file renamed into place), next to
``study.json``: the resolved configuration of every key that affects results and its hash
(the fingerprint). ``popsim ... resume=<run dir>`` checks the fingerprint against the
configuration given (popsim.app.preflight), reuses the chunks found, simulates the rest
and writes the outputs as usual; the chunks are removed once the outputs are complete.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Mapping

import jax
import numpy as np
from omegaconf import DictConfig, OmegaConf

import popsim
from popsim.outcomes.study import ChunkOutcome

CHUNKS = "chunks"
STUDY_FILE = "study.json"
# Keys that change what is written but not what is simulated.
OUTPUT_ONLY = ("resume", "output.figures", "output.report", "output.progress")


def study_config(cfg: DictConfig | Mapping) -> dict:
    """The resolved configuration without the hydra node and the output-only keys, with the
    default step method named and the versions of popsim and JAX (chunks of another version
    or default method are not mixed in)."""
    container = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else json.loads(
        json.dumps(cfg))
    container.pop("hydra", None)
    for key in OUTPUT_ONLY:
        *parents, last = key.split(".")
        node = container
        for part in parents:
            node = node.get(part, {}) if isinstance(node, dict) else {}
        if isinstance(node, dict):
            node.pop(last, None)
    solver = container.get("solver")
    if isinstance(solver, dict) and solver.get("method") is None:
        # The default step method by name: chunks simulated before a change of the default
        # must not be mixed with chunks of the new one.
        solver["method"] = popsim.SolverSettings.method
    container["versions"] = {"popsim": popsim.__version__, "jax": jax.__version__}
    return container


def fingerprint(config: Mapping) -> str:
    """Hash of a study configuration (popsim.app.resume.study_config)."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), allow_nan=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
        return out or {prefix: {}}
    return {prefix: value}


def differences(stored: Mapping, given: Mapping, limit: int = 3) -> str:
    """The keys whose values differ, as 'key: run has A, given B' (at most ``limit``)."""
    a, b = _flat(stored), _flat(given)
    keys = sorted(k for k in set(a) | set(b) if a.get(k, "(absent)") != b.get(k, "(absent)"))
    shown = [f"{k}: the run has {json.dumps(a.get(k, '(absent)'))}, given {json.dumps(b.get(k, '(absent)'))}"
             for k in keys[:limit]]
    more = f" and {len(keys) - limit} more" if len(keys) > limit else ""
    return "; ".join(shown) + more


def check_resume(path: str, cfg: DictConfig | Mapping) -> Path:
    """The run directory to resume, or ValueError with one line naming the ``resume`` key."""
    run_dir = Path(os.path.expanduser(str(path))).absolute()
    if not run_dir.is_dir():
        raise ValueError(f"resume: '{path}' is not a folder; give the run directory of the interrupted run "
                         "(the folder it printed or its hydra.run.dir)")
    study = run_dir / CHUNKS / STUDY_FILE
    if study.is_file():
        stored = json.loads(study.read_text())["config"]
    elif (run_dir / "config.yaml").is_file():
        stored = study_config(OmegaConf.load(run_dir / "config.yaml"))
    else:
        raise ValueError(f"resume: '{path}' holds no popsim run ({CHUNKS}/{STUDY_FILE} and config.yaml are missing; "
                         "a run killed before it began simulating is run again without resume=)")
    given = study_config(cfg)
    if fingerprint(stored) != fingerprint(given):
        raise ValueError(f"resume: the run in '{path}' was made with another configuration ({differences(stored, given)}); "
                         "give the same settings as that run, or run into a new folder")
    return run_dir


class ChunkStore:
    """The completed chunks of a run, in ``<run dir>/chunks/``.

    Args:
        run_dir: the run directory.
        config: the study configuration (study_config); its fingerprint must match the
            stored one for stored chunks to be read.
    """

    def __init__(self, run_dir: Path, config: Mapping):
        self.folder = Path(run_dir) / CHUNKS
        self.config = dict(config)
        self.fingerprint = fingerprint(self.config)

    def start(self, resume: bool) -> None:
        """Create the folder and write study.json; chunks already there are kept only when
        resuming the same study."""
        study = self.folder / STUDY_FILE
        if self.folder.exists() and not (resume and study.is_file()
                                         and json.loads(study.read_text()).get("fingerprint") == self.fingerprint):
            shutil.rmtree(self.folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        if not study.is_file():
            self._write_atomically(STUDY_FILE, lambda f: f.write(json.dumps(
                {"fingerprint": self.fingerprint, "config": self.config}, indent=1, sort_keys=True).encode()))

    def completed(self) -> dict[int, ChunkOutcome]:
        """The stored chunks by first patient id (none unless the fingerprint matches)."""
        study = self.folder / STUDY_FILE
        if not study.is_file() or json.loads(study.read_text()).get("fingerprint") != self.fingerprint:
            return {}
        chunks: dict[int, ChunkOutcome] = {}
        for path in sorted(self.folder.glob("chunk-*.npz")):
            with np.load(path, allow_pickle=False) as data:
                outcomes = {k[2:]: data[k] for k in data.files if k.startswith("o:")}
                trajectories = {k[2:]: data[k] for k in data.files if k.startswith("t:")}
                chunks[int(path.stem.split("-")[1])] = ChunkOutcome(outcomes, trajectories, data["kept_ids"])
        return chunks

    def save(self, begin: int, part: ChunkOutcome) -> None:
        """Write one chunk's results (atomically: complete or absent)."""
        arrays = {f"o:{k}": np.asarray(v) for k, v in part.outcomes.items()}
        arrays.update({f"t:{k}": np.asarray(v) for k, v in part.trajectories.items()})
        arrays["kept_ids"] = np.asarray(part.trajectory_patient_ids)
        self._write_atomically(f"chunk-{begin:010d}.npz", lambda f: np.savez(f, **arrays))

    def remove(self) -> None:
        """Delete the chunks (once the run's outputs are complete)."""
        shutil.rmtree(self.folder, ignore_errors=True)

    def _write_atomically(self, name: str, write) -> None:
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=self.folder)
        try:
            with os.fdopen(fd, "wb") as f:
                write(f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.folder / name)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
