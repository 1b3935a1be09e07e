"""Progress bar of a long run: chunks done, patients/s, ETA (rich)."""

from __future__ import annotations

import contextlib
import logging
import sys
from typing import Callable, Iterator

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

log = logging.getLogger("popsim")


@contextlib.contextmanager
def chunk_progress(total: int, enabled: bool = True) -> Iterator[Callable[[int, int], None]]:
    """Yield an ``on_chunk(done, total)`` callback that drives a progress bar and logs."""
    if not enabled:
        yield lambda done, n: log.info("%d/%d patients", done, n)
        return
    columns = (TextColumn("[bold]simulating"), BarColumn(), TextColumn("{task.completed:,.0f}/{task.total:,.0f} patients"),
               TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn())
    with Progress(*columns, console=Console(file=sys.stderr), transient=False) as progress:
        task = progress.add_task("simulate", total=total, rate="")
        state = {"first": None}

        def on_chunk(done: int, n: int) -> None:
            import time

            now = time.perf_counter()
            if state["first"] is None:
                state["first"] = (now, done)
                rate = ""
            else:
                t0, d0 = state["first"]
                rate = f"{(done - d0) / max(now - t0, 1e-9):,.0f} patients/s"
            progress.update(task, completed=done, rate=rate)
            log.info("%d/%d patients %s", done, n, rate)

        yield on_chunk
