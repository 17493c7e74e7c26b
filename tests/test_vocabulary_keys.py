"""Key texts in vocabularies: what each reader stores, save and load, version 1 files, threads."""

import gzip

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from clickjax import _native
from clickjax.data import Vocabulary, load_vocabulary, read_batches, save_vocabulary
from clickjax.formats.hf_baidu import read_hf_baidu
from clickjax.formats.long import read_long
from test_formats_hf_baidu import builder_table

# Query 1_1 shows documents 11 and 12, then query 2_1 shows 12 and 13.
TINY_WSCD = "1_1\t11,12 : 11;\n2_1\t12,13 :;\n1_1\t11,12 :;\n"


def read_into(vocabulary, format, paths, **options):
    for _ in read_batches(format, paths, vocabulary, **options):
        pass
    return vocabulary


def keys_by_kind(vocabulary):
    """Return {kind: [key, ...]} of a vocabulary's rows, in id order."""
    rows = vocabulary.to_arrow().to_pylist()
    return {kind: [row["key"] for row in rows if row["kind"] == kind] for kind in ("query", "document", "pair")}


def test_wscd_keys_in_id_order(tmp_path):
    log = tmp_path / "log.txt"
    log.write_text(TINY_WSCD)
    vocabulary = read_into(Vocabulary(keys=True), "wscd", [log])
    assert vocabulary.records_keys
    keys = keys_by_kind(vocabulary)
    assert keys["query"] == [b"1_1", b"2_1"]
    assert keys["document"] == [b"11", b"12", b"13"]
    assert keys["pair"] == [None, None, None, None]
    # Three keys of three bytes, two of two bytes, plus one offset per key.
    assert vocabulary.key_bytes >= 3 * 3 + 2 * 2


def test_keys_off_by_default(tmp_path):
    log = tmp_path / "log.txt"
    log.write_text(TINY_WSCD)
    vocabulary = read_into(Vocabulary(), "wscd", [log])
    assert not vocabulary.records_keys
    assert vocabulary.key_bytes == 0
    assert set(keys_by_kind(vocabulary)["query"]) == {None}


def test_pairs_with_keys(tmp_path):
    log = tmp_path / "log.txt"
    log.write_text(TINY_WSCD)
    vocabulary = read_into(Vocabulary(keys=True), "wscd", [log])
    pairs = vocabulary.pairs(keys=True)
    assert pairs.schema.field("query_key").type == pa.large_binary()
    assert list(zip(pairs.column("query_key").to_pylist(), pairs.column("doc_key").to_pylist())) == [
        (b"1_1", b"11"), (b"1_1", b"12"), (b"2_1", b"12"), (b"2_1", b"13"),
    ]
    assert vocabulary.pairs().column_names == ["query_doc_id", "query_id", "doc_id"]


def test_save_load_keeps_keys(tmp_path):
    log = tmp_path / "log.txt"
    log.write_text(TINY_WSCD)
    vocabulary = read_into(Vocabulary(keys=True), "wscd", [log])
    path = tmp_path / "vocabulary.parquet"
    save_vocabulary(vocabulary, path)

    assert pq.read_schema(path).field("key").type == pa.large_binary()
    assert pq.read_schema(path).metadata[b"clickjax.vocabulary.format_version"] == b"2"
    loaded = load_vocabulary(path)
    assert loaded.records_keys
    assert loaded.to_arrow().equals(vocabulary.to_arrow())

    # Reading more into the loaded vocabulary stores the keys of new ids after the old ones.
    more = tmp_path / "more.txt"
    more.write_text("3_1\t14,11 :;\n")
    read_into(loaded, "wscd", [more])
    assert keys_by_kind(loaded)["query"] == [b"1_1", b"2_1", b"3_1"]
    assert keys_by_kind(loaded)["document"] == [b"11", b"12", b"13", b"14"]


def test_version_1_file_loads_without_keys(tmp_path):
    log = tmp_path / "log.txt"
    log.write_text(TINY_WSCD)
    vocabulary = read_into(Vocabulary(keys=True), "wscd", [log])
    table = pa.Table.from_batches([vocabulary.to_arrow()]).drop_columns(["key"])
    metadata = {
        b"clickjax.vocabulary.format_version": b"1",
        b"clickjax.vocabulary.frozen": b"false",
    }
    path = tmp_path / "old.parquet"
    pq.write_table(table.replace_schema_metadata(metadata), path)

    loaded = load_vocabulary(path)

    assert not loaded.records_keys
    assert loaded.query_table_size == vocabulary.query_table_size
    assert loaded.pairs().equals(vocabulary.pairs())
    assert set(keys_by_kind(loaded)["document"]) == {None}
    assert loaded.pairs(keys=True).column("query_key").null_count == 4


def test_version_2_without_key_column_rejected(tmp_path):
    vocabulary = Vocabulary(keys=True)
    path = tmp_path / "no_key.parquet"
    pq.write_table(pa.Table.from_batches([vocabulary.to_arrow()]).drop_columns(["key"]), path)
    with pytest.raises(ValueError, match=r"no_key\.parquet: column 'key' is missing"):
        load_vocabulary(path)


def test_key_column_of_wrong_type_rejected(tmp_path):
    table = pa.Table.from_batches([Vocabulary(keys=True).to_arrow()])
    index = table.schema.get_field_index("key")
    path = tmp_path / "int_key.parquet"
    pq.write_table(table.set_column(index, "key", pa.array([], pa.int64())), path)
    with pytest.raises(ValueError, match=r"int_key\.parquet: column 'key' has type int64, expected large_binary"):
        load_vocabulary(path)


def test_string_key_column_is_cast(tmp_path):
    log = tmp_path / "log.txt"
    log.write_text(TINY_WSCD)
    vocabulary = read_into(Vocabulary(keys=True), "wscd", [log])
    table = pa.Table.from_batches([vocabulary.to_arrow()])
    index = table.schema.get_field_index("key")
    path = tmp_path / "string_key.parquet"
    pq.write_table(table.set_column(index, "key", table.column("key").cast(pa.string())), path)
    assert keys_by_kind(load_vocabulary(path))["query"] == [b"1_1", b"2_1"]


def test_frozen_vocabulary_adds_no_keys(tmp_path):
    log = tmp_path / "log.txt"
    log.write_text(TINY_WSCD)
    vocabulary = Vocabulary(keys=True)
    vocabulary.freeze()
    read_into(vocabulary, "wscd", [log])
    assert vocabulary.query_table_size == 2
    assert vocabulary.key_bytes == 0


def test_reindex_moves_keys_with_ids(tmp_path):
    log = tmp_path / "log.txt"
    log.write_text(TINY_WSCD)
    vocabulary = read_into(Vocabulary(keys=True), "wscd", [log])
    # Document 12 is shown three times, 11 twice and 13 once.
    by_count = vocabulary.reindex(order="frequency", min_count=2)
    assert keys_by_kind(by_count)["document"] == [b"12", b"11"]
    assert keys_by_kind(by_count)["query"] == [b"1_1"]


def wscd_text(file, sessions):
    """Return WSCD text whose query and URL ids depend on the file and the session."""
    lines = []
    for session in range(sessions):
        query = (file * 7 + session) % 60
        urls = [f"u{(query * 3 + rank + file) % 97}" for rank in range(5)]
        lines.append(f"{query}_{file % 3}\t{','.join(urls)} : {urls[session % 5]};\n")
    return "".join(lines)


def test_threads_give_identical_keys(tmp_path):
    paths = []
    for file in range(8):
        path = tmp_path / f"part-{file}.gz"
        with gzip.open(path, "wt", encoding="ascii") as handle:
            handle.write(wscd_text(file, 300))
        paths.append(path)

    single = read_into(Vocabulary(keys=True), "wscd", paths, threads=1, batch_size=64)
    parallel = read_into(Vocabulary(keys=True), "wscd", paths, threads=4, batch_size=64)

    assert parallel.to_arrow().equals(single.to_arrow())
    assert parallel.pairs(keys=True).equals(single.pairs(keys=True))
    keys = keys_by_kind(single)
    assert len(keys["query"]) == single.query_table_size - 2
    assert None not in keys["query"] + keys["document"]
    # The first session of the first file is query 0_0 with documents u0 to u4.
    assert keys["query"][0] == b"0_0"
    assert keys["document"][:5] == [b"u0", b"u1", b"u2", b"u3", b"u4"]


def test_long_table_keys_render_like_fingerprints():
    table = pa.table({
        "session": [0, 0, 1],
        "query": ["cats", "cats", "dogs"],
        "document": pa.array([13, 7, 13], pa.int64()),
        "position": [2, 1, 1],
        "click": [True, False, False],
    })
    vocabulary = _native.Vocabulary(keys=True)
    list(read_long(table, vocabulary))
    keys = keys_by_kind(vocabulary)
    assert keys["query"] == [b"cats", b"dogs"]
    # Session 0 is ordered by rank, so document 7 (rank 1) gets the first id.
    assert keys["document"] == [b"7", b"13"]
    fingerprints = vocabulary.to_arrow().column("fingerprint").to_pylist()
    assert fingerprints[0] == _native.fingerprint(pa.array(["cats"]), "query", "q")[0].as_py()
    assert fingerprints[2] == _native.fingerprint(pa.array([7]), "document", "d")[0].as_py()


def test_hf_baidu_keys_are_key_columns():
    vocabulary = _native.Vocabulary(keys=True)
    list(read_hf_baidu(builder_table(), vocabulary, positions=4))
    keys = keys_by_kind(vocabulary)
    table = builder_table()
    assert keys["query"] == [table.column("query_md5")[0].as_py().encode()]
    assert keys["document"] == [url.encode() for url in table.column("url_md5").to_pylist()]


def test_key_text_rejects_nulls_and_floats():
    with pytest.raises(ValueError, match=r"invalid column query.*1 null values"):
        _native.key_text(pa.array(["a", None]), "query")
    with pytest.raises(ValueError, match=r"invalid column score: type Float64 is not a string, binary or integer type"):
        _native.key_text(pa.array([1.5]), "score")
    vocabulary = _native.Vocabulary(keys=True)
    one = pa.array([1], pa.uint64())
    with pytest.raises(ValueError, match="query_keys and document_keys go together"):
        _native.batch_columns(vocabulary, one, pa.array([0, 1], pa.int64()), one, pa.array([1], pa.int32()),
                              pa.array([0], pa.uint8()), query_keys=pa.array([b"q"], pa.large_binary()))
