"""The `fakedetect` command: the group lives in :mod:`fakedetect.cli.main`; importing the command modules
registers their commands on it."""

from fakedetect.cli import data, score, serve, train  # noqa: F401 - registers the commands
from fakedetect.cli.main import EXIT_BUG, main

__all__ = ["EXIT_BUG", "main"]
