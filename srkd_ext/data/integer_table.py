"""Fast path for reading files that hold only non-negative integers and separators.

Most interaction logs (MovieLens, the SASRec and S3-Rec files, RecBole's ml-100k) are digits,
tabs, spaces and newlines. Parsing them byte-wise with numpy is 10-20x faster than splitting
lines in Python, and it keeps line numbers so a wrong column count is reported precisely.
Anything else (letters, signs, decimal points, quotes) makes :func:`parse_integer_table`
return None and the caller falls back to the general line-by-line reader.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Longest digit run converted exactly into int64 (10**18 < 2**63).
_MAX_DIGITS = 18

_INVALID, _DIGIT, _SEPARATOR, _NEWLINE = 0, 1, 2, 3


@dataclass(frozen=True)
class IntegerTable:
    """Integer tokens of a text, in reading order.

    Attributes:
        values: int64 [num_tokens], the value of every token.
        line: int64 [num_tokens], 0-based index (relative to the parsed region) of the line each
            token is on.
        leading_zero: bool [num_tokens], the token is written with a leading zero ("007"), so
            its text does not round-trip through int.
        num_lines: number of lines in the parsed region (a final line without a newline counts).
    """

    values: np.ndarray
    line: np.ndarray
    leading_zero: np.ndarray
    num_lines: int

    def tokens_per_line(self) -> np.ndarray:
        """int64 [num_lines]: how many tokens each line holds (0 for blank lines)."""
        return np.bincount(self.line, minlength=self.num_lines)


def _byte_classes(separators: bytes) -> np.ndarray:
    table = np.full(256, _INVALID, dtype=np.uint8)
    table[ord("0") : ord("9") + 1] = _DIGIT
    for byte in separators + b"\r":
        table[byte] = _SEPARATOR
    table[ord("\n")] = _NEWLINE
    return table


def parse_integer_table(data: bytes, start: int = 0, separators: bytes = b" \t") -> IntegerTable | None:
    """Parses ``data[start:]`` as integers separated by ``separators`` and newlines.

    Returns None when a byte other than a digit, a separator, '\\r' or '\\n' occurs, or when a
    number has more than 18 digits; the caller then uses its general reader, which reports
    the offending line.
    """
    buf = np.frombuffer(data, dtype=np.uint8)[start:]
    if buf.size == 0:
        return IntegerTable(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, bool), 0)
    kind = _byte_classes(separators)[buf]
    if not kind.all():  # some byte is _INVALID (== 0)
        return None
    is_digit = kind == _DIGIT
    # A token starts at a digit whose predecessor is not a digit, ends after a digit whose
    # successor is not one.
    boundary = np.diff(is_digit.view(np.int8), prepend=np.int8(0), append=np.int8(0))
    starts = np.flatnonzero(boundary == 1)
    ends = np.flatnonzero(boundary == -1)
    lengths = ends - starts
    if lengths.size and lengths.max() > _MAX_DIGITS:
        return None
    values = np.zeros(starts.size, dtype=np.int64)
    digits_at = np.zeros(starts.size, dtype=np.int64)
    for position in range(int(lengths.max()) if lengths.size else 0):
        # Horner's rule over the position-th digit of every token long enough to have one.
        has = lengths > position
        np.copyto(digits_at, buf[np.minimum(starts + position, buf.size - 1)].astype(np.int64) - 48)
        values = np.where(has, values * 10 + digits_at, values)
    newlines = np.flatnonzero(kind == _NEWLINE)
    line = np.searchsorted(newlines, starts)
    num_lines = newlines.size + (0 if buf[-1] == ord("\n") else 1)
    leading_zero = (buf[starts] == ord("0")) & (lengths > 1)
    return IntegerTable(values, line.astype(np.int64), leading_zero, num_lines)
