"""`srkd compare`: several runs' results.json -> mean ± sd per model, with its error paths."""

import json

import pytest
from cli_synthetic_results import synthetic_meta, synthetic_records

from srkd_ext.cli import EXIT_USER_ERROR, main
from srkd_ext.experiment.report import build_results, write_results_json

NAMES = [r["name"] for r in synthetic_records()]


def _write_run(folder, seed, ndcg_shift=0.0, sha=None, drop=()):
    records = [r for r in synthetic_records() if r["name"] not in drop]
    for r in records:
        r["test"] = {k: v + ndcg_shift for k, v in r["test"].items()}
    meta = {**synthetic_meta(), "seed": seed}
    if sha is not None:
        meta["dataset"] = {**meta["dataset"], "sha256": sha}
    folder.mkdir()
    write_results_json(folder / "results.json", build_results(meta, records, partial=bool(drop), expected_models=NAMES))
    return str(folder)


def test_mean_and_sample_sd_over_runs(tmp_path, capsys):
    runs = [_write_run(tmp_path / f"s{seed}", seed, shift) for seed, shift in ((0, 0.0), (1, 0.002), (2, 0.004))]
    out_md = tmp_path / "table.md"
    assert main(["compare", *runs, "--markdown", str(out_md)]) == 0
    printed = capsys.readouterr().out
    row = next(line for line in printed.splitlines() if line.startswith("| student-srms |"))
    # NDCG@10 0.072, 0.074, 0.076: mean 0.074, sample sd 0.002.
    assert "| 0.0740 ± 0.0020 |" in row
    assert row.endswith("| 0.0720 / 0.0740 / 0.0760 |")
    assert "seeds 0, 1, 2" in printed and "full ranking over all items, seen items not masked; 3 runs" in printed
    assert out_md.read_text().strip() == printed.strip()


def test_a_model_missing_from_a_partial_run_is_averaged_over_the_others(tmp_path, capsys):
    runs = [_write_run(tmp_path / "a", 0), _write_run(tmp_path / "b", 1, 0.01, drop=("srcd",))]
    assert main(["compare", *runs]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("| srcd |"))
    assert "| 1 |" in row and row.endswith("| 0.0520 / - |")


def test_runs_of_another_dataset_are_refused(tmp_path, capsys):
    runs = [_write_run(tmp_path / "a", 0), _write_run(tmp_path / "b", 1, sha="cd" * 32)]
    assert main(["compare", *runs]) == EXIT_USER_ERROR
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "another dataset" in err and str(tmp_path / "b") in err


@pytest.mark.parametrize("content", [None, "{not json", json.dumps({"models": 3}), "[1, 2]"])
def test_a_folder_without_results_is_one_line_error(tmp_path, capsys, content):
    folder = tmp_path / "run"
    folder.mkdir()
    if content is not None:
        (folder / "results.json").write_text(content)
    assert main(["compare", str(folder)]) == EXIT_USER_ERROR
    err = capsys.readouterr().err
    assert err.startswith("srkd compare: error:") and err.count("\n") == 1 and "Traceback" not in err
