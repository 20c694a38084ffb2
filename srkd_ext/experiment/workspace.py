"""The experiment folder (`--out`): what lives where, and whether a rerun may resume in it.

    config.yaml            the resolved configuration (with its fingerprint in a comment)
    experiment.json        fingerprint + dataset sha256: identifies the experiment for reruns
    models/<name>/         one folder per model: the trainer's checkpoints and epoch log, and
                           record.json once the model is trained AND evaluated (a finished model)
    results.json, report.md, *.png

A folder holding a different experiment (another fingerprint or another dataset file) is refused
with the first configuration key that differs, so results are never mixed.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from srkd_ext.experiment.config import NOT_FINGERPRINTED, dump_config, fingerprint
from srkd_ext.experiment.errors import UserError
from srkd_ext.experiment.report import write_atomic

MARKER = "experiment.json"


def first_difference(a, b, path: str = "") -> str | None:
    """The first key path where two configurations differ (None when equal)."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in list(a) + [k for k in b if k not in a]:
            if path == "" and key in NOT_FINGERPRINTED:
                continue
            sub = f"{path}.{key}" if path else str(key)
            if key not in a or key not in b:
                return sub
            diff = first_difference(a[key], b[key], sub)
            if diff:
                return diff
        return None
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return f"{path} (a list of {len(b)} items, now {len(a)})"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            diff = first_difference(x, y, f"{path}.{i}")
            if diff:
                return diff
        return None
    return None if a == b else path


class ExperimentDir:
    def __init__(self, root: str | Path):
        self.root = Path(root)

    @property
    def config_path(self) -> Path:
        return self.root / "config.yaml"

    @property
    def results_path(self) -> Path:
        return self.root / "results.json"

    def model_dir(self, name: str) -> Path:
        return self.root / "models" / name

    def record_path(self, name: str) -> Path:
        return self.model_dir(name) / "record.json"

    def claim(self, cfg: dict) -> bool:
        """Makes the folder this experiment's; returns True when it resumes an earlier run.

        Raises UserError when the folder is a file, is not empty and holds no experiment, or holds
        an experiment with a different configuration."""
        out = self.root
        if out.exists() and not out.is_dir():
            raise UserError(f"--out: {out} is a file, not a folder")
        marker = out / MARKER
        if out.is_dir() and any(out.iterdir()) and not marker.exists():
            raise UserError(f"--out: {out} is not empty and holds no srkd experiment; choose an empty or new folder")
        if marker.exists():
            try:
                stored = json.loads(marker.read_text())
                old_fp = stored["fingerprint"]
            except (OSError, ValueError, KeyError):
                raise UserError(f"--out: {marker} is damaged; delete {out} or choose another folder") from None
            new_fp = fingerprint(cfg)
            if old_fp != new_fp:
                where = ""
                try:
                    old_cfg = yaml.safe_load(self.config_path.read_text())
                    diff = first_difference(cfg, old_cfg)
                    if diff:
                        where = f", first difference at '{diff}'"
                except (OSError, yaml.YAMLError):
                    pass
                raise UserError(
                    f"--out: {out} holds a different experiment (configuration fingerprint {old_fp}, this one is "
                    f"{new_fp}{where}); choose another --out or delete that folder"
                )
            return True
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"--out: cannot create {out}: {exc.strerror}") from None
        dump_config(cfg, self.config_path)
        write_atomic(marker, json.dumps({"fingerprint": fingerprint(cfg), "dataset_sha256": None}, indent=2) + "\n")
        return False

    def check_dataset(self, sha256: str, source: str) -> None:
        """Binds the folder to one dataset file; a rerun on a changed file is refused."""
        marker = self.root / MARKER
        stored = json.loads(marker.read_text())
        if stored.get("dataset_sha256") is None:
            stored["dataset_sha256"] = sha256
            write_atomic(marker, json.dumps(stored, indent=2) + "\n")
        elif stored["dataset_sha256"] != sha256:
            raise UserError(
                f"--out: {self.root} was made from a different version of {source} (sha256 "
                f"{stored['dataset_sha256'][:12]}..., the file now has {sha256[:12]}...); choose another --out"
            )

    def finished_record(self, name: str) -> dict | None:
        """The record of a model that finished in an earlier run (None when it must be (re)trained)."""
        path = self.record_path(name)
        if not path.exists():
            return None
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        checkpoint = self.root / record.get("checkpoint", "")
        return record if checkpoint.is_file() else None

    def save_record(self, record: dict) -> None:
        path = self.record_path(record["name"])
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, json.dumps(record, indent=2, default=str) + "\n")
