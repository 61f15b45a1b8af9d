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
def stop_on_signals() -> Iterator[StopRequest]:
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

    previous = {s: signal.signal(s, handle) for s in STOP_SIGNALS}
    try:
        yield request
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


class StopSignal(BaseException):
    """Raised by :func:`raise_on_signals`: a stop signal arrived (SIGTERM, SIGHUP).

    A BaseException, as KeyboardInterrupt is: ``except Exception`` must not swallow it."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.exit_code = 128 + signum


@contextlib.contextmanager
def raise_on_signals(signals: tuple[int, ...] = (signal.SIGTERM, signal.SIGHUP)) -> Iterator[None]:
    """Within the block, these signals raise :class:`StopSignal` where the main thread is, as
    Ctrl-C raises KeyboardInterrupt: for a driver that must unwind (cancel its workers) rather
    than die on the spot. Outside the main thread it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handle(signum: int, frame: FrameType | None) -> None:
        raise StopSignal(signum)

    previous = {s: signal.signal(s, handle) for s in signals}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
