"""A rich progress bar on stderr: tiles done, Mpx/s, ETA."""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeRemainingColumn
from rich.text import Text


class _RateColumn(ProgressColumn):
    def render(self, task) -> Text:
        elapsed = task.elapsed or 0.0
        mpx = task.fields.get("pixels", 0) / 1e6
        return Text(f"{mpx / elapsed:.2f} Mpx/s" if elapsed > 0 else "-- Mpx/s")


class TileProgress:
    """Context manager; ``update(done, total, pixels)`` is the pipeline's progress callback."""

    def __init__(self, disable: bool = False, label: str = "segment"):
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("tiles"),
            _RateColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            disable=disable,
            transient=False,
        )
        self._label = label
        self._task = None
        self._last = 0.0

    def __enter__(self) -> TileProgress:
        self._progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._progress.__exit__(*exc)

    def update(self, done: int, total: int, pixels: int) -> None:
        if self._task is None:
            self._task = self._progress.add_task(self._label, total=total, pixels=0)
        now = time.monotonic()
        if done == total or now - self._last > 0.1:  # redraw at most 10 times a second
            self._progress.update(self._task, completed=done, pixels=pixels)
            self._last = now
