"""Ctrl-C and SIGTERM held back while something must not be cut in half.

A Python signal handler raises wherever the interpreter happens to be. Inside ``torch.save`` that
left a torn zip writer whose own error replaced the interrupt; inside an MLflow store call it left
a SQLite transaction half done, after which the run could no longer be marked KILLED. In
:func:`signals_deferred` the first signal is only noted, and its own handler runs as soon as the
block is over. A second signal is the user insisting (a store that hangs): it is handled at once.
:func:`sigterm_as_interrupt` makes a scheduler's SIGTERM end a run the way Ctrl-C does.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from framework.errors import Terminated

DEFERRED_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM until the block is over, then handle the first as it would have
    been. Handlers can only be swapped on the main thread; elsewhere nothing changes. Nested
    blocks pass the signal outwards: the outermost one handles it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    # keyed by number: a handler is given the signal's number
    previous: dict[int, Any] = {int(signum): signal.getsignal(signum) for signum in DEFERRED_SIGNALS}

    def note(signum, frame):
        caught.append(signum)
        if len(caught) > 1:  # asked twice: stop now, as the program would have without us
            _restore(previous)
            caught.clear()  # handled here, not again when the block ends
            _handle(previous[signum], signum, frame)

    for signum in DEFERRED_SIGNALS:
        signal.signal(signum, note)
    try:
        yield
    finally:
        _restore(previous)
        if caught:  # now the interrupt the user asked for, as it would have been
            _handle(previous[caught[0]], caught[0], None)


def _restore(handlers) -> None:
    for signum, handler in handlers.items():
        signal.signal(signum, handler)


def _handle(handler, signum: int, frame) -> None:
    if callable(handler):
        handler(signum, frame)
    elif handler == signal.SIG_DFL:
        os.kill(os.getpid(), signum)


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM raises :class:`framework.errors.Terminated` (a KeyboardInterrupt) for the block's
    duration, so a run stopped by its scheduler ends like one stopped by Ctrl-C: marked KILLED,
    its checkpoint kept. Off the main thread nothing changes."""

    def handler(signum, frame):
        raise Terminated(f"received signal {signum}")

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
