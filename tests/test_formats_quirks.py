"""Edge cases of real click logs, tried on every text format.

Each format has a small valid sample, and every quirk is checked against the batches of that
sample. Quirks of one format live with its tests. test_formats_baidu.py has `-` values, missing and
pseudo-results. test_formats_yandex.py has conflicting labels, clicks before a query and short
result lists. test_formats_clickmodels.py has extra click entries, and test_formats_wscd.py has
empty trailing separators and uneven spaces.
"""

import gzip

import numpy as np
import pytest

from clickjax import _native
from test_readers import column, document_line, read, write

# Two or three sessions per format, one record per line, each line ending in LF.
SAMPLES = {
    "baidu": [
        "1\t101\x01102\t\n",
        document_line("1", "aa01", "201", "0"),
        document_line("2", "aa02", "202", "1"),
        "1\t103\t\n",
        document_line("1", "aa03", "203", "1"),
    ],
    "baidu-annotation": [
        "7\t101\x01102\t201\t301\t3\t0\n",
        "7\t101\x01102\t202\t302\t0\t0\n",
        "7\t103\t203\t303\t1\t8\n",
    ],
    "yandex": [
        "7\t0\tQ\t1234\t5\t11\t12\t13\n",
        "7\t15\tC\t13\n",
        "8\t0\tQ\t1300\t5\t21\t22\n",
        "8\t2\tC\t21\n",
    ],
    "wscd": [
        "42_1\t11,12,13 : 12 , 11 ; 42_1\t11,12,14 :;\n",
        "43_2\t12,15 : 15\n",
    ],
    "clickmodels": [
        '1\tq one\t1\t0.5\t["u1", "u2"]\t[false, false]\t[0, 1]\n',
        '2\tq two\t1\t0.5\t{"0": "u3"}\t{}\t{"0": 1}\n',
    ],
}
FORMATS = sorted(SAMPLES)


def sample_text(format):
    return "".join(SAMPLES[format])


def read_text(tmp_path, format, text, **options):
    options.setdefault("positions", 3)
    return read(format, [write(tmp_path, "log", text)], **options)


def assert_same_batches(got, want):
    assert len(got) == len(want)
    for got_batch, want_batch in zip(got, want):
        assert got_batch.equals(want_batch)


@pytest.mark.parametrize("format", FORMATS)
def test_crlf_line_ends(tmp_path, format):
    expected, _ = read_text(tmp_path, format, sample_text(format))
    batches, _ = read_text(tmp_path, format, sample_text(format).replace("\n", "\r\n"))
    assert_same_batches(batches, expected)


@pytest.mark.parametrize("format", FORMATS)
def test_blank_lines_between_records(tmp_path, format):
    expected, _ = read_text(tmp_path, format, sample_text(format))
    text = "\n" + "\n\n".join(SAMPLES[format]) + "\n\r\n"
    batches, reader = read_text(tmp_path, format, text)
    assert_same_batches(batches, expected)
    # One blank line first, two between records, two at the end.
    assert reader.stats["lines_read"] == 3 * len(SAMPLES[format]) + 1


@pytest.mark.parametrize("format", FORMATS)
def test_missing_final_newline(tmp_path, format):
    expected, _ = read_text(tmp_path, format, sample_text(format))
    batches, _ = read_text(tmp_path, format, sample_text(format).rstrip("\n"))
    assert_same_batches(batches, expected)


@pytest.mark.parametrize("format", FORMATS)
@pytest.mark.parametrize("kind", ["gzip", "members"])
def test_compressed_same_as_plain(tmp_path, format, kind):
    text = sample_text(format) * 5
    expected, _ = read_text(tmp_path, format, text)
    # The file name says nothing: gzip is detected by its magic bytes.
    batches, _ = read(format, [write(tmp_path, "part-00001", text, kind)], positions=3)
    assert_same_batches(batches, expected)


@pytest.mark.parametrize("format", FORMATS)
def test_truncated_gzip_keeps_earlier_rows(tmp_path, format):
    # Enough copies that half of the compressed bytes still contains complete sessions.
    lines = SAMPLES[format] * 2000
    compressed = gzip.compress("".join(lines).encode())
    path = write(tmp_path, "part-00002.gz", compressed[: len(compressed) // 2])

    reader = _native.BatchReader(format, [path], _native.Vocabulary(), positions=3, batch_size=64)
    rows = 0
    with pytest.raises(_native.CorruptInputError) as raised:
        for batch in reader:
            rows += batch.num_rows
    assert rows > 0
    assert raised.value.path == str(path)
    assert raised.value.lineno > 0


# A line with the wrong field count for each format, and the field the error names.
WRONG_FIELD_COUNTS = {
    "baidu": ("1\t101\x01102\t\n" + document_line("1", "aa01", "201", "0").replace("\t0\n", "\n"), "line"),
    "baidu-annotation": ("7\t101\t201\t301\t3\n", "line"),
    "yandex": ("7\t0\tC\t13\t14\n", "line"),
    "wscd": ("42_1 11,12 : 12\n", "query_key"),
    "clickmodels": ('1\tq\t1\t0.5\t["u1"]\t[false]\n', "line"),
}


@pytest.mark.parametrize("format", FORMATS)
def test_wrong_field_count(tmp_path, format):
    bad, field = WRONG_FIELD_COUNTS[format]
    with pytest.raises(_native.ParseError) as raised:
        read_text(tmp_path, format, sample_text(format) + bad)
    assert raised.value.field == field
    assert raised.value.lineno == len(SAMPLES[format]) + bad.count("\n")

    batches, reader = read_text(tmp_path, format, sample_text(format) + bad + sample_text(format), on_error="skip")
    assert reader.stats["sessions_skipped"] == 1
    assert reader.stats[f"skipped_{field}"] == 1


# Bytes that are not valid UTF-8 inside an id or text field, and the field the error names.
INVALID_BYTES = {
    "baidu": (b"1\t101\xff\t\n" + document_line("1", "aa01", "201", "0").encode(), "query"),
    "baidu-annotation": (b"7\t101\t2\xc301\t301\t3\t0\n", "title"),
    "yandex": (b"7\t0\tQ\t1234\t5\t1\xe91\n", "url_id"),
    "wscd": (b"42_1\t11,1\x802 : 11\n", "urls"),
    "clickmodels": (b'1\tq\xc3\x28\t1\t0.5\t["u1"]\t[false]\t[0]\n', "query"),
}


@pytest.mark.parametrize("format", FORMATS)
def test_invalid_utf8_is_field_error(tmp_path, format):
    bad, field = INVALID_BYTES[format]
    path = write(tmp_path, "log", sample_text(format).encode() + bad)
    with pytest.raises(_native.ParseError) as raised:
        read(format, [path])
    assert raised.value.field == field
    assert "\ufffd" in raised.value.text


def long_line(format):
    """One line of about a megabyte, and the rows it holds."""
    count = 100_000
    if format == "baidu":
        query = "\x01".join(str(i) for i in range(count))
        return f"1\t{query}\t\n" + document_line("1", "aa01", "201", "1"), 1
    if format == "baidu-annotation":
        abstract = "\x01".join(str(i) for i in range(count))
        return f"7\t5\t201\t{abstract}\t3\t0\n", 1
    if format == "yandex":
        return "7\t0\tQ\t1\t1\t" + "\t".join(str(i) for i in range(count)) + "\n7\t1\tC\t2\n", 1
    if format == "wscd":
        return ";".join(f"{i % 50}_1\t{i},2 : 2" for i in range(count // 2)) + "\n", count // 2
    urls = ", ".join(f'"http://{i}"' for i in range(count))
    clicks = ", ".join(["0", "0", "1"] + ["0"] * (count - 3))
    return f"1\tq\t1\t0.5\t[{urls}]\t[]\t[{clicks}]\n", 1


@pytest.mark.parametrize("format", FORMATS)
def test_very_long_line(tmp_path, format):
    text, rows = long_line(format)
    assert len(text) > 500_000

    batches, reader = read_text(tmp_path, format, text, batch_size=4096)

    assert sum(batch.num_rows for batch in batches) == rows
    assert reader.stats["sessions_kept"] == rows


def test_baidu_empty_tokens_and_fields(tmp_path):
    text = "".join(
        [
            "1\t\t\n",
            document_line("1", "aa01", "", "0"),
            document_line("2", "aa02", "201\x01\x01202", "1"),
        ]
    )
    batches, _ = read_text(tmp_path, "baidu", text, document_key="text")
    np.testing.assert_array_equal(column(batches, "mask"), [[1, 1, 0]])
    np.testing.assert_array_equal(column(batches, "doc_id"), [[2, 3, 0]])


def test_baidu_raw_pos_not_used_as_rank(tmp_path):
    # Raw ranks repeat and go backwards; ranks come from the order of the lines.
    text = "1\t5\t\n" + document_line("5", "aa01", "201", "0") + document_line("5", "aa02", "202", "0") + document_line("1", "aa03", "203", "1")
    batches, _ = read_text(tmp_path, "baidu", text)
    np.testing.assert_array_equal(column(batches, "position"), [[1, 2, 3]])
    np.testing.assert_array_equal(column(batches, "click"), [[0, 0, 1]])


def test_yandex_duplicate_url_in_list(tmp_path):
    batches, _ = read_text(tmp_path, "yandex", "7\t0\tQ\t1\t1\t11\t12\t11\n7\t1\tC\t11\n")
    np.testing.assert_array_equal(column(batches, "click"), [[1, 0, 0]])
    doc_id = column(batches, "doc_id")
    assert doc_id[0, 0] == doc_id[0, 2]


def test_wscd_empty_click_lists_and_spaces(tmp_path):
    text = "42_1\t11,12 :  ;  42_1\t11,12:;42_1\t11,12 :12,11;\t;  ;\n"
    batches, reader = read_text(tmp_path, "wscd", text, positions=2)
    np.testing.assert_array_equal(column(batches, "click"), [[0, 0], [0, 0], [1, 1]])
    assert reader.stats["sessions_kept"] == 3
