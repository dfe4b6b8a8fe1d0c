"""The ranks of one run agree that none of them failed before they go on (identity with one
process). Their masks agree through :mod:`framework.runner.mask_sync`."""

from __future__ import annotations

from framework.errors import SecateursError
from framework.process.distributed import DistContext, gather_objects


class PeerFailedError(SecateursError):
    """Another rank stopped on an error (rank 0 reports it); this rank stops too."""


def agree_or_raise(error: BaseException | None, context: DistContext) -> None:
    """A barrier that also compares errors: if any rank failed, every rank raises.

    The rank that failed raises its own error; the others raise :class:`PeerFailedError`, except
    rank 0, which raises the first failed rank's message, so the job reports the mistake once
    (rank 0 prints, the others stay quiet) and every rank exits with the same code.
    """
    if not context.enabled:
        if error is not None:
            raise error
        return
    message = None if error is None else f"{type(error).__name__}\t{error}"
    messages = gather_objects(message, context)
    if error is not None:
        raise error
    failed = [(rank, m) for rank, m in enumerate(messages) if m is not None]
    if failed:
        rank, text = failed[0]
        kind, _, line = text.partition("\t")
        raise PeerFailedError(f"rank {rank} stopped: {line}" if context.is_main else "")
