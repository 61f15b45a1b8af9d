"""Progress on stderr: a rich bar on a terminal, plain log lines elsewhere.

The bar appears at once, saying the model is loading, and turns into tiles done, Mpx/s and
ETA when the first tiles are in. The rate is taken over the last seconds of work
(:class:`RateWindow`), so it follows what the run does now instead of the first batch.
When stderr is not a terminal (a batch job's log file), a line ``tiles done/total, Mpx/s,
ETA`` goes through the ``rsinfer`` logger every ``log_every`` seconds instead.
"""

from __future__ import annotations

import logging
import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

log = logging.getLogger("rsinfer")


class RateWindow:
    """Mpx/s over the last ``seconds``: a rate that follows the work, not one inflated by the first batch."""

    def __init__(self, seconds: float = 20.0):
        self.seconds = seconds
        self._points: list[tuple[float, float]] = []

    def add(self, now: float, megapixels: float) -> float | None:
        """Record the megapixels done by ``now``; the rate over the window (None in the first second)."""
        self._points.append((now, megapixels))
        while len(self._points) > 2 and now - self._points[1][0] >= self.seconds:
            self._points.pop(0)
        (t0, m0), (t1, m1) = self._points[0], self._points[-1]
        return (m1 - m0) / (t1 - t0) if t1 - t0 >= 1.0 else None


def stderr_progress(disable: bool) -> tuple[Progress, bool, bool]:
    """The bar both commands draw on stderr (description, bar, done/total, unit, rate, ETA), and
    whether it shows (a terminal, not quiet) or log lines stand in for it (no terminal)."""
    console = Console(stderr=True)
    enabled = not disable and console.is_terminal
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[unit]}"),
        TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(),
        console=console,
        disable=not enabled,
    )
    return progress, enabled, not disable and not console.is_terminal


class TileProgress:
    """Context manager; ``update(done, total, pixels)`` is the pipeline's progress callback."""

    def __init__(self, disable: bool = False, label: str = "segment", log_every: float = 30.0):
        self._progress, self.enabled, self.logging = stderr_progress(disable)
        self.log_every = log_every
        self._label = label
        self._task = self._progress.add_task("[bold]loading the model", total=None, unit="", rate="")
        self._started = False
        self._rate = RateWindow()
        self._start = self._last_draw = self._last_log = time.monotonic()

    def __enter__(self) -> TileProgress:
        self._progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._progress.__exit__(*exc)

    def update(self, done: int, total: int, pixels: int) -> None:
        now = time.monotonic()
        rate = self._rate.add(now, pixels / 1e6)
        if not self._started:
            self._started = True
            self._progress.update(self._task, description=f"[bold]{self._label}", total=total, unit="tiles")
        if done == total or now - self._last_draw > 0.1:  # redraw at most 10 times a second
            self._progress.update(self._task, completed=done, rate="" if rate is None else f"{rate:.2f} Mpx/s")
            self._last_draw = now
        if self.logging and (now - self._last_log >= self.log_every or done == total):
            self._last_log = now
            eta = (now - self._start) / done * (total - done) if done else None
            log.info(
                "%s: %d/%d tiles, %.2f Mpx/s, ETA %s",
                self._label,
                done,
                total,
                rate or (pixels / 1e6 / max(now - self._start, 1e-9)),
                "?" if eta is None else f"{eta:.0f} s",
            )
