"""How the process ends: its exit code, and under torchrun every rank leaving with the same one.

Exit codes: 0 done; 1 a crash, or a sweep with a failed job; 2 bad input (a user's mistake,
answered in one line before any data is read); 130 Ctrl-C and 143 SIGTERM (the run is marked
KILLED and its last checkpoint kept). Imports no torch: ``--help`` and a typo answer at once.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from datetime import timedelta

from framework.errors import Terminated

EXIT_OK = 0
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130  # Ctrl-C: 128 + SIGINT
EXIT_TERMINATED = 143  # SIGTERM: 128 + SIGTERM

# How long a rank that stops on a mistake waits for the others to stop too (a rank that crashed
# or hangs never arrives; torchrun then ends the job anyway).
EXIT_AGREEMENT_TIMEOUT_S = 60.0


def interrupted_exit_code(interrupt: KeyboardInterrupt) -> int:
    """143 for SIGTERM (:class:`framework.errors.Terminated`), 130 for Ctrl-C."""
    return EXIT_TERMINATED if isinstance(interrupt, Terminated) else EXIT_INTERRUPTED


def exit_with(code: int) -> None:
    """Exit; under torchrun every rank first agrees to leave with the same code.

    torchrun ends the other ranks (SIGTERM) as soon as one exits non-zero. So that a config
    mistake reads "exitcode 2" on every rank, whatever the order the ranks get there, each rank
    answers SIGTERM with its own code from now on and waits until every rank has said so
    (:func:`wait_for_every_rank_to_exit`) before it exits."""
    if int(os.environ.get("WORLD_SIZE", "1") or 1) > 1:

        def leave(*_) -> None:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)

        if code != EXIT_OK:
            signal.signal(signal.SIGTERM, leave)
            wait_for_every_rank_to_exit(code)
        # The process group is already shut down; gloo's C++ threads can still abort the
        # interpreter's teardown ("terminate called without an active exception", exit -6) and
        # replace our exit code. Everything of ours is written and closed by now: flush and go.
        logging.shutdown()
        leave()
    sys.exit(code)


def wait_for_every_rank_to_exit(code: int, timeout_s: float = EXIT_AGREEMENT_TIMEOUT_S) -> bool:
    """Under torchrun, announce that this rank exits with ``code`` and wait until every rank has.

    torchrun ends the other ranks (SIGTERM) as soon as one exits non-zero. A rank that has not
    yet set its own SIGTERM handler then dies of the signal (-15) instead of exiting with the
    mistake's code. Each rank sets that handler before it announces itself here, so once every
    rank has announced, whichever exits first, the others answer torchrun's SIGTERM with their
    own code: the job's exit codes no longer depend on which process is scheduled first.

    The announcements go through the store of torchrun's agent (no process group is needed: a
    config mistake stops the ranks before one exists). Returns False where there is no such
    store (not under torchrun) or the others did not arrive within ``timeout_s``."""
    from framework.process.launcher import launched_rank, launched_world_size

    environ = os.environ
    if launched_world_size() <= 1 or environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True":
        return False
    import torch.distributed as dist

    prefix = f"secateurs/exit/{environ.get('TORCHELASTIC_RUN_ID', '')}/{environ.get('TORCHELASTIC_RESTART_COUNT', '0')}"
    try:
        store = dist.TCPStore(
            environ["MASTER_ADDR"],
            int(environ["MASTER_PORT"]),
            is_master=False,
            timeout=timedelta(seconds=timeout_s),
        )
        store.set(f"{prefix}/{launched_rank()}", str(code))
        store.wait([f"{prefix}/{rank}" for rank in range(launched_world_size())], timedelta(seconds=timeout_s))
    except Exception:  # a missing peer or store: leave anyway, torchrun reports the rest
        return False
    return True
