"""Turning the errors torchvision raises while downloading or reading a dataset into DataErrors."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from framework.errors import DataError, SecateursError, short_reason


@contextmanager
def reading(name: str, root: Path, download: bool, advice: str | None = None) -> Iterator[None]:
    """Re-raise anything but our own errors as a one-line DataError about ``name`` at ``root``.

    The availability check has already passed when this runs, so what is left is a failed
    download (no network) or files that exist but cannot be parsed (truncated, foreign).
    """
    try:
        yield
    except SecateursError:
        raise
    except Exception as error:
        cause = f"{type(error).__name__}: {short_reason(error)}"
        if advice is None:
            advice = (
                "check the network, or download the data by hand into dataset.root"
                if download
                else "delete the damaged files and set dataset.download=true"
            )
        raise DataError(f"dataset {name} under dataset.root={root} cannot be read ({cause}); {advice}") from None
