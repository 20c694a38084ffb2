"""Readers for the interaction-log formats of the field's reference code.

Each reader turns the bytes of one file into an :class:`InteractionLog`: one row per event,
in file order, with the original ids. Ordering, filtering and remapping happen later
(:mod:`srkd_ext.data.sequences`), the same way for every format.

Formats (``format=`` names):
    atomic         RecBole atomic file (``.inter``): TSV, typed header such as
                   ``user_id:token  item_id:token  rating:float  timestamp:float``.
    user-seq       one user per line ``user item1 item2 ...``, items in time order (S3-Rec).
    user-item      one event per line ``user item``, in time order within a user (SASRec).
    ml-100k-udata  MovieLens ``u.data``: ``user<TAB>item<TAB>rating<TAB>timestamp``.
    ml-1m-dat      MovieLens ``ratings.dat``: ``user::item::rating::timestamp``.
    csv, tsv       a header naming the columns (user, item, optionally timestamp and rating,
                   see :data:`COLUMN_ALIASES`); ids may be strings.

Ids: in user-seq, user-item and the MovieLens formats ids must be integers. In atomic, csv and
tsv files ids are tokens: when every id of a column is a plain integer (no sign, no leading
zero) the column is kept as int64, otherwise as strings, so ids always round-trip exactly.
Duplicate events (same user, item and time) are kept: they are separate rows of the log.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from srkd_ext.data.delimited_table import parse_delimited_columns
from srkd_ext.data.errors import DataFormatError
from srkd_ext.data.integer_table import IntegerTable, parse_integer_table

FORMATS = ("atomic", "user-seq", "user-item", "ml-100k-udata", "ml-1m-dat", "csv", "tsv")

# Column names accepted in csv/tsv headers (case-insensitive; a RecBole type suffix such as
# ":token" is ignored). The first alias is the canonical name used in messages.
COLUMN_ALIASES = {
    "user": ("user_id", "user", "userid", "uid", "reviewerid", "customer_id", "visitorid", "session_id"),
    "item": ("item_id", "item", "itemid", "iid", "movie_id", "movieid", "product_id", "productid", "asin"),
    "timestamp": ("timestamp", "time", "ts", "unixreviewtime", "unix_time"),
    "rating": ("rating", "score", "overall", "stars"),
}


@dataclass(frozen=True)
class InteractionLog:
    """Events of one file in file order.

    Attributes:
        users, items: [n] original ids: int64, numpy str, or numpy bytes (UTF-8, from the
            fast path for string ids; decoded once per distinct id when sequences are built).
        timestamps: float64 [n] or None when the format has no time (file order is time order).
        ratings: float64 [n] or None.
    """

    path: Path | None
    format: str
    users: np.ndarray
    items: np.ndarray
    timestamps: np.ndarray | None = None
    ratings: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.users.shape[0])


def read_log(data: bytes, path: Path | None, fmt: str) -> InteractionLog:
    """Parses ``data`` (the whole file) in format ``fmt`` (one of :data:`FORMATS`)."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)} (or None to detect), got {fmt!r}")
    if _blank(data):
        raise DataFormatError(path, None, f"interactions in {fmt} format", "an empty file")
    reader = {
        "atomic": _read_atomic,
        "user-seq": _read_user_seq,
        "user-item": _read_user_item,
        "ml-100k-udata": _read_ml100k_udata,
        "ml-1m-dat": _read_ml1m_dat,
        "csv": _read_csv,
        "tsv": _read_tsv,
    }[fmt]
    return reader(data, path)


# ---------------------------------------------------------------------------- text helpers


def _blank(data: bytes) -> bool:
    """Only whitespace (without copying the data, unlike ``not data.strip()``)."""
    return not data or data.isspace()


def _decode(data: bytes, path: Path | None, first_line: int = 1) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + first_line
        raise DataFormatError(path, line, "UTF-8 text", f"the byte 0x{data[exc.start]:02x}") from None


def _numbered_lines(text: str, first_line: int = 1) -> list[tuple[int, str]]:
    """(line number, line) for every non-blank line; '\\r\\n' endings are accepted."""
    return [(number, line) for number, line in enumerate(text.split("\n"), first_line) if line.strip()]


def _first_bad_line(table: IntegerTable, ok: np.ndarray) -> int:
    """0-based index of the first non-blank line whose token count is not ``ok``."""
    counts = table.tokens_per_line()
    return int(np.flatnonzero((counts != 0) & ~ok)[0])


def _int_column(values: list[str], numbers: list[int], path, what: str) -> np.ndarray:
    """int64 ids where the format requires integers; names the first offending line."""
    try:
        return np.array(values).astype(np.int64)
    except (ValueError, OverflowError):
        pass
    for value, number in zip(values, numbers, strict=True):
        try:
            int(value)
        except ValueError:
            raise DataFormatError(path, number, f"an integer {what}", repr(value)) from None
    raise DataFormatError(path, None, f"integer {what}s that fit in 64 bits")


def _token_column(values: list[str]) -> np.ndarray:
    """Ids that may be strings: int64 when every value is a plain integer, else strings."""
    strings = np.array(values, dtype=str)
    try:
        ints = strings.astype(np.int64)
    except (ValueError, OverflowError):
        return strings
    if np.array_equal(ints.astype(str), strings):
        return ints
    return strings


def _float_column(values: list[str], numbers: list[int], path, what: str) -> np.ndarray:
    try:
        column = np.array(values).astype(np.float64)
    except ValueError:
        column = None
    if column is not None and np.isfinite(column).all():
        return column
    for value, number in zip(values, numbers, strict=True):
        try:
            ok = np.isfinite(float(value))
        except ValueError:
            ok = False
        if not ok:
            raise DataFormatError(path, number, f"a finite number as {what}", repr(value))
    raise AssertionError("unreachable: a bad value was detected but not found")


def _require_interactions(count: int, path, fmt: str, header_only: bool) -> None:
    if count == 0:
        found = "only the header" if header_only else "no interactions"
        raise DataFormatError(path, 2 if header_only else None, f"interactions in {fmt} format", found)


# ------------------------------------------------------------------ fixed numeric formats


def _read_fixed_integer_columns(
    data: bytes, path, fmt: str, names: tuple[str, ...], separator: str | None
) -> np.ndarray:
    """[n, len(names)] int64 for files where every field of every line is an integer."""
    ncols = len(names)
    layout = (separator or " ").join(names)
    byte_separators = b" \t" if separator is None else b":" if separator == "::" else separator.encode()
    table = parse_integer_table(data, 0, byte_separators)
    if table is not None and separator == "::" and data.count(b":") != 2 * data.count(b"::"):
        table = None  # a lone ':' somewhere; let the general reader find the line
    if table is not None:
        counts = table.tokens_per_line()
        if ((counts != 0) & (counts != ncols)).any():
            index = _first_bad_line(table, counts == ncols)
            raise DataFormatError(path, index + 1, f"{ncols} fields '{layout}'", f"{counts[index]} fields")
        _require_interactions(table.values.size, path, fmt, header_only=False)
        return table.values.reshape(-1, ncols)
    # General reader: slower, but it names the offending line.
    lines = _numbered_lines(_decode(data, path))
    columns: list[list[str]] = [[] for _ in names]
    numbers = []
    for number, line in lines:
        fields = line.split(separator) if separator is not None else line.split()
        if separator is not None:
            fields = [field.strip() for field in fields]
        if len(fields) != ncols:
            raise DataFormatError(path, number, f"{ncols} fields '{layout}'", f"{len(fields)} fields")
        for column, field in zip(columns, fields, strict=True):
            column.append(field)
        numbers.append(number)
    _require_interactions(len(numbers), path, fmt, header_only=False)
    return np.stack(
        [_int_column(col, numbers, path, name) for col, name in zip(columns, names, strict=True)], 1
    )


def _read_user_item(data: bytes, path) -> InteractionLog:
    try:
        table = _read_fixed_integer_columns(data, path, "user-item", ("user", "item"), None)
    except DataFormatError as exc:
        if exc.expected.startswith("2 fields") and exc.found not in ("1 fields", "0 fields"):
            raise DataFormatError(
                exc.path,
                exc.line,
                exc.expected + " (for one user per line pass format='user-seq')",
                exc.found,
            ) from None
        raise
    return InteractionLog(path, "user-item", table[:, 0].copy(), table[:, 1].copy())


def _read_ml100k_udata(data: bytes, path) -> InteractionLog:
    table = _read_fixed_integer_columns(
        data, path, "ml-100k-udata", ("user", "item", "rating", "timestamp"), "\t"
    )
    return _movielens_log(table, path, "ml-100k-udata")


def _read_ml1m_dat(data: bytes, path) -> InteractionLog:
    table = _read_fixed_integer_columns(
        data, path, "ml-1m-dat", ("user", "item", "rating", "timestamp"), "::"
    )
    return _movielens_log(table, path, "ml-1m-dat")


def _movielens_log(table: np.ndarray, path, fmt: str) -> InteractionLog:
    return InteractionLog(
        path,
        fmt,
        table[:, 0].copy(),
        table[:, 1].copy(),
        timestamps=table[:, 3].astype(np.float64),
        ratings=table[:, 2].astype(np.float64),
    )


def _read_user_seq(data: bytes, path) -> InteractionLog:
    table = parse_integer_table(data, 0, b" \t")
    if table is not None:
        counts = table.tokens_per_line()
        if (counts == 1).any():
            index = int(np.flatnonzero(counts == 1)[0])
            raise DataFormatError(
                path, index + 1, "a user id followed by at least one item id", "only a user id"
            )
        _require_interactions(table.values.size, path, "user-seq", header_only=False)
        line_counts = counts[counts > 0]
        first_token = np.concatenate([[0], np.cumsum(line_counts)[:-1]])
        is_user = np.zeros(table.values.size, dtype=bool)
        is_user[first_token] = True
        users = np.repeat(table.values[first_token], line_counts - 1)
        return InteractionLog(path, "user-seq", users, table.values[~is_user])
    user_values, item_values, user_lines, item_lines = [], [], [], []
    for number, line in _numbered_lines(_decode(data, path)):
        fields = line.split()
        if len(fields) < 2:
            raise DataFormatError(
                path, number, "a user id followed by at least one item id", "only a user id"
            )
        user_values.append(fields[0])
        user_lines.append(number)
        item_values.extend(fields[1:])
        item_lines.extend([number] * (len(fields) - 1))
    users = _int_column(user_values, user_lines, path, "user id")
    items = _int_column(item_values, item_lines, path, "item id")
    lengths = np.bincount(np.searchsorted(np.asarray(user_lines), item_lines), minlength=len(user_lines))
    return InteractionLog(path, "user-seq", np.repeat(users, lengths), items)


# --------------------------------------------------------------- formats with a header


_ATOMIC_TYPES = ("token", "token_seq", "float", "float_seq")


def _parse_atomic_header(header: str, path) -> dict[str, int]:
    fields = header.rstrip("\r").split("\t")
    roles: dict[str, int] = {}
    for index, field in enumerate(fields):
        name, colon, kind = field.strip().partition(":")
        if not colon or kind not in _ATOMIC_TYPES:
            raise DataFormatError(
                path,
                1,
                "a typed RecBole header such as 'user_id:token<TAB>item_id:token<TAB>timestamp:float'",
                repr(field),
            )
        role = {"user_id": "user", "item_id": "item", "timestamp": "timestamp", "rating": "rating"}.get(name)
        if role is not None:
            if role in ("timestamp", "rating") and kind != "float":
                raise DataFormatError(path, 1, f"'{name}:float'", repr(field))
            roles[role] = index
    for role, name in (("user", "user_id"), ("item", "item_id")):
        if role not in roles:
            raise DataFormatError(
                path, 1, f"a '{name}:token' column in the header", repr(header.strip()[:120])
            )
    roles["__ncols__"] = len(fields)
    return roles


def _parse_named_header(header: str, path, delimiter: str) -> dict[str, int]:
    fields = next(csv.reader([header.rstrip("\r")], delimiter=delimiter))
    names = [field.strip().lower().partition(":")[0] for field in fields]
    roles: dict[str, int] = {}
    for role, aliases in COLUMN_ALIASES.items():
        for index, name in enumerate(names):
            if name in aliases:
                roles[role] = index
                break
    for role in ("user", "item"):
        if role not in roles:
            accepted = ", ".join(COLUMN_ALIASES[role])
            raise DataFormatError(
                path, 1, f"a header naming the {role} column (one of: {accepted})", f"columns {fields!r}"
            )
    roles["__ncols__"] = len(fields)
    return roles


def _read_with_header(data: bytes, path, fmt: str, delimiter: str, roles: dict[str, int], body_start: int):
    """Reads the body of an atomic/csv/tsv file whose header mapped roles to columns."""
    ncols = roles["__ncols__"]
    header_only = _blank(data[body_start:])
    _require_interactions(0 if header_only else 1, path, fmt, header_only=True)
    table = parse_integer_table(data, body_start, delimiter.encode())
    if table is not None:
        counts = table.tokens_per_line()
        if ((counts != 0) & (counts != ncols)).any():
            table = None  # maybe empty fields; the general reader reports the line precisely
        elif table.leading_zero.reshape(-1, ncols)[:, [roles["user"], roles["item"]]].any():
            table = None  # ids like "007" stay strings
    if table is not None:
        rows = table.values.reshape(-1, ncols)
        column = {role: rows[:, index] for role, index in roles.items() if role != "__ncols__"}
        return InteractionLog(
            path,
            fmt,
            column["user"].copy(),
            column["item"].copy(),
            timestamps=column["timestamp"].astype(np.float64) if "timestamp" in column else None,
            ratings=column["rating"].astype(np.float64) if "rating" in column else None,
        )
    log = _read_string_table_fast(data, path, fmt, delimiter, roles, body_start)
    if log is not None:
        return log
    first_line = 2  # the header is exactly one line
    body = _decode(data[body_start:], path, first_line)
    values: dict[str, list[str]] = {role: [] for role in roles if role != "__ncols__"}
    numbers: list[int] = []
    lines = _numbered_lines(body, first_line)
    if fmt == "atomic":
        rows = (
            (number, [field.strip() for field in line.rstrip("\r").split("\t")]) for number, line in lines
        )
    else:
        reader = csv.reader((line.rstrip("\r") for _, line in lines), delimiter=delimiter)
        rows = zip((number for number, _ in lines), reader, strict=True)
    for number, fields in rows:
        if len(fields) != ncols:
            raise DataFormatError(path, number, f"{ncols} fields like the header", f"{len(fields)} fields")
        for role, column in values.items():
            column.append(fields[roles[role]].strip())
        numbers.append(number)
    for role in ("user", "item"):
        for value, number in zip(values[role], numbers, strict=True):
            if not value:
                raise DataFormatError(path, number, f"a non-empty {role} id", "an empty field")
    return InteractionLog(
        path,
        fmt,
        _token_column(values["user"]),
        _token_column(values["item"]),
        timestamps=_float_column(values["timestamp"], numbers, path, "timestamp")
        if "timestamp" in values
        else None,
        ratings=_float_column(values["rating"], numbers, path, "rating") if "rating" in values else None,
    )


def _bytes_token_column(column: np.ndarray) -> np.ndarray:
    """Like :func:`_token_column` for a bytes array: int64 when every id is a plain integer."""
    try:
        ints = column.astype(np.int64)
    except (ValueError, OverflowError):
        return column
    return ints if np.array_equal(ints.astype(column.dtype), column) else column


def _read_string_table_fast(
    data: bytes, path, fmt: str, delimiter: str, roles: dict[str, int], body_start: int
):
    """The byte-level reader for regular files with string ids; None when it does not apply."""
    wanted = [role for role in ("user", "item", "timestamp", "rating") if role in roles]
    columns = parse_delimited_columns(
        data, body_start, delimiter.encode(), roles["__ncols__"], [roles[role] for role in wanted]
    )
    if columns is None:
        return None
    try:
        data[body_start:].decode("utf-8")
    except UnicodeDecodeError:
        return None
    column = dict(zip(wanted, columns, strict=True))
    numeric = {}
    for role in ("timestamp", "rating"):
        if role in column:
            try:
                numeric[role] = column[role].astype(np.float64)
            except ValueError:
                return None
            if not np.isfinite(numeric[role]).all():
                return None
    return InteractionLog(
        path,
        fmt,
        _bytes_token_column(column["user"]),
        _bytes_token_column(column["item"]),
        timestamps=numeric.get("timestamp"),
        ratings=numeric.get("rating"),
    )


def _header_split(data: bytes, path) -> tuple[str, int]:
    """The first line (decoded) and the byte offset where the body starts."""
    end = data.find(b"\n")
    header_bytes = data if end < 0 else data[:end]
    body_start = len(data) if end < 0 else end + 1
    return _decode(header_bytes, path), body_start


def _read_atomic(data: bytes, path) -> InteractionLog:
    header, body_start = _header_split(data, path)
    return _read_with_header(data, path, "atomic", "\t", _parse_atomic_header(header, path), body_start)


def _read_csv(data: bytes, path) -> InteractionLog:
    header, body_start = _header_split(data, path)
    return _read_with_header(data, path, "csv", ",", _parse_named_header(header, path, ","), body_start)


def _read_tsv(data: bytes, path) -> InteractionLog:
    header, body_start = _header_split(data, path)
    return _read_with_header(data, path, "tsv", "\t", _parse_named_header(header, path, "\t"), body_start)


def detect_format(data: bytes, path: Path | None) -> str:
    """Guesses the format from the file name and its first lines; see the module docstring."""
    name = path.name.lower() if path is not None else ""
    if name.endswith(".inter"):
        return "atomic"
    if name == "u.data":
        return "ml-100k-udata"
    if name.endswith(".csv"):
        return "csv"
    if name.endswith(".tsv"):
        return "tsv"
    if _blank(data):
        raise DataFormatError(path, None, "interactions", "an empty file")
    head = data[: 1 << 16].decode("utf-8-sig", errors="replace")
    lines = [line.rstrip("\r") for line in head.split("\n")[:-1] or [head] if line.strip()][:1000]
    first = lines[0]
    if "::" in first:
        return "ml-1m-dat"
    tab_fields = first.split("\t")
    if all(field.partition(":")[2] in _ATOMIC_TYPES for field in tab_fields):
        return "atomic"
    tokens = first.replace(",", " ").split()
    if not all(token.isdigit() for token in tokens):
        if "\t" in first:
            return "tsv"
        if "," in first:
            return "csv"
        raise DataFormatError(
            path,
            1,
            "a recognisable format (pass format= one of " + ", ".join(FORMATS) + ")",
            repr(first[:80]),
        )
    if "," in first:
        raise DataFormatError(path, 1, "a header line naming the columns of a CSV file", repr(first[:80]))
    if len(tab_fields) == 4:
        return "ml-100k-udata"
    if len(tab_fields) == 3:
        # user item rating? user item time? Guessing would silently read a column as items.
        raise DataFormatError(
            path,
            1,
            "a header naming the columns (then it reads as tsv), or an explicit format=",
            "3 unnamed columns",
        )
    if all(len(line.split()) == 2 for line in lines):
        return "user-item"
    return "user-seq"
