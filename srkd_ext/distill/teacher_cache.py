"""A precomputed, memory-mapped cache of the teachers' top-k items at every training position.

Running T large teachers on every batch of every epoch costs T forward passes and T full
[positions, num_items] score matrices per step. The cache runs each teacher once over the
training data and stores, for every (training sequence, target position), the indices and
logits of its top-k items; each epoch then reads k numbers per teacher and position.

Layout of a cache directory:
    meta.json     format, teachers' checksums and configurations, top_k, max_len, num_items,
                  a fingerprint of the training sequences, number of entries
    indices.npy   int32 [T, E, k]  item columns (item id - 1) of each teacher's top-k, best first
    logits.npy    float32 [T, E, k] the teacher logits of those items

Entry numbering follows srkd_ext.data's training batches: row r of the training SequenceSet
(split.train, or its windows from srkd_ext.train.windows) contributes its
c_r = min(len_r - 1, max_len) most recent targets, which sit in columns max_len - c_r .. max_len - 1
of every batch that holds row r, whatever the shuffle. Entry (r, column j) is
entry_offsets[r] + j - (max_len - c_r).

A cache is only used while it matches: other teachers (by checksum), other training data, a
different max_len or a smaller k make `open` refuse it with StaleTeacherCacheError.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

import srkd_ext
from srkd_ext.data import training_batches
from srkd_ext.models.base import PADDING_ID

FORMAT = "srkd_ext.teacher_topk_cache/1"


class StaleTeacherCacheError(ValueError):
    """The cache on disk was built for other teachers, data or settings."""


_STALE_REMEDY = "delete the directory or choose another KDConfig.cache_dir"


def training_fingerprint(train) -> str:
    """sha256 of the training sequences (CSR offsets and items)."""
    digest = hashlib.sha256()
    digest.update(np.ascontiguousarray(train.offsets, dtype=np.int64).tobytes())
    digest.update(np.ascontiguousarray(train.items, dtype=np.int64).tobytes())
    return digest.hexdigest()


def entry_layout(train, max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """(entry_offsets int64 [rows + 1], counts int64 [rows]): where each training row's entries start."""
    counts = np.clip(np.diff(np.asarray(train.offsets, dtype=np.int64)) - 1, 0, max_len)
    offsets = np.zeros(counts.shape[0] + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    return offsets, counts


class TeacherTopKCache:
    """An open cache: `lookup(rows, valid)` gives the srkd_ext.TeacherTopK of a batch's positions."""

    def __init__(self, path: Path, meta: dict, indices: np.ndarray, logits: np.ndarray, train, max_len: int):
        self.path = path
        self.meta = meta
        self.indices = indices
        self.logits = logits
        self.max_len = max_len
        self.entry_offsets, self.counts = entry_layout(train, max_len)

    @property
    def top_k(self) -> int:
        return int(self.meta["top_k"])

    def entries(self, rows: torch.Tensor, valid: torch.Tensor) -> np.ndarray:
        """Entry numbers of the True cells of valid [B, L], in row-major order (hidden[valid] order)."""
        b, j = (t.cpu().numpy() for t in valid.nonzero(as_tuple=True))
        length = valid.size(1)
        r = rows.cpu().numpy()[b]
        # A batch narrower than max_len holds the same most recent targets, shifted left.
        column = j + (self.max_len - length)
        entry = self.entry_offsets[r] + column - (self.max_len - self.counts[r])
        if entry.size and (
            (column < self.max_len - self.counts[r]).any() or (entry >= self.entry_offsets[r + 1]).any()
        ):
            raise ValueError("batch positions do not match the cache layout (different data or max_len)")
        return entry

    def lookup(self, rows: torch.Tensor, valid: torch.Tensor, device) -> srkd_ext.TeacherTopK:
        """rows [B] (rows of the training SequenceSet), valid [B, L] bool -> TeacherTopK([T, M, k] x 2) on device."""
        entry = self.entries(rows, valid)
        indices = torch.from_numpy(np.ascontiguousarray(self.indices[:, entry])).to(device, torch.int64)
        logits = torch.from_numpy(np.ascontiguousarray(self.logits[:, entry])).to(device)
        return srkd_ext.TeacherTopK(indices, logits)

    @classmethod
    def open(cls, path, checksums: list[str], train, num_items: int, max_len: int, top_k: int) -> TeacherTopKCache:
        """Opens the cache in `path` (memory-mapped, read-only) or raises StaleTeacherCacheError."""
        path = Path(path)
        meta_path = path / "meta.json"
        if not meta_path.exists():
            raise FileNotFoundError(f"no teacher cache in {path} (meta.json missing)")
        meta = json.loads(meta_path.read_text())
        expected = {
            "format": FORMAT,
            "teachers": list(checksums),
            "max_len": int(max_len),
            "num_items": int(num_items),
            "training_data": training_fingerprint(train),
        }
        for key, value in expected.items():
            if meta.get(key) != value:
                what = "teachers' checksums" if key == "teachers" else key
                raise StaleTeacherCacheError(
                    f"teacher cache {path} is stale: its {what} do not match the current run "
                    f"({_STALE_REMEDY})"
                )
        if int(meta["top_k"]) < top_k:
            raise StaleTeacherCacheError(
                f"teacher cache {path} holds the top {meta['top_k']} items per teacher, fewer than the {top_k} "
                f"these options need ({_STALE_REMEDY})"
            )
        indices = np.load(path / "indices.npy", mmap_mode="r")
        logits = np.load(path / "logits.npy", mmap_mode="r")
        shape = (len(checksums), int(meta["entries"]), int(meta["top_k"]))
        if indices.shape != shape or logits.shape != shape:
            raise StaleTeacherCacheError(f"teacher cache {path} is damaged: arrays are not {shape}")
        return cls(path, meta, indices, logits, train, max_len)

    @classmethod
    def build(
        cls, path, teachers, checksums, *, train, num_items: int, max_len: int, top_k: int,
        batch_size: int = 256, device="cpu", progress: bool = True,
    ) -> TeacherTopKCache:
        """Runs every teacher once over the training positions of `train` (the SequenceSet the
        training batches come from) and writes the cache to `path`.

        Written into a temporary sibling directory and renamed into place, so an interrupted
        build never leaves a cache that looks complete.
        """
        path = Path(path)
        if path.is_dir() and not any(path.iterdir()):
            path.rmdir()  # an empty directory made in advance is not a cache
        if path.exists():
            raise FileExistsError(f"{path} already exists; open it or delete it first")
        top_k = min(int(top_k), num_items)
        entry_offsets, counts = entry_layout(train, max_len)
        num_entries = int(entry_offsets[-1])
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        try:
            shape = (len(teachers), num_entries, top_k)
            indices = np.lib.format.open_memmap(tmp / "indices.npy", mode="w+", dtype=np.int32, shape=shape)
            logits = np.lib.format.open_memmap(tmp / "logits.npy", mode="w+", dtype=np.float32, shape=shape)
            writer = cls(tmp, {"top_k": top_k}, indices, logits, train, max_len)
            batches = training_batches(train, max_len, batch_size, shuffle=False, seed=0)
            for t in teachers:
                t.to(device).eval()
            with torch.no_grad():
                for batch in tqdm(batches, desc="teacher cache", unit="batch", disable=not progress, leave=False):
                    inputs, targets = batch.inputs.to(device), batch.targets.to(device)
                    valid = targets != PADDING_ID
                    entry = writer.entries(batch.users, valid)
                    for t_index, teacher in enumerate(teachers):
                        scores = teacher.score_items(teacher(inputs)[valid]).float()
                        values, columns = scores.topk(top_k, dim=1)
                        indices[t_index, entry] = columns.cpu().numpy().astype(np.int32)
                        logits[t_index, entry] = values.cpu().numpy()
            indices.flush()
            logits.flush()
            del indices, logits, writer
            meta = {
                "format": FORMAT,
                "teachers": list(checksums),
                "teacher_configs": [t.config for t in teachers],
                "top_k": top_k,
                "max_len": int(max_len),
                "num_items": int(num_items),
                "training_data": training_fingerprint(train),
                "entries": num_entries,
            }
            (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
            os.replace(tmp, path)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return cls.open(path, checksums, train, num_items, max_len, top_k)


class CachedTeachers:
    """Teacher source for DistillationObjective backed by a TeacherTopKCache."""

    description = "cache"

    def __init__(self, cache: TeacherTopKCache, device):
        self.cache = cache
        self.device = device

    def logits(self, batch, valid: torch.Tensor) -> srkd_ext.TeacherTopK:
        return self.cache.lookup(batch.users, valid, self.device)

    @classmethod
    def open_or_build(
        cls, cache_dir, teachers, checksums, *, train, num_items, max_len, top_k, batch_size, device, progress=True
    ) -> CachedTeachers:
        """Opens kd.cache_dir when it exists (refusing a stale one), else builds it first."""
        cache_dir = Path(cache_dir)
        if (cache_dir / "meta.json").exists():
            cache = TeacherTopKCache.open(cache_dir, checksums, train, num_items, max_len, top_k)
        else:
            cache = TeacherTopKCache.build(
                cache_dir, teachers, checksums, train=train, num_items=num_items, max_len=max_len, top_k=top_k,
                batch_size=batch_size, device=device, progress=progress,
            )
        return cls(cache, device)
