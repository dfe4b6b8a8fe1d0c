"""Reading the Python pickles of dataset archives (CIFAR's batch files) without running their code.

A pickle names the callables that rebuild its objects, and ``pickle.load`` calls whatever it is
told: a tampered batch file can run any command. :func:`load_data_pickle` admits only what the
real files need to rebuild plain data, and refuses any other global with a one-line DataError
naming the file:

- numpy's array reconstruction (``_reconstruct``, ``ndarray``, ``dtype``, and ``_frombuffer``
  for protocol-5 pickles), under both numpy 1 (``numpy.core``) and numpy 2 (``numpy._core``)
  module names;
- ``_codecs.encode``, which protocol-2 pickles written by Python 3 use for ``bytes``, restricted
  to the latin-1 codec (the only one such pickles use).

Dicts, lists, tuples, strings, bytes and numbers need no global at all.
"""

from __future__ import annotations

import codecs
import io
import os
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import numpy as np

from framework.errors import DataError

_NUMPY_CORE_MODULES = ("numpy.core.multiarray", "numpy._core.multiarray")
_NUMPY_NUMERIC_MODULES = ("numpy.core.numeric", "numpy._core.numeric")
_LATIN1_NAMES = {"latin1", "latin-1", "iso-8859-1", "iso8859-1", "l1"}


def _latin1_encode(text: str, encoding: str = "latin1", errors: str = "strict") -> bytes:
    """``_codecs.encode`` as protocol-2 pickles use it for bytes, and nothing else."""
    if str(encoding).lower() not in _LATIN1_NAMES:
        raise pickle.UnpicklingError(f"_codecs.encode with codec {encoding!r} is not allowed")
    return codecs.encode(text, "latin1", errors)


def _allowed_globals() -> dict[tuple[str, str], Callable[..., Any]]:
    """``(module, name) -> callable`` for every global a dataset pickle may name."""
    # Taken from numpy's own reductions, so that they are right whatever numpy's module layout.
    reconstruct = cast(Callable[..., Any], np.zeros(1).__reduce_ex__(2)[0])
    frombuffer = cast(Callable[..., Any], np.zeros(1).__reduce_ex__(5)[0])
    allowed: dict[tuple[str, str], Callable[..., Any]] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _latin1_encode,
    }
    for module in _NUMPY_CORE_MODULES:
        allowed[(module, "_reconstruct")] = reconstruct
    if getattr(frombuffer, "__name__", "") == "_frombuffer":
        for module in _NUMPY_NUMERIC_MODULES:
            allowed[(module, "_frombuffer")] = frombuffer
    return allowed


class DataUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the globals of :func:`_allowed_globals`."""

    _allowed: dict[tuple[str, str], Callable[..., Any]] | None = None

    def find_class(self, module: str, name: str) -> Any:
        if DataUnpickler._allowed is None:
            DataUnpickler._allowed = _allowed_globals()
        allowed = DataUnpickler._allowed
        try:
            return allowed[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refused global {module}.{name}") from None

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("refused persistent id")


def load_data_pickle(path: str | os.PathLike, dataset: str, advice: str = "") -> Any:
    """The object pickled in ``path``, decoded as Python 2 pickles need (latin-1).

    Raises a one-line DataError naming ``dataset`` and ``path`` when the file holds anything but
    plain data and numpy arrays (no code is run), or cannot be read at all.
    """
    path = Path(path)
    tail = f"; {advice}" if advice else ""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise DataError(f"dataset {dataset}: {path} cannot be read ({error.strerror or error}){tail}") from None
    try:
        return DataUnpickler(io.BytesIO(data), encoding="latin1").load()
    except pickle.UnpicklingError as error:
        reason = str(error).splitlines()[0] if str(error) else "not a pickle"
        if reason.startswith("refused"):
            raise DataError(
                f"dataset {dataset}: {path} holds objects other than plain data and numpy arrays "
                f"({reason}); it was not loaded, since loading it could run code{tail}"
            ) from None
        raise DataError(
            f"dataset {dataset}: {path} cannot be read: it is damaged or not a pickle ({reason}){tail}"
        ) from None
    except Exception as error:
        reason = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}".rstrip(": ")
        raise DataError(
            f"dataset {dataset}: {path} cannot be read: it is damaged or not a pickle ({reason[:160]}){tail}"
        ) from None
