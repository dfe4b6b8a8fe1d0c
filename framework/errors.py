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


class PruningError(ConfigError):
    """A pruning request does not fit the model (patterns, structures, targets)."""


class TrackingError(SecateursError):
    """The experiment tracker cannot be reached or used."""


class NonFiniteLossError(SecateursError):
    """Training produced a NaN or infinite loss."""
