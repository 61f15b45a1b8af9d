"""rsinfer.signals: the first SIGINT/SIGTERM/SIGHUP asks to stop; a second interrupts; handlers are
restored; a command may take only some of them."""

from __future__ import annotations

import os
import signal

import pytest

from rsinfer.signals import StopSignal, stop_on_signals


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


def test_only_the_signals_asked_for_are_taken():
    before = signal.getsignal(signal.SIGINT)
    with stop_on_signals((signal.SIGTERM,)) as stop:
        assert signal.getsignal(signal.SIGINT) == before  # Ctrl-C left as it is
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.is_set() and stop.exit_code == 143
        assert StopSignal(stop.signum).exit_code == 143
