"""The load report: counters from the readers, named, summed and rendered as text."""

import json

import pytest

from clickjax import _native
from clickjax.cli import main
from clickjax.data import FORMATS
from clickjax.report import CHANGES, FORMAT_COUNTERS, OUT_OF_VOCABULARY, SESSION_DROPS, LoadReport

WSCD = "1_1\t11,12 : 12 , 12 , 99;1_1\t11 :;2_1\t21 : 21\n"


def read_stats(tmp_path, text, format="wscd", **options):
    path = tmp_path / "log"
    path.write_text(text)
    reader = _native.BatchReader(format, [path], _native.Vocabulary(), **options)
    list(reader)
    return reader.stats


def test_report_names_every_reader_counter(tmp_path):
    stats = read_stats(tmp_path, WSCD)

    report = LoadReport.from_stats(stats, name="train")

    assert report.other == {}, "every counter of the reader has a field"
    named = {"lines_read", "sessions_read", "sessions_kept", "sessions_without_clicks", "corrupt_inputs"}
    named |= set(SESSION_DROPS) | set(CHANGES) | set(OUT_OF_VOCABULARY)
    plain = {key for key in stats if not key.startswith("skipped_")}
    assert plain == named
    assert report.sessions_read == 3
    assert report.repeated_clicks == 1
    assert report.clicks_not_shown == 1


def test_sessions_add_up(tmp_path):
    text = "1_1\t11 : 11;1_1\t11,12 :;1_1 broken;1_1\t12 : 12;2_1\t21 : 21;3_1\t31,32,33 : 31\n"
    stats = read_stats(
        tmp_path, text, on_error="skip", drop_sessions_without_clicks=True, min_results=1, min_sessions_per_query=2, positions=2
    )

    report = LoadReport.from_stats(stats)

    assert report.sessions_skipped == 1
    assert report.sessions_dropped_without_clicks == 1
    assert report.sessions_dropped_rare_query == 2
    assert report.sessions_kept == 2
    assert report.results_truncated == 1
    assert report.sessions_dropped == 4
    assert report.sessions_read == report.sessions_kept + report.sessions_dropped


def test_skipped_fields_kept_nonzero_only(tmp_path):
    stats = read_stats(tmp_path, "1_1 11 : 11;1_1\t11,,12 :;1_1\t11 :\n", on_error="skip")

    report = LoadReport.from_stats(stats)

    assert report.skipped_by_field == {"query_key": 1, "urls": 1}
    assert "by invalid field: query_key 1, urls 1" in report.format()


def test_format_lists_every_counter():
    stats = {key: index + 1 for index, key in enumerate([*SESSION_DROPS, *CHANGES, *OUT_OF_VOCABULARY])}
    stats |= {"sessions_read": 1234567, "sessions_kept": 1000000, "lines_read": 10, "corrupt_inputs": 2}

    text = LoadReport.from_stats(stats, name="test").format()

    assert text.splitlines()[0] == "test: 1,234,567 sessions read from 10 lines, 1,000,000 kept (81.0%)"
    for key, description in {**SESSION_DROPS, **CHANGES, **OUT_OF_VOCABULARY}.items():
        assert f"{stats[key]}  {description}" in text, key
    assert "corrupt gzip inputs skipped: 2" in text


def test_missing_and_unknown_counters():
    report = LoadReport.from_stats({"sessions_read": 4, "future_counter": 3, "skipped_label": 0})

    assert report.sessions_kept == 0
    assert report.other == {"future_counter": 3}
    assert report.skipped_by_field == {}
    assert "future_counter: 3" in report.format()
    assert "(" not in LoadReport().format().splitlines()[0], "no share of zero sessions"


def test_to_dict_is_json_ready():
    report = LoadReport.from_stats({"sessions_read": 5, "sessions_kept": 3, "sessions_skipped": 2, "skipped_click": 2})

    data = json.loads(json.dumps(report.to_dict()))

    assert data["sessions_dropped"] == 2
    assert data["skipped_by_field"] == {"click": 2}


def test_train_prints_report_of_each_input(tmp_path, capsys):
    train = tmp_path / "train.txt"
    train.write_text("7_1\t11,12,13 : 12 , 12;7_1\t11,12,13 :;8_2\t21,22 : 99\n")
    test = tmp_path / "test.txt"
    test.write_text("7_1\t11,12,13 : 11;8_2\t21,23 : 23")

    code = main([
        "train", "--model", "pbm", "--format", "wscd", "--train", str(train), "--validation", str(train),
        "--test", str(test), "--epochs", "1", "--positions", "3", "--output", str(tmp_path / "run"),
    ])

    assert code == 0
    out = capsys.readouterr().out
    assert "train: 3 sessions read from 1 lines, 3 kept (100.0%)" in out
    assert "validation: 3 sessions read" in out
    assert "test: 2 sessions read" in out
    assert "1  repeated clicks on a result, counted once" in out
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["reader_stats"]["train"]["repeated_clicks"] == 1
    assert metrics["reader_stats"]["test"]["oov_pairs"] == 1


# Expected counters per format, written out rather than derived from FORMAT_COUNTERS.
RULES = ["sessions_without_results", "sessions_dropped_few_results", "sessions_dropped_without_clicks",
         "sessions_dropped_rare_query", "results_truncated", "oov_queries", "oov_documents", "oov_pairs"]
TEXT = [*RULES, "sessions_skipped", "corrupt_inputs"]
EXPECTED_COUNTERS = {
    "baidu": [*TEXT, "missing_results", "pseudo_results"],
    "baidu-annotation": [*TEXT, "missing_results", "pseudo_results"],
    "yandex": [*TEXT, "repeated_clicks", "clicks_not_shown", "clicks_before_query"],
    "wscd": [*TEXT, "repeated_clicks", "clicks_not_shown"],
    "clickmodels": [*TEXT, "repeated_clicks", "extra_click_entries", "invalid_position_keys"],
    "hf-baidu": RULES,
    "long": RULES,
}
DESCRIPTIONS = {**SESSION_DROPS, **CHANGES, **OUT_OF_VOCABULARY, "corrupt_inputs": "corrupt gzip inputs skipped"}


@pytest.mark.parametrize("log_format", sorted(EXPECTED_COUNTERS))
def test_format_prints_counters_of_format(log_format):
    text = LoadReport.from_stats({"sessions_read": 2, "sessions_kept": 2}, log_format=log_format).format()

    printed = {key for key, description in DESCRIPTIONS.items() if description in text}
    assert printed == set(EXPECTED_COUNTERS[log_format])


def test_format_prints_nonzero_counter_of_other_format():
    text = LoadReport.from_stats({"missing_results": 3, "corrupt_inputs": 1}, log_format="long").format()

    assert f"3  {CHANGES['missing_results']}" in text
    assert "corrupt gzip inputs skipped: 1" in text
    assert CHANGES["pseudo_results"] not in text


def test_every_format_has_counters():
    assert set(FORMAT_COUNTERS) == set(FORMATS)
    with pytest.raises(ValueError, match="unknown log format 'csv'"):
        LoadReport.from_stats({}, log_format="csv")


def test_train_report_omits_other_formats(tmp_path, capsys):
    log = tmp_path / "log.txt"
    log.write_text("7_1\t11,12,13 : 12;8_2\t21,22 : 22\n")

    code = main([
        "train", "--model", "pbm", "--format", "wscd", "--train", str(log), "--test", str(log),
        "--epochs", "1", "--positions", "3", "--output", str(tmp_path / "run"),
    ])

    assert code == 0
    out = capsys.readouterr().out
    assert CHANGES["clicks_not_shown"] in out
    assert CHANGES["missing_results"] not in out
    assert CHANGES["extra_click_entries"] not in out


def test_train_on_shards_reports_shard_counters(tmp_path, capsys):
    # Three sessions; the second has no click, and the third's only click is on a URL not shown.
    log = tmp_path / "log.txt"
    log.write_text("7_1\t11,12,13 : 12 , 12;7_1\t11,12,13 :;8_2\t21,22 : 99\n")
    assert main(["ingest", "--format", "wscd", "--positions", "3", "--output", str(tmp_path / "shards"), str(log)]) == 0
    capsys.readouterr()

    shards = str(tmp_path / "shards")
    code = main([
        "train", "--model", "pbm", "--format", "parquet", "--train", shards, "--test", shards,
        "--epochs", "1", "--positions", "3", "--output", str(tmp_path / "run"),
    ])

    assert code == 0
    out = capsys.readouterr().out
    assert "train: 3 sessions read from Parquet shards, 3 kept (100.0%)" in out
    # The shards keep only shown results, so the third session counts as one without a click here.
    assert "sessions without a click on a shown result: 2" in out
    assert "the counters of parsing the raw log are in the ingest folder's load_report.json" in out
    assert "lines" not in out.split("train:")[1].split("\n")[0]
