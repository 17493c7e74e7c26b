"""Baidu-ULTR exports for Hugging Face (Feather and Parquet, one row per document or per query).

The fixtures are written with pyarrow in the schemas of the GitHub builder (one row per document)
and of the loading script's examples saved as Parquet (one row per query), float16 embeddings
included. Keys and token ids are invented.
"""

import hashlib

import numpy as np
import pyarrow as pa
import pyarrow.feather as feather
import pyarrow.parquet as parquet
import pytest
from hypothesis import HealthCheck, given, settings

from clickjax import _native
from clickjax.cli import main
from clickjax.data import ClickLog, batch_to_numpy, read_batches
from clickjax.formats.hf_baidu import detect_layout, read_hf_baidu
from clickjax.formats.long import read_long
from test_formats_baidu import BAIDU_ANNOTATION, BAIDU_PART, baidu_sessions, render_baidu
from test_formats_long import long_rows
from test_readers import column, read, write

EMBEDDING = 768
URLS = ["0123456789abcdef0123456789abcdef", "00112233445566778899aabbccddeeff"]
QUERY_MD5 = hashlib.md5(b"101\x01102\x01103").hexdigest()


def embedding(rows: int, seed: int) -> np.ndarray:
    """`[rows, 768]` float16 values, each exactly representable in float16."""
    return (np.random.default_rng(seed).integers(-512, 512, (rows, EMBEDDING)) / 64).astype(np.float16)


# The raw example session (documents at ranks 1 and 3, the missing one at rank 2 dropped), as the
# GitHub builder writes it: one row per document.
def builder_table() -> pa.Table:
    vectors = embedding(2, seed=1)
    return pa.table(
        {
            "query_no": pa.array([0, 0], pa.int64()),
            "query_id": pa.array(["1001", "1001"]),
            "query_md5": pa.array([QUERY_MD5] * 2),
            "url_md5": pa.array(URLS),
            "text_md5": pa.array(["t1" * 16, "t2" * 16]),
            "position": pa.array([1, 3], pa.int32()),
            "media_type": pa.array([0, 11], pa.int32()),
            "displayed_time": pa.array([3.2, 5.0], pa.float32()),
            "serp_height": pa.array([560, 560], pa.int32()),
            "slipoff_count_after_click": pa.array([0, 1], pa.int32()),
            "click": pa.array([0, 1], pa.int32()),
            "query_document_embedding": pa.array(list(vectors), pa.list_(pa.float16())),
            "bm25": pa.array([1.75, 4.25], pa.float32()),
            "bm25_title": pa.array([0.5, 2.0], pa.float32()),
            "title_length": pa.array([3, 2], pa.int32()),
        }
    )


# The same session as the loading script returns it: one row per query with list columns and the
# embedding as an (n, 768) float16 array.
def script_table() -> pa.Table:
    vectors = embedding(2, seed=1)
    return pa.table(
        {
            "query_id": pa.array(["1001"]),
            "query_md5": pa.array([QUERY_MD5]),
            "url_md5": pa.array([URLS], pa.list_(pa.string())),
            "text_md5": pa.array([["t1" * 16, "t2" * 16]], pa.list_(pa.string())),
            "query_document_embedding": pa.array([list(vectors)], pa.list_(pa.list_(pa.float16()))),
            "click": pa.array([[0, 1]], pa.list_(pa.int32())),
            "position": pa.array([[1, 3]], pa.list_(pa.int32())),
            "media_type": pa.array([[0, 11]], pa.list_(pa.int32())),
            "displayed_time": pa.array([[3.2, 5.0]], pa.list_(pa.float32())),
            "serp_height": pa.array([[560, 560]], pa.list_(pa.int32())),
            "slipoff_count_after_click": pa.array([[0, 1]], pa.list_(pa.int32())),
            "bm25": pa.array([[1.75, 4.25]], pa.list_(pa.float32())),
            "title_bm25": pa.array([[0.5, 2.0]], pa.list_(pa.float32())),
            "title_length": pa.array([[3, 2]], pa.list_(pa.int32())),
            "n": pa.array([2], pa.int32()),
        }
    )


def save(table: pa.Table, path) -> str:
    if str(path).endswith(".feather"):
        feather.write_feather(table, path)
    else:
        parquet.write_table(table, path)
    return str(path)


FEATURES = ["bm25", "bm25_title", "query_document_embedding"]


def test_layouts_detected_from_schema():
    assert detect_layout(builder_table().schema) == "document"
    assert detect_layout(script_table().schema) == "query"
    with pytest.raises(ValueError, match="no column of a Baidu-ULTR export"):
        detect_layout(pa.schema([("query_md5", pa.string())]))


@pytest.mark.parametrize("layout", ["builder", "script"])
@pytest.mark.parametrize("suffix", [".feather", ".parquet"])
def test_layouts_and_files_give_equal_batches(tmp_path, layout, suffix):
    expected = read_hf_baidu(builder_table(), _native.Vocabulary(), features=FEATURES, positions=4)
    table = builder_table() if layout == "builder" else script_table()
    path = save(table, tmp_path / f"part-0_split-0{suffix}")

    reader = read_batches("hf-baidu", [path], _native.Vocabulary(), positions=4, features=FEATURES)

    assert len(reader.batches) == 1
    assert reader.batches[0].equals(expected.batches[0])
    assert reader.stats["lines_read"] == 2
    assert reader.stats["sessions_kept"] == 1


def test_example_matches_raw_baidu_log(tmp_path):
    raw, _ = read("baidu", [write(tmp_path, "part-00000", BAIDU_PART)], positions=4, behaviour=["multimedia_type", "displayed_time"])
    path = save(script_table(), tmp_path / "clicks.parquet")

    reader = read_batches("hf-baidu", [path], _native.Vocabulary(), positions=4, behaviour=["multimedia_type", "displayed_time"])

    for name in ("query_id", "doc_id", "query_doc_id", "position", "click", "mask", "multimedia_type", "displayed_time"):
        np.testing.assert_array_equal(column(reader.batches, name), column(raw, name), err_msg=name)
    np.testing.assert_array_equal(column(reader.batches, "position"), [[1, 3, 0, 0]])
    np.testing.assert_array_equal(column(reader.batches, "multimedia_type"), [[0, 11, -1, -1]])


def test_features_values_and_dtype(tmp_path):
    vectors = embedding(2, seed=1)
    path = save(builder_table(), tmp_path / "part.feather")

    reader = read_batches("hf-baidu", [path], _native.Vocabulary(), positions=3, features=["bm25", "title_bm25", "title_length", "query_document_embedding"])
    batch = reader.batches[0]
    arrays = batch_to_numpy(batch)

    # One float per lexical column, then the 768 embedding values: F = 3 + 768.
    slot = pa.list_(pa.field("item", pa.float32(), nullable=False), 771)
    assert batch.schema.field("features").type == pa.list_(pa.field("item", slot, nullable=False), 3)
    features = arrays["features"]
    assert features.dtype == np.float32
    assert features.shape == (1, 3, 771)
    np.testing.assert_array_equal(features[0, :2, 0], [1.75, 4.25])
    # title_bm25 is the loading script's name of the builder's bm25_title.
    np.testing.assert_array_equal(features[0, :2, 1], [0.5, 2.0])
    np.testing.assert_array_equal(features[0, :2, 2], [3, 2])
    np.testing.assert_array_equal(features[0, :2, 3:], vectors.astype(np.float32))
    np.testing.assert_array_equal(features[0, 2], 0, err_msg="padding slot")


def test_behaviour_columns_with_nulls():
    table = builder_table()
    table = table.set_column(table.schema.get_field_index("media_type"), "media_type", pa.array([None, 11], pa.int32()))
    table = table.set_column(table.schema.get_field_index("displayed_time"), "displayed_time", pa.array([3.2, None], pa.float32()))

    reader = read_hf_baidu(table, _native.Vocabulary(), behaviour=["multimedia_type", "displayed_time", "slipoff_count_after_click"], positions=3)
    arrays = batch_to_numpy(reader.batches[0])

    np.testing.assert_array_equal(arrays["multimedia_type"], [[-1, 11, -1]])
    np.testing.assert_array_equal(arrays["displayed_time"][0, :1], [np.float32(3.2)])
    assert np.isnan(arrays["displayed_time"][0, 1:]).all()
    np.testing.assert_array_equal(arrays["slipoff_count_after_click"][0, :2], [0, 1])


def hf_tables(sessions):
    """Generated Baidu sessions as both export layouts, keeping the shown results with their ranks."""
    rows = long_rows(sessions)
    md5 = {query: hashlib.md5(query.encode()).hexdigest() for query in rows["query"]}
    documents = pa.table(
        {
            "query_no": pa.array(rows["session"], pa.int64()),
            "query_md5": pa.array([md5[q] for q in rows["query"]], pa.string()),
            "url_md5": pa.array(rows["document"], pa.string()),
            "position": pa.array(rows["position"], pa.int32()),
            "click": pa.array(np.array(rows["click"], np.int32)),
        }
    )
    sessions_index = sorted(set(rows["session"]))
    grouped = {name: [[] for _ in sessions_index] for name in ("url_md5", "position", "click")}
    query_md5 = []
    where = {session: i for i, session in enumerate(sessions_index)}
    for session, query, url, rank, click in zip(*rows.values()):
        i = where[session]
        if len(query_md5) <= i:
            query_md5.append(md5[query])
        grouped["url_md5"][i].append(url)
        grouped["position"][i].append(rank)
        grouped["click"][i].append(int(click))
    queries = pa.table(
        {
            "query_md5": pa.array(query_md5, pa.string()),
            "url_md5": pa.array(grouped["url_md5"], pa.list_(pa.string())),
            "position": pa.array(grouped["position"], pa.list_(pa.int32())),
            "click": pa.array(grouped["click"], pa.list_(pa.int32())),
        }
    )
    return rows, documents, queries


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sessions=baidu_sessions)
def test_raw_long_and_hf_agree(tmp_path, sessions):
    raw, _ = read("baidu", [write(tmp_path, "part", render_baidu(sessions))], positions=5, batch_size=4)
    rows, documents, queries = hf_tables(sessions)
    if not rows["session"]:
        assert not raw
        return
    readers = {
        "long": read_long(pa.table(rows), _native.Vocabulary(), positions=5, batch_size=4).batches,
        "hf-baidu documents": read_hf_baidu(documents, _native.Vocabulary(), positions=5, batch_size=4).batches,
        "hf-baidu queries": read_hf_baidu(queries, _native.Vocabulary(), positions=5, batch_size=4).batches,
    }
    for reader, batches in readers.items():
        for name in ("query_id", "doc_id", "query_doc_id", "position", "click", "mask"):
            np.testing.assert_array_equal(column(batches, name), column(raw, name), err_msg=f"{reader}: {name}")


def test_files_concatenate_sessions(tmp_path):
    first = save(builder_table(), tmp_path / "part-0_split-0.feather")
    second = save(script_table(), tmp_path / "part-0_split-1.parquet")

    reader = read_hf_baidu([first, second], _native.Vocabulary(), positions=3)

    # Both files hold the same query and documents: two rows with the same ids.
    np.testing.assert_array_equal(column(reader.batches, "query_id"), [2, 2])
    np.testing.assert_array_equal(column(reader.batches, "doc_id"), [[2, 3, 0], [2, 3, 0]])
    assert reader.stats["sessions_kept"] == 2


def test_session_rules_and_counters():
    table = pa.table(
        {
            "query_no": [0, 0, 0, 1, 2, 2],
            "query_md5": ["a", "a", "a", "b", "a", "a"],
            "url_md5": ["u1", "u2", "u3", "u4", "u1", "u5"],
            "position": [1, 2, 3, 1, 1, 2],
            "click": [0, 1, 0, 0, 0, 0],
        }
    )
    reader = read_hf_baidu(table, _native.Vocabulary(), positions=2, min_sessions_per_query=2)

    # Session 0 loses rank 3; session 1 is the only one of query b.
    assert reader.stats["results_truncated"] == 1
    assert reader.stats["sessions_dropped_rare_query"] == 1
    assert reader.stats["sessions_kept"] == 2

    # Session 2 has no click.
    reader = read_hf_baidu(table, _native.Vocabulary(), drop_sessions_without_clicks=True)
    assert reader.stats["sessions_dropped_without_clicks"] == 2
    assert reader.stats["sessions_kept"] == 1

    frozen = _native.Vocabulary()
    frozen.freeze()
    reader = read_hf_baidu(table, frozen, positions=3, min_results=3)
    assert reader.stats["sessions_dropped_few_results"] == 2
    assert reader.stats["oov_queries"] == 1
    assert reader.stats["oov_documents"] == 3


def annotation_table() -> pa.Table:
    """The annotation example's first query as the loading script's annotation config returns it."""
    return pa.table(
        {
            "query_id": pa.array(["7"]),
            "query_md5": pa.array([hashlib.md5(b"101\x01102").hexdigest()]),
            "text_md5": pa.array([["a" * 32, "b" * 32]], pa.list_(pa.string())),
            "query_document_embedding": pa.array([list(embedding(2, seed=2))], pa.list_(pa.list_(pa.float16()))),
            "label": pa.array([[3, 0]], pa.list_(pa.int32())),
            "n": pa.array([2], pa.int32()),
            "frequency_bucket": pa.array([0], pa.int32()),
        }
    )


def test_annotation_export_matches_raw_file(tmp_path):
    raw, _ = read("baidu-annotation", [write(tmp_path, "annotation_data_0522.txt", BAIDU_ANNOTATION)], positions=3)
    path = save(annotation_table(), tmp_path / "annotations.feather")

    reader = read_batches("hf-baidu", [path], _native.Vocabulary(), positions=3)

    for name in ("query_id", "doc_id", "position", "click", "mask", "label", "frequency_bucket"):
        np.testing.assert_array_equal(column(reader.batches, name), column(raw, name), err_msg=name)
    np.testing.assert_array_equal(column(reader.batches, "label"), [[3, 0, -1]])
    np.testing.assert_array_equal(column(reader.batches, "frequency_bucket"), [0])
    assert reader.batches[0].schema.field("frequency_bucket").type == pa.int32()


def test_query_id_key_is_an_option():
    table = builder_table().drop_columns(["query_md5"])
    with pytest.raises(ValueError, match='missing column .query_md5.; pass query_key="query_id"'):
        read_hf_baidu(table, _native.Vocabulary())
    reader = read_hf_baidu(table, _native.Vocabulary(), query_key="query_id")
    assert reader.stats["sessions_kept"] == 1


def replace(table: pa.Table, name: str, values) -> pa.Table:
    return table.set_column(table.schema.get_field_index(name), name, values)


@pytest.mark.parametrize(
    ("layout", "change", "message"),
    [
        ("builder", lambda t: t.drop_columns(["query_md5", "query_id"]), "part.feather: missing column 'query_md5'"),
        ("builder", lambda t: t.drop_columns(["query_no"]), "part.feather: missing column 'query_no'"),
        ("builder", lambda t: replace(t, "click", pa.array(["0", "1"])), "part.feather: column 'click': expected integers, got string"),
        ("builder", lambda t: replace(t, "position", pa.array([1, 0], pa.int32())), "part.feather: row 1, column 'position': invalid value 0, expected an integer of 1 or more"),
        (
            "builder",
            lambda t: replace(t, "query_md5", pa.array([QUERY_MD5, "ff" * 16])),
            f"part.feather: row 1, column 'query_md5': invalid value '{'ff' * 16}', expected '{QUERY_MD5}' as in row 0 of the same query_no",
        ),
        ("builder", lambda t: replace(t, "click", pa.array([0, 2], pa.int32())), "part.feather: row 1, column 'click': invalid value 2, expected an integer from 0 to 1"),
        ("script", lambda t: replace(t, "position", pa.array([[1, 0]], pa.list_(pa.int32()))), "part.feather: row 0, column 'position': invalid value 0"),
        (
            "script",
            lambda t: replace(t, "click", pa.array([[0, 1, 1]], pa.list_(pa.int32()))),
            "part.feather: row 0, column 'click': invalid list of 3 values, expected 2 like 'url_md5'",
        ),
        (
            "script",
            lambda t: replace(t, "query_document_embedding", pa.array([list(embedding(1, 0))], pa.list_(pa.list_(pa.float16())))),
            "part.feather: row 0, column 'query_document_embedding': invalid list of 1 values, expected 2",
        ),
        ("script", lambda t: replace(t, "n", pa.array([3], pa.int32())), "part.feather: row 0, column 'n': invalid value 3, expected 2"),
        (
            "script",
            lambda t: replace(t, "bm25", pa.array([[1.0, None]], pa.list_(pa.float32()))),
            "part.feather: row 0, column 'bm25': null feature value",
        ),
    ],
)
def test_invalid_exports_name_file_row_column(tmp_path, layout, change, message):
    table = change(builder_table() if layout == "builder" else script_table())
    path = save(table, tmp_path / "part.feather")
    with pytest.raises(ValueError) as raised:
        read_hf_baidu([path], _native.Vocabulary(), features=["bm25"])
    assert message in str(raised.value)


def test_embedding_rows_of_different_length(tmp_path):
    table = builder_table()
    ragged = pa.array([list(embedding(1, 0)[0]), list(embedding(1, 0)[0][:5])], pa.list_(pa.float16()))
    path = save(replace(table, "query_document_embedding", ragged), tmp_path / "part.parquet")
    with pytest.raises(ValueError, match=r"part.parquet: row 1, column 'query_document_embedding': 5 features, but row 0 has 768"):
        read_hf_baidu([path], _native.Vocabulary(), features=["query_document_embedding"])


def test_click_and_annotation_files_not_mixed(tmp_path):
    clicks = save(script_table(), tmp_path / "clicks.parquet")
    annotations = save(annotation_table(), tmp_path / "annotations.parquet")
    with pytest.raises(ValueError, match=r"annotations.parquet: the optional columns \(\['label'\], \['frequency_bucket'\], 0\) differ"):
        read_hf_baidu([clicks, annotations], _native.Vocabulary(), document_key="text")


def test_missing_file_names_path(tmp_path):
    with pytest.raises(FileNotFoundError) as raised:
        read_hf_baidu([tmp_path / "part-9.feather"], _native.Vocabulary())
    assert raised.value.filename == str(tmp_path / "part-9.feather")


def test_invalid_options():
    with pytest.raises(ValueError, match="invalid query_key 'region'"):
        read_hf_baidu(builder_table(), _native.Vocabulary(), query_key="region")
    with pytest.raises(ValueError, match="invalid document_key 'title'"):
        read_hf_baidu(builder_table(), _native.Vocabulary(), document_key="title")
    with pytest.raises(ValueError, match="dwelling_time"):
        read_hf_baidu(builder_table(), _native.Vocabulary(), behaviour=["dwell"])
    with pytest.raises(ValueError, match="missing column 'dwelling_time'"):
        read_hf_baidu(builder_table(), _native.Vocabulary(), behaviour=["dwelling_time"])
    with pytest.raises(ValueError, match="table: missing column 'url_md5'"):
        read_hf_baidu(builder_table().drop_columns(["url_md5"]), _native.Vocabulary(), document_key="url")
    with pytest.raises(ValueError, match="missing feature column 'bm42'"):
        read_hf_baidu(builder_table(), _native.Vocabulary(), features=["bm42"])


def test_click_log_keeps_features(tmp_path):
    path = save(builder_table(), tmp_path / "part.feather")
    log = ClickLog.read("hf-baidu", [path], _native.Vocabulary(), positions=3, features=["bm25"])

    batch = next(log.batches(batch_size=4))
    assert batch["features"].shape == (4, 3, 1)
    np.testing.assert_array_equal(batch["features"][0, :, 0], [1.75, 4.25, 0])
    np.testing.assert_array_equal(batch["features"][1:], 0, err_msg="padding rows")


def test_train_command_reads_hf_baidu(tmp_path, capsys):
    path = save(builder_table(), tmp_path / "part.feather")
    code = main(
        ["train", "--model", "pbm", "--format", "hf-baidu", "--train", path, "--test", path, "--output", str(tmp_path / "run"),
         "--epochs", "1", "--positions", "3", "--features", "bm25", "--behaviour", "multimedia_type"]
    )
    assert code == 0
    assert "1 sessions read from 2 lines" in capsys.readouterr().out
