"""The report writer and plots on synthetic records (no training)."""

import json

import matplotlib.image as mpimg
import pytest
from cli_synthetic_results import synthetic_meta, synthetic_records

from srkd_ext.experiment.report import build_results, console_table, render_report_md, write_report

ALL = ["t-big", "t-mid", "t-gru", "student", "student-kd", "student-srms", "srcd-srms", "srcd"]


def test_best_teacher_is_chosen_by_validation_and_ratios_follow_it():
    results = build_results(synthetic_meta(), synthetic_records(), partial=False, expected_models=ALL)
    assert results["best_teacher"] == "t-mid"  # t-big has the higher test NDCG but lower validation
    by_name = {r["name"]: r for r in results["models"]}
    assert by_name["student-srms"]["compression_ratio"] == pytest.approx(100_000 / 12_500)
    assert by_name["student-srms"]["ndcg10_kept"] == pytest.approx(0.072 / 0.075)
    assert by_name["t-mid"]["ndcg10_kept"] == pytest.approx(1.0)


def test_report_md_has_table_protocol_and_every_model():
    results = build_results(synthetic_meta(), synthetic_records(), partial=False, expected_models=ALL)
    md = render_report_md(results)
    header = next(line for line in md.splitlines() if line.startswith("| model"))
    for col in ("HR@10", "NDCG@10", "MRR@10", "params", "size MB", "latency", "throughput", "compression", "kept"):
        assert col in header
    for name in ALL:
        assert f"| {name} |" in md
    assert "full ranking over all items" in md and "seen items are not masked" in md
    assert "Partial" not in md and "partial" not in md.lower().split("## plots")[0]
    assert "| student-srms | student, SRMS | 0.1440 | 0.0720 | 0.0576 | 12,500 |" in md
    assert "8.0x" in md and "96.0%" in md


def test_report_without_plots_does_not_link_them(tmp_path):
    results = build_results(synthetic_meta(), synthetic_records(), partial=False, expected_models=ALL)
    written = write_report(tmp_path, results, make_plots=False)
    md = (tmp_path / "report.md").read_text()
    assert ".png" not in md and "## Plots" not in md and "## Setup" in md
    assert not list(tmp_path.glob("*.png")) and len(written) == 2


def test_partial_report_says_it_is_partial_and_lists_missing_models():
    records = synthetic_records()[:4]
    results = build_results(synthetic_meta(), records, partial=True, expected_models=ALL)
    assert results["partial"] is True
    assert results["missing_models"] == ["student-kd", "student-srms", "srcd-srms", "srcd"]
    md = render_report_md(results)
    assert "Partial report" in md and "student-srms" in md
    table = console_table(results)
    assert "PARTIAL" in table.splitlines()[-1]


def test_console_table_is_aligned_and_ends_with_protocol():
    results = build_results(synthetic_meta(), synthetic_records(), partial=False, expected_models=ALL)
    lines = console_table(results).splitlines()
    assert lines[0].startswith("model") and set(lines[1]) <= {"-", " "}
    assert len(lines) == 2 + len(ALL) + 2
    assert "full ranking" in lines[-1]


def test_write_report_produces_json_markdown_and_readable_pngs(tmp_path):
    results = build_results(synthetic_meta(), synthetic_records(), partial=False, expected_models=ALL)
    paths = write_report(tmp_path, results)
    names = sorted(p.name for p in paths)
    assert names == ["accuracy_vs_params.png", "report.md", "results.json", "validation_ndcg.png"]
    loaded = json.loads((tmp_path / "results.json").read_text())
    assert loaded["models"][5]["test"]["NDCG@10"] == pytest.approx(0.072)
    assert loaded["partial"] is False
    for png in ("accuracy_vs_params.png", "validation_ndcg.png"):
        image = mpimg.imread(tmp_path / png)
        assert image.shape[0] >= 500 and image.shape[1] >= 800  # readable, not a thumbnail
        assert image.std() > 0.05  # something is drawn
    assert not list(tmp_path.glob("*.tmp"))
