"""Random and mutated bytes fed to every text reader raise clean clickjax errors and never panic.

A Rust panic would surface as `pyo3_runtime.PanicException`, which derives from `BaseException`,
so it escapes the `except` clauses here and fails the test.
"""

import gzip

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clickjax import _native
from test_formats_quirks import SAMPLES

FORMATS = sorted(SAMPLES)

# Pieces that the formats give meaning to, so that random lines often get past the first check.
PIECES = [
    b"\t", b"\n", b"\r\n", b"\x01", b"0", b"1", b"7", b"42", b"-", b"1.5", b"e9", b"Q", b"C", b"_", b":",
    b",", b";", b" ", b"[", b"]", b"{", b"}", b'"', b'"0"', b"true", b"21429", b"\xff", b"\xc3", b"\x00",
    b"3742\x0111492\x0112169\x015061\x0116905", b"18446744073709551616",
]

# Options that take other paths through the reader: the first pass, and the behaviour columns.
OPTIONS = [
    {},
    {"positions": None},
    {"min_sessions_per_query": 2, "min_results": 2, "drop_sessions_without_clicks": True},
]


def accounted(stats):
    return (
        stats["sessions_kept"]
        + stats["sessions_skipped"]
        + stats["sessions_without_results"]
        + stats["sessions_dropped_few_results"]
        + stats["sessions_dropped_without_clicks"]
        + stats["sessions_dropped_rare_query"]
    )


def read_everything(path, format, on_error, options):
    """Read every batch; return the reader, or the clean error it raised."""
    if format == "baidu" and not options:
        options = {"behaviour": ["multimedia_type", "dwelling_time"], "document_key": "text"}
    reader = _native.BatchReader(format, [path], _native.Vocabulary(), on_error=on_error, batch_size=3, **options)
    try:
        for batch in reader:
            assert batch.num_rows > 0
    except (_native.ClickjaxError, OSError) as error:
        return reader, error
    return reader, None


def check(tmp_path, data, format, options):
    path = tmp_path / "fuzz"
    path.write_bytes(data)

    _, error = read_everything(path, format, "strict", options)
    assert error is None or isinstance(error, (_native.ParseError, _native.CorruptInputError)), repr(error)

    reader, error = read_everything(path, format, "skip", options)
    assert error is None, repr(error)
    stats = reader.stats
    assert stats["sessions_read"] == accounted(stats)


fuzz_settings = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)


@fuzz_settings
@given(data=st.binary(max_size=300), format=st.sampled_from(FORMATS), options=st.sampled_from(OPTIONS))
def test_random_bytes(tmp_path, data, format, options):
    check(tmp_path, data, format, options)


@fuzz_settings
@given(pieces=st.lists(st.sampled_from(PIECES), max_size=80), format=st.sampled_from(FORMATS), options=st.sampled_from(OPTIONS))
def test_random_pieces(tmp_path, pieces, format, options):
    check(tmp_path, b"".join(pieces), format, options)


@st.composite
def mutated_sample(draw):
    """A valid sample of some format, with bytes deleted, replaced and inserted."""
    format = draw(st.sampled_from(FORMATS))
    data = bytearray("".join(SAMPLES[format] * 2).encode())
    for _ in range(draw(st.integers(1, 6))):
        start = draw(st.integers(0, len(data)))
        end = draw(st.integers(start, min(len(data), start + 8)))
        data[start:end] = draw(st.one_of(st.binary(max_size=4), st.sampled_from(PIECES)))
    return format, bytes(data)


@fuzz_settings
@given(sample=mutated_sample(), options=st.sampled_from(OPTIONS), compress=st.sampled_from([None, "whole", "cut"]))
def test_mutated_samples(tmp_path, sample, options, compress):
    format, data = sample
    if compress is not None:
        data = gzip.compress(data)
        if compress == "cut":
            data = data[: len(data) // 2]
    check(tmp_path, data, format, options)


@pytest.mark.parametrize("format", FORMATS)
def test_every_format_reads_its_sample(tmp_path, format):
    # The checks above only mean something if the unmutated samples read without errors.
    path = tmp_path / "sample"
    path.write_text("".join(SAMPLES[format]))
    reader, error = read_everything(path, format, "strict", {})
    assert error is None
    assert reader.stats["sessions_kept"] >= 2
