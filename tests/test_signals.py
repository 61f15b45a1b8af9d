"""rsinfer.signals: the first SIGINT/SIGTERM/SIGHUP asks to stop; a second interrupts; handlers are
restored; a driver's SIGTERM/SIGHUP raise where it is, as Ctrl-C does."""

from __future__ import annotations

import os
import signal

import pytest

from rsinfer.signals import StopSignal, raise_on_signals, stop_on_signals


@pytest.mark.parametrize("signum,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_the_first_signal_sets_the_request_and_a_second_interrupts(signum, code):
    before = signal.getsignal(signum)
    with stop_on_signals() as stop:
        assert not stop.is_set()
        os.kill(os.getpid(), signum)
        assert stop.is_set() and stop.exit_code == code and stop.name == signal.Signals(signum).name
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signum)
    assert signal.getsignal(signum) == before


@pytest.mark.parametrize("signum,code", [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_raise_on_signals_unwinds_the_main_thread_with_the_exit_code(signum, code):
    before = signal.getsignal(signum)
    with pytest.raises(StopSignal) as stopped, raise_on_signals():
        os.kill(os.getpid(), signum)
        for _ in range(1000):  # the handler runs at the next bytecode boundary
            pass
    assert stopped.value.exit_code == code and str(stopped.value) == signal.Signals(signum).name
    assert signal.getsignal(signum) == before
