"""``load_dataset``: a built-in name or a file path in, a :class:`SequenceDataset` out."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from srkd_ext.data.errors import DataError
from srkd_ext.data.readers import FORMATS, detect_format, read_log
from srkd_ext.data.registry import REGISTRY, fetch_builtin, sha256_of
from srkd_ext.data.sequences import SequenceDataset, build_sequences

log = logging.getLogger(__name__)


def _resolve(source: str | os.PathLike, format: str | None, cache_dir) -> tuple[Path, str, str | None]:
    """(file, dataset name, format) for a path or a built-in name.

    An existing path always wins over a built-in name, so a local file called like a
    built-in dataset is never silently replaced by the built-in one.
    """
    path = Path(source).expanduser()
    if path.is_dir():
        # RecBole's layout (<dir>/<dir>.inter) and the MovieLens archives' (u.data, ratings.dat).
        for candidate in (path / f"{path.name}.inter", path / "u.data", path / "ratings.dat"):
            if candidate.is_file():
                return candidate, path.name, format
        raise DataError(
            f"{path} is a directory without {path.name}.inter, u.data or ratings.dat; pass the interaction file"
        )
    if path.is_file():
        return path, path.stem, format
    if isinstance(source, str) and source in REGISTRY:
        spec = REGISTRY[source]
        if format is not None and format != spec.format:
            raise ValueError(
                f"format={format!r} does not apply to built-in dataset {source!r} ({spec.format})"
            )
        return fetch_builtin(source, cache_dir), source, spec.format
    raise DataError(
        f"no such file: {source} (and it is not a built-in dataset; built-in: {', '.join(sorted(REGISTRY))})"
    )


def load_dataset(
    source: str | os.PathLike,
    format: str | None = None,
    *,
    min_rating: float | None = None,
    k_core: int = 0,
    cache_dir: str | os.PathLike | None = None,
) -> SequenceDataset:
    """Reads, filters, orders and remaps an interaction log.

    Args:
        source: a built-in dataset name ("ml-100k": fetched, verified and cached on first
            use) or the path of a file.
        format: one of "atomic", "user-seq", "user-item", "ml-100k-udata", "ml-1m-dat",
            "csv", "tsv"; None detects it from the file name and first lines.
        min_rating: keep only events rated at least this (needs a rating column).
        k_core: iterative k-core filtering on users and items (0: none).
        cache_dir: cache for built-in datasets (default ``$SRKD_CACHE`` or ~/.cache/srkd).

    Raises:
        DataFormatError: the file does not match its format (message names file and line).
        DataError: the file is missing, or filtering left nothing.
        DatasetUnavailableError: a built-in dataset could not be fetched.
    """
    if format is not None and format not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)} or None, got {format!r}")
    path, name, fmt = _resolve(source, format, cache_dir)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None
    fmt = fmt or detect_format(data, path)
    dataset = build_sequences(
        read_log(data, path, fmt), name=name, sha256=sha256_of(data), min_rating=min_rating, k_core=k_core
    )
    log.info("%s", dataset)
    return dataset
