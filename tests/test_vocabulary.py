"""Saving and loading vocabularies: Parquet round trips, counts, pair ends and invalid files."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from clickjax.data import ClickLog, Vocabulary, load_vocabulary, read_batches, save_vocabulary
from clickjax.writers import write_log

# Two WSCD sessions: query 1_1 shows documents 11 and 12, then query 2_1 shows 12 and 13.
TINY_WSCD = "1_1\t11,12 : 11;\n2_1\t12,13 :;\n1_1\t11,12 :;\n"


def simulated_baidu_log(path, seed, queries=30, documents=200, sessions=400, shown=6):
    """Write a Baidu log of random sessions; returns the path. Queries and documents repeat."""
    rng = np.random.default_rng(seed)
    doc_id = np.zeros((sessions, shown), np.int32)
    for row in range(sessions):
        doc_id[row] = rng.choice(documents, size=shown, replace=False) + 2
    columns = {
        "query_id": rng.integers(2, queries + 2, size=sessions).astype(np.int32),
        "doc_id": doc_id,
        "position": np.tile(np.arange(1, shown + 1, dtype=np.int32), (sessions, 1)),
        "click": (rng.random((sessions, shown)) < 0.3).astype(np.uint8),
        "mask": np.ones((sessions, shown), np.uint8),
    }
    write_log(path, columns, "baidu")
    return path


def encoded_batches(format, paths, vocabulary):
    return [batch for batch in read_batches(format, paths, vocabulary, batch_size=256)]


def assert_same_batches(left, right):
    assert len(left) == len(right)
    for left_batch, right_batch in zip(left, right):
        assert left_batch.equals(right_batch)


def test_tiny_log_counts_and_pairs(tmp_path):
    log = tmp_path / "tiny.txt"
    log.write_text(TINY_WSCD)
    vocabulary = Vocabulary()
    ClickLog.read("wscd", [log], vocabulary)
    table = vocabulary.to_arrow().to_pylist()
    rows = [(row["kind"], row["id"], row["count"], row["query_id"], row["doc_id"]) for row in table]
    assert rows == [
        ("query", 2, 2, None, None),
        ("query", 3, 1, None, None),
        ("document", 2, 2, None, None),
        ("document", 3, 3, None, None),
        ("document", 4, 1, None, None),
        ("pair", 2, 2, 2, 2),
        ("pair", 3, 2, 2, 3),
        ("pair", 4, 1, 3, 3),
        ("pair", 5, 1, 3, 4),
    ]
    pairs = vocabulary.pairs().to_pydict()
    assert pairs == {"query_doc_id": [2, 3, 4, 5], "query_id": [2, 2, 3, 3], "doc_id": [2, 3, 3, 4]}


def test_frozen_lookups_are_not_counted(tmp_path):
    log = tmp_path / "tiny.txt"
    log.write_text(TINY_WSCD)
    vocabulary = Vocabulary()
    ClickLog.read("wscd", [log], vocabulary)
    vocabulary.freeze()
    ClickLog.read("wscd", [log], vocabulary)
    counts = vocabulary.to_arrow().column("count").to_pylist()
    assert counts == [2, 1, 2, 3, 1, 2, 2, 1, 1]


def test_round_trip_simulated_baidu(tmp_path):
    train = simulated_baidu_log(tmp_path / "train.txt.gz", seed=1)
    later = simulated_baidu_log(tmp_path / "later.txt.gz", seed=2, queries=40, documents=260)
    original = Vocabulary()
    ClickLog.read("baidu", [train], original)
    save_vocabulary(original, tmp_path / "vocabulary.parquet")
    loaded = load_vocabulary(tmp_path / "vocabulary.parquet")
    assert not loaded.frozen
    assert loaded.to_arrow().equals(original.to_arrow())

    # Both still open: the later log adds the same new keys with the same ids.
    assert_same_batches(encoded_batches("baidu", [later], original), encoded_batches("baidu", [later], loaded))
    assert loaded.to_arrow().equals(original.to_arrow())
    assert len(loaded) > 0


def test_round_trip_keeps_frozen(tmp_path):
    train = simulated_baidu_log(tmp_path / "train.txt", seed=3)
    later = simulated_baidu_log(tmp_path / "later.txt", seed=4, documents=300)
    original = Vocabulary()
    ClickLog.read("baidu", [train], original)
    original.freeze()
    save_vocabulary(original, tmp_path / "vocabulary.parquet")
    loaded = load_vocabulary(tmp_path / "vocabulary.parquet")
    assert loaded.frozen

    from_original = encoded_batches("baidu", [later], original)
    from_loaded = encoded_batches("baidu", [later], loaded)
    assert_same_batches(from_original, from_loaded)
    doc_ids = np.concatenate([batch.column("doc_id").flatten().to_numpy() for batch in from_loaded])
    assert (doc_ids == 1).any(), "the later log should contain documents unknown to the frozen vocabulary"


def test_round_trip_real_wscd(data_dir, tmp_path):
    train = data_dir / "yandex-wscd-pyclick" / "trainSample"
    original = Vocabulary()
    expected = encoded_batches("wscd", [train], original)
    save_vocabulary(original, tmp_path / "vocabulary.parquet")
    loaded = load_vocabulary(tmp_path / "vocabulary.parquet")
    loaded.freeze()
    assert_same_batches(encoded_batches("wscd", [train], loaded), expected)
    assert loaded.pair_table_size == original.pair_table_size
    reader = read_batches("wscd", [train], loaded)
    for _ in reader:
        pass
    assert reader.stats["oov_pairs"] == 0


def test_empty_vocabulary_round_trip(tmp_path):
    save_vocabulary(Vocabulary(), tmp_path / "empty.parquet")
    loaded = load_vocabulary(tmp_path / "empty.parquet")
    assert len(loaded) == 0
    assert loaded.query_table_size == 2


def saved_table(tmp_path):
    log = tmp_path / "tiny.txt"
    log.write_text(TINY_WSCD)
    vocabulary = Vocabulary()
    ClickLog.read("wscd", [log], vocabulary)
    return pa.Table.from_batches([vocabulary.to_arrow()])


def test_load_rejects_other_format_version(tmp_path):
    table = saved_table(tmp_path)
    metadata = dict(table.schema.metadata)
    metadata[b"clickjax.vocabulary.format_version"] = b"7"
    path = tmp_path / "future.parquet"
    pq.write_table(table.replace_schema_metadata(metadata), path)
    with pytest.raises(ValueError, match=r"future\.parquet: vocabulary format version '7' is not supported"):
        load_vocabulary(path)


def test_load_rejects_missing_metadata(tmp_path):
    path = tmp_path / "plain.parquet"
    pq.write_table(saved_table(tmp_path).replace_schema_metadata(None), path)
    with pytest.raises(ValueError, match=r"plain\.parquet: .*not a clickjax vocabulary"):
        load_vocabulary(path)


def test_load_rejects_missing_column(tmp_path):
    table = saved_table(tmp_path)
    path = tmp_path / "no_count.parquet"
    pq.write_table(table.drop_columns(["count"]), path)
    with pytest.raises(ValueError, match=r"no_count\.parquet: column 'count' is missing"):
        load_vocabulary(path)


def test_load_rejects_wrong_column_type(tmp_path):
    table = saved_table(tmp_path)
    index = table.schema.get_field_index("fingerprint")
    signed = table.set_column(index, "fingerprint", table.column("fingerprint").cast(pa.int64(), safe=False))
    path = tmp_path / "signed.parquet"
    pq.write_table(signed, path)
    with pytest.raises(ValueError, match=r"signed\.parquet: column 'fingerprint' has type int64, expected uint64"):
        load_vocabulary(path)


def test_load_rejects_gap_in_ids(tmp_path):
    table = saved_table(tmp_path)
    ids = table.column("id").to_pylist()
    ids[1] = 9
    path = tmp_path / "gap.parquet"
    pq.write_table(table.set_column(1, "id", pa.array(ids, pa.int32())), path)
    with pytest.raises(ValueError, match=r"gap\.parquet: invalid vocabulary: query id 3 is missing"):
        load_vocabulary(path)


def test_load_rejects_non_parquet(tmp_path):
    path = tmp_path / "vocabulary.parquet"
    path.write_text("query\t2\n")
    with pytest.raises(ValueError, match=r"vocabulary\.parquet: not a readable Parquet file"):
        load_vocabulary(path)


def test_load_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_vocabulary(tmp_path / "absent.parquet")


def test_from_arrow_rejects_unknown_kind(tmp_path):
    batch = saved_table(tmp_path).to_batches()[0]
    kinds = batch.column("kind").to_pylist()
    kinds[0] = "user"
    broken = batch.set_column(0, "kind", pa.array(kinds))
    with pytest.raises(ValueError, match='row 0: kind "user" is not one of query, document, pair'):
        Vocabulary.from_arrow(broken.replace_schema_metadata(batch.schema.metadata))
