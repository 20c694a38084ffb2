"""Fetching the built-in dataset, offline: the network and pip are replaced by fakes."""

import dataclasses
import hashlib
import io
import sys
import zipfile

import pytest

from srkd_ext.data import DatasetUnavailableError, load_dataset, registry
from srkd_ext.data.registry import ARCHIVE_TIMEOUT_S, cache_root, fetch_builtin

HEADER = b"user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
UDATA = b"1\t10\t5\t300\n1\t20\t3\t100\n2\t10\t4\t200\n"


def zip_bytes(member, data):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr(member, data)
    return buffer.getvalue()


@pytest.fixture
def fake_spec(monkeypatch):
    """ml-100k's registry entry with the checksum of a small synthetic file."""
    spec = dataclasses.replace(
        registry.REGISTRY["ml-100k"], sha256=hashlib.sha256(HEADER + UDATA).hexdigest()
    )
    monkeypatch.setitem(registry.REGISTRY, "ml-100k", spec)
    return spec


@pytest.fixture
def calls(monkeypatch):
    """Records fetch attempts; by default both sources fail as they do offline."""
    log = []

    def offline_http(url, timeout):
        log.append(("http", url, timeout))
        raise OSError("<urlopen error [Errno -2] Name or service not known>")

    def offline_pip(requirement, dest):
        log.append(("pip", requirement))
        raise OSError(f"`pip download {requirement}` failed: No matching distribution found")

    monkeypatch.setattr(registry, "_http_get", offline_http)
    monkeypatch.setattr(registry, "_pip_download", offline_pip)
    return log


def serve_wheel(monkeypatch, calls, member_data, member=None):
    def fake_pip(requirement, dest):
        calls.append(("pip", requirement))
        name = member or registry.REGISTRY["ml-100k"].wheel_member
        (dest / "recbole-1.2.1-py3-none-any.whl").write_bytes(zip_bytes(name, member_data))

    monkeypatch.setattr(registry, "_pip_download", fake_pip)


def test_archive_u_data_is_converted_and_cached(tmp_path, monkeypatch, calls, fake_spec):
    monkeypatch.setattr(registry, "_http_get", lambda url, timeout: zip_bytes("ml-100k/u.data", UDATA))
    path = fetch_builtin("ml-100k", tmp_path)
    assert path == tmp_path / "ml-100k" / "ml-100k.inter"
    assert path.read_bytes() == HEADER + UDATA
    assert calls == []
    ds = load_dataset("ml-100k", cache_dir=tmp_path)
    assert (ds.name, ds.num_users, ds.num_items, ds.num_interactions) == ("ml-100k", 2, 2, 3)
    assert ds.sha256 == fake_spec.sha256


def test_wheel_is_the_fallback(tmp_path, monkeypatch, calls, fake_spec):
    serve_wheel(monkeypatch, calls, HEADER + UDATA)
    path = fetch_builtin("ml-100k", tmp_path)
    assert [c[0] for c in calls] == ["http", "pip"]
    assert calls[0][2] == ARCHIVE_TIMEOUT_S <= 10  # the archive attempt fails fast
    assert calls[1][1] == "recbole==1.2.1"
    assert path.read_bytes() == HEADER + UDATA
    calls.clear()
    assert fetch_builtin("ml-100k", tmp_path) == path and calls == []  # cached now


def test_checksum_mismatch_is_rejected(tmp_path, monkeypatch, calls, fake_spec):
    monkeypatch.setattr(
        registry, "_http_get", lambda url, timeout: zip_bytes("ml-100k/u.data", UDATA + UDATA)
    )
    serve_wheel(monkeypatch, calls, HEADER + b"1\t2\t3\t4\n")
    with pytest.raises(DatasetUnavailableError, match="sha256 .* does not match") as info:
        fetch_builtin("ml-100k", tmp_path)
    assert str(info.value).count("does not match") == 2
    assert not (tmp_path / "ml-100k" / "ml-100k.inter").exists()


def test_wheel_without_the_member(tmp_path, monkeypatch, calls, fake_spec):
    serve_wheel(monkeypatch, calls, b"x", member="recbole/other.txt")
    with pytest.raises(DatasetUnavailableError, match="no item named"):
        fetch_builtin("ml-100k", tmp_path)


def test_offline_with_nothing_cached(tmp_path, calls):
    with pytest.raises(DatasetUnavailableError) as info:
        load_dataset("ml-100k", cache_dir=tmp_path)
    message = str(info.value)
    assert "\n" not in message
    assert "Name or service not known" in message and "No matching distribution" in message
    assert "load_dataset('/path/to/ml-100k.inter')" in message and "--dataset /path/to/ml-100k.inter" in message


def test_corrupt_cache_is_fetched_again(tmp_path, monkeypatch, calls, fake_spec):
    cached = tmp_path / "ml-100k" / "ml-100k.inter"
    cached.parent.mkdir()
    cached.write_bytes(b"truncated")
    serve_wheel(monkeypatch, calls, HEADER + UDATA)
    assert fetch_builtin("ml-100k", tmp_path).read_bytes() == HEADER + UDATA


def test_cache_location(tmp_path, monkeypatch):
    monkeypatch.setenv("SRKD_CACHE", str(tmp_path / "env"))
    assert cache_root() == tmp_path / "env"
    assert cache_root(tmp_path / "arg") == tmp_path / "arg"
    monkeypatch.delenv("SRKD_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_root() == tmp_path / "home" / ".cache" / "srkd"


def test_local_file_named_like_the_builtin_wins(tmp_path, monkeypatch, calls):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ml-100k").write_text("1 5\n1 6\n")
    ds = load_dataset("ml-100k")
    assert ds.num_interactions == 2 and ds.path.resolve() == (tmp_path / "ml-100k").resolve()
    assert calls == []


def test_pip_is_called_with_this_interpreter(tmp_path, monkeypatch):
    seen = {}

    class Result:
        returncode = 1
        stderr = "ERROR: Could not find a version that satisfies the requirement\n"

    def fake_run(command, **kwargs):
        seen["command"] = command
        return Result()

    monkeypatch.setattr(registry.subprocess, "run", fake_run)
    with pytest.raises(OSError, match="Could not find a version"):
        registry._pip_download("recbole==1.2.1", tmp_path)
    assert seen["command"][:5] == [sys.executable, "-m", "pip", "download", "recbole==1.2.1"]
    assert "--no-deps" in seen["command"] and str(tmp_path) in seen["command"]


def test_real_checksum_matches_recbole_file_from_u_data(shared_data_dir, tmp_path, monkeypatch, calls):
    # RecBole's ml-100k.inter is u.data with a header: converting the archive's u.data must
    # give a file with the registered checksum.
    inter = (shared_data_dir / "ml-100k.inter").read_bytes()
    assert inter.startswith(HEADER)
    udata = inter[len(HEADER) :]
    monkeypatch.setattr(registry, "_http_get", lambda url, timeout: zip_bytes("ml-100k/u.data", udata))
    path = fetch_builtin("ml-100k", tmp_path)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == registry.REGISTRY["ml-100k"].sha256


def test_unwritable_cache_is_one_clear_error(tmp_path, monkeypatch, calls, fake_spec):
    serve_wheel(monkeypatch, calls, HEADER + UDATA)
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder should be")
    with pytest.raises(DatasetUnavailableError, match="cannot write it to the cache .*SRKD_CACHE"):
        fetch_builtin("ml-100k", blocker)
