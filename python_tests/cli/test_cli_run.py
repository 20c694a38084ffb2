"""`srkd run` end to end on a tiny dataset (seconds), resuming, Ctrl-C, and the subcommands chained
on the files each writes."""

import contextlib
import io
import json
import shutil

import matplotlib.image as mpimg
import pytest
import yaml
from cli_tiny_experiment import MODEL_NAMES, write_tiny_config, write_tiny_dataset

import srkd_ext
import srkd_ext.train.trainer as trainer_module
from srkd_ext.cli import main
from srkd_ext.experiment import steps
from srkd_ext.experiment.config import fingerprint


def run_captured(*argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    data = write_tiny_dataset(root / "tiny.txt")
    cfg = write_tiny_config(root / "tiny.yaml")
    out = root / "out"
    code, stdout, stderr = run_captured("run", "--config", cfg, "--dataset", data, "--out", out)
    assert code == 0, stderr
    return {"root": root, "data": data, "cfg": cfg, "out": out, "stdout": stdout}


def test_run_writes_results_with_every_required_field(tiny_run):
    results = json.loads((tiny_run["out"] / "results.json").read_text())
    assert results["partial"] is False and results["missing_models"] == []
    assert [m["name"] for m in results["models"]] == MODEL_NAMES
    assert results["dataset"]["sha256"] and len(results["dataset"]["sha256"]) == 64
    assert results["protocol"]["ranking"] == "full" and results["protocol"]["mask_seen"] is False
    assert results["seed"] == 0
    assert results["versions"]["torch"] and results["versions"]["srkd_ext"] == srkd_ext.__version__
    assert results["kernels"]["compiled"] == srkd_ext.kernels_available()
    for m in results["models"]:
        for metric in ("HR@10", "NDCG@10", "MRR@10", "HR@5", "NDCG@20"):
            assert 0.0 <= m["test"][metric] <= 1.0
        for key in ("params", "size_mb", "latency_ms_batch1", "throughput_batch256"):
            assert m["profile"][key] > 0
        assert m["compression_ratio"] > 0 and m["ndcg10_kept"] is not None
        assert len(m["history"]) == m["epochs_run"] >= 1
        assert (tiny_run["out"] / m["checkpoint"]).is_file()
    by_name = {m["name"]: m for m in results["models"]}
    assert by_name["student-kd"]["kd"]["teachers"] == [results["best_teacher"]]
    assert by_name["student-kd"]["kd"]["top_k"] is None
    assert by_name["student-srms"]["kd"]["teachers"] == ["t-sasrec", "t-sasrec-small", "t-gru"]
    assert by_name["student-srms"]["kd"]["top_k"] == 5
    assert by_name["student"]["kd"] is None and by_name["srcd"]["kd"] is None


def test_resolved_config_is_saved_next_to_results(tiny_run):
    text = (tiny_run["out"] / "config.yaml").read_text()
    saved = yaml.safe_load(text)
    results = json.loads((tiny_run["out"] / "results.json").read_text())
    assert saved["train"]["epochs"] == 2 and saved["dataset"]["source"] == str(tiny_run["data"])
    assert fingerprint(saved) == results["config_fingerprint"]
    assert f"fingerprint: {results['config_fingerprint']}" in text


def test_report_and_plots_are_written(tiny_run):
    out = tiny_run["out"]
    md = (out / "report.md").read_text()
    for name in MODEL_NAMES:
        assert f"| {name} |" in md
    assert "full ranking" in md and "not masked" in md and "Partial" not in md
    for png in ("accuracy_vs_params.png", "validation_ndcg.png"):
        image = mpimg.imread(out / png)
        assert image.shape[0] >= 500 and image.std() > 0.05


def test_final_table_is_printed_last(tiny_run):
    lines = tiny_run["stdout"].strip().splitlines()
    assert lines[-1].startswith("report:")
    table_start = max(i for i, line in enumerate(lines) if line.startswith("model "))
    assert [line.split()[0] for line in lines[table_start + 2 : table_start + 2 + len(MODEL_NAMES)]] == MODEL_NAMES
    # one summary line per finished model before the table
    assert sum(1 for line in lines if line.startswith("[")) == len(MODEL_NAMES)


def test_rerun_of_a_finished_experiment_trains_nothing(tiny_run, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a finished model was trained again")

    monkeypatch.setattr(steps, "train_model", refuse)
    code, stdout, stderr = run_captured("run", "--config", tiny_run["cfg"], "--dataset", tiny_run["data"],
                                        "--out", tiny_run["out"])
    assert code == 0, stderr
    assert stdout.count("finished in an earlier run") == len(MODEL_NAMES)


def test_out_holding_a_different_experiment_is_refused(tiny_run):
    code, _, stderr = run_captured("run", "--config", tiny_run["cfg"], "--dataset", tiny_run["data"],
                                   "--out", tiny_run["out"], "--seed", "5")
    assert code == 2
    assert len(stderr.strip().splitlines()) == 1
    assert "different experiment" in stderr and "'seed'" in stderr


def test_changed_dataset_file_is_refused(tiny_run, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(tiny_run["out"], out)
    data = tmp_path / "tiny.txt"
    shutil.copy(tiny_run["data"], data)
    marker = json.loads((out / "experiment.json").read_text())
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    cfg["dataset"]["source"] = str(data)
    (out / "config.yaml").write_text(yaml.safe_dump(cfg))
    marker["fingerprint"] = fingerprint(cfg)
    (out / "experiment.json").write_text(json.dumps(marker))
    with open(data, "a") as f:
        f.write("999 1 2 3 4\n")
    code, _, stderr = run_captured("run", "--config", tiny_run["cfg"], "--dataset", data, "--out", out)
    assert code == 2 and "different version" in stderr


def test_stale_teacher_cache_is_one_line_naming_the_folder(tiny_run, tmp_path):
    # As after a teacher was retrained: the experiment's cache no longer matches its teachers.
    out = tmp_path / "out"
    shutil.copytree(tiny_run["out"], out)
    meta_path = out / "teacher_cache" / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta["teachers"][0] = "0" * 64
    meta_path.write_text(json.dumps(meta))
    shutil.rmtree(out / "models" / "student-srms")
    code, _, stderr = run_captured("run", "--config", tiny_run["cfg"], "--dataset", tiny_run["data"], "--out", out)
    assert code == 2, stderr
    assert len(stderr.strip().splitlines()) == 1
    assert "teacher_cache is stale" in stderr and "delete the directory" in stderr


def test_ctrl_c_keeps_finished_models_writes_partial_report_and_rerun_resumes(tiny_run, tmp_path, monkeypatch):
    out = tmp_path / "out"
    shutil.copytree(tiny_run["out"], out)
    unfinished = ["student-srms", "srcd-srms", "srcd"]
    for name in unfinished:
        shutil.rmtree(out / "models" / name)
    (out / "results.json").unlink()

    real_run_epoch = trainer_module._run_epoch

    def interrupt_in_epoch_2(model, split, cfg, objective, optimizer, epoch, device, progress):
        if epoch == 2:
            raise KeyboardInterrupt
        return real_run_epoch(model, split, cfg, objective, optimizer, epoch, device, progress)

    monkeypatch.setattr(trainer_module, "_run_epoch", interrupt_in_epoch_2)
    argv = ("run", "--config", tiny_run["cfg"], "--dataset", tiny_run["data"], "--out", out)
    code, _, stderr = run_captured(*argv)
    assert code == 130
    assert "interrupted" in stderr and "Run the same command again to resume" in stderr
    results = json.loads((out / "results.json").read_text())
    assert results["partial"] is True and results["missing_models"] == unfinished
    assert [m["name"] for m in results["models"]] == MODEL_NAMES[:5]
    assert "Partial report" in (out / "report.md").read_text()
    assert (out / "models" / "student-srms" / "last.pt").is_file()  # epoch 1 of the interrupted model
    assert not (out / "models" / "student-srms" / "record.json").exists()
    for name in MODEL_NAMES[:5]:
        assert (out / "models" / name / "best.pt").is_file()

    monkeypatch.setattr(trainer_module, "_run_epoch", real_run_epoch)
    trained = []
    real_train_model = steps.train_model

    def counting(model, split, cfg, out_dir, **kwargs):
        trained.append(out_dir.name)
        return real_train_model(model, split, cfg, out_dir, **kwargs)

    monkeypatch.setattr(steps, "train_model", counting)
    code, stdout, stderr = run_captured(*argv)
    assert code == 0, stderr
    assert trained == unfinished
    results = json.loads((out / "results.json").read_text())
    assert results["partial"] is False
    srms = next(m for m in results["models"] if m["name"] == "student-srms")
    assert [h["epoch"] for h in srms["history"]] == [1, 2]  # epoch 1 came from the interrupted run


def test_subcommands_work_on_each_others_files(tiny_run, tmp_path):
    data, models = tiny_run["data"], tiny_run["out"] / "models"
    code, stdout, _ = run_captured("data", data, "--json")
    assert code == 0 and json.loads(stdout)["users"] == 60

    code, stdout, stderr = run_captured("train", "--dataset", data, "--arch", "sasrec", "--hparam", "hidden_dim=8",
                                        "--hparam", "num_heads=1", "--max-len", 8, "--epochs", 1, "--batch-size", 16,
                                        "--windows", "last", "--out", tmp_path / "teacher", "--no-progress")
    assert code == 0, stderr
    assert (tmp_path / "teacher" / "best.pt").is_file()
    teacher_metrics = json.loads((tmp_path / "teacher" / "metrics.json").read_text())
    assert teacher_metrics["test"]["NDCG@10"] >= 0 and teacher_metrics["windows"] == "last"

    code, stdout, stderr = run_captured(
        "distill", "--dataset", data, "--teacher", tmp_path / "teacher" / "best.pt", "--teacher", models / "t-gru",
        "--hparam", "hidden_dim=4", "--hparam", "num_heads=1", "--max-len", 8, "--top-k", 5, "--epochs", 1,
        "--batch-size", 16, "--out", tmp_path / "student", "--no-progress")
    assert code == 0, stderr
    metrics = json.loads((tmp_path / "student" / "metrics.json").read_text())
    assert metrics["kd"]["top_k"] == 5 and len(metrics["kd"]["teachers"]) == 2

    code, stdout, stderr = run_captured("evaluate", "--dataset", data, "--checkpoint", tmp_path / "student",
                                        "--json", tmp_path / "eval.json")
    assert code == 0, stderr
    evaluated = json.loads((tmp_path / "eval.json").read_text())
    assert evaluated["metrics"]["NDCG@10"] == pytest.approx(metrics["test"]["NDCG@10"], abs=1e-6)
    code, stdout, stderr = run_captured("evaluate", "--dataset", data, "--checkpoint", tmp_path / "student",
                                        "--protocol", "sampled", "--num-negatives", 20, "--split", "valid")
    assert code == 0, stderr
    assert "20 sampled negatives" in stdout
    code, _, stderr = run_captured("evaluate", "--dataset", data, "--checkpoint", tmp_path / "student",
                                   "--protocol", "sampled")
    assert code == 2 and "100 sampled negatives need" in stderr

    code, stdout, stderr = run_captured("export", "--checkpoint", models / "student" / "best.pt",
                                        "--out", tmp_path / "student.pt2")
    assert code == 0, stderr and (tmp_path / "student.pt2").is_file()

    code, stdout, stderr = run_captured("bench", models / "student" / "best.pt", models / "t-sasrec",
                                        "--json", tmp_path / "bench.json")
    assert code == 0, stderr
    rows = json.loads((tmp_path / "bench.json").read_text())
    assert rows[0]["params"] < rows[1]["params"]


def test_same_seed_gives_the_same_model_from_a_fresh_process_state(tiny_run, tmp_path):
    # The trainer seeds only training; the initial weights must come from --seed as well, or the
    # first model of every run starts from whatever the global RNG holds.
    import torch

    logs = []
    for i in range(2):
        torch.manual_seed(1000 + i)  # a different global RNG state before each command
        code, _, stderr = run_captured("train", "--dataset", tiny_run["data"], "--arch", "sasrec", "--hparam",
                                       "hidden_dim=8", "--hparam", "num_heads=1", "--max-len", 8, "--epochs", 1,
                                       "--batch-size", 16, "--seed", 3, "--out", tmp_path / f"m{i}", "--no-progress")
        assert code == 0, stderr
        logs.append(json.loads((tmp_path / f"m{i}" / "train_log.jsonl").read_text().splitlines()[0]))
    assert logs[0]["loss"] == logs[1]["loss"] and logs[0]["valid"] == logs[1]["valid"]


def test_checkpoint_from_another_catalogue_is_refused(tiny_run, tmp_path):
    other = write_tiny_dataset(tmp_path / "other.txt", items=20)
    code, _, stderr = run_captured("evaluate", "--dataset", other, "--checkpoint",
                                   tiny_run["out"] / "models" / "student")
    assert code == 2 and "catalogue of 30 items" in stderr and len(stderr.strip().splitlines()) == 1
