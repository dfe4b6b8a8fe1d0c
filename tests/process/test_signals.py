"""Ctrl-C and SIGTERM held back during writes that must not be cut in half."""

from __future__ import annotations

import os
import signal

import pytest

from framework.process.signals import signals_deferred


class Stopped(Exception):
    pass


@pytest.fixture
def stopping_handler():
    """SIGTERM raises Stopped; the calls are recorded in order."""
    calls = []

    def stop(signum, frame):
        calls.append(signum)
        raise Stopped(signum)

    previous = signal.signal(signal.SIGTERM, stop)
    yield calls
    signal.signal(signal.SIGTERM, previous)


def test_one_signal_waits_until_the_block_is_over(stopping_handler):
    done = []
    with pytest.raises(Stopped):
        with signals_deferred():
            os.kill(os.getpid(), signal.SIGTERM)
            done.append("rest of the block")
    assert done == ["rest of the block"]
    assert stopping_handler == [signal.SIGTERM]
    assert signal.getsignal(signal.SIGTERM).__name__ == "stop"  # the handler is back


def test_a_second_signal_is_handled_at_once(stopping_handler):
    done = []
    with pytest.raises(Stopped):
        with signals_deferred():
            os.kill(os.getpid(), signal.SIGTERM)
            done.append("after the first")
            os.kill(os.getpid(), signal.SIGTERM)
            done.append("after the second")
    assert done == ["after the first"]
    assert stopping_handler == [signal.SIGTERM]  # handled once, not again at the end


def test_nested_blocks_hand_the_signal_to_the_outermost(stopping_handler):
    done = []
    with pytest.raises(Stopped):
        with signals_deferred():
            with signals_deferred():
                os.kill(os.getpid(), signal.SIGTERM)
            done.append("rest of the outer block")
    assert done == ["rest of the outer block"]
    assert stopping_handler == [signal.SIGTERM]


def test_no_signal_changes_nothing(stopping_handler):
    with signals_deferred():
        pass
    assert stopping_handler == []
    assert signal.getsignal(signal.SIGTERM).__name__ == "stop"
