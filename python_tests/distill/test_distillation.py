"""SRMS / KD training on real data, teachers on the fly or through the top-k cache."""

import pytest
import torch
from ml100k_slice import MAX_LEN, ml100k_slice, trained_teachers

from srkd_ext.data import training_batches
from srkd_ext.distill import KDConfig, make_distillation_objective
from srkd_ext.distill.teacher_cache import StaleTeacherCacheError, TeacherTopKCache
from srkd_ext.models import build_model, model_checksum
from srkd_ext.train import TrainConfig, evaluate, seed_everything, train


@pytest.fixture(scope="module")
def split(shared_data_dir, tmp_path_factory):
    return ml100k_slice(shared_data_dir, tmp_path_factory.mktemp("slice"))


@pytest.fixture(scope="module")
def teachers(split, tmp_path_factory):
    return trained_teachers(split, tmp_path_factory.mktemp("teachers"))


def student(split, arch="sasrec"):
    seed_everything(7)
    hparams = {"hidden_dim": 8, "num_heads": 1} if arch == "sasrec" else {"hidden_dim": 8, "num_heads": 1, "cross_heads": 1}
    return build_model(arch, split.num_items, MAX_LEN, dropout=0.1, **hparams)


def config(epochs, **overrides):
    # windows="last" keeps these runs short; "all" is covered by python_tests/train.
    return TrainConfig(
        **{"epochs": epochs, "batch_size": 64, "max_len": MAX_LEN, "lr": 5e-3, "patience": None, "windows": "last", **overrides}
    )


@pytest.mark.shared_data
@pytest.mark.parametrize("arch", ["sasrec", "srcd"])
def test_two_epoch_srms_run_lowers_the_validation_loss(split, teachers, tmp_path, arch):
    model = student(split, arch)
    before = evaluate(model, split.valid, split.num_items, max_len=MAX_LEN)["loss"]
    kd = KDConfig(temperature=2.0, top_k=20, gate_rank=100, teacher_weights="confidence", alpha=0.5)
    result = train(model, split, config(2), tmp_path, teachers=teachers, kd=kd, progress=False)
    after = [r["valid"]["loss"] for r in result.history]
    assert after[-1] < before, f"validation loss {before:.4f} -> {after}"
    record = result.history[-1]
    assert {"ce", "kd", "teacher_active"} <= set(record) and len(record["teacher_active"]) == 3
    assert all(0.0 <= a <= 1.0 for a in record["teacher_active"]) and record["kd"] > 0


@pytest.mark.shared_data
def test_plain_single_teacher_kd_is_the_same_code(split, teachers, tmp_path):
    kd = KDConfig(temperature=2.0, top_k=None, alpha=0.5)
    result = train(student(split), split, config(1), tmp_path, teachers=teachers[:1], kd=kd, progress=False)
    assert result.history[0]["teacher_active"] == [1.0]


@pytest.mark.shared_data
def test_cache_holds_each_teachers_top_k_at_every_training_position(split, teachers, tmp_path):
    checksums = [model_checksum(t) for t in teachers]
    cache = TeacherTopKCache.build(tmp_path / "cache", teachers, checksums, train=split.train, num_items=split.num_items, max_len=MAX_LEN, top_k=6, progress=False)
    batch = next(iter(training_batches(split.train, MAX_LEN, 16, shuffle=True, seed=3)))
    valid = batch.targets != 0
    cached = cache.lookup(batch.users, valid, "cpu")
    assert cached.indices.shape == (3, int(valid.sum()), 6)
    with torch.no_grad():
        for t, teacher in enumerate(teachers):
            scores = teacher.score_items(teacher(batch.inputs)[valid])
            torch.testing.assert_close(cached.logits[t], scores.topk(6, dim=1).values, rtol=1e-5, atol=1e-5)
            assert torch.equal(scores.gather(1, cached.indices[t]), cached.logits[t])


@pytest.mark.shared_data
# A gate beyond top_k (the Beauty experiment's top 100 gated at rank 200) needs a cache of gate_rank items.
@pytest.mark.parametrize("top_k,gate_rank", [(8, 8), (4, 20)])
def test_cached_and_on_the_fly_teachers_give_the_same_loss(split, teachers, tmp_path, top_k, gate_rank):
    kd = KDConfig(temperature=2.0, top_k=top_k, gate_rank=gate_rank, alpha=0.3)
    common = {"train": split.train, "num_items": split.num_items, "max_len": MAX_LEN, "batch_size": 64, "device": "cpu", "progress": False}
    on_the_fly = make_distillation_objective(teachers, kd, **common)
    cached = make_distillation_objective(teachers, KDConfig(**{**kd.to_dict(), "cache_dir": str(tmp_path / "c")}), **common)
    model = student(split).eval()
    for batch in list(training_batches(split.train, MAX_LEN, 32, shuffle=True, seed=1))[:2]:
        torch.testing.assert_close(cached(model, batch), on_the_fly(model, batch), rtol=1e-5, atol=1e-6)


@pytest.mark.shared_data
def test_stale_cache_is_refused(split, teachers, tmp_path):
    checksums = [model_checksum(t) for t in teachers[:2]]
    path = tmp_path / "cache"
    TeacherTopKCache.build(path, teachers[:2], checksums, train=split.train, num_items=split.num_items, max_len=MAX_LEN, top_k=4, progress=False)
    TeacherTopKCache.open(path, checksums, split.train, split.num_items, MAX_LEN, top_k=4)  # still valid
    changed = build_model(**teachers[1].config)
    changed.load_state_dict(teachers[1].state_dict())
    with torch.no_grad():
        changed.item_embedding.weight[1, 0] += 0.5
    with pytest.raises(StaleTeacherCacheError, match="checksums"):
        TeacherTopKCache.open(path, [checksums[0], model_checksum(changed)], split.train, split.num_items, MAX_LEN, top_k=4)
    with pytest.raises(StaleTeacherCacheError, match="max_len"):
        TeacherTopKCache.open(path, checksums, split.train, split.num_items, MAX_LEN - 1, top_k=4)
    with pytest.raises(StaleTeacherCacheError, match="top 4"):
        TeacherTopKCache.open(path, checksums, split.train, split.num_items, MAX_LEN, top_k=5)
    kd = KDConfig(top_k=4, cache_dir=str(path))
    with pytest.raises(StaleTeacherCacheError):
        train(student(split), split, config(1), tmp_path / "run", teachers=[teachers[0], changed], kd=kd, progress=False)


@pytest.mark.shared_data
def test_distillation_arguments_are_checked(split, teachers, tmp_path):
    with pytest.raises(ValueError, match="teachers"):
        train(student(split), split, config(1), tmp_path, kd=KDConfig(), progress=False)
    other = build_model("sasrec", split.num_items + 1, MAX_LEN, hidden_dim=8, num_heads=1)
    with pytest.raises(ValueError, match="teachers\\[1\\]"):
        train(student(split), split, config(1), tmp_path, teachers=[teachers[0], other], progress=False)
    with pytest.raises(ValueError, match="teacher_weights"):
        train(student(split), split, config(1), tmp_path, teachers=teachers, kd=KDConfig(teacher_weights=[1.0, 2.0]), progress=False)
    with pytest.raises(ValueError, match="top_k"):
        KDConfig(cache_dir=str(tmp_path / "c"))
    with pytest.raises(ValueError, match="alpha"):
        KDConfig(alpha=1.5)
    with pytest.raises(ValueError, match="teacher_weights"):
        KDConfig(teacher_weights="entropy")


@pytest.mark.shared_data
def test_training_through_the_cache_follows_the_on_the_fly_run(split, teachers, tmp_path):
    # windows="all": the cache is keyed by the rows of the windowed training set.
    kd = KDConfig(temperature=2.0, top_k=10, gate_rank=10, alpha=0.5)
    cfg = config(1, windows="all")
    on_the_fly = train(student(split), split, cfg, tmp_path / "a", teachers=teachers, kd=kd, progress=False)
    cached_kd = KDConfig(**{**kd.to_dict(), "cache_dir": str(tmp_path / "cache")})
    cached = train(student(split), split, cfg, tmp_path / "b", teachers=teachers, kd=cached_kd, progress=False)
    assert (tmp_path / "cache" / "meta.json").exists()
    for a, b in zip(on_the_fly.history, cached.history, strict=True):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-4)
        assert b["valid"]["loss"] == pytest.approx(a["valid"]["loss"], rel=1e-4)
