"""Errors with one-line messages a user can act on.

The CLI prints any :class:`LmacError` as ``error: <message>`` and exits with status 2, without a traceback.
"""

from __future__ import annotations


class LmacError(Exception):
    """Base class of every error lmaczs raises on purpose."""


class AudioError(LmacError):
    """Audio that cannot be read or is unusable (empty, silent, NaN, too short)."""


class PromptError(LmacError):
    """Missing, empty or duplicate prompts."""


class BackendError(LmacError):
    """A CLAP backend spec that cannot be resolved or loaded."""


class CheckpointError(LmacError):
    """A decoder/run directory that is missing, corrupt, or does not match the backend."""


class DataError(LmacError):
    """A training/evaluation data source that cannot be read."""


class ConfigError(LmacError):
    """An option value that is out of range or malformed (a device, a learning rate, a port, ...)."""


class OutputError(LmacError, OSError):
    """An output location that cannot be written (not a folder, read-only, disk full) or is in use by another job.

    Also an :class:`OSError`, so code that handles file-system errors keeps handling it.
    """


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message, or its type name when the message is empty."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
