"""Baidu-ULTR: behaviour columns, the text document key, and the annotation files.

Fixtures use invented token ids. A document line has 32 fields: rank, URL MD5, title, abstract,
multimedia type, click, then the behaviour signals (see `BEHAVIOUR_FIELDS`).
"""

import math

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clickjax import _native
from clickjax.data import ClickLog, batch_to_numpy, read_batches
from test_readers import MISSING_TITLE, PSEUDO_TITLE, column, read, write
from test_readers_counters import BEHAVIOUR_FIELDS

# The example of the format description: the second document is missing, the third clicked.
BAIDU_PART = (
    "1001\t101\x01102\x01103\t101\x01102\x01104\n"
    "1\t0123456789abcdef0123456789abcdef\t201\x01202\x01203\t301\x01302\t0\t0\t-\t-\t0\t560\t3.2\t1.1\t0\t2\t1400\t0\t0\t2.1\t0\t1\t0\t1\t-\t0\t0\t0\t2\t-\t0\t0\t1\t-\n"
    "2\tfedcba9876543210fedcba9876543210\t21429\t21429\t-\t0\t-\t-\t1\t560\t0.4\t0\t0\t1\t1400\t0\t0\t0.4\t0\t1\t0\t0\t-\t0\t0\t0\t1\t-\t0\t0\t0\t-\n"
    "3\t00112233445566778899aabbccddeeff\t205\x01206\t305\x01306\x01307\t11\t1\t-\t-\t0\t560\t5.0\t2.5\t1\t3\t1400\t0\t35.0\t1.5\t0\t1\t1\t0\t-\t1\t1.0\t1\t3\t-\t1\t0\t1\t-\n"
)

# The annotation example: both queries share qid 7, as in the real file.
BAIDU_ANNOTATION = (
    "7\t101\x01102\t201\x01202\t301\x01302\x01303\t3\t0\n"
    "7\t101\x01102\t205\t305\x01306\t0\t0\n"
    "7\t111\x01112\x01113\t21429\t21429\t1\t8\n"
)


def test_behaviour_columns_of_example(tmp_path):
    names = ["multimedia_type", "displayed_time", "dwelling_time", "serp_height", "full_displayed_count", "slipoff_count"]
    batches, _ = read("baidu", [write(tmp_path, "part-00000", BAIDU_PART)], positions=4, behaviour=names)
    batch = batches[0]

    assert batch.schema.names[8:] == names
    assert batch.schema.field("multimedia_type").type.value_type == pa.int32()
    assert batch.schema.field("dwelling_time").type.value_type == pa.float32()
    arrays = batch_to_numpy(batch)
    # Results at positions 1 and 3; slots 3 and 4 are padding.
    np.testing.assert_array_equal(arrays["position"], [[1, 3, 0, 0]])
    np.testing.assert_array_equal(arrays["multimedia_type"], [[0, 11, -1, -1]])
    np.testing.assert_allclose(arrays["displayed_time"][0, :2], [3.2, 5.0])
    np.testing.assert_allclose(arrays["dwelling_time"][0, :2], [0.0, 35.0])
    np.testing.assert_allclose(arrays["serp_height"][0, :2], [560, 560])
    np.testing.assert_allclose(arrays["full_displayed_count"][0, :2], [2, 3])
    np.testing.assert_allclose(arrays["slipoff_count"][0, :2], [1, 0])
    assert np.isnan(arrays["dwelling_time"][0, 2:]).all(), "padding is NaN"


def test_dash_is_missing_value(tmp_path):
    line = BAIDU_PART.splitlines()[1].split("\t")
    line[10] = "-"
    text = BAIDU_PART.splitlines()[0] + "\n" + "\t".join(line) + "\n"
    batches, _ = read("baidu", [write(tmp_path, "part", text)], positions=2, behaviour=["displayed_time", "multimedia_type"])
    arrays = batch_to_numpy(batches[0])
    assert math.isnan(arrays["displayed_time"][0, 0])
    assert arrays["multimedia_type"][0, 0] == 0


@pytest.mark.parametrize(("name", "value"), [("multimedia_type", "3.0"), ("dwelling_time", "1,5"), ("serp_height", "inf")])
def test_invalid_number_names_column(tmp_path, name, value):
    line = BAIDU_PART.splitlines()[1].split("\t")
    line[BEHAVIOUR_FIELDS[name]] = value
    text = BAIDU_PART.splitlines()[0] + "\n" + "\t".join(line) + "\n"
    with pytest.raises(_native.ParseError) as raised:
        read("baidu", [write(tmp_path, "part", text)], behaviour=[name])
    assert (raised.value.field, raised.value.text, raised.value.lineno) == (name, value, 2)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"behaviour": ["dwell_time"]}, "dwelling_time"),
        ({"behaviour": ["skip", "skip"]}, "at most once"),
        ({"behaviour": ["click"]}, "behaviour column"),
        ({"document_key": "title"}, "document_key"),
    ],
)
def test_invalid_baidu_options(tmp_path, options, message):
    with pytest.raises(ValueError, match=message):
        read("baidu", [write(tmp_path, "part", BAIDU_PART)], **options)


def test_behaviour_only_for_baidu(tmp_path):
    with pytest.raises(ValueError, match='only "baidu"'):
        read("wscd", [write(tmp_path, "log", "1_1\t1 :")], behaviour=["dwelling_time"])


def test_click_log_training_keeps_behaviour(tmp_path):
    log = ClickLog.read("baidu", [write(tmp_path, "part", BAIDU_PART)], _native.Vocabulary(), positions=3, behaviour=["skip"])
    np.testing.assert_array_equal(log.columns["skip"][:, :2], [[0, 0]])
    assert next(log.batches(4))["skip"].shape == (4, 3)


def test_annotation_example(tmp_path):
    batches, reader = read("baidu-annotation", [write(tmp_path, "annotation_data_0522.txt", BAIDU_ANNOTATION)], positions=None)

    # The second query has only a missing document, so it yields no row; lists are 2 long.
    assert reader.positions == 2
    np.testing.assert_array_equal(column(batches, "label"), [[3, 0]])
    np.testing.assert_array_equal(column(batches, "click"), [[0, 0]])
    np.testing.assert_array_equal(column(batches, "mask"), [[1, 1]])
    np.testing.assert_array_equal(column(batches, "position"), [[1, 2]])
    np.testing.assert_array_equal(column(batches, "frequency_bucket"), [0])
    assert batches[0].schema.field("frequency_bucket").type == pa.int32()
    assert reader.stats["sessions_read"] == 2
    assert reader.stats["missing_results"] == 1
    assert reader.stats["sessions_without_results"] == 1


def test_annotation_fixed_positions_pad_label(tmp_path):
    batches, reader = read("baidu-annotation", [write(tmp_path, "test_data.txt", BAIDU_ANNOTATION)], positions=4)
    np.testing.assert_array_equal(column(batches, "label"), [[3, 0, -1, -1]])
    assert reader.positions == 4


def test_annotation_rejects_url_key(tmp_path):
    with pytest.raises(ValueError, match="no URL"):
        read("baidu-annotation", [write(tmp_path, "a", BAIDU_ANNOTATION)], document_key="url")


def test_text_key_joins_annotations(tmp_path):
    vocabulary = _native.Vocabulary()
    clicks, _ = read("baidu", [write(tmp_path, "part", BAIDU_PART)], vocabulary, document_key="text", positions=3)
    vocabulary.freeze()
    # The annotation file has the first document of the click log under the same query.
    annotation = "9\t101\x01102\x01103\t201\x01202\x01203\t301\x01302\t4\t2\n9\t101\x01102\x01103\t209\t309\t1\t2\n"

    labels, reader = read("baidu-annotation", [write(tmp_path, "annotation", annotation)], vocabulary, positions=None)

    assert column(labels, "query_id")[0] == column(clicks, "query_id")[0]
    np.testing.assert_array_equal(column(labels, "query_doc_id"), [[column(clicks, "query_doc_id")[0, 0], 1]])
    assert reader.stats["oov_pairs"] == 1


def test_url_and_text_keys_differ(tmp_path):
    path = write(tmp_path, "part", BAIDU_PART * 2)
    by_url, _ = read("baidu", [path], positions=3)
    by_text, _ = read("baidu", [path], positions=3, document_key="text")
    np.testing.assert_array_equal(column(by_url, "doc_id"), column(by_text, "doc_id"))
    assert not np.array_equal(column(by_url, "query_doc_hash"), column(by_text, "query_doc_hash"))


# Generated Baidu sessions: query tokens and results (kind, URL, title, click, behaviour values).
tokens = st.lists(st.integers(0, 30).map(str), max_size=3).map("\x01".join)
behaviour_value = st.one_of(st.just("-"), st.integers(0, 2000).map(str), st.floats(0, 100, width=32).map(repr))
result = st.tuples(
    st.sampled_from(["shown"] * 8 + ["missing", "pseudo"]),
    st.integers(0, 20).map(lambda n: f"{n:032x}"),
    tokens,
    st.booleans(),
    behaviour_value,
    st.one_of(st.just("-"), st.integers(0, 30).map(str)),
)
baidu_sessions = st.lists(st.tuples(tokens, st.lists(result, max_size=12)), max_size=15)


def render_baidu(sessions):
    lines = []
    for query, results in sessions:
        lines.append(f"7\t{query}\t-\n")
        for pos, (kind, url, title, click, dwelling, media) in enumerate(results, start=1):
            title = {"missing": MISSING_TITLE, "pseudo": PSEUDO_TITLE}.get(kind, title)
            fields = [str(pos), url, title, "5", media, str(int(click))] + ["0"] * 26
            fields[BEHAVIOUR_FIELDS["dwelling_time"]] = dwelling
            lines.append("\t".join(fields) + "\n")
    return "".join(lines)


def expected_baidu(sessions, positions, document_key):
    """Rows of (query, [(document, position, click)]) with their behaviour values, and counters."""
    rows, dwelling, media = [], [], []
    counts = {"missing_results": 0, "pseudo_results": 0, "results_truncated": 0}
    for query, results in sessions:
        rank, kept = 0, []
        for kind, url, title, click, dwell, medium in results:
            if kind == "pseudo":
                counts["pseudo_results"] += 1
                continue
            rank += 1
            if kind == "missing":
                counts["missing_results"] += 1
            elif rank > positions:
                counts["results_truncated"] += 1
            else:
                document = url if document_key == "url" else (title, "5")
                kept.append((document, rank, click, float("nan") if dwell == "-" else float(np.float32(dwell)), -1 if medium == "-" else int(medium)))
        if kept:
            rows.append((query, [entry[:3] for entry in kept]))
            pad = positions - len(kept)
            dwelling.append([entry[3] for entry in kept] + [float("nan")] * pad)
            media.append([entry[4] for entry in kept] + [-1] * pad)
    return rows, np.array(dwelling, np.float32).reshape(-1, positions), np.array(media).reshape(-1, positions), counts


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sessions=baidu_sessions, positions=st.integers(1, 10), document_key=st.sampled_from(["url", "text"]))
def test_round_trip_with_behaviour(tmp_path, sessions, positions, document_key):
    from test_readers import expected_columns

    path = write(tmp_path, "part", render_baidu(sessions))
    reader = read_batches(
        "baidu", [path], _native.Vocabulary(), positions=positions, document_key=document_key, behaviour=["dwelling_time", "multimedia_type"]
    )
    batches = list(reader)

    rows, dwelling, media, counts = expected_baidu(sessions, positions, document_key)
    if rows:
        for name, values in expected_columns(rows, positions).items():
            np.testing.assert_array_equal(column(batches, name), values, err_msg=name)
        np.testing.assert_array_equal(column(batches, "dwelling_time"), dwelling)
        np.testing.assert_array_equal(column(batches, "multimedia_type"), media)
    for name, count in counts.items():
        assert reader.stats[name] == count, name
    assert reader.stats["sessions_kept"] == len(rows)


# Generated annotation files: queries of documents (kind, title, abstract, label, bucket).
document = st.tuples(st.sampled_from(["shown"] * 8 + ["missing", "pseudo"]), tokens, tokens, st.integers(0, 4), st.integers(0, 9))
annotated_queries = st.lists(st.tuples(tokens, st.lists(document, min_size=1, max_size=8)), max_size=10)


def render_annotation(queries):
    lines = []
    for qid, (query, documents) in enumerate(queries):
        for kind, title, abstract, label, bucket in documents:
            title = {"missing": MISSING_TITLE, "pseudo": PSEUDO_TITLE}.get(kind, title)
            lines.append(f"{qid % 3}\t{query}\t{title}\t{abstract}\t{label}\t{bucket}\n")
    return "".join(lines)


def merge_adjacent(queries):
    """Consecutive queries with the same tokens are one query in the file."""
    merged = []
    for query, documents in queries:
        if merged and merged[-1][0] == query:
            merged[-1] = (query, merged[-1][1] + documents)
        else:
            merged.append((query, documents))
    return merged


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(queries=annotated_queries)
def test_annotation_round_trip(tmp_path, queries):
    from test_readers import expected_columns

    path = write(tmp_path, "annotation", render_annotation(queries))
    batches, reader = read("baidu-annotation", [path], positions=None)

    rows, labels, buckets = [], [], []
    for query, documents in merge_adjacent(queries):
        rank, kept = 0, []
        for kind, title, abstract, label, _ in documents:
            if kind == "pseudo":
                continue
            rank += 1
            if kind == "shown":
                kept.append(((title, abstract), rank, False, label))
        if kept:
            rows.append((query, [entry[:3] for entry in kept]))
            labels.append([entry[3] for entry in kept])
            # The first line of a query, shown or not, gives its bucket.
            buckets.append(documents[0][4])
    # Rows are as wide as the largest rank, which a missing document can push past the list length.
    longest = max((results[-1][1] for _, results in rows), default=1)
    assert reader.positions == longest
    if rows:
        for name, values in expected_columns(rows, longest).items():
            np.testing.assert_array_equal(column(batches, name), values, err_msg=name)
        np.testing.assert_array_equal(column(batches, "label"), [row + [-1] * (longest - len(row)) for row in labels])
        np.testing.assert_array_equal(column(batches, "frequency_bucket"), buckets)
    assert reader.stats["sessions_kept"] == len(rows)
