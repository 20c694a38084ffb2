"""The training loop: learning, checkpoints, logs, early stopping, resume, reproducibility."""

import json

import pytest
import torch
from synthetic_data import synthetic_split

from srkd_ext.models import build_model, load_model
from srkd_ext.train import TrainConfig, profile_model, seed_everything, train


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    return synthetic_split(tmp_path_factory.mktemp("data"))


def fresh_model(split, arch="sasrec"):
    seed_everything(0)
    return build_model(arch, split.num_items, 8, hidden_dim=16, dropout=0.2)


def config(epochs, **overrides):
    return TrainConfig(**{"epochs": epochs, "batch_size": 16, "max_len": 8, "lr": 5e-3, "patience": None, **overrides})


def test_training_learns_and_writes_checkpoints_and_log(split, tmp_path):
    model = fresh_model(split)
    result = train(model, split, config(4), tmp_path, progress=False)
    losses = [r["loss"] for r in result.history]
    assert len(result.history) == 4 and losses[-1] < losses[0]
    assert result.history[-1]["valid"]["loss"] < result.history[0]["valid"]["loss"]
    assert 1 <= result.best_epoch <= 4
    assert result.best_valid == result.history[result.best_epoch - 1]["valid"]
    assert result.seconds > 0
    # The best checkpoint is a plain saved model (safe torch.load) and the model holds its weights.
    assert torch.load(result.checkpoint, weights_only=True)["epoch"] == result.best_epoch
    best = load_model(result.checkpoint)
    x = torch.randint(1, split.num_items + 1, (3, 8))
    model.eval()
    assert torch.equal(best.predict(x), model.predict(x))
    torch.load(tmp_path / "last.pt", weights_only=True)
    lines = [json.loads(line) for line in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    assert [line["epoch"] for line in lines] == [1, 2, 3, 4]
    assert {"loss", "valid", "train_seconds", "eval_seconds", "seconds", "best_epoch"} <= set(lines[0])
    assert "NDCG@10" in lines[0]["valid"]
    assert not list(tmp_path.glob(".*tmp*")), "temporary checkpoint files were left behind"


def test_resume_gives_the_same_result_as_an_uninterrupted_run(split, tmp_path):
    uninterrupted = train(fresh_model(split), split, config(4), tmp_path / "a", progress=False)
    train(fresh_model(split), split, config(2), tmp_path / "b", progress=False)  # "interrupted" after 2
    resumed_model = fresh_model(split)
    resumed = train(resumed_model, split, config(4), tmp_path / "b", progress=False)
    strip = lambda h: [{k: v for k, v in r.items() if "seconds" not in k} for r in h]  # noqa: E731
    assert strip(resumed.history) == strip(uninterrupted.history)
    assert resumed.best_valid == uninterrupted.best_valid
    assert resumed.best_epoch == uninterrupted.best_epoch


def test_same_seed_same_run_and_deterministic_mode(split, tmp_path):
    a = train(fresh_model(split), split, config(2, deterministic=True), tmp_path / "a", progress=False)
    assert not torch.are_deterministic_algorithms_enabled(), "deterministic mode must not leak out of train"
    b = train(fresh_model(split), split, config(2), tmp_path / "b", progress=False)
    assert [r["loss"] for r in a.history] == [r["loss"] for r in b.history]
    c = train(fresh_model(split), split, config(2, seed=1), tmp_path / "c", progress=False)
    assert [r["loss"] for r in c.history] != [r["loss"] for r in b.history]


def test_early_stopping_after_patience_epochs_without_improvement(split, tmp_path):
    # "users" never changes, so no epoch after the first improves on it.
    result = train(fresh_model(split), split, config(10, patience=2, valid_metric="users"), tmp_path, progress=False)
    assert result.stopped_early and len(result.history) == 3 and result.best_epoch == 1
    again = train(fresh_model(split), split, config(10, patience=2, valid_metric="users"), tmp_path, progress=False)
    assert len(again.history) == 3, "a finished run must not train further on resume"


def test_resume_refuses_a_different_configuration(split, tmp_path):
    train(fresh_model(split), split, config(1), tmp_path, progress=False)
    with pytest.raises(ValueError, match="'lr'"):
        train(fresh_model(split), split, config(2, lr=1e-2), tmp_path, progress=False)
    restarted = train(fresh_model(split), split, config(2, lr=1e-2), tmp_path, progress=False, resume=False)
    assert len(restarted.history) == 2


@pytest.mark.parametrize("arch", ["gru4rec", "caser", "srcd"])
def test_every_architecture_trains(split, tmp_path, arch):
    result = train(fresh_model(split, arch), split, config(2), tmp_path, progress=False)
    assert len(result.history) == 2 and all(r["loss"] > 0 for r in result.history)


def test_bad_configuration_is_refused(split, tmp_path):
    with pytest.raises(ValueError, match="epochs"):
        TrainConfig(epochs=0)
    with pytest.raises(ValueError, match="max_len"):
        train(fresh_model(split), split, config(1, max_len=9), tmp_path, progress=False)
    with pytest.raises(ValueError, match="valid_metric"):
        train(fresh_model(split), split, config(1, valid_metric="AUC"), tmp_path, progress=False)


def test_profile_reports_size_and_speed(split):
    profile = profile_model(fresh_model(split), batch_sizes=(1, 4), repeats=2, warmup=1)
    assert profile["params"] == fresh_model(split).num_parameters()
    assert profile["size_mb"] > 0
    assert profile["latency_ms_batch1"] > 0 and profile["throughput_batch4"] > 0
