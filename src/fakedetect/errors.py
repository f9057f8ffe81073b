"""The library's own error types: expected failures whose message tells the user what to do.

The CLI prints these as one line (``--debug`` adds the traceback). Anything else is a bug in fakedetect and
keeps its traceback. Each type also derives from the matching built-in, so ``except ValueError`` still works.
"""

from __future__ import annotations


class FakedetectError(Exception):
    """Base of every expected error: bad input, configuration or environment."""


class DataError(FakedetectError, ValueError):
    """The data folder cannot be used as given (missing, empty class, no images...)."""


class ConfigError(FakedetectError, ValueError):
    """A configuration value is missing, unknown or out of range."""


class WeightsError(FakedetectError, ValueError):
    """A weights file that is missing, of an unknown format, or refused as unsafe."""


class WeightsUnavailable(FakedetectError, RuntimeError):
    """ImageNet weights could not be had (typically: no internet for Keras' download)."""


class RunExistsError(FakedetectError, FileExistsError):
    """The output folder already holds a run and overwriting was not asked for."""


class OutputExistsError(FakedetectError, FileExistsError):
    """An output file or folder exists and overwriting was not asked for."""


class RunError(FakedetectError, FileNotFoundError):
    """A run folder that does not hold a usable model (or no interrupted run to resume)."""


class ExportError(FakedetectError, RuntimeError):
    """A format that cannot be produced here, with the reason."""


class StrategyError(FakedetectError, ValueError):
    """A tf.distribute strategy that cannot be used as asked."""
