"""Fast path for delimited text with string fields (atomic/CSV/TSV files with string ids).

Splits a file into fields with numpy on the raw bytes and gathers each wanted column into a
fixed-width bytes array (numpy ``S`` dtype), so a million rows need no Python loop. Only
regular files qualify: no quotes, no '\\r', no blanks in the wanted fields, no empty wanted field, the same number of
fields on every non-empty line, fields of at most 64 bytes. Otherwise
:func:`parse_delimited_columns` returns None and the caller's line-by-line reader takes over
(it also produces the error message for malformed lines).
"""

from __future__ import annotations

import numpy as np

_MAX_FIELD_BYTES = 64


def parse_delimited_columns(
    data: bytes, start: int, delimiter: bytes, ncols: int, columns: list[int]
) -> list[np.ndarray] | None:
    """``data[start:]`` split on ``delimiter`` and newlines; the fields of ``columns``.

    Returns one bytes array (dtype ``S<width>``, one entry per non-empty line) per requested
    column, or None when the text is not regular enough for this path.
    """
    body = data[start:]
    if not body or len(delimiter) != 1:
        return None
    # Quotes need the csv module; blanks, '\r' and NUL would not round-trip the same way.
    for byte in b'" \r\x00' + (b"\t" if delimiter != b"\t" else b""):
        if byte in body:
            return None
    buf = np.frombuffer(body, dtype=np.uint8)
    if buf[-1] != ord("\n"):
        buf = np.append(buf, np.uint8(ord("\n")))
    newlines = np.flatnonzero(buf == ord("\n"))
    line_begin = np.empty_like(newlines)
    line_begin[0] = 0
    line_begin[1:] = newlines[:-1] + 1
    nonempty = newlines > line_begin
    delimiters = np.flatnonzero(buf == delimiter[0])
    per_line = np.searchsorted(delimiters, newlines) - np.searchsorted(delimiters, line_begin)
    if not np.all(per_line[nonempty] == ncols - 1):
        return None
    rows = int(nonempty.sum())
    if rows == 0:
        return None
    starts = np.empty((rows, ncols), dtype=np.int64)
    ends = np.empty((rows, ncols), dtype=np.int64)
    starts[:, 0] = line_begin[nonempty]
    ends[:, -1] = newlines[nonempty]
    if ncols > 1:
        starts[:, 1:] = (delimiters + 1).reshape(rows, ncols - 1)
        ends[:, :-1] = delimiters.reshape(rows, ncols - 1)
    padded = np.concatenate([buf, np.zeros(_MAX_FIELD_BYTES, dtype=np.uint8)])
    out = []
    for column in columns:
        first, width = starts[:, column], ends[:, column] - starts[:, column]
        widest = int(width.max())
        if int(width.min()) == 0 or widest > _MAX_FIELD_BYTES:
            return None
        # Row r of the window view is padded[r : r + widest]: one gather copies every field.
        windows = np.lib.stride_tricks.sliding_window_view(padded, widest)
        matrix = windows[first]
        matrix *= np.arange(widest)[None, :] < width[:, None]  # NUL after the field's end
        out.append(matrix.view(f"S{widest}").reshape(rows))
    return out
