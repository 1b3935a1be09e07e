"""Atomic writing of a run's outputs: everything goes to a hidden staging folder inside
the run directory and is moved into place only when all of it was written."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def staged_outputs(run_dir: Path) -> Iterator[Path]:
    """Yield a staging folder; on success move its entries into ``run_dir``, on error
    delete it so that no half-written output is left."""
    run_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=run_dir))
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    for entry in staging.iterdir():
        target = run_dir / entry.name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        os.replace(entry, target)
    staging.rmdir()
