"""The evaluate, export and plot commands, the epoch log, TOML options and the memory check, end to end."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from clickjax.cli import main
from test_cli import WSCD_TEST, WSCD_TRAIN

# A Baidu-ULTR document line after its first six fields (26 behaviour fields).
BEHAVIOUR = "\t-\t-\t0\t560\t3.2\t1.1\t0\t2\t1400\t0\t0\t2.1\t0\t1\t0\t1\t-\t0\t0\t0\t2\t-\t0\t0\t1\t-"
# Documents of query tokens 101 102: (URL MD5, title tokens, abstract tokens).
DOCUMENTS = {
    "A": ("a" * 32, "201", "301"),
    "B": ("b" * 32, "202", "302"),
    "C": ("c" * 32, "203", "303"),
    "D": ("d" * 32, "204", "304"),
}


def baidu_session(qid, ranking, clicked):
    lines = [f"{qid}\t101\x01102\t101\x01102"]
    for rank, name in enumerate(ranking, start=1):
        md5, title, abstract = DOCUMENTS[name]
        lines.append(f"{rank}\t{md5}\t{title}\t{abstract}\t0\t{int(name in clicked)}{BEHAVIOUR}")
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def wscd_runs(tmp_path_factory):
    """A PBM and a DBN trained on the tiny WSCD log of test_cli, and the test log."""
    folder = tmp_path_factory.mktemp("wscd")
    train, test = folder / "train.txt", folder / "test.txt"
    train.write_text(WSCD_TRAIN)
    test.write_text(WSCD_TEST)
    runs = {}
    for model in ("pbm", "dbn"):
        runs[model] = folder / model
        code = main([
            "train", "--model", model, "--format", "wscd", "--train", str(train), "--test", str(test),
            "--positions", "3", "--epochs", "4", "--batch-size", "4", "--output", str(runs[model]), "--quiet",
        ])
        assert code == 0
    return runs, test


def test_train_writes_epoch_log_and_vocabulary(wscd_runs):
    runs, _ = wscd_runs
    lines = (runs["pbm"] / "epochs.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert [record["epoch"] for record in records] == [1, 2, 3, 4]
    assert set(records[0]) == {"epoch", "train_loss", "validation_log_likelihood", "seconds", "steps"}
    metrics = json.loads((runs["pbm"] / "metrics.json").read_text())
    assert [record["train_loss"] for record in records] == [entry["train_loss"] for entry in metrics["history"]]
    assert (runs["pbm"] / "model" / "vocabulary.parquet").exists()
    parameters = json.loads((runs["pbm"] / "parameters.json").read_text())
    assert len(parameters["examination_by_rank_standard_error"]) == 3


def test_evaluate_matches_training_metrics(wscd_runs, tmp_path, capsys):
    runs, test = wscd_runs
    output = tmp_path / "evaluation.json"

    code = main(["evaluate", "--model-dir", str(runs["pbm"]), "--format", "wscd", "--test", str(test), "--output", str(output)])

    assert code == 0
    result = json.loads(output.read_text())["models"][str(runs["pbm"])]
    trained = json.loads((runs["pbm"] / "metrics.json").read_text())
    # The same model on the same test log through the saved vocabulary gives the training run's metrics.
    assert result["log_likelihood"] == pytest.approx(trained["log_likelihood"], rel=1e-6)
    assert result["perplexity_per_rank"] == pytest.approx(trained["perplexity_per_rank"], rel=1e-6)
    # URL 24 of query 8_2 is the one test result unseen in training.
    assert result["unseen_results"] == 1
    assert result["unseen_pairs"] == 1
    assert result["unseen_policy"] == "oov"
    assert len(result["calibration_bins"]) == 10
    assert "unseen test results (1 distinct pairs): 1" in capsys.readouterr().out


def test_evaluate_skip_and_compare(wscd_runs, tmp_path, capsys):
    runs, test = wscd_runs
    output = tmp_path / "comparison.json"

    code = main([
        "evaluate", "--model-dir", str(runs["pbm"]), "--format", "wscd", "--test", str(test),
        "--compare", str(runs["dbn"]), "--unseen", "skip", "--bootstrap", "50", "--output", str(output),
    ])

    assert code == 0
    result = json.loads(output.read_text())
    assert result["unseen"] == "skip"
    for model in runs.values():
        assert result["models"][str(model)]["results"] == 5
    differences = {entry["metric"]: entry for entry in result["differences"]}
    assert set(differences) == {"log_likelihood", "perplexity", "conditional_perplexity"}
    entry = differences["log_likelihood"]
    assert entry["difference"] == pytest.approx(entry["second"] - entry["first"])
    assert entry["lower"] <= entry["upper"]
    assert entry["samples"] == 50
    assert "paired bootstrap over queries" in capsys.readouterr().out


def test_evaluate_compare_without_bootstrap(wscd_runs, tmp_path, capsys):
    runs, test = wscd_runs
    output = tmp_path / "comparison.json"

    code = main([
        "evaluate", "--model-dir", str(runs["pbm"]), "--format", "wscd", "--test", str(test),
        "--compare", str(runs["dbn"]), "--output", str(output),
    ])

    assert code == 0
    result = json.loads(output.read_text())
    models = result["models"]
    differences = {entry["metric"]: entry for entry in result["differences"]}
    assert set(differences) == {"log_likelihood", "perplexity", "conditional_perplexity", "expected_calibration_error"}
    for name, entry in differences.items():
        # Each model's own figure, and the second minus the first.
        assert entry["first"] == models[str(runs["pbm"])][name]
        assert entry["second"] == models[str(runs["dbn"])][name]
        assert entry["difference"] == pytest.approx(entry["second"] - entry["first"])
    printed = capsys.readouterr().out
    assert f"{runs['dbn']} minus {runs['pbm']} (add --bootstrap N for confidence intervals)" in printed


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--bootstrap", "10"], "name the second one with --compare"),
        (["--bootstrap", "-1"], "--bootstrap must be 0 or more"),
        (["--confidence", "1.5"], "--confidence must be between 0 and 1"),
    ],
)
def test_evaluate_rejects_bad_options(wscd_runs, extra, message, capsys):
    runs, test = wscd_runs
    code = main(["evaluate", "--model-dir", str(runs["pbm"]), "--format", "wscd", "--test", str(test), *extra])
    assert code == 1
    assert message in capsys.readouterr().err


def test_evaluate_needs_vocabulary(wscd_runs, tmp_path, capsys):
    runs, test = wscd_runs
    copy = tmp_path / "copy"
    (copy / "model").mkdir(parents=True)
    for path in (runs["pbm"] / "model").iterdir():
        if path.name != "vocabulary.parquet":
            (copy / "model" / path.name).write_bytes(path.read_bytes())
    (copy / "metrics.json").write_bytes((runs["pbm"] / "metrics.json").read_bytes())

    code = main(["evaluate", "--model-dir", str(copy), "--format", "wscd", "--test", str(test)])

    assert code == 1
    error = capsys.readouterr().err
    assert "vocabulary.parquet not found" in error
    assert "retrain" in error


def test_evaluate_annotation_ranking(tmp_path, capsys):
    # A is clicked in every session, B in half of them and C never, at every rank.
    sessions = []
    for index, ranking in enumerate(["ABC", "BCA", "CAB", "ACB", "BAC", "CBA"] * 4):
        clicked = {"A"} | ({"B"} if index % 2 == 0 else set())
        sessions.append(baidu_session(index, ranking, clicked))
    train = tmp_path / "part-00000"
    train.write_text("".join(sessions))
    # The annotation file labels A 3, B 1, C 0, and D 2, a document never shown in training.
    annotation = tmp_path / "annotation.txt"
    annotation.write_text("".join(
        f"9\t101\x01102\t{DOCUMENTS[name][1]}\t{DOCUMENTS[name][2]}\t{label}\t0\n"
        for name, label in [("C", 0), ("D", 2), ("B", 1), ("A", 3)]
    ))
    run = tmp_path / "run"
    assert main([
        "train", "--model", "pbm", "--format", "baidu", "--document-key", "text", "--train", str(train),
        "--test", str(train), "--positions", "3", "--epochs", "40", "--output", str(run), "--quiet",
    ]) == 0
    output = tmp_path / "ranking.json"

    code = main([
        "evaluate", "--model-dir", str(run), "--format", "baidu-annotation", "--test", str(annotation),
        "--unseen", "skip", "--output", str(output),
    ])

    assert code == 0
    result = json.loads(output.read_text())["models"][str(run)]
    # Without D, the model ranks A, B, C: the ideal order.
    assert result["ndcg@3"] == pytest.approx(1.0)
    assert result["dcg@1"] == pytest.approx(7.0)
    assert result["mrr@1"] == pytest.approx(1.0)
    assert result["queries"] == 1
    assert result["unseen_results"] == 1
    assert "nDCG@k" in capsys.readouterr().out


def test_export_with_vocabulary_keys(wscd_runs, tmp_path):
    import pyarrow.parquet as pq

    runs, _ = wscd_runs
    output = tmp_path / "pairs.parquet"
    propensities = tmp_path / "propensities.parquet"

    code = main(["export", "--model-dir", str(runs["pbm"]), "--output", str(output), "--propensities", str(propensities)])

    assert code == 0
    table = pq.read_table(output)
    assert table.num_rows == 6
    assert table.column_names[:5] == ["query_doc_id", "query_id", "doc_id", "query_fingerprint", "doc_fingerprint"]
    rows = table.to_pylist()
    # Pairs of one query share its fingerprint; the six documents differ.
    assert len({row["query_fingerprint"] for row in rows}) == 2
    assert len({row["doc_fingerprint"] for row in rows}) == 6
    # The training log has 6 sessions of 3 results and 2 + 0 + 1 + 1 + 1 + 0 clicks (the repeated
    # click on URL 21 counts once).
    assert sum(row["impressions"] for row in rows) == 18
    assert sum(row["clicks"] for row in rows) == 5
    table = pq.read_table(propensities).to_pylist()
    assert [row["rank"] for row in table] == [1, 2, 3]
    assert table[0]["propensity"] == 1.0


def png_pixels(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as image:
        assert image.format == "PNG"
        return np.asarray(image.convert("L"))


def test_plot_writes_figures(wscd_runs, tmp_path, capsys):
    runs, _ = wscd_runs
    output = tmp_path / "figures"

    code = main(["plot", "--model-dir", str(runs["pbm"]), "--output", str(output)])

    assert code == 0
    names = sorted(path.name for path in output.iterdir())
    assert names == ["ctr.png", "examination.png", "learning-curves.png"]
    for name in names:
        pixels = png_pixels(output / name)
        assert pixels.shape == (400, 600)
        # A blank figure is one colour; a drawn one has white background and dark lines and text.
        assert pixels.min() < 100
        assert (pixels < 250).mean() > 0.01
    # DBN has no examination by rank, so its run gets two figures.
    assert main(["plot", "--model-dir", str(runs["dbn"]), "--output", str(tmp_path / "dbn")]) == 0
    assert sorted(path.name for path in (tmp_path / "dbn").iterdir()) == ["ctr.png", "learning-curves.png"]


def test_examination_after_click_from_ubm_matrix():
    from clickjax.plots import examination_after_click

    # Row r - 1 contains theta(r, r') for r' = 0..r - 1, and its last entry is theta(r, r - 1).
    matrix = [[0.9, None, None], [0.6, 0.8, None], [0.3, 0.5, 0.7]]

    assert examination_after_click({"examination_by_rank_and_previous_click": matrix}) == [0.8, 0.7]
    assert examination_after_click({"examination_by_rank": [0.9, 0.6, 0.3]}) is None


def test_plot_without_matplotlib(wscd_runs, tmp_path):
    runs, _ = wscd_runs
    script = (
        "import sys; sys.modules['matplotlib'] = None\n"
        "from clickjax.cli import main\n"
        f"sys.exit(main(['plot', '--model-dir', {str(runs['pbm'])!r}, '--output', {str(tmp_path / 'figures')!r}]))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    assert 'pip install "clickjax[plot]"' in done.stderr
    assert "Traceback" not in done.stderr


def test_plot_needs_a_run_folder(tmp_path, capsys):
    code = main(["plot", "--model-dir", str(tmp_path), "--output", str(tmp_path / "figures")])
    assert code == 1
    assert "metrics.json not found" in capsys.readouterr().err


def write_logs(tmp_path):
    train, test = tmp_path / "train.txt", tmp_path / "test.txt"
    train.write_text(WSCD_TRAIN)
    test.write_text(WSCD_TEST)
    return train, test


def test_config_file_with_override(tmp_path, capsys):
    train, test = write_logs(tmp_path)
    config = tmp_path / "train.toml"
    config.write_text(
        f'model = "pbm"\nformat = "wscd"\ntrain = ["{train}"]\ntest = "{test}"\n'
        f'output = "{tmp_path / "run"}"\npositions = 3\nepochs = 5\nbatch_size = 4\nquiet = true\n'
    )

    code = main(["train", "--config", str(config), "--epochs", "2"])

    assert code == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["epochs_run"] == 2
    assert metrics["config"]["positions"] == 3
    assert metrics["config"]["batch_size"] == 4
    # --quiet from the file: no per-epoch lines.
    assert "epoch   1" not in capsys.readouterr().out


@pytest.mark.parametrize(
    "content, message",
    [
        ('model = "pbm"\nlearning_rat = 0.1\n', "unknown key 'learning_rat'"),
        ('model = "xyz"\n', "invalid value 'xyz' for option 'model'"),
        ('epochs = "ten"\n', "invalid value 'ten' for option 'epochs'"),
        ('epochs = 2.5\n', "invalid value 2.5 for option 'epochs'"),
        ("model = \n", "is not valid TOML"),
        ('quiet = "yes"\n', "must be true or false"),
    ],
)
def test_config_file_errors(tmp_path, content, message, capsys):
    config = tmp_path / "bad.toml"
    config.write_text(content)
    code = main(["train", "--config", str(config)])
    assert code == 1
    error = capsys.readouterr().err
    assert message in error
    assert str(config) in error


def test_config_file_missing(tmp_path, capsys):
    code = main(["train", "--config", str(tmp_path / "absent.toml")])
    assert code == 1
    assert "absent.toml" in capsys.readouterr().err


def test_train_memory_limit(tmp_path, capsys):
    train, test = write_logs(tmp_path)
    output = tmp_path / "run"

    code = main([
        "train", "--model", "dbn", "--format", "wscd", "--train", str(train), "--test", str(test),
        "--positions", "3", "--output", str(output), "--max-memory", "200",
    ])

    assert code == 1
    captured = capsys.readouterr()
    # DBN over 6 pairs (8 rows): attraction and satisfaction 2 * 8 float32 and gamma, 68 bytes.
    # Sparse Adagrad (the default) keeps 3 copies: the model's, the training state's and the slot,
    # 204 bytes, and the two tables share one int32 scratch array of 8 rows, 32 bytes.
    assert "estimated training memory 236 B" in captured.out
    assert "sparse-step scratch 32 B" in captured.out
    assert "more than the 200 B of --max-memory" in captured.err
    assert not (output / "model").exists()


def test_train_rejects_bad_memory_size(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--max-memory", "12Q"])
    assert "invalid memory size '12Q'" in capsys.readouterr().err


def test_evaluate_writes_null_for_undefined_ndcg(tmp_path):
    # Every annotated label is 0, so nDCG is undefined: JSON null, not NaN.
    train = tmp_path / "part-00000"
    train.write_text("".join(baidu_session(index, "ABC", {"A"}) for index in range(4)))
    annotation = tmp_path / "annotation.txt"
    annotation.write_text("".join(f"9\t101\x01102\t{DOCUMENTS[name][1]}\t{DOCUMENTS[name][2]}\t0\t0\n" for name in "AB"))
    run = tmp_path / "run"
    assert main([
        "train", "--model", "pbm", "--format", "baidu", "--document-key", "text", "--train", str(train),
        "--test", str(train), "--positions", "3", "--epochs", "2", "--output", str(run), "--quiet",
    ]) == 0
    output = tmp_path / "ranking.json"

    code = main(["evaluate", "--model-dir", str(run), "--format", "baidu-annotation", "--test", str(annotation), "--output", str(output)])

    assert code == 0
    text = output.read_text()
    assert "NaN" not in text
    result = json.loads(text)["models"][str(run)]
    assert result["ndcg@10"] is None
    assert result["dcg@10"] == 0.0
    assert result["queries_without_relevant"] == 1


def test_progress_bars_only_on_terminal(monkeypatch):
    from clickjax.progress import Progress

    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    assert Progress(quiet=False).enabled
    assert not Progress(quiet=True).enabled
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False, raising=False)
    assert not Progress(quiet=False).enabled
    # A disabled bar still counts the items it passes through.
    assert list(Progress(quiet=True).iterate(range(3), "counting")) == [0, 1, 2]
