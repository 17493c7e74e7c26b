"""The Yandex Relevance Prediction Challenge click log and its relevance labels."""

import json

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clickjax import _native
from clickjax.data import LABEL_STATS_KEY, read_batches, read_relevance_labels
from test_readers import column, expected_columns, read, write

# The example of the format description: a repeated click, a second query of the same session
# with only 3 URLs, and a session with the same query in another region.
YANDEX_RPC = (
    "7\t0\tQ\t1234\t5\t11\t12\t13\t14\t15\t16\t17\t18\t19\t20\n"
    "7\t15\tC\t13\n"
    "7\t40\tC\t17\n"
    "7\t41\tC\t17\n"
    "7\t52\tQ\t1300\t5\t21\t22\t23\n"
    "7\t60\tC\t22\n"
    "8\t0\tQ\t1234\t213\t12\t11\t13\t14\t15\t16\t17\t18\t19\t20\n"
)
YANDEX_RPC_LABELS = "1234\t5\t13\t1\n1234\t213\t13\t0\n"


def test_fixture_table(tmp_path):
    batches, reader = read("yandex", [write(tmp_path, "log", YANDEX_RPC)], positions=10)

    # Queries 1234_5 -> 2, 1300_5 -> 3, 1234_213 -> 4. Documents 11..20 -> 2..11, 21..23 -> 12..14.
    np.testing.assert_array_equal(column(batches, "query_id"), [2, 3, 4])
    doc_id = column(batches, "doc_id")
    np.testing.assert_array_equal(doc_id[0], range(2, 12))
    np.testing.assert_array_equal(doc_id[1], [12, 13, 14, 0, 0, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(doc_id[2], [3, 2, *range(4, 12)])
    click = column(batches, "click")
    np.testing.assert_array_equal(np.flatnonzero(click[0]), [2, 6])
    np.testing.assert_array_equal(click[1], [0, 1, 0, 0, 0, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(column(batches, "mask").sum(axis=1), [10, 3, 10])
    np.testing.assert_array_equal(column(batches, "position")[1], [1, 2, 3, 0, 0, 0, 0, 0, 0, 0])
    # Pairs of the third row are new: the query differs by region.
    assert column(batches, "query_doc_id")[2].min() > column(batches, "query_doc_id")[1].max()

    assert reader.stats["sessions_kept"] == 3
    assert reader.stats["repeated_clicks"] == 1
    assert reader.stats["sessions_without_clicks"] == 1


def test_query_key_without_region(tmp_path):
    batches, _ = read("yandex", [write(tmp_path, "log", YANDEX_RPC)], query_key="query")
    np.testing.assert_array_equal(column(batches, "query_id"), [2, 3, 2])


def test_query_key_only_for_yandex(tmp_path):
    with pytest.raises(ValueError, match="query_key"):
        read("wscd", [write(tmp_path, "log", "1_1\t1 :")], query_key="query")


def test_min_results_drops_short_lists(tmp_path):
    batches, reader = read("yandex", [write(tmp_path, "log", YANDEX_RPC)], min_results=5)
    assert sum(batch.num_rows for batch in batches) == 2
    assert reader.stats["sessions_dropped_few_results"] == 1


def test_labels_table(tmp_path):
    path = write(tmp_path, "labels", YANDEX_RPC_LABELS + "1234\t5\t13\t3\n1234\t5\t13\t2\n")

    table = read_relevance_labels(path)

    assert isinstance(table, pa.Table)
    assert table.column_names == ["query", "region", "url", "query_fingerprint", "doc_fingerprint", "label"]
    assert table.column("query").to_pylist() == [1234, 1234]
    assert table.column("region").to_pylist() == [5, 213]
    assert table.column("label").to_pylist() == [3, 0]
    assert table.schema.field("doc_fingerprint").type == pa.uint64()
    stats = json.loads(table.schema.metadata[LABEL_STATS_KEY])
    assert stats == {"lines_read": 4, "labels_read": 4, "labels_skipped": 0, "duplicate_pairs": 2, "conflicting_labels": 2}


def test_labels_join_click_log_ids(tmp_path):
    vocabulary = _native.Vocabulary()
    batches, _ = read("yandex", [write(tmp_path, "log", YANDEX_RPC)], vocabulary)

    table = read_relevance_labels(write(tmp_path, "labels", YANDEX_RPC_LABELS + "9\t9\t9\t1\n"), vocabulary=vocabulary)

    query_doc_id = column(batches, "query_doc_id")
    # URL 13 is the third result of rows 0 (1234_5) and 2 (1234_213).
    assert table.column("query_doc_id").to_pylist() == [query_doc_id[0, 2], query_doc_id[2, 2], 1]
    assert len(vocabulary) == 23, "reading labels adds no pair"


def test_labels_errors(tmp_path):
    path = write(tmp_path, "labels", "1\t2\t3\t1\n1\t2\t3\n")
    with pytest.raises(_native.ParseError) as raised:
        read_relevance_labels(path)
    assert (raised.value.field, raised.value.lineno) == ("line", 2)

    table = read_relevance_labels(path, on_error="skip")
    assert json.loads(table.schema.metadata[LABEL_STATS_KEY])["labels_skipped"] == 1
    with pytest.raises(ValueError, match="query_key"):
        read_relevance_labels(path, query_key="region")
    with pytest.raises(FileNotFoundError):
        read_relevance_labels(tmp_path / "missing")


# A generated log: sessions, each a list of queries with their URLs and clicks, and clicks that
# come before the session's first query.
ids = st.integers(0, 30)
query_actions = st.tuples(
    ids, st.integers(0, 3), st.lists(ids, min_size=1, max_size=12), st.lists(ids, max_size=4)
)
sessions = st.lists(st.tuples(st.lists(ids, max_size=2), st.lists(query_actions, max_size=3)), max_size=25)


def render(generated, line_end):
    lines = []
    for session_id, (early_clicks, queries) in enumerate(generated):
        time = 0
        for url in early_clicks:
            lines.append(f"{session_id}\t{time}\tC\t{url}")
            time += 1
        for query, region, urls, clicks in queries:
            lines.append("\t".join([str(session_id), str(time), "Q", str(query), str(region), *map(str, urls)]))
            for url in clicks:
                time += 3
                lines.append(f"{session_id}\t{time}\tC\t{url}")
    return line_end.join(lines)


def expected(generated, positions):
    """Rows as (query key, [(url, position, click)]) and the counters the reader must report."""
    rows = []
    counts = dict.fromkeys(
        ["repeated_clicks", "clicks_not_shown", "clicks_before_query", "results_truncated", "sessions_without_clicks"], 0
    )
    for early_clicks, queries in generated:
        counts["clicks_before_query"] += len(early_clicks)
        for query, region, urls, clicks in queries:
            clicked = [False] * len(urls)
            for url in clicks:
                if url not in urls:
                    counts["clicks_not_shown"] += 1
                elif clicked[urls.index(url)]:
                    counts["repeated_clicks"] += 1
                else:
                    clicked[urls.index(url)] = True
            counts["results_truncated"] += max(0, len(urls) - positions)
            counts["sessions_without_clicks"] += not clicks
            kept = [(url, rank, clicked[rank - 1]) for rank, url in enumerate(urls[:positions], start=1)]
            rows.append((f"{query}_{region}", kept))
    return rows, counts


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(generated=sessions, line_end=st.sampled_from(["\n", "\r\n", "\n\n"]), positions=st.integers(1, 10))
def test_round_trip(tmp_path, generated, line_end, positions):
    path = write(tmp_path, "log", render(generated, line_end))

    batches = list(reader := read_batches("yandex", [path], _native.Vocabulary(), positions=positions, batch_size=7))

    rows, counts = expected(generated, positions)
    if rows:
        for name, values in expected_columns(rows, positions).items():
            np.testing.assert_array_equal(column(batches, name), values, err_msg=name)
    else:
        assert batches == []
    for name, count in counts.items():
        assert reader.stats[name] == count, name
    assert reader.stats["sessions_kept"] == len(rows)
