"""The command line end to end: train, demo, and errors on bad input."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from clickjax.cli import main

REQUIRED_KEYS = {
    "log_likelihood",
    "perplexity",
    "conditional_perplexity",
    "perplexity_per_rank",
    "train_sessions",
    "test_sessions",
    "train_seconds",
    "parameters",
}

# Two queries with three results each; clicks are URL ids in click order.
WSCD_TRAIN = (
    "7_1\t11,12,13 : 12 , 11;7_1\t11,12,13 :;7_1\t12,11,13 : 12\n"
    "\n"
    "8_2\t21,22,23 : 23; 8_2\t21,22,23 : 21 , 21 ; 8_2\t22,21,23 :;"
)
WSCD_TEST = "7_1\t11,12,13 : 11;8_2\t21,22,24 : 24"


@pytest.fixture
def tiny_logs(tmp_path):
    train = tmp_path / "train.txt"
    test = tmp_path / "test.txt"
    train.write_text(WSCD_TRAIN)
    test.write_text(WSCD_TEST)
    return train, test


@pytest.mark.parametrize("model", ["pbm", "ubm", "dbn"])
def test_train_writes_metrics(tiny_logs, tmp_path, model, capsys):
    train, test = tiny_logs
    output = tmp_path / "run"

    code = main([
        "train", "--model", model, "--format", "wscd", "--train", str(train), "--test", str(test),
        "--positions", "3", "--epochs", "2", "--batch-size", "4", "--output", str(output),
    ])

    assert code == 0
    metrics = json.loads((output / "metrics.json").read_text())
    assert REQUIRED_KEYS <= metrics.keys()
    assert metrics["train_sessions"] == 6
    assert metrics["test_sessions"] == 2
    assert len(metrics["perplexity_per_rank"]) == 3
    assert metrics["epochs_run"] == 2
    # One test result (URL 24 for query 8_2) was never seen in training.
    assert metrics["oov_test_pairs"] == 1
    assert (output / "parameters.json").exists()
    assert "log-likelihood" in capsys.readouterr().out


def test_train_parameters_readable(tiny_logs, tmp_path):
    train, test = tiny_logs
    for model, key in [("pbm", "examination_by_rank"), ("ubm", "examination_by_rank"), ("dbn", "continuation")]:
        output = tmp_path / model
        main([
            "train", "--model", model, "--format", "wscd", "--train", str(train), "--test", str(test),
            "--positions", "3", "--epochs", "1", "--output", str(output),
        ])
        parameters = json.loads((output / "parameters.json").read_text())
        assert key in parameters


def test_train_missing_file_names_path(tmp_path, capsys):
    missing = tmp_path / "no-such-log.gz"

    code = main([
        "train", "--model", "pbm", "--format", "wscd", "--train", str(missing), "--test", str(missing),
        "--output", str(tmp_path / "run"),
    ])

    error = capsys.readouterr().err
    assert code == 1
    assert str(missing) in error
    assert "(a training file)" in error


def test_train_malformed_line_names_line(tmp_path, capsys):
    train = tmp_path / "bad.txt"
    train.write_text("7_1\t11,12,13 : 12\n\n7_1 11,12,13 : 12\n")

    code = main([
        "train", "--model", "pbm", "--format", "wscd", "--train", str(train), "--test", str(train),
        "--output", str(tmp_path / "run"),
    ])

    assert code == 1
    error = capsys.readouterr().err
    assert str(train) in error
    assert "3" in error


def test_demo_command_runs():
    clickjax = Path(sys.executable).parent / "clickjax"

    result = subprocess.run([str(clickjax), "demo", "--epochs", "5"], capture_output=True, text=True, timeout=600)

    assert result.returncode == 0, result.stderr
    assert "perplexity" in result.stdout
    assert "examination by rank" in result.stdout


@pytest.mark.parametrize("model", ["pbm", "ubm", "dbn"])
def test_train_on_real_wscd_sample(data_dir, tmp_path, model):
    folder = data_dir / "yandex-wscd-pyclick"
    output = tmp_path / model

    code = main([
        "train", "--model", model, "--format", "wscd",
        "--train", str(folder / "trainSample"), "--test", str(folder / "testSample"),
        "--epochs", "3", "--output", str(output),
    ])

    assert code == 0
    metrics = json.loads((output / "metrics.json").read_text())
    assert metrics["train_sessions"] == 35064
    assert metrics["test_sessions"] == 21413
    assert 1.0 < metrics["perplexity"] < 2.0
    assert -1.0 < metrics["log_likelihood"] < 0.0


@pytest.mark.parametrize("rate", ["-1", "0", "nan", "inf"])
def test_train_rejects_invalid_learning_rate(tiny_logs, tmp_path, rate, capsys):
    train, test = tiny_logs

    code = main([
        "train", "--model", "pbm", "--format", "wscd", "--train", str(train), "--test", str(test),
        "--learning-rate", rate, "--output", str(tmp_path / "run"),
    ])

    assert code == 1
    assert "--learning-rate must be a positive finite number" in capsys.readouterr().err


def test_train_empty_test_log_fails_before_training(tiny_logs, tmp_path, capsys):
    train, _ = tiny_logs
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    output = tmp_path / "run"

    code = main([
        "train", "--model", "pbm", "--format", "wscd", "--train", str(train), "--test", str(empty),
        "--output", str(output),
    ])

    captured = capsys.readouterr()
    assert code == 1
    assert "the test log has no sessions" in captured.err
    assert str(empty) in captured.err
    assert "train loss" not in captured.out
    assert not output.exists()


def test_train_diverging_rate_reports_error(tiny_logs, tmp_path, capsys):
    train, test = tiny_logs

    code = main([
        "train", "--model", "pbm", "--format", "wscd", "--train", str(train), "--test", str(test),
        "--learning-rate", "1e9", "--epochs", "3", "--output", str(tmp_path / "run"),
    ])

    # A huge step either diverges (a clean error) or saturates the probabilities (finite metrics).
    assert code in (0, 1)
    assert "Traceback" not in capsys.readouterr().err


def test_train_output_file_fails_before_training(tiny_logs, tmp_path, capsys):
    train, test = tiny_logs
    output = tmp_path / "taken"
    output.write_text("")

    code = main(["train", "--model", "pbm", "--format", "wscd", "--train", str(train), "--test", str(test), "--output", str(output)])

    captured = capsys.readouterr()
    assert code == 1
    assert "is not a folder" in captured.err
    assert "train loss" not in captured.out


def test_train_rejects_folder_of_other_files(tiny_logs, tmp_path, capsys):
    train, test = tiny_logs
    output = tmp_path / "notes"
    output.mkdir()
    (output / "notes.txt").write_text("mine")

    code = main(["train", "--model", "pbm", "--format", "wscd", "--train", str(train), "--test", str(test), "--output", str(output)])

    captured = capsys.readouterr()
    assert code == 1
    assert f"--output {output} is not empty and was not written by clickjax train (it has no run.json)" in captured.err
    assert sorted(path.name for path in output.iterdir()) == ["notes.txt"]


def test_train_warns_before_replacing_run(tiny_logs, tmp_path, capsys):
    train, test = tiny_logs
    output = tmp_path / "run"
    arguments = ["train", "--format", "wscd", "--train", str(train), "--test", str(test), "--positions", "3",
                 "--epochs", "1", "--batch-size", "4", "--output", str(output)]
    assert main([*arguments, "--model", "pbm"]) == 0
    assert "contains an earlier run" not in capsys.readouterr().err

    assert main([*arguments, "--model", "dbn"]) == 0

    assert f"warning: --output {output} contains an earlier run, whose results this run replaces" in capsys.readouterr().err
    assert json.loads((output / "metrics.json").read_text())["model"] == "dbn"


@pytest.mark.parametrize("option", ["--epochs", "--batch-size", "--patience"])
def test_train_rejects_zero_before_reading(tiny_logs, tmp_path, option, capsys):
    train, test = tiny_logs

    code = main([
        "train", "--model", "pbm", "--format", "wscd", "--train", str(train), "--test", str(test),
        option, "0", "--output", str(tmp_path / "run"),
    ])

    captured = capsys.readouterr()
    assert code == 1
    assert f"{option} must be at least 1, got 0" in captured.err
    assert "sessions read" not in captured.out


def test_train_skip_prints_warning(tiny_logs, tmp_path, capsys):
    _, test = tiny_logs
    train = tmp_path / "some-bad.txt"
    train.write_text("7_1\t11,12,13 : 12\n7_1 11,12,13 : 12\n8_2\t21,22 : 21\n")

    code = main([
        "train", "--model", "pbm", "--format", "wscd", "--train", str(train), "--test", str(test),
        "--positions", "3", "--epochs", "1", "--on-error", "skip", "--output", str(tmp_path / "run"),
    ])

    captured = capsys.readouterr()
    assert code == 0
    assert "warning: train input" in captured.err
    assert "1 malformed session(s) were skipped" in captured.err
    # No gzip input was damaged, so the warning does not count any.
    assert "corrupt gzip" not in captured.err


def test_simulate_creates_output_folder(tmp_path):
    output = tmp_path / "new" / "folder" / "part-00000.gz"

    code = main(["simulate", "--model", "pbm", "--sessions", "50", "--format", "baidu", "--output", str(output)])

    assert code == 0
    assert output.exists()
