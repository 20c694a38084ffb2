"""One progress bar per training run: epoch n/N, loss, validation NDCG@10 and the run's ETA.

The trainer appends one JSON line per finished epoch to <out_dir>/train_log.jsonl; a daemon
thread follows that file and advances the bar, so the bar spans the whole run (the trainer's own
bar covers one epoch only) without the trainer having to know about it. On a resumed run the
bar starts at the epochs already done.
"""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path

from tqdm.auto import tqdm

POLL_SECONDS = 0.25


class TrainingProgress:
    def __init__(self, label: str, epochs: int, log_path: Path, enabled: bool | None = None):
        self.label = label
        self.epochs = epochs
        self.log_path = Path(log_path)
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._bar = None
        self._lines_seen = 0

    def __enter__(self) -> TrainingProgress:
        if not self.enabled:
            return self
        self._bar = tqdm(total=self.epochs, desc=self.label, unit="epoch", leave=False, dynamic_ncols=True,
                         bar_format="{desc}: {n_fmt}/{total_fmt} epochs |{bar}| {elapsed}<{remaining}{postfix}")
        # Epochs already in the log: a resumed run (the trainer rewrites the log on a fresh start).
        self._poll(initial=True)
        self._thread = threading.Thread(target=self._follow, name="srkd-progress", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._bar is None:
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        self._poll()
        self._bar.close()

    def _follow(self) -> None:
        while not self._stop.wait(POLL_SECONDS):
            self._poll()

    def _poll(self, initial: bool = False) -> None:
        try:
            lines = self.log_path.read_text().splitlines()
        except OSError:
            return
        if len(lines) < self._lines_seen:  # the trainer started over and truncated the log
            self._lines_seen = 0
            self._bar.reset(total=self.epochs)
        new = lines[self._lines_seen:]
        records = []
        for line in new:
            try:
                records.append(json.loads(line))
            except ValueError:  # a line being written right now: read it next time
                break
        if not records:
            return
        self._lines_seen += len(records)
        last = records[-1]
        if initial:
            self._bar.reset(total=self.epochs)
            self._bar.initial = last["epoch"]
            self._bar.n = last["epoch"]
        else:
            self._bar.update(last["epoch"] - self._bar.n)
        valid = last.get("valid", {}).get("NDCG@10")
        postfix = f"loss {last.get('loss', float('nan')):.4f}"
        if valid is not None:
            postfix += f", valid NDCG@10 {valid:.4f}"
        self._bar.set_postfix_str(postfix, refresh=True)
