"""Where the driver sees what each worker is doing: a small Ray actor the workers report to.

A worker runs one scene at a time and cannot answer calls while it does, so it pushes its
progress (fire and forget, a few times a second) to this board, and the driver reads the
board between scene results. Losing the board loses only the display, never work.
"""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass(frozen=True)
class WorkerState:
    worker: str  # host:pid
    scene: str  # the input, or "" when idle
    tiles_done: int
    tiles_total: int
    pixels_done: int  # of the current scene
    device: str


class ProgressBoard:
    """Ray actor (no CPU reserved): the last state each worker reported."""

    def __init__(self) -> None:
        self._states: dict[str, WorkerState] = {}
        self._gone: set[str] = set()

    def update(self, state: WorkerState) -> None:
        if state.worker not in self._gone:
            self._states[state.worker] = state

    def forget(self, worker: str) -> None:
        """A worker that died: its row goes (a late update from it is ignored)."""
        self._gone.add(worker)
        self._states.pop(worker, None)

    def snapshot(self) -> list[WorkerState]:
        return sorted(self._states.values(), key=lambda s: s.worker)


class Reporter:
    """The worker side: forwards progress to the board at most every ``interval`` seconds."""

    def __init__(self, board, worker: str, device: str, interval: float = 0.25):
        self.board = board
        self.worker = worker
        self.device = device
        self.interval = interval
        self._last = 0.0

    def report(self, scene: str, done: int, total: int, pixels: int, force: bool = False) -> None:
        now = time.monotonic()
        if self.board is None or (not force and now - self._last < self.interval and done < total):
            return
        self._last = now
        try:
            self.board.update.remote(WorkerState(self.worker, scene, done, total, pixels, self.device))
        except Exception:  # the display is not worth failing a scene for
            self.board = None
