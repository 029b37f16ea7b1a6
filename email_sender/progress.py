"""Progress bars for long work: shown on a terminal, silent in CI, in JSON mode or in a pipe."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


def interactive() -> bool:
    """True on a terminal outside CI."""
    return sys.stderr.isatty() and os.environ.get("CI", "").lower() not in ("1", "true", "yes")


@contextmanager
def progress_bar(
    description: str, *, total: float | None, quiet: bool = False
) -> Iterator[Callable[[int], None]]:
    """Yield ``advance(n)``; draws a bar on stderr only when someone is watching."""
    if quiet or not interactive():
        yield lambda _n: None
        return
    columns = [SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
               MofNCompleteColumn(), TimeElapsedColumn()]
    if total is not None:
        columns.append(TimeRemainingColumn())
    with Progress(*columns, transient=False) as progress:
        task = progress.add_task(description, total=total)
        yield lambda n: progress.advance(task, n)
