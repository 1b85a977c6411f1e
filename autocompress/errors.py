"""Typed user errors.

Every error a user can cause derives from :class:`AutocompressError`. The CLI prints ``str(error)`` on one line and
exits with code 2; library users catch the class they care about. Messages name the input, what was expected, what
was given and the fix.
"""

from __future__ import annotations

__all__ = [
    "StudyNotFoundError",
    "AutocompressError",
    "ConfigError",
    "WorkloadError",
    "UnsupportedModelError",
    "MissingDependencyError",
]


class AutocompressError(Exception):
    """Base class of every error caused by user input or the user's environment."""


class ConfigError(AutocompressError):
    """A CLI option, config file or search-space file is invalid."""


class WorkloadError(AutocompressError):
    """The model or data source cannot be loaded or does not fit together."""


class UnsupportedModelError(AutocompressError):
    """The model cannot be pruned, exported or quantized by the current pipeline."""


class MissingDependencyError(AutocompressError):
    """An optional dependency is not installed; the message carries the exact ``pip install``."""


class StudyNotFoundError(AutocompressError):
    """The storage holds no study of that name (the message lists the ones it holds)."""
