"""Stopping a run cleanly on SIGINT, SIGTERM and SIGHUP (what schedulers, ``timeout`` and ``docker stop`` send).

:func:`stop_on_signals` turns the first of these signals into a request to stop: the job
stops reading, lets the rows in flight finish and records what is complete, so a rerun
with ``--resume`` continues from there. A second signal interrupts at once.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class StopRequest:
    """Set by a signal handler; read by the job loop between batches."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.signum: int | None = None

    def set(self, signum: int) -> None:
        self.signum = signum
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    @property
    def exit_code(self) -> int:
        """The shell's convention: 128 + the signal's number (130 for SIGINT, 143 for SIGTERM)."""
        return 128 + (self.signum or signal.SIGINT)

    @property
    def name(self) -> str:
        return signal.Signals(self.signum or signal.SIGINT).name


@contextlib.contextmanager
def stop_on_signals(signals: tuple[int, ...] = STOP_SIGNALS) -> Iterator[StopRequest]:
    """Within the block, the first stop signal sets the request; a second raises KeyboardInterrupt.

    Handlers can only be installed from the main thread; elsewhere (a worker thread) the
    request is returned without handlers, and the process's own handling applies.
    """
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return

    def handle(signum: int, frame: FrameType | None) -> None:
        if request.is_set():
            raise KeyboardInterrupt
        request.set(signum)

    previous = {s: signal.signal(s, handle) for s in signals}
    try:
        yield request
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


class StopSignal(BaseException):
    """A stop signal, raised by a loop that polls a :class:`StopRequest` (see :func:`rsinfer.batch.run_batch`).

    A BaseException, as KeyboardInterrupt is: ``except Exception`` must not swallow it. It is
    raised by the loop, never from the signal handler: an exception raised inside a handler
    surfaces in whatever C code runs at that moment (Ray's wait turns it into a SystemError)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.exit_code = 128 + signum
