"""Atomic writing of a run's outputs: everything goes to a hidden staging folder inside
the run directory and is moved into place only when all of it was written.

A run's outputs are complete or absent: summary.json (COMPLETE_MARKER) is removed first
and moved into place last, so a run directory holding summary.json holds every output of
that run, and one without it (a job killed while moving files, a failed job) counts as
not done. Sweep summaries and the skipping of finished jobs rely on this.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

COMPLETE_MARKER = "summary.json"


@contextlib.contextmanager
def staged_outputs(run_dir: Path, last: str | None = COMPLETE_MARKER) -> Iterator[Path]:
    """Yield a staging folder; on success move its entries into ``run_dir`` (``last``, if
    among them, after all the others), on error delete it so that no half-written output
    is left."""
    run_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=run_dir))
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    entries = sorted(staging.iterdir(), key=lambda p: p.name == last)
    if last is not None and (staging / last).exists():
        (run_dir / last).unlink(missing_ok=True)
    for entry in entries:
        target = run_dir / entry.name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        os.replace(entry, target)
    staging.rmdir()
