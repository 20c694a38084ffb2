"""Every mistake a user can make: one line on stderr, a non-zero exit, no traceback."""

import subprocess
import sys

import pytest
import torch
from cli_tiny_experiment import write_tiny_config, write_tiny_dataset

from srkd_ext.cli import main


def run_cli(capsys, *argv):
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(code, err, *fragments):
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"expected one line, got:\n{err}"
    assert "error" in lines[0] and "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def run_argparse(capsys, *argv):
    with pytest.raises(SystemExit) as info:
        main(list(argv))
    captured = capsys.readouterr()
    return info.value.code, captured.out, captured.err


def test_unknown_dataset_name(capsys):
    code, _, err = run_cli(capsys, "data", "ml-1b")
    assert_one_line_error(code, err, "ml-1b", "built-in")


def test_dataset_file_not_found(capsys, tmp_path):
    code, _, err = run_cli(capsys, "run", "--dataset", str(tmp_path / "nope.inter"), "--out", str(tmp_path / "o"))
    assert_one_line_error(code, err, "nope.inter")
    assert not (tmp_path / "o").exists()  # nothing claimed: the corrected command may use this folder


def test_bad_file_format_names_file_and_line(capsys, tmp_path):
    bad = tmp_path / "bad.inter"
    bad.write_text("user_id:token\titem_id:token\n1\t2\n3\tthree\tfour\n")
    code, _, err = run_cli(capsys, "data", str(bad))
    assert_one_line_error(code, err, "bad.inter:")


def test_unknown_format_name(capsys, tmp_path):
    data = write_tiny_dataset(tmp_path / "tiny.txt")
    code, _, err = run_cli(capsys, "data", str(data), "--format", "parquet")
    assert_one_line_error(code, err, "--format", "parquet")


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["run", "--seed", "-1"], "--seed"),
        (["run", "--epochs", "0"], "--epochs"),
        (["run", "--device", "gpu"], "--device"),
        (["run", "--preset", "huge"], "--preset"),
        (["distill", "--dataset", "x", "--teacher", "t.pt", "--out", "o", "--alpha", "1.5"], "--alpha"),
        (["distill", "--dataset", "x", "--teacher", "t.pt", "--out", "o", "--top-k", "0"], "--top-k"),
        (["train", "--dataset", "x", "--arch", "bert", "--out", "o"], "--arch"),
        (["train", "--dataset", "x", "--arch", "sasrec", "--windows", "some", "--out", "o"], "--windows"),
        (["evaluate", "--dataset", "x"], "--checkpoint"),
        (["frobnicate"], "frobnicate"),
        ([], "COMMAND"),
    ],
)
def test_invalid_options_are_one_line(capsys, argv, fragment):
    code, _, err = run_argparse(capsys, *argv)
    assert_one_line_error(code, err, fragment)


def test_invalid_config_value_via_set(capsys):
    code, _, err = run_cli(capsys, "run", "--set", "kd.alpha=2")
    assert_one_line_error(code, err, "kd.alpha", "[0, 1]")


def test_config_file_errors(capsys, tmp_path):
    code, _, err = run_cli(capsys, "run", "--config", str(tmp_path / "missing.yaml"))
    assert_one_line_error(code, err, "--config", "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("train: {epochs: 3\n")
    code, _, err = run_cli(capsys, "run", "--config", str(broken))
    assert_one_line_error(code, err, "broken.yaml:", "invalid YAML")
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("trian: {epochs: 3}\n")
    code, _, err = run_cli(capsys, "run", "--config", str(unknown))
    assert_one_line_error(code, err, "unknown key 'trian'")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown where CUDA is absent")
def test_cuda_requested_without_cuda(capsys, tmp_path):
    data = write_tiny_dataset(tmp_path / "tiny.txt")
    code, _, err = run_cli(capsys, "run", "--dataset", str(data), "--device", "cuda", "--out", str(tmp_path / "o"))
    assert_one_line_error(code, err, "--device cuda", "CUDA is not available")
    code, _, err = run_cli(capsys, "evaluate", "--dataset", str(data), "--checkpoint", "x.pt", "--device", "cuda")
    assert_one_line_error(code, err, "CUDA is not available")


def test_out_folder_that_is_not_an_experiment(capsys, tmp_path):
    data = write_tiny_dataset(tmp_path / "tiny.txt")
    cfg = write_tiny_config(tmp_path / "tiny.yaml")
    out = tmp_path / "photos"
    out.mkdir()
    (out / "holiday.jpg").write_text("not an experiment")
    code, _, err = run_cli(capsys, "run", "--config", str(cfg), "--dataset", str(data), "--out", str(out))
    assert_one_line_error(code, err, "--out", "not empty")
    afile = tmp_path / "afile"
    afile.write_text("x")
    code, _, err = run_cli(capsys, "run", "--config", str(cfg), "--dataset", str(data), "--out", str(afile))
    assert_one_line_error(code, err, "--out", "is a file")


def test_checkpoint_errors(capsys, tmp_path):
    data = write_tiny_dataset(tmp_path / "tiny.txt")
    code, _, err = run_cli(capsys, "evaluate", "--dataset", str(data), "--checkpoint", str(tmp_path / "none.pt"))
    assert_one_line_error(code, err, "--checkpoint", "not found")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"this is not a checkpoint")
    code, _, err = run_cli(capsys, "export", "--checkpoint", str(junk), "--out", str(tmp_path / "m.pt2"))
    assert_one_line_error(code, err, "not a srkd_ext model checkpoint")
    code, _, err = run_cli(capsys, "bench", str(tmp_path))
    assert_one_line_error(code, err, "without best.pt")


def test_unknown_hparam_lists_the_models_options(capsys, tmp_path):
    data = write_tiny_dataset(tmp_path / "tiny.txt")
    code, _, err = run_cli(capsys, "train", "--dataset", str(data), "--arch", "gru4rec", "--hparam", "foo=1",
                           "--out", str(tmp_path / "m"))
    assert_one_line_error(code, err, "--hparam:", "unknown option(s) foo", "gru4rec takes hidden_dim")


def test_output_files_are_checked_before_any_work(capsys, tmp_path):
    data = write_tiny_dataset(tmp_path / "tiny.txt")
    folder = tmp_path / "adir"
    folder.mkdir()
    missing = tmp_path / "nodir" / "out.json"
    cases = [
        (["evaluate", "--dataset", str(data), "--checkpoint", "none.pt", "--json", str(folder)], "--json", "is a folder"),
        (["evaluate", "--dataset", str(data), "--checkpoint", "none.pt", "--json", str(missing)], "--json", "does not exist"),
        (["bench", "none.pt", "--json", str(folder)], "--json", "is a folder"),
        (["compare", "a", "b", "--markdown", str(folder)], "--markdown", "is a folder"),
        (["export", "--checkpoint", "none.pt", "--out", str(folder)], "--out", "is a folder"),
    ]
    for argv, flag, fragment in cases:
        code, _, err = run_cli(capsys, *argv)
        assert_one_line_error(code, err, flag, fragment)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adir", "tiny.txt"]  # no stray .tmp files


def test_python_m_entry_point_reports_errors_without_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "srkd_ext", "data", str(tmp_path / "missing.txt")],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().startswith("srkd data: error:") and len(proc.stderr.strip().splitlines()) == 1
    proc = subprocess.run([sys.executable, "-m", "srkd_ext", "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0
    for command in ("run", "data", "train", "distill", "evaluate", "export", "bench"):
        assert command in proc.stdout
