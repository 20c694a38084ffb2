"""Built-in datasets: fetched on first use, verified by sha256, cached.

``ml-100k`` is fetched from, in order:
  1. the canonical MovieLens archive (files.grouplens.org, ``ml-100k.zip`` -> ``u.data``),
     converted to RecBole's atomic file by adding its header (RecBole's file is exactly that);
  2. the copy inside the ``recbole==1.2.1`` wheel on the package index, downloaded with
     ``python -m pip download``, so it works wherever pip works (proxies, mirrors).
Either way the cached file must have the sha256 of RecBole's ``ml-100k.inter``.

Cache directory: ``cache_dir`` argument, else ``$SRKD_CACHE``, else ``~/.cache/srkd``.
"""

from __future__ import annotations

import hashlib
import http.client
import io
import logging
import os
import subprocess
import sys
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from srkd_ext.data.errors import DatasetUnavailableError

log = logging.getLogger(__name__)

# The canonical archive is tried first but must not hold up machines that cannot reach it.
ARCHIVE_TIMEOUT_S = 5.0
PIP_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class BuiltinDataset:
    name: str
    filename: str
    format: str
    sha256: str
    archive_url: str
    archive_member: str
    atomic_header: bytes
    wheel_requirement: str
    wheel_member: str


REGISTRY = {
    "ml-100k": BuiltinDataset(
        name="ml-100k",
        filename="ml-100k.inter",
        format="atomic",
        sha256="4edb74e2a81178c2ba9ff381495f754f996c4aea351b1272ca36b43da0935eff",
        archive_url="https://files.grouplens.org/datasets/movielens/ml-100k.zip",
        archive_member="ml-100k/u.data",
        atomic_header=b"user_id:token\titem_id:token\trating:float\ttimestamp:float\n",
        wheel_requirement="recbole==1.2.1",
        wheel_member="recbole/dataset_example/ml-100k/ml-100k.inter",
    )
}


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """Where fetched datasets live: ``cache_dir``, ``$SRKD_CACHE`` or ``~/.cache/srkd``."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    if os.environ.get("SRKD_CACHE"):
        return Path(os.environ["SRKD_CACHE"]).expanduser()
    return Path.home() / ".cache" / "srkd"


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _http_get(url: str, timeout: float) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - fixed https URL
        return response.read()


def _pip_download(requirement: str, dest: Path) -> None:
    """Downloads one wheel with pip's own command (honours pip.conf, proxies, mirrors)."""
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        requirement,
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "--quiet",
        "-d",
        str(dest),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=PIP_TIMEOUT_S)
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["pip failed without a message"])[-1]
        raise OSError(f"`pip download {requirement}` failed: {last}")


def _from_archive(spec: BuiltinDataset) -> bytes:
    archive = _http_get(spec.archive_url, ARCHIVE_TIMEOUT_S)
    with zipfile.ZipFile(io.BytesIO(archive)) as zf:
        udata = zf.read(spec.archive_member)
    if not udata.endswith(b"\n"):
        udata += b"\n"
    return spec.atomic_header + udata


def _from_wheel(spec: BuiltinDataset) -> bytes:
    with tempfile.TemporaryDirectory(prefix="srkd-wheel-") as tmp:
        _pip_download(spec.wheel_requirement, Path(tmp))
        wheels = sorted(Path(tmp).glob("*.whl"))
        if not wheels:
            raise OSError(f"`pip download {spec.wheel_requirement}` produced no wheel")
        with zipfile.ZipFile(wheels[0]) as zf:
            return zf.read(spec.wheel_member)


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def fetch_builtin(name: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """Path of the verified cached file of built-in dataset ``name``, fetching it if needed.

    Raises:
        DatasetUnavailableError: no source could be reached (or none matched the sha256) and
            nothing valid is cached; the message says how to pass a local file instead.
    """
    spec = REGISTRY[name]
    path = cache_root(cache_dir) / spec.name / spec.filename
    if path.is_file():
        if sha256_of(path.read_bytes()) == spec.sha256:
            return path
        log.warning("cached %s does not match its sha256; fetching it again", path)
    failures = []
    sources = (
        (f"MovieLens archive {spec.archive_url}", _from_archive),
        (f"{spec.wheel_requirement} wheel from the package index", _from_wheel),
    )
    for label, fetch in sources:
        try:
            data = fetch(spec)
        except (
            OSError,
            KeyError,
            zipfile.BadZipFile,
            subprocess.SubprocessError,
            http.client.HTTPException,
        ) as exc:
            failures.append(f"{label}: {exc}")
            log.info("could not fetch %s from %s: %s", name, label, exc)
            continue
        digest = sha256_of(data)
        if digest != spec.sha256:
            failures.append(f"{label}: sha256 {digest[:16]}... does not match {spec.sha256[:16]}...")
            continue
        try:
            _write_atomically(path, data)
        except OSError as exc:
            raise DatasetUnavailableError(
                f"fetched {name!r} but cannot write it to the cache {path}: {exc.strerror or exc}; "
                f"point SRKD_CACHE (or cache_dir) at a writable folder"
            ) from None
        log.info("fetched %s from %s into %s", name, label, path)
        return path
    raise DatasetUnavailableError(
        f"could not fetch built-in dataset {name!r} and it is not cached in {path.parent} "
        f"({'; '.join(failures)}). Pass a local copy by path instead, e.g. "
        f"load_dataset('/path/to/{spec.filename}') or `--dataset /path/to/{spec.filename}`, "
        f"or put the file at {path}"
    )
