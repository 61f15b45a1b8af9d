"""rsinfer.signals: the first SIGINT/SIGTERM/SIGHUP asks to stop; a second interrupts; handlers are restored."""

from __future__ import annotations

import os
import signal

import pytest

from rsinfer.signals import stop_on_signals


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
