"""Experiment configuration as data: presets, YAML files, command-line overrides, validation.

Precedence, lowest first:
  1. the preset (`--preset`, else the config file's `preset:` key, else `quick`), a YAML file
     shipped in srkd_ext/presets/;
  2. the config file (`--config FILE`): mappings merge key by key, lists replace;
  3. command-line flags (`--dataset`, `--seed`, `--device`, ...), then `--set key.path=value`
     in the order given.

The resolved configuration is validated as a whole (every mistake is a `UserError` naming the
key) and saved next to the results; its fingerprint (everything that changes the numbers, i.e.
all but `out` and `device`) tells a rerun in the same folder whether it is the same experiment.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from srkd_ext.experiment.errors import UserError

PRESETS = ("quick", "paper")
DEFAULT_PRESET = "quick"

# Keys that do not change the experiment's numbers, so a rerun may change them and still resume.
NOT_FINGERPRINTED = ("out", "device", "preset")

ARCHITECTURES = ("sasrec", "gru4rec", "caser", "srcd")
PROTOCOLS = ("full", "sampled")
TEACHER_WEIGHTS = ("uniform", "confidence")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")

# The keys each section may hold (hparams are free-form: they go to build_model).
_SECTION_KEYS = {
    "dataset": {"source", "format", "min_rating", "k_core"},
    "evaluation": {"protocol", "mask_seen", "ks", "num_negatives"},
    "kd": {"temperature", "alpha"},
    "srms": {"top_k", "gate_rank", "weights", "teacher_cache"},
    "profile": {"repeats", "warmup"},
}
_TOP_KEYS = {
    "preset", "seed", "device", "out", "dataset", "max_len", "evaluation", "train", "kd", "srms", "profile",
    "teachers", "student", "srcd",
}
_MODEL_KEYS = {"name", "arch", "hparams", "train"}
# Training options and the check each value must pass. These are the options of
# srkd_ext.train.TrainConfig that an experiment sets; others keep the trainer's defaults.
_TRAIN_KEYS = {
    "epochs": ("a positive integer", lambda v: _is_int(v) and v > 0),
    "batch_size": ("a positive integer", lambda v: _is_int(v) and v > 0),
    "lr": ("a positive number", lambda v: _is_number(v) and v > 0),
    "patience": ("a positive integer", lambda v: _is_int(v) and v > 0),
    "weight_decay": ("a non-negative number", lambda v: _is_number(v) and v >= 0),
    "windows": ("last or all", lambda v: v in ("last", "all")),
}


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _yaml_load(text: str, where: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        if mark is not None:
            raise UserError(f"{where}:{mark.line + 1}: invalid YAML: {problem}") from None
        raise UserError(f"{where}: invalid YAML: {problem}") from None


def load_preset(name: str) -> dict:
    """The preset `name` as a fresh dict."""
    if name not in PRESETS:
        raise UserError(f"--preset: unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    text = resources.files("srkd_ext.presets").joinpath(f"{name}.yaml").read_text()
    cfg = _yaml_load(text, f"preset {name}")
    cfg["preset"] = name
    return cfg


def load_config_file(path: str | Path) -> dict:
    """Reads a YAML experiment file (a mapping); errors name the file and line."""
    p = Path(path)
    if not p.exists():
        raise UserError(f"--config: file not found: {p}")
    if p.is_dir():
        raise UserError(f"--config: {p} is a directory, not a YAML file")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"--config: cannot read {p}: {exc}") from None
    data = _yaml_load(text, str(p))
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"{p}: an experiment file must be a mapping of keys (got {type(data).__name__})")
    return data


def deep_merge(base: dict, override: dict) -> dict:
    """`override` on top of `base`: mappings merge recursively, everything else replaces."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def parse_set_option(text: str) -> tuple[list[str], Any]:
    """`key.path=value` -> (["key", "path"], value parsed as YAML)."""
    if "=" not in text:
        raise UserError(f"--set: expected KEY.PATH=VALUE, got {text!r}")
    key, raw = text.split("=", 1)
    parts = key.strip().split(".")
    if not key.strip() or any(not part for part in parts):
        raise UserError(f"--set: bad key {key!r} in {text!r} (use dots between keys, e.g. kd.alpha=0.3)")
    value = _yaml_load(raw, f"--set {key}") if raw.strip() else None
    return parts, value


def set_path(cfg: dict, parts: list[str], value: Any, origin: str) -> None:
    """Sets cfg[parts[0]][parts[1]]...; list items are addressed by index (teachers.0.arch)."""
    node: Any = cfg
    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        where = ".".join(parts[: depth + 1])
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise UserError(f"{origin}: {where}: index {part} out of range (the list has {len(node)} items)")
            idx = int(part)
            if last:
                node[idx] = value
            else:
                node = node[idx]
        elif isinstance(node, dict):
            if last:
                node[part] = value
            else:
                if part not in node or node[part] is None:
                    node[part] = {}
                node = node[part]
        else:
            raise UserError(f"{origin}: {'.'.join(parts[:depth])} is a value, not a section")


def resolve_config(
    preset: str | None = None,
    config_file: str | Path | None = None,
    flags: dict[str, Any] | None = None,
    set_options: list[str] | None = None,
    epochs: int | None = None,
) -> dict:
    """Preset < config file < flags < --set, validated. `flags` maps dotted keys to values
    (None values are flags the user did not give); `epochs` (--epochs) sets the epochs of every
    model, including models whose own `train:` names them."""
    file_cfg = load_config_file(config_file) if config_file is not None else {}
    base_name = preset or file_cfg.get("preset") or DEFAULT_PRESET
    if not isinstance(base_name, str):
        raise UserError(f"{config_file}: preset must be one of {', '.join(PRESETS)}, got {base_name!r}")
    if preset is None and "preset" in file_cfg and base_name not in PRESETS:
        raise UserError(f"{config_file}: preset: unknown preset {base_name!r}; choose one of {', '.join(PRESETS)}")
    cfg = load_preset(base_name)
    if file_cfg:
        _check_keys(file_cfg, str(config_file))
        cfg = deep_merge(cfg, file_cfg)
        cfg["preset"] = base_name
    for key, value in (flags or {}).items():
        if value is not None:
            set_path(cfg, key.split("."), value, "command line")
    for text in set_options or []:
        parts, value = parse_set_option(text)
        set_path(cfg, parts, value, f"--set {text}")
    if epochs is not None:
        cfg.setdefault("train", {})["epochs"] = epochs
        models = [*cfg.get("teachers", []), cfg.get("student"), cfg.get("srcd")]
        for model in models:
            if isinstance(model, dict) and isinstance(model.get("train"), dict) and "epochs" in model["train"]:
                model["train"]["epochs"] = epochs
    _check_keys(cfg, "configuration")
    validate_config(cfg)
    return cfg


def _check_keys(cfg: dict, origin: str) -> None:
    unknown = sorted(set(cfg) - _TOP_KEYS)
    if unknown:
        raise UserError(f"{origin}: unknown key {unknown[0]!r} (known: {', '.join(sorted(_TOP_KEYS))})")
    for section, keys in _SECTION_KEYS.items():
        value = cfg.get(section)
        if isinstance(value, dict):
            bad = sorted(set(value) - keys)
            if bad:
                raise UserError(f"{origin}: unknown key '{section}.{bad[0]}' (known: {', '.join(sorted(keys))})")
    if isinstance(cfg.get("train"), dict):
        _check_train_keys(cfg["train"], "train", origin)
    models = cfg.get("teachers")
    entries = [(f"teachers.{i}", m) for i, m in enumerate(models)] if isinstance(models, list) else []
    entries += [(key, cfg[key]) for key in ("student", "srcd") if key in cfg]
    for where, model in entries:
        if isinstance(model, dict):
            bad = sorted(set(model) - _MODEL_KEYS)
            if bad:
                raise UserError(f"{origin}: unknown key '{where}.{bad[0]}' (known: {', '.join(sorted(_MODEL_KEYS))})")
            if isinstance(model.get("train"), dict):
                _check_train_keys(model["train"], f"{where}.train", origin)


def _check_train_keys(train: dict, where: str, origin: str) -> None:
    bad = sorted(set(train) - set(_TRAIN_KEYS))
    if bad:
        raise UserError(f"{origin}: unknown key '{where}.{bad[0]}' (known: {', '.join(sorted(_TRAIN_KEYS))})")


def _require(ok: bool, key: str, expected: str, value: Any) -> None:
    if not ok:
        raise UserError(f"configuration: {key} must be {expected}, got {value!r}")


def _check_train(train: Any, where: str) -> None:
    _require(isinstance(train, dict), where, "a mapping of training options", train)
    for key, value in train.items():
        expected, ok = _TRAIN_KEYS[key]
        _require(ok(value), f"{where}.{key}", expected, value)


def _check_model(model: Any, where: str, allowed_archs: tuple[str, ...]) -> None:
    _require(isinstance(model, dict), where, "a mapping with arch and hparams", model)
    _require(model.get("arch") in allowed_archs, f"{where}.arch", f"one of {', '.join(allowed_archs)}",
             model.get("arch"))
    hparams = model.get("hparams", {})
    _require(isinstance(hparams, dict), f"{where}.hparams", "a mapping of model options", hparams)
    if "train" in model:
        _check_train(model["train"], f"{where}.train")


def validate_config(cfg: dict) -> None:
    """Raises UserError naming the first key whose value is wrong."""
    _require(_is_int(cfg.get("seed")) and cfg["seed"] >= 0, "seed", "a non-negative integer", cfg.get("seed"))
    _require(cfg.get("device") in ("cpu", "cuda"), "device", "cpu or cuda", cfg.get("device"))
    _require(_is_int(cfg.get("max_len")) and cfg["max_len"] > 0, "max_len", "a positive integer",
             cfg.get("max_len"))

    ds = cfg.get("dataset")
    _require(isinstance(ds, dict), "dataset", "a mapping (source, format, min_rating, k_core)", ds)
    _require(isinstance(ds.get("source"), str) and ds["source"].strip() != "", "dataset.source",
             "a dataset name or a file path", ds.get("source"))
    _require(ds.get("format") is None or isinstance(ds["format"], str), "dataset.format",
             "a format name or null", ds.get("format"))
    _require(ds.get("min_rating") is None or _is_number(ds["min_rating"]), "dataset.min_rating",
             "a number or null", ds.get("min_rating"))
    _require(_is_int(ds.get("k_core", 0)) and ds.get("k_core", 0) >= 0, "dataset.k_core",
             "a non-negative integer", ds.get("k_core"))

    ev = cfg.get("evaluation")
    _require(isinstance(ev, dict), "evaluation", "a mapping", ev)
    _require(ev.get("protocol") in PROTOCOLS, "evaluation.protocol", " or ".join(PROTOCOLS), ev.get("protocol"))
    _require(isinstance(ev.get("mask_seen"), bool), "evaluation.mask_seen", "true or false", ev.get("mask_seen"))
    ks = ev.get("ks")
    _require(isinstance(ks, list) and len(ks) > 0 and all(_is_int(k) and k > 0 for k in ks) and 10 in ks,
             "evaluation.ks", "a list of positive integers that includes 10", ks)
    _require(_is_int(ev.get("num_negatives")) and ev["num_negatives"] > 0, "evaluation.num_negatives",
             "a positive integer", ev.get("num_negatives"))

    _check_train(cfg.get("train"), "train")
    for key in ("epochs", "batch_size", "lr", "patience"):
        _require(key in cfg["train"], f"train.{key}", "set (in the preset or config file)", None)

    kd = cfg.get("kd")
    _require(isinstance(kd, dict), "kd", "a mapping (temperature, alpha)", kd)
    _require(_is_number(kd.get("temperature")) and kd["temperature"] > 0, "kd.temperature",
             "a positive number", kd.get("temperature"))
    _require(_is_number(kd.get("alpha")) and 0 <= kd["alpha"] <= 1, "kd.alpha", "a number in [0, 1]",
             kd.get("alpha"))

    srms = cfg.get("srms")
    _require(isinstance(srms, dict), "srms", "a mapping (top_k, gate_rank, weights)", srms)
    _require(srms.get("top_k") is None or (_is_int(srms["top_k"]) and srms["top_k"] > 0), "srms.top_k",
             "a positive integer or null (all items)", srms.get("top_k"))
    _require(srms.get("gate_rank") is None or (_is_int(srms["gate_rank"]) and srms["gate_rank"] > 0),
             "srms.gate_rank", "a positive integer or null (no gating)", srms.get("gate_rank"))
    _require(isinstance(srms.get("teacher_cache", False), bool), "srms.teacher_cache", "true or false",
             srms.get("teacher_cache"))
    _require(not (srms.get("teacher_cache") and srms.get("top_k") is None), "srms.teacher_cache",
             "false when srms.top_k is null (the cache stores each teacher's top-k)", srms.get("teacher_cache"))
    w = srms.get("weights")
    _require(w in TEACHER_WEIGHTS or (isinstance(w, list) and all(_is_number(x) and x >= 0 for x in w)
                                      and sum(w) > 0),
             "srms.weights", "uniform, confidence or a list of non-negative numbers (one per teacher)", w)

    prof = cfg.get("profile")
    _require(isinstance(prof, dict), "profile", "a mapping (repeats, warmup)", prof)
    _require(_is_int(prof.get("repeats")) and prof["repeats"] > 0, "profile.repeats", "a positive integer",
             prof.get("repeats"))
    _require(_is_int(prof.get("warmup")) and prof["warmup"] >= 0, "profile.warmup", "a non-negative integer",
             prof.get("warmup"))

    teachers = cfg.get("teachers")
    _require(isinstance(teachers, list) and len(teachers) >= 1, "teachers", "a non-empty list of models",
             teachers)
    # The fused KD kernels mix at most 32 teachers (kMaxTeachers); say so before any training.
    _require(len(teachers) <= 32, "teachers", "at most 32 models", f"{len(teachers)} models")
    names = set()
    for i, t in enumerate(teachers):
        _check_model(t, f"teachers.{i}", ("sasrec", "gru4rec", "caser", "srcd"))
        name = t.get("name")
        _require(isinstance(name, str) and bool(_NAME_RE.match(name)), f"teachers.{i}.name",
                 "a name of letters, digits, '.', '_' or '-'", name)
        _require(name not in names, f"teachers.{i}.name", "unique", name)
        names.add(name)
    if isinstance(w, list):
        _require(len(w) == len(teachers), "srms.weights", f"one weight per teacher ({len(teachers)})", w)
    _check_model(cfg.get("student"), "student", ("sasrec", "gru4rec", "caser"))
    _check_model(cfg.get("srcd"), "srcd", ("srcd",))
    for key in ("student", "srcd"):
        _require("name" not in cfg[key], f"{key}.name", "absent (student names are fixed by their role)",
                 cfg[key].get("name"))


def fingerprint(cfg: dict) -> str:
    """sha256 (hex, 16 chars) of everything in the configuration that changes the results."""
    relevant = {k: v for k, v in cfg.items() if k not in NOT_FINGERPRINTED}
    source = relevant.get("dataset", {}).get("source")
    if isinstance(source, str) and Path(source).expanduser().exists():
        # The file, not how it was typed: `t/x.txt`, `./t/x.txt` and `x.txt` from inside t/ are one
        # experiment (an existing path wins over a built-in name, as in the data layer).
        relevant["dataset"] = {**relevant["dataset"], "source": str(Path(source).expanduser().resolve())}
    text = json.dumps(relevant, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def model_train_options(cfg: dict, model: dict) -> dict:
    """The training options of one model: the global `train:` with the model's own on top."""
    return {**cfg["train"], **model.get("train", {})}


def dump_config(cfg: dict, path: Path) -> None:
    header = (
        "# The resolved configuration of this experiment (preset < config file < flags).\n"
        f"# fingerprint: {fingerprint(cfg)}\n"
        "# Rerun with `srkd run --config <this file>` to repeat it.\n"
    )
    path.write_text(header + yaml.safe_dump(cfg, sort_keys=False, default_flow_style=None))
