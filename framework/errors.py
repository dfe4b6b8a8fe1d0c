"""User-facing errors.

Every mistake a user can make is raised as a subclass of ``SecateursError`` whose message is one
line: what is wrong, the value given, what is allowed. ``run.py`` prints that line and exits
non-zero, without a traceback unless ``HYDRA_FULL_ERROR=1``.
"""


class SecateursError(Exception):
    """An error caused by the user's input; its message is meant to be shown as is."""


class ConfigError(SecateursError):
    """A configuration value is invalid (raised before any data is read)."""


class DataError(SecateursError):
    """A dataset cannot be found or read."""


class CheckpointError(SecateursError):
    """A checkpoint or pretrained file is missing, truncated, foreign or does not fit the model."""


class StorageError(SecateursError):
    """A file of the run (checkpoint, metrics) cannot be written: disk full, read-only, not a folder."""


class RunDirInUseError(SecateursError):
    """Another run holds the lock on the run dir (two jobs given the same ``hydra.run.dir``)."""


class PruningError(ConfigError):
    """A pruning request does not fit the model (patterns, structures, targets)."""


class TrackingError(SecateursError):
    """The experiment tracker cannot be reached or used."""


class NonFiniteLossError(SecateursError):
    """Training produced a NaN or infinite loss."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C: the run is marked KILLED and its checkpoint kept (exit 143)."""


def short_reason(error: BaseException, limit: int = 160) -> str:
    """The telling line of an exception's message, shortened, so that ours stays one line.

    For ``weights_only`` refusals that is the ``WeightsUnpickler error:`` line (which names the
    refused class), not the first one (a paragraph about PyTorch's defaults). Falls back to the
    exception's type name when the message is empty.
    """
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    telling = [line for line in lines if line.startswith(TELLING_LINES)]
    text = (telling or lines or [type(error).__name__])[0]
    wrapped = 0  # a sentence a library wrapped over several lines (Hydra's) is read whole
    while not telling and not text.endswith(SENTENCE_ENDS) and wrapped + 1 < len(lines):
        if not lines[wrapped + 1][:1].islower():
            break
        wrapped += 1
        text += " " + lines[wrapped]
    if len(text) <= limit:
        return text
    cut = text[: limit - 3]
    end = cut.rfind(". ") if wrapped else -1
    return cut[: end + 1] if end > limit // 2 else cut + "..."


# The line of a library's message that says what went wrong, when it is not the first one: the
# class a weights_only load refused (a pickle payload names what it would have run).
TELLING_LINES = ("WeightsUnpickler error:", "Trying to load unsupported GLOBAL")
SENTENCE_ENDS = (".", "!", "?", ":", ";", ")", "]", "'", '"')
