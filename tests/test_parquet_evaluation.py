"""Models trained on Parquet shards keep the shards' vocabulary, so evaluate reads new logs and shards."""

import json

import numpy as np

from clickjax.cli import main


def _write_wscd(path, sessions):
    # One line per query: sessions separated by "; ", each "QUERY<TAB>urls : clicks".
    text = "\n".join("; ".join(f"q{query}\t{line}" for line in lines) for query, lines in sessions.items())
    path.write_text(text + "\n")


def _sessions(seed: int) -> dict[int, list[str]]:
    rng = np.random.default_rng(seed)
    sessions = {}
    for query in range(12):
        lines = []
        for _ in range(10):
            urls = [f"u{query}_{doc}" for doc in rng.permutation(6)[:5]]
            clicked = [url for rank, url in enumerate(urls) if rng.random() < 0.6 / (rank + 1)]
            lines.append(f"{','.join(urls)} : {' , '.join(clicked)}")
        sessions[query] = lines
    return sessions


def _run(arguments: list[str]) -> int:
    return main([*arguments, "--quiet"])


def test_shard_model_evaluates_shards_and_logs(tmp_path):
    log = tmp_path / "log"
    _write_wscd(log, _sessions(0))
    shards = tmp_path / "shards"
    assert _run(["ingest", "--format", "wscd", "--output", str(shards), "--split", "train=0.7,test=0.3", str(log)]) == 0
    run = tmp_path / "run"
    assert _run([
        "train", "--model", "pbm", "--format", "parquet", "--train", str(shards / "train"),
        "--test", str(shards / "test"), "--output", str(run), "--positions", "10", "--epochs", "2",
    ]) == 0
    # The model keeps the vocabulary of the ingest, byte for byte.
    assert (run / "model" / "vocabulary.parquet").read_bytes() == (shards / "vocabulary.parquet").read_bytes()
    trained = json.loads((run / "metrics.json").read_text())

    report = tmp_path / "shards.json"
    assert _run([
        "evaluate", "--model-dir", str(run), "--format", "parquet", "--test", str(shards / "test"),
        "--output", str(report),
    ]) == 0
    evaluated = json.loads(report.read_text())["models"][str(run)]
    assert np.isclose(evaluated["log_likelihood"], trained["log_likelihood"], atol=1e-6)

    # A raw log is encoded with the kept vocabulary, so its known pairs are not out of vocabulary.
    raw_report = tmp_path / "raw.json"
    assert _run([
        "evaluate", "--model-dir", str(run), "--format", "wscd", "--test", str(log), "--output", str(raw_report),
    ]) == 0
    assert json.loads(raw_report.read_text())["models"][str(run)]["unseen_results"] == 0


def test_evaluate_rejects_foreign_shards(tmp_path, capsys):
    first, second = tmp_path / "first", tmp_path / "second"
    _write_wscd(first, _sessions(0))
    _write_wscd(second, _sessions(1))
    for name, log in [("a", first), ("b", second)]:
        assert _run(["ingest", "--format", "wscd", "--output", str(tmp_path / name), str(log)]) == 0
    run = tmp_path / "run"
    assert _run([
        "train", "--model", "pbm", "--format", "parquet", "--train", str(tmp_path / "a"),
        "--test", str(tmp_path / "a"), "--output", str(run), "--epochs", "1",
    ]) == 0
    capsys.readouterr()
    code = _run(["evaluate", "--model-dir", str(run), "--format", "parquet", "--test", str(tmp_path / "b")])
    assert code == 1
    message = capsys.readouterr().err
    assert "encoded with another vocabulary" in message
    assert "--vocabulary" in message


def test_split_shards_count_unseen_pairs(tmp_path):
    # Queries 0-5 only in one file, 6-11 only in the other: split by query, the test split's pairs
    # are all unseen in training although the shared vocabulary gives them real ids.
    log = tmp_path / "log"
    _write_wscd(log, _sessions(0))
    shards = tmp_path / "shards"
    assert _run([
        "ingest", "--format", "wscd", "--output", str(shards), "--split", "train=0.5,test=0.5",
        "--split-by", "query", "--seed", "3", str(log),
    ]) == 0
    train_shards = pq_pairs(shards / "train")
    test_shards = pq_pairs(shards / "test")
    expected_unseen = int(np.isin(test_shards, train_shards, invert=True).sum())
    assert expected_unseen > 0
    run = tmp_path / "run"
    assert _run([
        "train", "--model", "pbm", "--format", "parquet", "--train", str(shards / "train"),
        "--test", str(shards / "test"), "--output", str(run), "--epochs", "1",
    ]) == 0
    assert json.loads((run / "metrics.json").read_text())["oov_test_pairs"] == expected_unseen
    report = tmp_path / "report.json"
    assert _run([
        "evaluate", "--model-dir", str(run), "--format", "parquet", "--test", str(shards / "test"),
        "--output", str(report),
    ]) == 0
    assert json.loads(report.read_text())["models"][str(run)]["unseen_results"] == expected_unseen


def pq_pairs(folder) -> np.ndarray:
    """The pair ids of the real results of every shard in an ingest folder."""
    import pyarrow.parquet as pq

    table = pq.read_table(sorted(folder.glob("part-*.parquet")))
    positions = table.schema.field("query_doc_id").type.list_size
    pairs = table.column("query_doc_id").combine_chunks().flatten().to_numpy().reshape(-1, positions)
    mask = table.column("mask").combine_chunks().flatten().to_numpy().reshape(-1, positions)
    return pairs[mask == 1]
