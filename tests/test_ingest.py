"""Ingest into canonical Parquet shards and read them back: round trips, manifest, splits, errors."""

import json
from collections import Counter
from importlib import resources

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from flax import nnx
from hypothesis import given, settings
from hypothesis import strategies as st

from clickjax.cli import main
from clickjax.data import ClickLog, Vocabulary, batch_to_numpy, read_batches
from clickjax.ingest import aggregate_sessions, ingest, parse_splits, read_load_report
from clickjax.metrics import evaluate
from clickjax.models import MODELS
from clickjax.report import LoadReport
from clickjax.shards import ShardError, read_manifest, read_shards
from clickjax.simulation import draw_random_parameters
from clickjax.vocabulary import load_vocabulary
from clickjax.writers import write_log

POSITIONS = 4


@pytest.fixture(scope="module")
def demo_log():
    """The demo's Baidu-format training log: a real gzip file of 4,000 sessions."""
    with resources.as_file(resources.files("clickjax") / "demo_data" / "demo-train.txt.gz") as path:
        yield path


def many_query_columns(queries: int, sessions_per_query: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Sessions of `queries` queries with 3 results each, query after query, random clicks."""
    rng = np.random.default_rng(seed)
    sessions = queries * sessions_per_query
    query_id = np.repeat(np.arange(queries), sessions_per_query)
    doc_id = np.zeros((sessions, POSITIONS), np.int64)
    doc_id[:, :3] = query_id[:, None] * 10 + rng.permuted(np.tile([1, 2, 3], (sessions, 1)), axis=1)
    mask = np.zeros((sessions, POSITIONS), np.uint8)
    mask[:, :3] = 1
    position = np.where(mask == 1, np.arange(1, POSITIONS + 1), 0)
    click = ((rng.random((sessions, POSITIONS)) < 0.3) & (mask == 1)).astype(np.uint8)
    return {"query_id": query_id, "doc_id": doc_id, "position": position, "click": click, "mask": mask}


@pytest.fixture(scope="module")
def many_query_log(tmp_path_factory):
    """A gzip WSCD log of 400 queries with 5 sessions each, written in query order."""
    path = tmp_path_factory.mktemp("logs") / "sessions.txt.gz"
    write_log(path, many_query_columns(400, 5), "wscd")
    return path


def read_raw(format, paths, positions=10, **options) -> list[pa.RecordBatch]:
    return list(read_batches(format, paths, Vocabulary(), positions=positions, batch_size=1000, **options))


def concatenated(batches) -> dict[str, np.ndarray]:
    parts = [batch_to_numpy(batch) for batch in batches]
    return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}


def assert_same_columns(actual: dict, expected: dict):
    assert list(actual) == list(expected)
    for name in expected:
        assert actual[name].dtype == expected[name].dtype, name
        np.testing.assert_array_equal(actual[name], expected[name], err_msg=name)


# Round trips


def test_ingest_round_trip_baidu_gzip(demo_log, tmp_path):
    behaviour = ["dwelling_time", "multimedia_type"]
    expected = concatenated(read_raw("baidu", [demo_log], behaviour=behaviour))

    manifest = ingest("baidu", [demo_log], tmp_path / "shards", shard_sessions=1500, behaviour=behaviour)
    batches = list(read_shards([tmp_path / "shards"]))

    assert_same_columns(concatenated(batches), expected)
    assert manifest["sessions"] == len(expected["weight"])
    assert [column["name"] for column in manifest["columns"]][-2:] == behaviour


def test_ingest_round_trip_real_wscd(data_dir, tmp_path):
    path = data_dir / "yandex-wscd-pyclick" / "trainSample"
    expected = ClickLog.read("wscd", [path], Vocabulary())

    ingest("wscd", [path], tmp_path / "shards", shard_sessions=10_000)
    actual = ClickLog.read("parquet", [tmp_path / "shards"], Vocabulary())

    assert_same_columns(actual.columns, expected.columns)
    assert actual.positions == 10


def test_ingest_pads_to_longest_session(demo_log, tmp_path):
    reader = read_batches("baidu", [demo_log], Vocabulary(), positions=None, batch_size=1000)
    expected = concatenated(reader)

    manifest = ingest("baidu", [demo_log], tmp_path / "out", positions=None)

    assert manifest["positions"] == reader.positions
    assert_same_columns(concatenated(read_shards([tmp_path / "out"])), expected)


@pytest.fixture
def long_table_with_features(tmp_path):
    """A long Parquet table of 4 sessions, two of them identical, with a number and a 2-vector per result."""
    table = pa.table({
        "session": [0, 0, 1, 1, 2, 2, 3],
        "query": ["q", "q", "q", "q", "r", "r", "q"],
        "document": ["a", "b", "a", "b", "c", "a", "a"],
        "position": [1, 2, 1, 2, 1, 2, 1],
        "click": [1, 0, 1, 0, 0, 1, 0],
        "bm25": [0.5, 1.5, 0.5, 1.5, 2.0, 3.0, 0.5],
        "embedding": [[1.0, 2.0], [3.0, 4.0], [1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [7.0, 8.0], [1.0, 2.0]],
    })
    path = tmp_path / "impressions.parquet"
    pq.write_table(table, path)
    return path


def test_ingest_keeps_features(long_table_with_features, tmp_path):
    features = ["bm25", "embedding"]
    expected = concatenated(read_raw("long", [long_table_with_features], positions=3, features=features))

    manifest = ingest("long", [long_table_with_features], tmp_path / "out", positions=3, features=features)

    actual = concatenated(read_shards([tmp_path / "out"]))
    assert_same_columns(actual, expected)
    assert actual["features"].shape == (4, 3, 3)
    assert {"name": "features", "dtype": "float32", "shape": "[sessions, positions, 3]"} in manifest["columns"]


def test_ingest_aggregates_with_features(long_table_with_features, tmp_path):
    features = ["bm25", "embedding"]

    ingest("long", [long_table_with_features], tmp_path / "out", positions=3, features=features, aggregate=True)

    actual = concatenated(read_shards([tmp_path / "out"]))
    # Sessions 0 and 1 are identical, features included; sessions 2 and 3 are unique.
    assert sorted(actual["weight"].tolist()) == [1.0, 1.0, 2.0]
    merged = actual["features"][actual["weight"] == 2.0][0]
    np.testing.assert_array_equal(merged[:2], [[0.5, 1.0, 2.0], [1.5, 3.0, 4.0]])


def test_shards_size_names_and_manifest(demo_log, tmp_path):
    vocabulary = Vocabulary()
    expected_rows = sum(batch.num_rows for batch in read_raw("baidu", [demo_log]))

    manifest = ingest("baidu", [demo_log], tmp_path / "out", vocabulary=vocabulary, shard_sessions=1000)

    shards = manifest["shards"]
    assert [shard["path"] for shard in shards] == [f"part-{i:05d}.parquet" for i in range(len(shards))]
    assert [shard["sessions"] for shard in shards[:-1]] == [1000] * (len(shards) - 1)
    assert 1 <= shards[-1]["sessions"] <= 1000
    assert sum(shard["sessions"] for shard in shards) == expected_rows
    for shard in shards:
        file = pq.ParquetFile(tmp_path / "out" / shard["path"])
        assert file.metadata.num_rows == shard["sessions"]
        assert file.metadata.row_group(0).column(0).compression == "ZSTD"
    assert manifest == read_manifest(tmp_path / "out")
    assert manifest["positions"] == 10
    assert manifest["vocabulary"]["pair_table_size"] == vocabulary.pair_table_size
    assert manifest["vocabulary"]["query_table_size"] == vocabulary.query_table_size
    assert manifest["vocabulary"]["document_table_size"] == vocabulary.document_table_size
    assert manifest["ingest"]["shard_sessions"] == 1000
    assert {column["name"]: column["dtype"] for column in manifest["columns"]} == {
        "query_id": "int32", "doc_id": "int32", "query_doc_id": "int32", "query_doc_hash": "int32",
        "position": "int32", "click": "uint8", "mask": "uint8", "weight": "float32",
    }


def test_load_report_written(demo_log, tmp_path):
    reader = read_batches("baidu", [demo_log], Vocabulary())
    for _ in reader:
        pass

    ingest("baidu", [demo_log], tmp_path / "out")

    assert read_load_report(tmp_path / "out") == LoadReport.from_stats(reader.stats, name=str(demo_log), log_format="baidu")


def test_shard_batches_are_views(demo_log, tmp_path):
    ingest("baidu", [demo_log], tmp_path / "out")
    batch = next(iter(read_shards([tmp_path / "out"])))

    arrays = batch_to_numpy(batch)

    click_buffer = batch.column("click").values.buffers()[1]
    assert arrays["click"].__array_interface__["data"][0] == click_buffer.address


def test_shards_open_in_pyarrow_dataset(demo_log, tmp_path):
    manifest = ingest("baidu", [demo_log], tmp_path / "out", shard_sessions=1000)

    files = [str(tmp_path / "out" / shard["path"]) for shard in manifest["shards"]]
    table = ds.dataset(files, format="parquet").to_table()

    assert table.num_rows == manifest["sessions"]
    assert table.schema.field("click").type == pa.list_(pa.field("item", pa.uint8(), nullable=False), 10)


@pytest.mark.parametrize("engine", ["polars", "duckdb"])
def test_shards_open_in_other_engines(engine, demo_log, tmp_path):
    module = pytest.importorskip(engine, reason=f"{engine} is not installed; the shards are plain Parquet")
    manifest = ingest("baidu", [demo_log], tmp_path / "out", shard_sessions=1000)
    pattern = str(tmp_path / "out" / "part-*.parquet")

    if engine == "polars":
        rows = module.read_parquet(pattern).height
    else:
        rows = module.sql(f"select count(*) from read_parquet('{pattern}')").fetchone()[0]

    assert rows == manifest["sessions"]


def test_parquet_format_in_read_batches(demo_log, tmp_path):
    ingest("baidu", [demo_log], tmp_path / "out")

    with pytest.raises(ValueError, match="min_results"):
        read_batches("parquet", [tmp_path / "out"], Vocabulary(), min_results=2)
    reader = read_batches("parquet", [tmp_path / "out" / "part-00000.parquet"], Vocabulary(), batch_size=100)
    first = next(reader)

    assert first.num_rows == 100
    assert reader.stats["sessions_read"] == 100


# Vocabulary


def test_ingest_saves_vocabulary(demo_log, tmp_path):
    vocabulary = Vocabulary()

    manifest = ingest("baidu", [demo_log], tmp_path / "out", vocabulary=vocabulary)

    saved = load_vocabulary(tmp_path / "out" / "vocabulary.parquet")
    assert saved.to_arrow().equals(vocabulary.to_arrow())
    assert manifest["vocabulary"]["file"] == "vocabulary.parquet"
    assert manifest["vocabulary"]["pair_table_size"] == saved.pair_table_size


def test_ingest_with_training_vocabulary(data_dir, tmp_path, capsys):
    train = data_dir / "yandex-wscd-pyclick" / "trainSample"
    test = data_dir / "yandex-wscd-pyclick" / "testSample"
    vocabulary = Vocabulary()
    ClickLog.read("wscd", [train], vocabulary)
    vocabulary.freeze()
    expected = ClickLog.read("wscd", [test], vocabulary)
    assert main(["ingest", "--format", "wscd", "--output", str(tmp_path / "train"), str(train)]) == 0

    code = main([
        "ingest", "--format", "wscd", "--output", str(tmp_path / "test"),
        "--vocabulary", str(tmp_path / "train" / "vocabulary.parquet"), str(test),
    ])

    assert code == 0
    actual = ClickLog.read("parquet", [tmp_path / "test"], Vocabulary())
    assert_same_columns(actual.columns, expected.columns)
    report = read_load_report(tmp_path / "test")
    assert report.oov_pairs == expected.stats["oov_pairs"] > 0
    assert actual.stats["oov_pairs"] == report.oov_pairs
    train_manifest = read_manifest(tmp_path / "train")
    test_manifest = read_manifest(tmp_path / "test")
    assert test_manifest["vocabulary"]["id"] == train_manifest["vocabulary"]["id"]
    assert test_manifest["vocabulary"]["frozen"]


def test_train_rejects_shards_of_other_vocabularies(many_query_log, tmp_path, capsys):
    # The same queries in another order get other ids.
    other_log = tmp_path / "other.txt.gz"
    write_log(other_log, many_query_columns(400, 5, seed=9), "wscd")
    ingest("wscd", [many_query_log], tmp_path / "a", positions=POSITIONS)
    ingest("wscd", [other_log], tmp_path / "b", positions=POSITIONS)

    code = main([
        "train", "--model", "pbm", "--format", "parquet", "--train", str(tmp_path / "a"), "--test",
        str(tmp_path / "b"), "--positions", str(POSITIONS), "--epochs", "1", "--output", str(tmp_path / "run"),
    ])

    assert code == 1
    assert "encoded with different vocabularies" in capsys.readouterr().err


def test_cli_ingest_missing_vocabulary(many_query_log, tmp_path, capsys):
    missing = tmp_path / "vocabulary.parquet"

    code = main(["ingest", "--format", "wscd", "--output", str(tmp_path / "out"), "--vocabulary", str(missing), str(many_query_log)])

    assert code == 1
    assert f"--vocabulary {missing} not found" in capsys.readouterr().err


# Shard errors


def test_read_shards_other_positions(demo_log, tmp_path):
    ingest("baidu", [demo_log], tmp_path / "out")

    with pytest.raises(ShardError, match="padded to 10 positions, but 5 were requested") as error:
        read_shards([tmp_path / "out"], positions=5)

    assert error.value.path == str(tmp_path / "out" / "part-00000.parquet")


def test_read_shards_missing_column(demo_log, tmp_path):
    ingest("baidu", [demo_log], tmp_path / "out")
    path = tmp_path / "out" / "part-00000.parquet"
    table = pq.read_table(path)
    pq.write_table(table.drop_columns(["click"]).replace_schema_metadata(table.schema.metadata), path)

    with pytest.raises(ShardError, match="has no column 'click'") as error:
        read_shards([tmp_path / "out"])

    assert error.value.path == str(path)
    assert error.value.column == "click"


def test_read_shards_wrong_column_type(demo_log, tmp_path):
    ingest("baidu", [demo_log], tmp_path / "out")
    path = tmp_path / "out" / "part-00000.parquet"
    table = pq.read_table(path)
    weight = table.schema.get_field_index("weight")
    table = table.set_column(weight, "weight", table.column("weight").cast(pa.float64()))
    pq.write_table(table, path)

    with pytest.raises(ShardError, match="column 'weight' has type double, expected float") as error:
        read_shards([path])

    assert error.value.column == "weight"


def test_read_shards_folder_errors(demo_log, tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes.parquet").write_text("not parquet")
    ingest("baidu", [demo_log], tmp_path / "split", splits={"a": 0.5, "b": 0.5})

    with pytest.raises(ShardError, match="has no manifest.json"):
        read_shards([tmp_path / "empty"])
    with pytest.raises(ShardError, match="contains the splits a, b, not shards"):
        read_shards([tmp_path / "split"])
    with pytest.raises(ShardError, match="is not a readable Parquet file"):
        read_shards([tmp_path / "notes.parquet"])
    with pytest.raises(FileNotFoundError):
        read_shards([tmp_path / "missing"])


def test_read_shards_rejects_mixed_vocabularies(demo_log, tmp_path):
    with resources.as_file(resources.files("clickjax") / "demo_data" / "demo-test.txt.gz") as other_log:
        ingest("baidu", [other_log], tmp_path / "other")
    ingest("baidu", [demo_log], tmp_path / "one")
    ingest("baidu", [demo_log], tmp_path / "again")

    # Two ingests of one log assign the same ids, so their shards read together.
    assert read_shards([tmp_path / "one", tmp_path / "again"]).num_sessions == 8000
    with pytest.raises(ShardError, match="different vocabularies"):
        read_shards([tmp_path / "one", tmp_path / "other"])


# Splits


@pytest.mark.parametrize(
    "spec, message",
    [
        ("train=0.8,test=0.1", "add up to 0.9"),
        ("train=0.5,train=0.5", "'train' appears twice"),
        ("train", "'train' is not NAME=FRACTION"),
        ("train=half,test=0.5", "'half' of 'train' is not a number"),
        ("train=1.5,test=-0.5", "must be in \\(0, 1\\]"),
        ("../up=0.5,test=0.5", "split name '../up'"),
    ],
)
def test_parse_splits_errors(spec, message):
    with pytest.raises(ValueError, match=message):
        parse_splits(spec)


def test_parse_splits_keeps_order():
    assert parse_splits("train=0.8, validation=0.1 ,test=0.1") == {"train": 0.8, "validation": 0.1, "test": 0.1}


def test_session_split_is_contiguous(many_query_log, tmp_path):
    expected = concatenated(read_raw("wscd", [many_query_log], positions=POSITIONS))

    manifest = ingest(
        "wscd", [many_query_log], tmp_path / "out", positions=POSITIONS, shard_sessions=300,
        splits=parse_splits("train=0.8,validation=0.1,test=0.1"),
    )

    # 2,000 sessions: rows 0-1599, 1600-1799 and 1800-1999 in input order.
    assert [entry["sessions"] for entry in manifest["splits"].values()] == [1600, 200, 200]
    start = 0
    for name, rows in [("train", 1600), ("validation", 200), ("test", 200)]:
        actual = concatenated(read_shards([tmp_path / "out" / name]))
        assert_same_columns(actual, {key: value[start : start + rows] for key, value in expected.items()})
        assert read_manifest(tmp_path / "out" / name)["split"] == name
        start += rows
    assert not (tmp_path / "out" / ".staging").exists()


def test_query_split_keeps_queries_together(many_query_log, tmp_path):
    expected = concatenated(read_raw("wscd", [many_query_log], positions=POSITIONS))
    fractions = {"train": 0.6, "validation": 0.25, "test": 0.15}

    manifest = ingest(
        "wscd", [many_query_log], tmp_path / "out", positions=POSITIONS, splits=fractions, split_by="query", seed=3
    )

    queries = {name: concatenated(read_shards([tmp_path / "out" / name]))["query_id"] for name in fractions}
    sets = {name: set(ids.tolist()) for name, ids in queries.items()}
    assert not sets["train"] & sets["validation"]
    assert not sets["train"] & sets["test"]
    assert not sets["validation"] & sets["test"]
    assert sets["train"] | sets["validation"] | sets["test"] == set(expected["query_id"].tolist())
    # Each query keeps all 5 of its sessions.
    for ids in queries.values():
        assert set(np.bincount(ids)[ids].tolist()) == {5}
    # 400 queries: a binomial share has a standard deviation of at most 0.025, so 0.08 is over 3 of them.
    for name, fraction in fractions.items():
        assert abs(len(sets[name]) / 400 - fraction) < 0.08, name
    assert sum(entry["sessions"] for entry in manifest["splits"].values()) == 2000


def test_query_split_depends_on_seed(many_query_log, tmp_path):
    splits = {"train": 0.5, "test": 0.5}
    chosen = []
    for seed in (0, 0, 1):
        folder = tmp_path / f"out-{len(chosen)}"
        ingest("wscd", [many_query_log], folder, positions=POSITIONS, splits=splits, split_by="query", seed=seed)
        chosen.append(set(concatenated(read_shards([folder / "test"]))["query_id"].tolist()))

    assert chosen[0] == chosen[1]
    assert chosen[0] != chosen[2]


@pytest.mark.parametrize("aggregate", [False, True])
def test_random_split_mixes_queries(many_query_log, tmp_path, aggregate):
    expected = concatenated(read_raw("wscd", [many_query_log], positions=POSITIONS))
    fractions = {"train": 0.8, "test": 0.2}

    manifest = ingest(
        "wscd", [many_query_log], tmp_path / "out", positions=POSITIONS, splits=fractions, split_by="random",
        seed=5, aggregate=aggregate,
    )

    parts = {name: concatenated(read_shards([tmp_path / "out" / name])) for name in fractions}
    weights = {name: float(part["weight"].sum()) for name, part in parts.items()}
    assert weights["train"] + weights["test"] == 2000
    # 2,000 sessions: the test share has a standard deviation of about 0.009, so 0.04 is over 4 of them.
    assert abs(weights["test"] / 2000 - 0.2) < 0.04
    # The log lists each query's 5 sessions together, yet most test queries also occur in training.
    train_queries = set(parts["train"]["query_id"].tolist())
    test_queries = set(parts["test"]["query_id"].tolist())
    assert len(test_queries & train_queries) > 0.5 * len(test_queries)
    assert train_queries | test_queries == set(expected["query_id"].tolist())
    assert sum(entry["weight"] for entry in manifest["splits"].values()) == 2000


# Aggregation


def contract_batch(columns: dict[str, np.ndarray]) -> pa.RecordBatch:
    arrays = {}
    for name, array in columns.items():
        if array.ndim == 2:
            arrays[name] = pa.FixedSizeListArray.from_arrays(pa.array(array.ravel()), array.shape[1])
        else:
            arrays[name] = pa.array(array)
    return pa.record_batch(arrays)


def test_aggregate_sessions_hand_example():
    # Rows 0, 2 and 4 are one session; row 1 differs from it only in a click, row 3 only in the query.
    doc = np.array([[5, 6]] * 5, np.int32)
    click = np.array([[1, 0], [0, 0], [1, 0], [1, 0], [1, 0]], np.uint8)
    batch = contract_batch({
        "query_id": np.array([2, 2, 2, 3, 2], np.int32),
        "doc_id": doc,
        "click": click,
        "mask": np.ones((5, 2), np.uint8),
        "weight": np.array([1, 1, 1, 1, 2], np.float32),
    })

    merged = aggregate_sessions(batch)

    assert merged.schema == batch.schema
    assert merged.column("query_id").to_pylist() == [2, 2, 3]
    assert merged.column("click").to_pylist() == [[1, 0], [0, 0], [1, 0]]
    assert merged.column("weight").to_pylist() == [4.0, 1.0, 1.0]


def test_aggregate_sessions_treats_nan_as_equal():
    batch = contract_batch({
        "query_id": np.array([2, 2, 2], np.int32),
        "dwelling_time": np.array([[np.nan], [np.nan], [1.0]], np.float32),
        "weight": np.ones(3, np.float32),
    })

    merged = aggregate_sessions(batch)

    assert merged.column("weight").to_pylist() == [2.0, 1.0]


@settings(max_examples=50, deadline=None)
@given(rows=st.lists(st.tuples(st.integers(2, 4), st.integers(0, 3), st.sampled_from([1.0, 2.0])), min_size=1, max_size=40))
def test_aggregate_sessions_matches_counter(rows):
    # Each row: a query id, a click pattern over 2 slots (as 2 bits) and a weight.
    batch = contract_batch({
        "query_id": np.array([query for query, _, _ in rows], np.int32),
        "click": np.array([[pattern & 1, pattern >> 1] for _, pattern, _ in rows], np.uint8),
        "weight": np.array([weight for _, _, weight in rows], np.float32),
    })
    expected = Counter()
    for query, pattern, weight in rows:
        expected[(query, pattern & 1, pattern >> 1)] += weight

    merged = aggregate_sessions(batch)

    keys = zip(merged.column("query_id").to_pylist(), merged.column("click").to_pylist())
    actual = {(query, *click): weight for (query, click), weight in zip(keys, merged.column("weight").to_pylist())}
    assert actual == dict(expected)
    assert merged.num_rows == len(expected)


def test_ingest_aggregate_counts_identical_sessions(many_query_log, tmp_path):
    expected = concatenated(read_raw("wscd", [many_query_log], positions=POSITIONS))
    keys = [
        (int(expected["query_id"][row]), tuple(expected["doc_id"][row]), tuple(expected["click"][row]))
        for row in range(len(expected["weight"]))
    ]
    counts = {key: keys.count(key) for key in set(keys)}

    # shard_sessions=256 routes the 2,000 sessions into 8 hash buckets.
    manifest = ingest("wscd", [many_query_log], tmp_path / "out", positions=POSITIONS, shard_sessions=256, aggregate=True)

    actual = concatenated(read_shards([tmp_path / "out"]))
    assert len(manifest["shards"]) == 8
    assert manifest["sessions"] == len(counts)
    assert manifest["weight"] == 2000
    merged = {
        (int(actual["query_id"][row]), tuple(actual["doc_id"][row]), tuple(actual["click"][row])): float(actual["weight"][row])
        for row in range(len(actual["weight"]))
    }
    assert merged == {key: float(count) for key, count in counts.items()}


@pytest.mark.parametrize("model_name", ["pbm", "dbn", "ubm"])
def test_aggregated_loss_and_metrics_match_expanded(model_name, tmp_path):
    # 5 queries, 3 documents in 6 orders, 8 click patterns: at most 240 distinct sessions of 2,000.
    path = tmp_path / "log.txt.gz"
    write_log(path, many_query_columns(5, 400, seed=1), "wscd")
    expanded = ClickLog.read("wscd", [path], Vocabulary(), positions=POSITIONS)
    ingest("wscd", [path], tmp_path / "out", positions=POSITIONS, aggregate=True)
    aggregated = ClickLog.read("parquet", [tmp_path / "out"], Vocabulary(), positions=POSITIONS)
    model = MODELS[model_name](positions=POSITIONS, query_doc_pairs=64, rngs=nnx.Rngs(0))
    draw_random_parameters(model, np.random.default_rng(7))

    expanded_loss = float(model.loss(expanded.columns))
    aggregated_loss = float(model.loss(aggregated.columns))
    expanded_metrics = evaluate(model, expanded.batches(512))
    aggregated_metrics = evaluate(model, aggregated.batches(512))

    assert aggregated.num_sessions <= 240
    assert aggregated.total_weight == expanded.num_sessions == 2000
    # float32 sums over 2,000 rows against 240: agreement to a relative 1e-5.
    assert aggregated_loss == pytest.approx(expanded_loss, rel=1e-5)
    assert aggregated_metrics.log_likelihood == pytest.approx(expanded_metrics.log_likelihood, rel=1e-5)
    assert aggregated_metrics.perplexity == pytest.approx(expanded_metrics.perplexity, rel=1e-5)
    assert aggregated_metrics.conditional_perplexity == pytest.approx(expanded_metrics.conditional_perplexity, rel=1e-5)
    # Every session shows 3 results, so rank 4 has no metric in either log.
    assert aggregated_metrics.perplexity_per_rank[:3] == pytest.approx(expanded_metrics.perplexity_per_rank[:3], rel=1e-5)
    assert aggregated_metrics.perplexity_per_rank[3] is expanded_metrics.perplexity_per_rank[3] is None
    assert aggregated_metrics.sessions == expanded_metrics.sessions
    assert aggregated_metrics.results == expanded_metrics.results


# Command line


def test_cli_ingest_then_train(many_query_log, tmp_path, capsys):
    output = tmp_path / "ingested"

    code = main([
        "ingest", "--format", "wscd", "--output", str(output), "--positions", str(POSITIONS),
        "--split", "train=0.8,test=0.2", "--aggregate", str(many_query_log),
    ])

    assert code == 0
    assert "train/:" in capsys.readouterr().out
    code = main([
        "train", "--model", "pbm", "--format", "parquet", "--train", str(output / "train"), "--test",
        str(output / "test"), "--positions", str(POSITIONS), "--epochs", "1", "--output", str(tmp_path / "run"),
    ])
    assert code == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["config"]["format"] == "parquet"
    assert np.isfinite(metrics["log_likelihood"])


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--split", "train=0.7,test=0.2"], "invalid --split 'train=0.7,test=0.2': the fractions add up to 0.9"),
        (["--split", "train:0.5"], "invalid --split 'train:0.5'"),
        (["--split-by", "query"], "--split-by query needs --split"),
        (["--shard-sessions", "0"], "--shard-sessions must be at least 1, got 0"),
        (["--positions", "0"], "--positions must be at least 1, got 0"),
    ],
)
def test_cli_ingest_bad_options(arguments, message, many_query_log, tmp_path, capsys):
    code = main(["ingest", "--format", "wscd", "--output", str(tmp_path / "out"), *arguments, str(many_query_log)])

    assert code == 1
    assert message in capsys.readouterr().err


def test_cli_ingest_missing_input(tmp_path, capsys):
    missing = tmp_path / "no-such-folder" / "log.gz"

    code = main(["ingest", "--format", "wscd", "--output", str(tmp_path / "out"), str(missing)])

    assert code == 1
    assert f"No such file or directory (an input log): {missing}" in capsys.readouterr().err


def test_cli_ingest_non_empty_output(many_query_log, tmp_path, capsys):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("keep me")
    arguments = ["ingest", "--format", "wscd", "--output", str(tmp_path / "out"), str(many_query_log)]

    assert main(arguments) == 1
    assert f"--output {tmp_path / 'out'} is not empty" in capsys.readouterr().err
    assert main([*arguments, "--overwrite"]) == 1
    assert "not an earlier ingest" in capsys.readouterr().err
    assert (tmp_path / "out" / "notes.txt").read_text() == "keep me"


def test_cli_ingest_overwrite_replaces_ingest(many_query_log, tmp_path):
    arguments = ["ingest", "--format", "wscd", "--positions", str(POSITIONS), "--output", str(tmp_path / "out"), str(many_query_log)]
    assert main([*arguments, "--split", "a=0.5,b=0.5"]) == 0

    assert main([*arguments, "--overwrite"]) == 0

    assert not (tmp_path / "out" / "a").exists()
    assert read_manifest(tmp_path / "out")["sessions"] == 2000


def test_cli_ingest_overwrite_replaces_unfinished_ingest(many_query_log, tmp_path, capsys):
    # An ingest killed before its last step leaves only its staging folder: no manifest.
    staging = tmp_path / "out" / ".staging"
    staging.mkdir(parents=True)
    (staging / "part-00000.parquet").write_bytes(b"PAR1")
    arguments = ["ingest", "--format", "wscd", "--positions", str(POSITIONS), "--output", str(tmp_path / "out"), str(many_query_log)]

    assert main(arguments) == 1
    assert "(it contains an ingest that did not finish)" in capsys.readouterr().err
    assert main([*arguments, "--overwrite"]) == 0

    assert not staging.exists()
    assert read_manifest(tmp_path / "out")["sessions"] == 2000


def test_cli_ingest_malformed_line(tmp_path, capsys):
    log = tmp_path / "log.txt"
    log.write_text("7_1\t11,12,13 : 12\n8_2\t21,,23 : 21\n9_1\t31,32 : 31\n")
    arguments = ["ingest", "--format", "wscd", "--positions", "3", "--output", str(tmp_path / "out"), str(log)]

    assert main(arguments) == 1
    error = capsys.readouterr().err
    assert f"invalid urls in {log} at line 2" in error
    # A failed ingest leaves nothing behind, so the same command can run again.
    assert not (tmp_path / "out").exists()

    assert main([*arguments, "--on-error", "skip"]) == 0
    assert read_manifest(tmp_path / "out")["sessions"] == 2
    assert read_load_report(tmp_path / "out").sessions_skipped == 1


def test_cli_ingest_empty_log(tmp_path, capsys):
    log = tmp_path / "empty.txt"
    log.write_text("")

    code = main(["ingest", "--format", "wscd", "--output", str(tmp_path / "out"), str(log)])

    assert code == 1
    assert f"the log has no sessions: {log}" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_empty_split_reads_as_empty_log(tmp_path):
    # One query: a query split sends all its sessions to one of the two splits.
    log = tmp_path / "log.txt"
    log.write_text("7_1\t11,12,13 : 12;7_1\t11,12,13 :\n")
    manifest = ingest("wscd", [log], tmp_path / "out", positions=3, splits={"a": 0.5, "b": 0.5}, split_by="query")
    empty = next(name for name, entry in manifest["splits"].items() if entry["sessions"] == 0)

    log_read = ClickLog.read("parquet", [tmp_path / "out" / empty], Vocabulary(), positions=None)

    assert log_read.num_sessions == 0
    assert log_read.positions == 3
    assert log_read.columns["click"].shape == (0, 3)


def test_cli_train_parquet_missing_folder(tmp_path, capsys):
    missing = tmp_path / "no-such-folder"

    code = main([
        "train", "--model", "pbm", "--format", "parquet", "--train", str(missing), "--test", str(missing),
        "--output", str(tmp_path / "run"),
    ])

    assert code == 1
    assert f"{missing}" in capsys.readouterr().err
