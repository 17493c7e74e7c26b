"""`clickjax train` options for the session rules, the query key, behaviour columns and features."""

import json

import pytest

from clickjax.cli import main
from test_formats_baidu import BAIDU_PART

# Query 7_1 has three sessions (one without a click) and 8_2 two, one of them two results long.
WSCD_TRAIN = "7_1\t11,12,13 : 12;7_1\t11,12,13 :;7_1\t12,11,13 : 11\n8_2\t21,22,23 : 23;8_2\t21,22 : 22\n"
WSCD_TEST = "7_1\t11,12,13 : 11;9_3\t31,32 :\n"

# Query 1234 in regions 5 and 213, one session each.
YANDEX = (
    "7\t0\tQ\t1234\t5\t11\t12\t13\n"
    "7\t15\tC\t13\n"
    "8\t0\tQ\t1234\t213\t12\t11\t13\n"
    "8\t3\tC\t12\n"
)


def train(tmp_path, log_format, train_text, test_text, *options):
    """Run `clickjax train` and return its exit code and metrics (None on failure)."""
    paths = []
    for name, text in (("train", train_text), ("test", test_text)):
        path = tmp_path / f"{name}.txt"
        path.write_text(text)
        paths.append(str(path))
    output = tmp_path / "run"
    code = main([
        "train", "--model", "pbm", "--format", log_format, "--train", paths[0], "--test", paths[1],
        "--positions", "3", "--epochs", "1", "--output", str(output), *options,
    ])
    metrics = json.loads((output / "metrics.json").read_text()) if code == 0 else None
    return code, metrics


def test_defaults_keep_every_session(tmp_path):
    code, metrics = train(tmp_path, "wscd", WSCD_TRAIN, WSCD_TEST)
    assert code == 0
    assert metrics["train_sessions"] == 5
    assert metrics["test_sessions"] == 2


def test_drop_sessions_without_clicks(tmp_path):
    code, metrics = train(tmp_path, "wscd", WSCD_TRAIN, WSCD_TEST, "--drop-sessions-without-clicks")
    assert code == 0
    assert metrics["train_sessions"] == 4
    # The test session of 9_3 has no click either.
    assert metrics["test_sessions"] == 1
    assert metrics["config"]["drop_sessions_without_clicks"] is True
    assert metrics["reader_stats"]["train"]["sessions_dropped_without_clicks"] == 1


def test_min_results(tmp_path):
    code, metrics = train(tmp_path, "wscd", WSCD_TRAIN, WSCD_TEST, "--min-results", "3")
    assert code == 0
    assert metrics["train_sessions"] == 4
    assert metrics["reader_stats"]["train"]["sessions_dropped_few_results"] == 1
    assert metrics["test_sessions"] == 1


def test_min_sessions_per_query_training_only(tmp_path):
    code, metrics = train(tmp_path, "wscd", WSCD_TRAIN, WSCD_TEST, "--min-sessions-per-query", "3")
    assert code == 0
    # 8_2 has two training sessions; the test log keeps its queries of one session.
    assert metrics["train_sessions"] == 3
    assert metrics["reader_stats"]["train"]["sessions_dropped_rare_query"] == 2
    assert metrics["test_sessions"] == 2


def test_query_key_merges_regions(tmp_path):
    # Keyed by query and region, each query has one session, so the rule drops both.
    code, _ = train(tmp_path, "yandex", YANDEX, YANDEX, "--min-sessions-per-query", "2")
    assert code == 1

    code, metrics = train(tmp_path, "yandex", YANDEX, YANDEX, "--min-sessions-per-query", "2", "--query-key", "query")
    assert code == 0
    assert metrics["train_sessions"] == 2
    assert metrics["config"]["query_key"] == "query"


def test_behaviour_columns_for_baidu(tmp_path):
    code, metrics = train(tmp_path, "baidu", BAIDU_PART, BAIDU_PART, "--behaviour", "dwelling_time", "multimedia_type")
    assert code == 0
    assert metrics["config"]["behaviour"] == ["dwelling_time", "multimedia_type"]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--min-results", "0"], "--min-results must be at least 1, got 0"),
        (["--min-results", "11", "--positions", "10"], "--min-results 11 is above --positions 10"),
        (["--threads", "100000"], "--threads must be at most 256, got 100000"),
        (["--min-sessions-per-query", "0"], "--min-sessions-per-query must be at least 1, got 0"),
        (["--behaviour", "dwelling_time"], "behaviour"),
        (["--features", "bm25"], "features apply to the long and hf-baidu formats, not to wscd"),
        (["--query-key", "region"], "region"),
    ],
)
def test_invalid_options_named(tmp_path, capsys, options, message):
    code, _ = train(tmp_path, "wscd", WSCD_TRAIN, WSCD_TEST, *options)
    assert code == 1
    assert message in capsys.readouterr().err
