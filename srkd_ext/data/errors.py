"""Errors raised by the data layer for problems in the user's input (not bugs).

Every error here is a ``ValueError`` whose message is one line that the command-line
interface can print as is, so a user mistake never ends in a traceback.
"""

from __future__ import annotations

from pathlib import Path


class DataError(ValueError):
    """A dataset cannot be used as given; the message says why and what to do."""


class DataFormatError(DataError):
    """A file does not match its format.

    Attributes:
        path: the file.
        line: 1-based line number of the first offending line, or None when the problem is the
            whole file (empty, no interactions left after filtering, ...).
        expected: what the reader expected to find there.
        found: what it found instead (may be empty).
    """

    def __init__(self, path: str | Path | None, line: int | None, expected: str, found: str = ""):
        self.path = None if path is None else str(path)
        self.line = line
        self.expected = expected
        self.found = found
        where = self.path if self.path is not None else "<data>"
        if line is not None:
            where = f"{where}:{line}"
        message = f"{where}: expected {expected}"
        if found:
            message += f", found {found}"
        super().__init__(message)


class DatasetUnavailableError(DataError):
    """A built-in dataset could not be fetched and is not cached."""
