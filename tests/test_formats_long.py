"""Long tables (one row per impression) grouped into the same batches as the text readers."""

import numpy as np
import pyarrow as pa
import pyarrow.csv as csv
import pyarrow.feather as feather
import pyarrow.parquet as parquet
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clickjax import _native
from clickjax.cli import main
from clickjax.data import ClickLog, batch_to_numpy, read_batches
from clickjax.formats.long import read_long
from test_formats_baidu import baidu_sessions, render_baidu
from test_readers import WSCD_FIXTURE, column, read, write

# The sessions of WSCD_FIXTURE, one row per shown result, with integer URL ids.
WSCD_ROWS = {
    "session": [0, 0, 0, 1, 1, 1, 2, 2],
    "query": ["42_1"] * 6 + ["43_2"] * 2,
    "document": [11, 12, 13, 11, 12, 14, 12, 15],
    "position": [1, 2, 3, 1, 2, 3, 1, 2],
    "click": [True, True, False, False, False, False, False, True],
}


def assert_same_batches(got, want):
    assert len(got) == len(want)
    for got_batch, want_batch in zip(got, want):
        assert got_batch.equals(want_batch), (got_batch.to_pydict(), want_batch.to_pydict())


def test_table_equals_wscd_log(tmp_path):
    expected, text_reader = read("wscd", [write(tmp_path, "log", WSCD_FIXTURE)], positions=3, batch_size=2)

    reader = read_long(pa.table(WSCD_ROWS), _native.Vocabulary(), positions=3, batch_size=2)

    assert_same_batches(list(reader), expected)
    assert reader.positions == 3
    assert reader.stats["sessions_kept"] == text_reader.stats["sessions_kept"]
    assert reader.stats["lines_read"] == 8


def long_rows(sessions):
    """Rows of a long table for generated Baidu sessions: each shown result with its computed rank."""
    rows = {"session": [], "query": [], "document": [], "position": [], "click": []}
    for index, (query, results) in enumerate(sessions):
        rank = 0
        for kind, url, _, click, _, _ in results:
            if kind == "pseudo":
                continue
            rank += 1
            if kind == "shown":
                for name, value in zip(rows, (index, query, url, rank, click)):
                    rows[name].append(value)
    return rows


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sessions=baidu_sessions, positions=st.integers(1, 10), seed=st.integers(0, 100))
def test_table_equals_baidu_log(tmp_path, sessions, positions, seed):
    expected, _ = read("baidu", [write(tmp_path, "part", render_baidu(sessions))], positions=positions, batch_size=4)
    rows = long_rows(sessions)
    # Shuffle the rows within each session: ranks, not row order, order a session.
    shuffle = np.random.default_rng(seed).permutation(len(rows["session"]))
    order = np.lexsort((shuffle, np.array(rows["session"], np.int64)))
    table = pa.table(rows).take(order) if len(order) else pa.table(rows)

    reader = read_long(table, _native.Vocabulary(), positions=positions, batch_size=4)

    assert_same_batches(list(reader), expected)


def test_sessions_ordered_by_first_row():
    # The rows of the three sessions interleave: sessions keep the order of their first rows.
    order = [0, 6, 3, 1, 7, 4, 2, 5]
    interleaved = pa.table(WSCD_ROWS).take(order)
    expected = list(read_long(pa.table(WSCD_ROWS).take([0, 1, 2, 6, 7, 3, 4, 5]), _native.Vocabulary()))

    batches = list(read_long(interleaved, _native.Vocabulary()))

    assert_same_batches(batches, expected)
    np.testing.assert_array_equal(column(batches, "query_id"), [2, 3, 2])


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".csv.gz", ".tsv", ".feather"])
def test_files_read_by_suffix(tmp_path, suffix):
    table = pa.table(WSCD_ROWS)
    path = tmp_path / f"impressions{suffix}"
    if suffix == ".parquet":
        parquet.write_table(table, path)
    elif suffix == ".feather":
        feather.write_feather(table, path)
    else:
        delimiter = "\t" if suffix == ".tsv" else ","
        with pa.CompressedOutputStream(path, "gzip") if suffix.endswith(".gz") else pa.OSFile(str(path), "wb") as sink:
            csv.write_csv(table, sink, csv.WriteOptions(delimiter=delimiter))
    expected = list(read_long(table, _native.Vocabulary()))

    batches = list(read_batches("long", [path], _native.Vocabulary()))

    assert_same_batches(batches, expected)


def test_several_files_concatenated(tmp_path):
    table = pa.table(WSCD_ROWS)
    first, second = tmp_path / "a.parquet", tmp_path / "b.parquet"
    parquet.write_table(table.slice(0, 6), first)
    parquet.write_table(table.slice(6), second)

    log = ClickLog.read("long", [first, second], _native.Vocabulary(), positions=None)

    assert log.positions == 3
    assert log.num_sessions == 3
    np.testing.assert_array_equal(log.columns["click"], [[1, 1, 0], [0, 0, 0], [0, 1, 0]])


class StreamOnly:
    """An object that offers only the Arrow stream interface, as polars DataFrames do."""

    def __init__(self, table):
        self.table = table

    def __arrow_c_stream__(self, requested_schema=None):
        return self.table.__arrow_c_stream__(requested_schema)


def test_arrow_stream_objects(tmp_path):
    expected = list(read_long(pa.table(WSCD_ROWS), _native.Vocabulary()))
    assert_same_batches(list(read_long(StreamOnly(pa.table(WSCD_ROWS)), _native.Vocabulary())), expected)
    assert_same_batches(list(read_long(pa.table(WSCD_ROWS).to_batches()[0], _native.Vocabulary())), expected)


def test_pandas_and_polars_frames():
    pandas = pytest.importorskip("pandas")
    frame = pandas.DataFrame(WSCD_ROWS)
    expected = list(read_long(pa.table(WSCD_ROWS), _native.Vocabulary()))
    assert_same_batches(list(read_long(frame, _native.Vocabulary())), expected)
    polars = pytest.importorskip("polars")
    assert_same_batches(list(read_long(polars.DataFrame(WSCD_ROWS), _native.Vocabulary())), expected)


def test_dictionary_columns_and_other_names():
    table = pa.table(WSCD_ROWS)
    renamed = pa.table({
        "sid": table["session"],
        "q": pa.compute.dictionary_encode(table["query"]),
        "url": table["document"].cast(pa.int32()),
        "rank": table["position"].cast(pa.int16()),
        "clicked": table["click"].cast(pa.int8()),
        "extra": pa.array(range(8)),
    })

    batches = list(read_long(renamed, _native.Vocabulary(), session="sid", query="q", document="url", position="rank", click="clicked"))

    assert_same_batches(batches, list(read_long(table, _native.Vocabulary())))


def test_rules_and_counters():
    reader = read_long(pa.table(WSCD_ROWS), _native.Vocabulary(), positions=2, min_sessions_per_query=2)
    assert reader.stats["results_truncated"] == 2
    assert reader.stats["sessions_dropped_rare_query"] == 1
    assert reader.stats["sessions_kept"] == 2

    # Without its session that has no click, query 42_1 has one session left, so both queries
    # are too rare.
    reader = read_long(pa.table(WSCD_ROWS), _native.Vocabulary(), min_sessions_per_query=2, drop_sessions_without_clicks=True)
    assert reader.stats["sessions_dropped_without_clicks"] == 1
    assert reader.stats["sessions_dropped_rare_query"] == 2
    assert reader.stats["sessions_kept"] == 0


def test_empty_table():
    table = pa.table(WSCD_ROWS).slice(0, 0)
    reader = read_long(table, _native.Vocabulary(), positions=None)
    assert list(reader) == []
    assert reader.positions == 1


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"document": None}, "no column 'document'"),
        ({"document": [11.0] * 8}, "invalid column document: type Float64"),
        ({"query": ["42_1", None] + ["42_1"] * 4 + ["43_2"] * 2}, "invalid column query: 1 null values"),
        ({"click": [0, 1, 2, 0, 0, 0, 0, 1]}, "invalid column click"),
        ({"position": [0, 2, 3, 1, 2, 3, 1, 2]}, "invalid column position: 0 is not a rank"),
        ({"position": [1.0] * 8}, "invalid column position: expected integers"),
        ({"query": ["42_1", "x"] + ["42_1"] * 4 + ["43_2"] * 2}, "session 0 has rows with different 'query' values"),
    ],
)
def test_invalid_tables(change, message):
    rows = dict(WSCD_ROWS)
    for name, values in change.items():
        if values is None:
            del rows[name]
        else:
            rows[name] = values
    with pytest.raises(ValueError, match=message):
        read_long(pa.table(rows), _native.Vocabulary())


def test_unknown_suffix_and_options(tmp_path):
    with pytest.raises(ValueError, match=r"\.parquet"):
        read_long(tmp_path / "impressions.json", _native.Vocabulary())
    with pytest.raises(ValueError, match="do not apply"):
        read_batches("long", [tmp_path / "x.parquet"], _native.Vocabulary(), query_key="query")


def test_train_on_parquet(tmp_path, capsys):
    path = tmp_path / "train.parquet"
    parquet.write_table(pa.table(WSCD_ROWS), path)

    code = main([
        "train", "--model", "pbm", "--format", "long", "--train", str(path), "--test", str(path),
        "--epochs", "1", "--positions", "3", "--output", str(tmp_path / "run"),
    ])

    assert code == 0
    assert "train: 3 sessions read from 8 lines, 3 kept" in capsys.readouterr().out


def feature_rows():
    """WSCD_ROWS with two numeric features and a 3-value embedding per impression."""
    rows = dict(WSCD_ROWS)
    rows["score"] = pa.array([0.5 * i for i in range(8)], pa.float64())
    rows["clicks_before"] = pa.array(list(range(10, 18)), pa.int32())
    rows["embedding"] = pa.array([[i, -i, i / 4] for i in range(8)], pa.list_(pa.float16()))
    return rows


def test_features_from_numeric_and_list_columns():
    # Shuffle the rows: features must follow their impression, not their row.
    table = pa.table(feature_rows()).take([7, 2, 0, 5, 1, 3, 6, 4])

    reader = read_long(table, _native.Vocabulary(), positions=3, features=["score", "embedding", "clicks_before"])
    arrays = batch_to_numpy(reader.batches[0])

    features = arrays["features"]
    assert features.dtype == np.float32
    assert features.shape == (3, 3, 5)
    # Sessions come in order of their first row: session 2 (rows 6-7), then 0 (rows 0-2), then 1
    # (rows 3-5), each in rank order.
    expected = np.zeros((3, 3, 5), np.float32)
    for session, rows in enumerate([[6, 7], [0, 1, 2], [3, 4, 5]]):
        for slot, row in enumerate(rows):
            expected[session, slot] = [0.5 * row, row, -row, row / 4, 10 + row]
    np.testing.assert_array_equal(features, expected)


def test_features_zero_copy():
    rows = feature_rows()
    rows["embedding"] = pa.array([[i, -i, i / 4] for i in range(8)], pa.list_(pa.float32(), 3))
    batch = read_long(pa.table(rows), _native.Vocabulary(), positions=4, features=["embedding"]).batches[0]

    arrays = batch_to_numpy(batch)

    column = batch.column("features")
    assert column.null_count == 0
    slots = column.flatten()
    values = slots.flatten()
    assert column.buffers()[0] is None, "no validity bitmap on the outer list"
    assert slots.buffers()[0] is None, "no validity bitmap on the inner list"
    address = values.buffers()[1].address + values.offset * 4
    assert arrays["features"].__array_interface__["data"][0] == address
    assert address % 64 == 0
    assert arrays["features"].shape == (3, 4, 3)
    np.testing.assert_array_equal(arrays["features"][2, 2:], 0, err_msg="padding slots")


def test_features_truncated_with_results():
    reader = read_long(pa.table(feature_rows()), _native.Vocabulary(), positions=2, features=["score"])
    features = batch_to_numpy(reader.batches[0])["features"]
    np.testing.assert_array_equal(features[:, :, 0], [[0.0, 0.5], [1.5, 2.0], [3.0, 3.5]])
    assert reader.stats["results_truncated"] == 2


@pytest.mark.parametrize(
    ("name", "values", "message"),
    [
        ("missing", None, "no column 'missing'"),
        ("score", pa.array(["a"] * 8), "column 'score': a feature column must be numeric or a list of numbers, got string"),
        ("score", pa.array([1.0, None] + [1.0] * 6), "row 1, column 'score': null feature value"),
        ("score", pa.array([[1.0]] * 7 + [[1.0, 2.0]], pa.list_(pa.float32())), "row 7, column 'score': 2 features, but row 0 has 1"),
        ("score", pa.array([["a"]] * 8, pa.list_(pa.string())), "a feature list must hold numbers"),
        ("score", pa.array([2**30] * 8, pa.int64()), "lose precision"),
    ],
)
def test_invalid_feature_columns(name, values, message):
    rows = dict(WSCD_ROWS)
    if values is not None:
        rows[name] = values
    with pytest.raises(ValueError, match=message):
        read_long(pa.table(rows), _native.Vocabulary(), features=[name])


def test_features_only_for_columnar_formats(tmp_path):
    with pytest.raises(ValueError, match="features apply to the long and hf-baidu formats, not to wscd"):
        read_batches("wscd", [tmp_path / "log"], _native.Vocabulary(), features=["score"])
