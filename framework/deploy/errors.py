"""What goes wrong when deploying, in one line each."""

from __future__ import annotations

import importlib
import importlib.util

from framework.errors import SecateursError

EXTRA = "onnx"
PACKAGES = ("onnx", "onnxruntime")


class DeployError(SecateursError):
    """The deployable model cannot be built or measured as asked."""


def missing_packages() -> list[str]:
    """Which of onnx and onnxruntime are not installed (an empty list when both are)."""
    return [name for name in PACKAGES if importlib.util.find_spec(name) is None]


def missing_line(needed_by: str) -> str | None:
    """The one-line error for ``needed_by`` when onnx or onnxruntime is missing, else None."""
    missing = missing_packages()
    if not missing:
        return None
    return (
        f"{needed_by} needs {' and '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} not installed; "
        f"install the '{EXTRA}' extra: pip install 'secateurs[{EXTRA}]'"
    )


def require_onnxruntime(needed_by: str = "the deployable model"):
    """Import onnxruntime (and check onnx is there), or raise :class:`DeployError` naming the extra."""
    line = missing_line(needed_by)
    if line is not None:
        raise DeployError(line)
    return importlib.import_module("onnxruntime")
