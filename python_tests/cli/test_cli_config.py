"""Configuration as data: presets, files, flags and --set, in that order of precedence."""

import pytest

from srkd_ext.experiment.config import (
    fingerprint,
    load_preset,
    model_train_options,
    resolve_config,
)
from srkd_ext.experiment.errors import UserError


def test_presets_load_and_validate():
    for name in ("quick", "paper"):
        cfg = resolve_config(preset=name)
        assert cfg["preset"] == name
        assert len(cfg["teachers"]) >= 3
        assert len({t["arch"] for t in cfg["teachers"]}) >= 2


def test_default_preset_is_quick_on_ml100k():
    cfg = resolve_config()
    assert cfg["preset"] == "quick" and cfg["dataset"]["source"] == "ml-100k"


def test_precedence_preset_then_file_then_flags_then_set(tmp_path):
    f = tmp_path / "exp.yaml"
    f.write_text("seed: 7\nkd: {alpha: 0.2}\ntrain: {epochs: 3}\ndataset: {source: file.txt}\n")
    cfg = resolve_config(config_file=f)
    assert cfg["seed"] == 7 and cfg["kd"]["alpha"] == 0.2 and cfg["train"]["epochs"] == 3
    assert cfg["kd"]["temperature"] == load_preset("quick")["kd"]["temperature"]  # merged, not replaced
    cfg = resolve_config(config_file=f, flags={"seed": 11, "dataset.source": None})
    assert cfg["seed"] == 11 and cfg["dataset"]["source"] == "file.txt"  # None = flag not given
    cfg = resolve_config(config_file=f, flags={"seed": 11}, set_options=["seed=12", "kd.alpha=0.9"])
    assert cfg["seed"] == 12 and cfg["kd"]["alpha"] == 0.9


def test_config_file_may_pick_the_paper_preset_and_flag_preset_wins(tmp_path):
    f = tmp_path / "exp.yaml"
    f.write_text("preset: paper\n")
    assert resolve_config(config_file=f)["train"]["epochs"] == load_preset("paper")["train"]["epochs"]
    assert resolve_config(preset="quick", config_file=f)["train"]["epochs"] == load_preset("quick")["train"]["epochs"]


def test_set_addresses_list_items_and_parses_yaml_values():
    cfg = resolve_config(set_options=["teachers.0.hparams.hidden_dim=32", "srms.top_k=null", "srms.teacher_cache=false",
                                      "evaluation.mask_seen=true"])
    assert cfg["teachers"][0]["hparams"]["hidden_dim"] == 32
    assert cfg["srms"]["top_k"] is None and cfg["evaluation"]["mask_seen"] is True


def test_model_train_options_override_the_global_ones():
    cfg = resolve_config(set_options=["teachers.1.train={epochs: 2}"])
    assert model_train_options(cfg, cfg["teachers"][1])["epochs"] == 2
    assert model_train_options(cfg, cfg["teachers"][0])["epochs"] == cfg["train"]["epochs"]


@pytest.mark.parametrize(
    "set_option, message",
    [
        ("kd.alpha=1.5", "kd.alpha must be a number in [0, 1], got 1.5"),
        ("kd.temperature=0", "kd.temperature must be a positive number"),
        ("srms.top_k=-3", "srms.top_k must be a positive integer or null"),
        ("srms.weights=loud", "srms.weights must be uniform, confidence"),
        ("srms.weights=[1, 2]", "srms.weights must be one weight per teacher (3)"),
        ("train.epochs=0", "train.epochs must be a positive integer"),
        ("train.lr=fast", "train.lr must be a positive number"),
        ("train.optimizer=sgd", "unknown key 'train.optimizer'"),
        ("train.windows=sometimes", "train.windows must be last or all"),
        ("teachers.0.arch=bert", "teachers.0.arch must be one of"),
        ("teachers.1.name=sasrec-d64", "teachers.1.name must be unique"),
        ("teachers.5.arch=sasrec", "index 5 out of range"),
        ("evaluation.protocol=sampledish", "evaluation.protocol must be full or sampled"),
        ("evaluation.ks=[5, 20]", "evaluation.ks must be a list of positive integers that includes 10"),
        ("seed=-1", "seed must be a non-negative integer"),
        ("device=gpu", "device must be cpu or cuda"),
        ("colour=blue", "unknown key 'colour'"),
        ("kd.beta=1", "unknown key 'kd.beta'"),
        ("kd.alpha", "expected KEY.PATH=VALUE"),
        ("kd..alpha=1", "bad key"),
        ("kd.alpha=[1", "invalid YAML"),
    ],
)
def test_invalid_values_name_the_key(set_option, message):
    with pytest.raises(UserError, match=None) as info:
        resolve_config(set_options=[set_option])
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_fingerprint_names_the_dataset_file_not_its_spelling(tmp_path, monkeypatch):
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "x.txt").write_text("1 2 3\n")
    monkeypatch.chdir(tmp_path)
    spellings = ["t/x.txt", "./t/x.txt", str(tmp_path / "t" / "x.txt")]
    prints = {fingerprint(resolve_config(flags={"dataset.source": s})) for s in spellings}
    monkeypatch.chdir(tmp_path / "t")
    prints.add(fingerprint(resolve_config(flags={"dataset.source": "x.txt"})))
    assert len(prints) == 1
    assert fingerprint(resolve_config(flags={"dataset.source": "ml-100k"})) not in prints


def test_more_teachers_than_the_kernels_mix_are_refused_before_training(tmp_path):
    f = tmp_path / "many.yaml"
    lines = [f"  - {{name: t{i}, arch: gru4rec, hparams: {{hidden_dim: 8}}}}" for i in range(33)]
    f.write_text("teachers:\n" + "\n".join(lines) + "\n")
    with pytest.raises(UserError, match="teachers must be at most 32 models, got '33 models'"):
        resolve_config(config_file=f)


def test_config_file_errors_name_the_file(tmp_path):
    with pytest.raises(UserError, match="--config: file not found"):
        resolve_config(config_file=tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("seed: 1\nkd: {alpha: 0.5\n")
    with pytest.raises(UserError, match=r"bad\.yaml:\d+: invalid YAML"):
        resolve_config(config_file=bad)
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n- 2\n")
    with pytest.raises(UserError, match="must be a mapping"):
        resolve_config(config_file=listy)
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("teachers:\n  - {name: a, arch: sasrec, hparams: {}, epochs: 3}\n")
    with pytest.raises(UserError, match=r"unknown\.yaml: unknown key 'teachers.0.epochs'"):
        resolve_config(config_file=unknown)
    with pytest.raises(UserError, match="is a directory"):
        resolve_config(config_file=tmp_path)
    wrong_preset = tmp_path / "preset.yaml"
    wrong_preset.write_text("preset: huge\n")
    with pytest.raises(UserError, match="unknown preset 'huge'"):
        resolve_config(config_file=wrong_preset)


def test_fingerprint_ignores_out_and_device_but_not_the_experiment():
    base = resolve_config()
    assert fingerprint(resolve_config(set_options=["out=elsewhere", "device=cuda"])) == fingerprint(base)
    assert fingerprint(resolve_config(set_options=["seed=1"])) != fingerprint(base)
    assert fingerprint(resolve_config(set_options=["teachers.0.hparams.hidden_dim=16"])) != fingerprint(base)


def test_epochs_flag_sets_every_model_including_per_model_overrides():
    cfg = resolve_config(epochs=2)
    assert cfg["train"]["epochs"] == 2
    assert model_train_options(cfg, cfg["student"])["epochs"] == 2
    assert model_train_options(cfg, cfg["srcd"])["epochs"] == 2
    assert all(model_train_options(cfg, t)["epochs"] == 2 for t in cfg["teachers"])
