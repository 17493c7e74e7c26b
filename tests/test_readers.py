"""The native click-log readers through Python: tables, input kinds, errors, zero-copy and round trips.

Fixtures use invented ids. Expected ids follow the vocabulary rule: 0 = padding, 1 = out of
vocabulary, real ids from 2 in order of first appearance.
"""

import gzip
import os
import random

import numpy as np
import pyarrow as pa
import pytest

from clickjax import _native

PSEUDO_TITLE = "3742\x0111492\x0112169\x015061\x0116905"
MISSING_TITLE = "21429"

WSCD_FIXTURE = "42_1\t11,12,13 : 12 , 11 ; 42_1\t11,12,14 :;\n43_2\t12,15 : 15 , 15 , 99\n"

STATS_KEYS = {
    "lines_read",
    "sessions_read",
    "sessions_kept",
    "sessions_skipped",
    "sessions_without_clicks",
    "sessions_dropped_without_clicks",
    "sessions_without_results",
    "results_truncated",
    "missing_results",
    "pseudo_results",
    "repeated_clicks",
    "clicks_not_shown",
    "oov_queries",
    "oov_documents",
    "oov_pairs",
    "corrupt_inputs",
}


def document_line(pos, url_md5, title, click):
    """A Baidu document line with 32 fields; the fields the reader ignores hold `-` or 0."""
    fields = [pos, url_md5, title, "301\x01302", "-", click] + ["0"] * 26
    return "\t".join(fields) + "\n"


def write(tmp_path, name, text, kind="plain"):
    """Write `text` as a plain file, one gzip member, or three gzip members."""
    data = text.encode() if isinstance(text, str) else text
    path = tmp_path / name
    if kind == "gzip":
        data = gzip.compress(data)
    elif kind == "members":
        third = len(data) // 3
        data = b"".join(gzip.compress(part) for part in (data[:third], data[third : 2 * third], data[2 * third :]))
    path.write_bytes(data)
    return path


def read(format, paths, vocabulary=None, **options):
    """Read every batch; returns the batches and the exhausted reader."""
    if vocabulary is None:
        vocabulary = _native.Vocabulary()
    reader = _native.BatchReader(format, paths, vocabulary, **options)
    return list(reader), reader


def column(batches, name):
    """Concatenate one column over all batches: `[rows]`, or `[rows, positions]` if padded."""
    parts = []
    for batch in batches:
        values = batch.column(name)
        if pa.types.is_fixed_size_list(values.type):
            parts.append(values.flatten().to_numpy().reshape(batch.num_rows, values.type.list_size))
        else:
            parts.append(values.to_numpy())
    return np.concatenate(parts)


def baidu_fixture():
    return "".join(
        [
            "1001\t101\x01102\t\n",
            document_line("1", "aa01", "201", "0"),
            document_line("2", "aa02", MISSING_TITLE, "0"),
            document_line("3", "aa03", "202", "1"),
            document_line("4", "aa09", PSEUDO_TITLE, "0"),
            document_line("4", "aa04", "203", "0"),
            document_line("5", "aa05", "204", "1.0"),
            "\r\n",
            # The same query tokens under another qid are the same query.
            "1002\t101\x01102\t\r\n",
            document_line("1", "aa03", "202", "0.0"),
            # Only a missing result: no row.
            "1003\t301\t\n",
            document_line("1", "aa06", MISSING_TITLE, "0"),
        ]
    )


def test_wscd_fixture_table(tmp_path):
    vocabulary = _native.Vocabulary()
    batches, reader = read("wscd", [write(tmp_path, "log", WSCD_FIXTURE)], vocabulary, positions=3, batch_size=2)

    assert [batch.num_rows for batch in batches] == [2, 1]
    # Queries 42_1 -> 2, 43_2 -> 3; documents 11, 12, 13, 14, 15 -> 2..6.
    np.testing.assert_array_equal(column(batches, "query_id"), [2, 2, 3])
    np.testing.assert_array_equal(column(batches, "doc_id"), [[2, 3, 4], [2, 3, 5], [3, 6, 0]])
    np.testing.assert_array_equal(column(batches, "query_doc_id"), [[2, 3, 4], [2, 3, 5], [6, 7, 0]])
    np.testing.assert_array_equal(column(batches, "position"), [[1, 2, 3], [1, 2, 3], [1, 2, 0]])
    np.testing.assert_array_equal(column(batches, "click"), [[1, 1, 0], [0, 0, 0], [0, 1, 0]])
    np.testing.assert_array_equal(column(batches, "mask"), [[1, 1, 1], [1, 1, 1], [1, 1, 0]])
    np.testing.assert_array_equal(column(batches, "weight"), [1.0, 1.0, 1.0])

    hashes = column(batches, "query_doc_hash")
    assert (hashes >= 0).all()
    assert hashes[2, 2] == 0
    # The same pair has the same hash in every row.
    np.testing.assert_array_equal(hashes[0, :2], hashes[1, :2])
    assert len(set(hashes[:, :2].ravel()) | {hashes[0, 2], hashes[1, 2]}) == 6

    assert reader.stats["sessions_kept"] == 3
    assert reader.stats["sessions_without_clicks"] == 1
    assert reader.stats["repeated_clicks"] == 1
    assert reader.stats["clicks_not_shown"] == 1
    assert vocabulary.query_table_size == 4
    assert vocabulary.document_table_size == 7
    assert vocabulary.pair_table_size == 8
    assert len(vocabulary) == 6


def test_baidu_fixture_table(tmp_path):
    batches, reader = read("baidu", [write(tmp_path, "part-00000", baidu_fixture())], positions=4)

    # Positions count document lines: the missing result takes 2, the pseudo-result takes none,
    # and aa05 at 5 is beyond P = 4.
    np.testing.assert_array_equal(column(batches, "query_id"), [2, 2])
    np.testing.assert_array_equal(column(batches, "doc_id"), [[2, 3, 4, 0], [3, 0, 0, 0]])
    np.testing.assert_array_equal(column(batches, "query_doc_id"), [[2, 3, 4, 0], [3, 0, 0, 0]])
    np.testing.assert_array_equal(column(batches, "position"), [[1, 3, 4, 0], [1, 0, 0, 0]])
    np.testing.assert_array_equal(column(batches, "click"), [[0, 1, 0, 0], [0, 0, 0, 0]])
    np.testing.assert_array_equal(column(batches, "mask"), [[1, 1, 1, 0], [1, 0, 0, 0]])

    stats = reader.stats
    assert stats["sessions_read"] == 3
    assert stats["sessions_without_results"] == 1
    assert stats["missing_results"] == 2
    assert stats["pseudo_results"] == 1
    assert stats["results_truncated"] == 1
    assert stats["lines_read"] == 12


@pytest.mark.parametrize("kind", ["plain", "gzip", "members"])
def test_input_kinds_identical(tmp_path, kind):
    text = baidu_fixture() * 30
    expected, _ = read("baidu", [write(tmp_path, "reference", text)], batch_size=7)

    path = write(tmp_path, "part-00000.txt", text, kind)
    for paths in ([path], [str(path)]):
        batches, reader = read("baidu", paths, batch_size=7)
        assert [batch.num_rows for batch in batches] == [7] * 8 + [4]
        assert all(got.equals(want) for got, want in zip(batches, expected, strict=True))
        assert reader.stats["sessions_kept"] == 60


def test_schema_types(tmp_path):
    batches, _ = read("wscd", [write(tmp_path, "log", WSCD_FIXTURE)], positions=5)
    schema = batches[0].schema

    assert schema.names == ["query_id", "doc_id", "query_doc_id", "query_doc_hash", "position", "click", "mask", "weight"]
    assert schema.field("query_id").type == pa.int32()
    assert schema.field("weight").type == pa.float32()
    for name, item in [("doc_id", pa.int32()), ("position", pa.int32()), ("click", pa.uint8()), ("mask", pa.uint8())]:
        field_type = schema.field(name).type
        assert pa.types.is_fixed_size_list(field_type), name
        assert field_type.list_size == 5
        assert field_type.value_field.name == "item"
        assert field_type.value_type == item
    for values in batches[0].columns:
        assert values.null_count == 0
        assert values.buffers()[0] is None, "no validity bitmap"
        if pa.types.is_fixed_size_list(values.type):
            assert values.flatten().buffers()[0] is None, "no validity bitmap on the items"


def test_zero_copy_doc_id(tmp_path):
    batches, _ = read("wscd", [write(tmp_path, "log", WSCD_FIXTURE * 50, "gzip")], batch_size=64)
    batch = batches[0]

    for name in ["doc_id", "query_doc_id", "query_doc_hash", "position", "click", "mask"]:
        values = batch.column(name).flatten()
        array = values.to_numpy()
        address = array.__array_interface__["data"][0]
        assert address == values.buffers()[1].address, name
        assert address % 64 == 0, name
    for name in ["query_id", "weight"]:
        array = batch.column(name).to_numpy()
        assert array.__array_interface__["data"][0] == batch.column(name).buffers()[1].address, name
        assert array.__array_interface__["data"][0] % 64 == 0, name


def test_batches_span_files_and_lines(tmp_path):
    first = write(tmp_path, "a", "1_1\t11 : 11;1_1\t12 :;1_1\t13 : 13\n")
    second = write(tmp_path, "b.gz", "2_1\t13,11 : 11\n\n2_1\t14 :", "gzip")
    batches, reader = read("wscd", [first, second], positions=2, batch_size=2)

    assert [batch.num_rows for batch in batches] == [2, 2, 1]
    np.testing.assert_array_equal(column(batches, "query_id"), [2, 2, 2, 3, 3])
    np.testing.assert_array_equal(column(batches, "doc_id"), [[2, 0], [3, 0], [4, 0], [4, 2], [5, 0]])
    assert reader.stats["lines_read"] == 4


def test_vocabulary_frozen_oov(tmp_path):
    vocabulary = _native.Vocabulary()
    read("wscd", [write(tmp_path, "train", "1_1\t11,12 : 11\n")], vocabulary, positions=3)
    assert not vocabulary.frozen
    vocabulary.freeze()
    assert vocabulary.frozen

    batches, reader = read("wscd", [write(tmp_path, "test", "1_1\t12,13 : 13;2_1\t11 :\n")], vocabulary, positions=3)

    np.testing.assert_array_equal(column(batches, "query_id"), [2, 1])
    np.testing.assert_array_equal(column(batches, "doc_id"), [[3, 1, 0], [2, 0, 0]])
    np.testing.assert_array_equal(column(batches, "query_doc_id"), [[3, 1, 0], [1, 0, 0]])
    assert reader.stats["oov_queries"] == 1
    assert reader.stats["oov_documents"] == 1
    assert reader.stats["oov_pairs"] == 2
    assert len(vocabulary) == 2


def test_drop_sessions_without_clicks(tmp_path):
    path = write(tmp_path, "log", WSCD_FIXTURE)
    batches, reader = read("wscd", [path], drop_sessions_without_clicks=True)

    assert sum(batch.num_rows for batch in batches) == 2
    assert reader.stats["sessions_without_clicks"] == 1
    assert reader.stats["sessions_dropped_without_clicks"] == 1


def test_stats_keys_always_present(tmp_path):
    reader = _native.BatchReader("wscd", [write(tmp_path, "log", WSCD_FIXTURE)], _native.Vocabulary())
    before = reader.stats
    assert STATS_KEYS <= set(before)
    assert all(value == 0 for value in before.values())
    assert iter(reader) is reader
    list(reader)
    with pytest.raises(StopIteration):
        next(reader)
    assert all(isinstance(value, int) for value in reader.stats.values())
    assert reader.stats["sessions_kept"] == 3


BAIDU_ERROR_CASES = [
    (document_line("0", "aa09", "201", "0"), "pos", "0"),
    (document_line("x", "aa09", "201", "0"), "pos", "x"),
    (document_line("2", "-", "201", "0"), "url_md5", "-"),
    (document_line("2", "", "201", "0"), "url_md5", ""),
    (document_line("2", "aa09", "201", "2"), "click", "2"),
    ("1\t2\t3\t4\t5\t6\t7\n", "line", "1\t2\t3\t4\t5\t6\t7"),
]


@pytest.mark.parametrize(("bad_line", "field", "text"), BAIDU_ERROR_CASES)
def test_baidu_parse_error(tmp_path, bad_line, field, text):
    # A good session, a blank line, then the bad line on physical line 5.
    content = "".join(
        [
            "1\t5\t\n",
            document_line("1", "aa01", "201", "1"),
            "2\t6\t\n",
            "\n",
            bad_line,
            "3\t7\t\n",
            document_line("1", "aa03", "201", "0"),
        ]
    )
    path = write(tmp_path, "part-00003.gz", content, "gzip")
    reader = _native.BatchReader("baidu", [path], _native.Vocabulary())

    first = next(reader)
    with pytest.raises(_native.ParseError) as raised:
        next(reader)

    assert first.num_rows == 1
    error = raised.value
    assert isinstance(error, _native.ClickjaxError)
    assert error.path == str(path)
    assert error.lineno == 5
    assert error.field == field
    assert error.text == text
    message = str(error)
    for part in [str(path), "line 5", field, "expected", 'on_error="skip"']:
        assert part in message
    with pytest.raises(StopIteration):
        next(reader)


def test_baidu_document_before_query(tmp_path):
    path = write(tmp_path, "part", "\n" + document_line("1", "aa01", "201", "0"))
    with pytest.raises(_native.ParseError) as raised:
        read("baidu", [path])
    assert (raised.value.field, raised.value.lineno) == ("line", 2)


WSCD_ERROR_CASES = [
    ("42_1 11,12 : 12", "query_key", "42_1 11,12 : 12"),
    ("42_1\t11,12 12", "urls", "11,12 12"),
    ("42_1\t11,,12 : 12", "urls", "11,,12 "),
    ("42_1\t  : 12", "urls", "  "),
    ("42_1\t11,12 : 12,,11", "clicks", " 12,,11"),
    ("42_1\t11,12 : 12 : 11", "clicks", " 12 : 11"),
]


@pytest.mark.parametrize(("piece", "field", "text"), WSCD_ERROR_CASES)
def test_wscd_parse_error(tmp_path, piece, field, text):
    path = write(tmp_path, "log", f"1_1\t1,2 : 1\n\n9_9\t5 : 5 ; {piece} ; 9_9\t6 :")
    reader = _native.BatchReader("wscd", [path], _native.Vocabulary())

    first = next(reader)
    with pytest.raises(_native.ParseError) as raised:
        next(reader)

    assert first.num_rows == 2, "the sessions before the bad one come first"
    error = raised.value
    assert error.path == str(path)
    assert error.lineno == 3
    assert error.field == field
    assert error.text == text


def test_wscd_missing_colon_message(tmp_path):
    with pytest.raises(_native.ParseError, match=r"url,\.\.\. : click,\.\.\.") as raised:
        read("wscd", [write(tmp_path, "log", "42_1\t11,12")])
    assert raised.value.field == "urls"


def test_parse_error_text_truncated(tmp_path):
    path = write(tmp_path, "log", "42_1 " + "7" * 300)
    with pytest.raises(_native.ParseError) as raised:
        read("wscd", [path])
    assert len(raised.value.text) <= 83
    assert raised.value.text.endswith("...")


def test_skip_counts_malformed(tmp_path):
    wscd = write(tmp_path, "log", "1_1\t11 : 11; 1_1 11 : 11 ; 1_1\t12 :\n2_1\t21,,22 : ;2_1\t21 : 21 : 21;2_1\t22:22")
    batches, reader = read("wscd", [wscd], on_error="skip")
    np.testing.assert_array_equal(column(batches, "doc_id")[:, 0], [2, 3, 4])
    assert reader.stats["sessions_skipped"] == 3
    assert reader.stats["skipped_query_key"] == 1
    assert reader.stats["skipped_urls"] == 1
    assert reader.stats["skipped_clicks"] == 1

    baidu = "".join(
        [
            "1\t5\t\n",
            document_line("1", "aa01", "201", "1"),
            document_line("2", "aa02", "201", "x"),
            "2\t6\t\n",
            document_line("1", "aa03", "201", "0"),
        ]
    )
    batches, reader = read("baidu", [write(tmp_path, "part", baidu)], on_error="skip")
    np.testing.assert_array_equal(column(batches, "query_id"), [2])
    assert reader.stats["skipped_click"] == 1
    assert reader.stats["sessions_read"] == 2


def wscd_lines(count):
    return "".join(f"{i}_1\t1{i},2{i},3{i} : 2{i};{i}_1\t4{i} :;{i}_2\t1{i} : 1{i}\n" for i in range(count))


def test_corrupt_gzip_strict(tmp_path):
    compressed = gzip.compress(wscd_lines(3000).encode())
    cut = len(compressed) * 2 // 3
    path = write(tmp_path, "truncated.gz", compressed[:cut])
    reader = _native.BatchReader("wscd", [path], _native.Vocabulary(), positions=3, batch_size=500)

    rows = 0
    with pytest.raises(_native.CorruptInputError) as raised:
        for batch in reader:
            rows += batch.num_rows

    error = raised.value
    assert isinstance(error, _native.ClickjaxError)
    assert error.path == str(path)
    assert error.offset == cut
    assert error.lineno == reader.stats["lines_read"]
    # Every session of every complete line, three per line; none of the partial line.
    assert rows == 3 * error.lineno
    assert str(path) in str(error)
    assert str(cut) in str(error)


def test_corrupt_gzip_skip(tmp_path):
    compressed = gzip.compress(wscd_lines(2000).encode())
    damaged = write(tmp_path, "truncated.gz", compressed[: len(compressed) // 2])
    intact = write(tmp_path, "next", "9_9\t1 : 1\n")

    batches, reader = read("wscd", [damaged, intact], on_error="skip", positions=3)

    assert reader.stats["corrupt_inputs"] == 1
    assert sum(batch.num_rows for batch in batches) == 3 * (reader.stats["lines_read"] - 1) + 1


def test_missing_file_not_found(tmp_path):
    missing = tmp_path / "part-00042.gz"
    with pytest.raises(FileNotFoundError) as raised:
        _native.BatchReader("baidu", [missing], _native.Vocabulary())
    assert raised.value.filename == str(missing)
    assert str(missing) in str(raised.value)
    assert "No such file or directory" in str(raised.value)


def test_directory_is_os_error(tmp_path):
    reader = _native.BatchReader("wscd", [tmp_path], _native.Vocabulary())
    with pytest.raises(OSError) as raised:
        next(reader)
    assert raised.value.filename == str(tmp_path)
    assert not isinstance(raised.value, _native.ClickjaxError)


@pytest.mark.parametrize(
    ("options", "names"),
    [
        ({"format": "csv"}, ["format", "csv", "baidu", "wscd", "yandex", "clickmodels", "baidu-annotation"]),
        ({"positions": 0}, ["positions", "0", "1 to 1000"]),
        ({"batch_size": -3}, ["batch_size", "-3", "1 to"]),
        ({"on_error": "ignore"}, ["on_error", "ignore", "strict", "skip"]),
    ],
)
def test_invalid_options(tmp_path, options, names):
    path = write(tmp_path, "log", WSCD_FIXTURE)
    format = options.pop("format", "wscd")
    with pytest.raises(ValueError) as raised:
        _native.BatchReader(format, [path], _native.Vocabulary(), **options)
    for name in names:
        assert name in str(raised.value)


def random_baidu_sessions(rng, count):
    """Generate sessions as (query tokens, [(kind, url_md5, click)]), kind shown, missing or pseudo."""
    sessions = []
    for _ in range(count):
        query = "\x01".join(str(rng.randrange(1, 40)) for _ in range(rng.randrange(0, 4)))
        results = []
        for _ in range(rng.randrange(1, 14)):
            kind = rng.choices(["shown", "missing", "pseudo"], weights=[86, 8, 6])[0]
            results.append((kind, f"{rng.randrange(60):032x}", rng.random() < 0.3))
        sessions.append((query, results))
    return sessions


def write_baidu(rng, sessions):
    """Write sessions as Baidu text with repeating qids, both click spellings and blank lines."""
    lines = []
    for query, results in sessions:
        lines.append(f"{rng.randrange(5)}\t{query}\t-\n")
        for pos, (kind, url, click) in enumerate(results, start=1):
            title = {"missing": MISSING_TITLE, "pseudo": PSEUDO_TITLE, "shown": "7\x018"}[kind]
            flag = rng.choice(["1", "1.0"] if click else ["0", "0.0"])
            lines.append(document_line(str(pos), url, title, flag))
        if rng.random() < 0.1:
            lines.append("\n")
    return "".join(lines)


def expected_baidu(sessions, positions):
    """Apply the session rules: return rows as (query key, [(url, position, click)]) and counters."""
    rows, counts = [], {"missing_results": 0, "pseudo_results": 0, "results_truncated": 0, "sessions_without_clicks": 0}
    for query, results in sessions:
        rank, kept = 0, []
        for kind, url, click in results:
            if kind == "pseudo":
                counts["pseudo_results"] += 1
                continue
            rank += 1
            if kind == "missing":
                counts["missing_results"] += 1
            elif rank > positions:
                counts["results_truncated"] += 1
            else:
                kept.append((url, rank, click))
        if kept:
            counts["sessions_without_clicks"] += not any(click for _, _, click in results)
            rows.append((query, kept))
    return rows, counts


def random_wscd_sessions(rng, count):
    """Generate sessions as (query key, [url], [clicked url]), with repeated and unshown clicks."""
    sessions = []
    for _ in range(count):
        query = f"{rng.randrange(8)}_{rng.randrange(1, 3)}"
        urls = [str(rng.randrange(50)) for _ in range(rng.randrange(1, 13))]
        clicks = [rng.choice(urls + ["999"]) for _ in range(rng.choice([0, 0, 1, 2, 4]))]
        sessions.append((query, urls, clicks))
    return sessions


def write_wscd(rng, sessions):
    """Write sessions as WSCD text with varied separators, line breaks and no final newline."""
    pieces = []
    for query, urls, clicks in sessions:
        click_list = rng.choice([" , ", ",", ", "]).join(clicks)
        pieces.append(f"{query}\t{','.join(urls)}{rng.choice([' : ', ':', ' :  '])}{click_list}")
        pieces.append(rng.choice(["\n", ";", " ; ", ";\n", "; \n\n", ";  "]))
    return "".join(pieces).rstrip("\n")


def expected_wscd(sessions, positions):
    """Apply the session rules: return rows as (query key, [(url, position, click)]) and counters."""
    rows, counts = [], {"repeated_clicks": 0, "clicks_not_shown": 0, "results_truncated": 0, "sessions_without_clicks": 0}
    for query, urls, clicks in sessions:
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
        rows.append((query, kept))
    return rows, counts


def expected_columns(rows, positions):
    """Padded id columns for rows, with ids in order of first appearance."""
    queries, documents, pairs = {}, {}, {}

    def dense_id(table, key):
        return table.setdefault(key, len(table) + 2)

    shape = (len(rows), positions)
    columns = {name: np.zeros(shape, np.int64) for name in ["doc_id", "query_doc_id", "position", "click", "mask"]}
    columns["query_id"] = np.zeros(len(rows), np.int64)
    for row, (query, results) in enumerate(rows):
        columns["query_id"][row] = dense_id(queries, query)
        for slot, (url, rank, click) in enumerate(results):
            columns["doc_id"][row, slot] = dense_id(documents, url)
            columns["query_doc_id"][row, slot] = dense_id(pairs, (query, url))
            columns["position"][row, slot] = rank
            columns["click"][row, slot] = click
            columns["mask"][row, slot] = 1
    return columns


@pytest.mark.parametrize("kind", ["plain", "gzip"])
@pytest.mark.parametrize("format", ["baidu", "wscd"])
def test_round_trip_random(tmp_path, format, kind):
    rng = random.Random(20240607)
    positions = 10
    if format == "baidu":
        sessions = random_baidu_sessions(rng, 400)
        text, (rows, counts) = write_baidu(rng, sessions), expected_baidu(sessions, positions)
    else:
        sessions = random_wscd_sessions(rng, 400)
        text, (rows, counts) = write_wscd(rng, sessions), expected_wscd(sessions, positions)
    path = write(tmp_path, "log", text, kind)

    batches, reader = read(format, [path], positions=positions, batch_size=64)

    expected = expected_columns(rows, positions)
    for name, values in expected.items():
        np.testing.assert_array_equal(column(batches, name), values, err_msg=name)
    for name, count in counts.items():
        assert reader.stats[name] == count, name
    assert reader.stats["sessions_kept"] == len(rows)


def test_real_wscd_logs(data_dir):
    folder = data_dir / "yandex-wscd-pyclick"
    vocabulary = _native.Vocabulary()
    # name -> (sessions, sessions whose click list is empty)
    expected = {"trainSample": (35_064, 11_780), "testSample": (21_413, 6_118)}
    for name, (sessions, without_clicks) in expected.items():
        batches, reader = read("wscd", [os.fspath(folder / name)], vocabulary, batch_size=4096)

        mask = column(batches, "mask")
        assert mask.shape == (sessions, 10)
        assert (mask.sum(axis=1) == 10).all(), "every row has exactly 10 results"
        assert reader.stats["sessions_kept"] == sessions
        assert reader.stats["sessions_without_clicks"] == without_clicks
        # Some sessions click only URLs outside the list, so more rows than that have no click.
        assert (column(batches, "click").sum(axis=1) == 0).sum() >= without_clicks
        assert reader.stats["sessions_skipped"] == 0
