"""Progress bar of a long run: chunks done, patients/s, ETA (rich)."""

from __future__ import annotations

import contextlib
import logging
import sys
from typing import Callable, Collection, Iterator

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

log = logging.getLogger("popsim")


@contextlib.contextmanager
def chunk_progress(total: int, enabled: bool = True,
                   restored_chunk_starts: Collection[int] = ()) -> Iterator[Callable[[int, int], None]]:
    """Yield an ``on_chunk(done, total)`` callback that drives a progress bar and logs.

    Args:
        total: patients in the run.
        enabled: draw the bar (else log each chunk without a rate).
        restored_chunk_starts: first patient index of each chunk a resumed run reads back
            instead of simulating; chunks are reported in order, so a chunk starts where the
            previous report ended. The rate counts only the chunks simulated here, from the
            end of the first one (which carries the compilation).
    """
    restored = frozenset(restored_chunk_starts)
    if not enabled:
        yield lambda done, n: log.info("%d/%d patients", done, n)
        return
    columns = (TextColumn("[bold]simulating"), BarColumn(), TextColumn("{task.completed:,.0f}/{task.total:,.0f} patients"),
               TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn())
    with Progress(*columns, console=Console(file=sys.stderr), transient=False) as progress:
        task = progress.add_task("simulate", total=total, rate="")
        state = {"first_time": None, "simulated_since_first": 0, "last_done": 0}

        def on_chunk(done: int, n: int) -> None:
            import time

            now = time.perf_counter()
            begin, state["last_done"] = state["last_done"], done
            rate = ""
            if begin in restored:
                rate = "(read back)"
            elif state["first_time"] is None:
                state["first_time"] = now
            else:
                state["simulated_since_first"] += done - begin
                rate = f"{state['simulated_since_first'] / max(now - state['first_time'], 1e-9):,.0f} patients/s"
            progress.update(task, completed=done, rate=rate)
            log.info("%d/%d patients %s", done, n, rate)

        yield on_chunk
