"""Ingest throughput: parsing a Baidu gzip log against decompressing it, a Python reader and threads.

Input: one generated Baidu-format gzip file of at least 200 MB of text (a simulated log repeated
as gzip members, see `ingest_log.py`), made once per run in a temporary folder, and a copy of it
for the two-file case. In the same run:

- (a) the readers' gzip decompressor alone, on one thread (`_native.gzip_decompressed_size`);
- (b) clickjax parsing the file into Arrow batches, default threads;
- (c) a straightforward Python reader (the `gzip` module, `bytes.split`, dicts for the ids, the
  `xxhash` package for `query_doc_hash`) that builds the same padded numpy arrays, on a 20 MB prefix of the text and scaled by bytes;
- (e) the two files with `threads=1` and with `threads=2`.

Each benchmark records its throughput in MB of text per second in `extra_info`, and the module
prints the ratios (b)/(a), (b)/(c) and (e, 2 threads)/(e, 1 thread) at the end.

Run: PYTHONPATH=python python -m pytest benches/bench_ingest.py --benchmark-only
"""

from __future__ import annotations

import gzip
import os
import resource
import shutil
import struct

import numpy as np
import pytest
import xxhash

from clickjax import _native
from clickjax.data import Vocabulary, read_batches
from ingest_log import write_repeated_log

TEXT_BYTES = 200_000_000
PYTHON_PREFIX_BYTES = 20_000_000
POSITIONS = 10
BATCH_SIZE = 8192
ROUNDS = 3

# Baidu titles of a result with missing content, and of the "people also searched for" entry.
MISSING_TITLE = b"21429"
PSEUDO_TITLE = b"3742\x0111492\x0112169\x015061\x0116905"

# Seeds of the xxh3-64 fingerprints of queries and documents: the ASCII names as little-endian u64.
QUERY_SEED = int.from_bytes(b"query\0\0\0", "little")
DOCUMENT_SEED = int.from_bytes(b"document", "little")

throughput: dict[str, float] = {}
stage_seconds: dict[str, float] = {}


@pytest.fixture(scope="module")
def baidu_logs(tmp_path_factory, request):
    folder = tmp_path_factory.mktemp("ingest")
    first = folder / "part-00000.gz"
    text_bytes = write_repeated_log(first, TEXT_BYTES)
    second = folder / "part-00001.gz"
    shutil.copyfile(first, second)
    yield first, second, text_bytes
    ratios = {
        "(b) parse / (a) decompress": ("parse", "decompress"),
        "(b) parse / (c) python": ("parse", "python"),
        "(e) two threads / one thread": ("two_files_threads_2", "two_files_threads_1"),
    }
    lines = [f"\ningest throughput, MB of text per second ({text_bytes / 1e6:.0f} MB per file):"]
    for name, value in throughput.items():
        lines.append(f"  {name}: {value:.1f}")
    for name, (numerator, denominator) in ratios.items():
        if numerator in throughput and denominator in throughput:
            lines.append(f"  {name}: {throughput[numerator] / throughput[denominator]:.2f}")
    if stage_seconds:
        lines.append("CPU seconds per stage of one parse (b) with threads=1:")
        for name, seconds in stage_seconds.items():
            lines.append(f"  {name}: {seconds:.2f} ({text_bytes / 1e6 / seconds:.0f} MB/s)")
        slowest = max(stage_seconds.values())
        lines.append(f"  estimate with a free core per stage: {text_bytes / 1e6 / slowest:.0f} MB/s")
    # Printed with pytest's output capture suspended, so the summary shows without -s.
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled():
        print("\n".join(lines))


def record(benchmark, name: str, text_bytes: int) -> None:
    megabytes_per_second = text_bytes / 1e6 / benchmark.stats.stats.median
    throughput[name] = megabytes_per_second
    benchmark.extra_info["megabytes_per_second"] = megabytes_per_second


def parse(paths, threads=None) -> int:
    sessions = 0
    for batch in read_batches("baidu", paths, Vocabulary(), batch_size=BATCH_SIZE, threads=threads):
        sessions += batch.num_rows
    return sessions


def process_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def calling_thread_cpu_seconds() -> float:
    """Return the CPU time of the calling thread, from /proc (Linux only)."""
    with open(f"/proc/self/task/{os.getpid()}/stat") as file:
        fields = file.read().rsplit(")", 1)[1].split()
    # Fields 14 and 15 of the stat line (11 and 12 after the command name): utime and stime.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure_stages(path) -> dict[str, float]:
    """Return the CPU seconds of each stage of one parse with threads=1.

    Decompression is measured alone on the calling thread. While parsing, the calling thread's
    own time is the batch building (vocabulary lookups of new keys, copying rows into Arrow
    buffers), and the worker thread (parsing, session rules, file-local ids) gets the rest of the
    process's time. Must run on the main thread, whose thread id is the process id.
    """
    start = process_cpu_seconds()
    _native.gzip_decompressed_size(path)
    decompression = process_cpu_seconds() - start

    start, start_calling = process_cpu_seconds(), calling_thread_cpu_seconds()
    parse([path], threads=1)
    total = process_cpu_seconds() - start
    building = calling_thread_cpu_seconds() - start_calling
    return {
        "decompression": decompression,
        "parsing and local ids (worker thread)": total - building - decompression,
        "batch building (calling thread)": building,
    }


def read_text_prefix(path, size: int) -> bytes:
    """Return the first complete lines of at most `size` bytes of decompressed text."""
    with gzip.open(path, "rb") as file:
        text = file.read(size)
    return text[: text.rfind(b"\n") + 1]


def python_reader(text: bytes) -> dict[str, np.ndarray]:
    """Parse Baidu text into the padded batch columns, the way a plain Python script would."""
    query_ids: dict[bytes, int] = {}
    doc_ids: dict[bytes, int] = {}
    pair_ids: dict[tuple[int, int], int] = {}
    sessions: list[tuple[int, list[tuple[int, int, int, int]]]] = []
    results: list[tuple[int, int, int, int]] = []
    rank = 0
    query_fingerprint = 0
    for line in text.split(b"\n"):
        fields = line.split(b"\t")
        if len(fields) == 3:
            results = []
            rank = 0
            query = query_ids.setdefault(fields[1], len(query_ids) + 2)
            query_fingerprint = xxhash.xxh3_64_intdigest(fields[1], seed=QUERY_SEED)
            sessions.append((query, results))
        elif len(fields) == 32:
            title = fields[2]
            if title == PSEUDO_TITLE:
                continue
            rank += 1
            if title == MISSING_TITLE or rank > POSITIONS:
                continue
            document = doc_ids.setdefault(fields[1], len(doc_ids) + 2)
            # The pair's 64-bit fingerprint, whose top 31 bits are `query_doc_hash`.
            document_fingerprint = xxhash.xxh3_64_intdigest(fields[1], seed=DOCUMENT_SEED)
            pair = xxhash.xxh3_64_intdigest(struct.pack("<QQ", query_fingerprint, document_fingerprint))
            results.append((rank, document, int(float(fields[5])), pair >> 33))

    # Like the readers, drop sessions left without results (a query line cut off at the end).
    sessions = [session for session in sessions if session[1]]
    rows = len(sessions)
    columns = {
        "query_id": np.zeros(rows, np.int32),
        "doc_id": np.zeros((rows, POSITIONS), np.int32),
        "query_doc_id": np.zeros((rows, POSITIONS), np.int32),
        "query_doc_hash": np.zeros((rows, POSITIONS), np.int32),
        "position": np.zeros((rows, POSITIONS), np.int32),
        "click": np.zeros((rows, POSITIONS), np.uint8),
        "mask": np.zeros((rows, POSITIONS), np.uint8),
        "weight": np.ones(rows, np.float32),
    }
    for row, (query, session_results) in enumerate(sessions):
        columns["query_id"][row] = query
        for slot, (position, document, click, pair_hash) in enumerate(session_results):
            columns["doc_id"][row, slot] = document
            columns["query_doc_id"][row, slot] = pair_ids.setdefault((query, document), len(pair_ids) + 2)
            columns["query_doc_hash"][row, slot] = pair_hash
            columns["position"][row, slot] = position
            columns["click"][row, slot] = click
            columns["mask"][row, slot] = 1
    return columns


def python_read_prefix(path) -> int:
    """Decompress and parse a prefix of the file; returns the bytes of text parsed."""
    text = read_text_prefix(path, PYTHON_PREFIX_BYTES)
    columns = python_reader(text)
    assert len(columns["query_id"]) > 0
    return len(text)


def test_a_decompress_one_thread(benchmark, baidu_logs):
    first, _, text_bytes = baidu_logs
    size = benchmark.pedantic(_native.gzip_decompressed_size, args=(first,), rounds=ROUNDS, iterations=1)
    assert size == text_bytes
    record(benchmark, "decompress", text_bytes)


def test_b_parse_default_threads(benchmark, baidu_logs):
    first, _, text_bytes = baidu_logs
    sessions = benchmark.pedantic(parse, args=([first],), rounds=ROUNDS, iterations=1)
    assert sessions > 0
    benchmark.extra_info["sessions"] = sessions
    record(benchmark, "parse", text_bytes)
    stage_seconds.update(measure_stages(first))
    benchmark.extra_info["stage_cpu_seconds"] = dict(stage_seconds)


def test_c_python_reader(benchmark, baidu_logs):
    first, _, _ = baidu_logs
    parsed = benchmark.pedantic(python_read_prefix, args=(first,), rounds=ROUNDS, iterations=1)
    record(benchmark, "python", parsed)


@pytest.mark.parametrize("threads", [1, 2])
def test_e_two_files(benchmark, baidu_logs, threads):
    first, second, text_bytes = baidu_logs
    sessions = benchmark.pedantic(parse, args=([first, second], threads), rounds=ROUNDS, iterations=1)
    assert sessions > 0
    record(benchmark, f"two_files_threads_{threads}", 2 * text_bytes)


def test_python_reader_matches_clickjax(baidu_logs):
    """The Python baseline builds the same arrays as clickjax on a small prefix."""
    first, _, _ = baidu_logs
    text = read_text_prefix(first, 2_000_000)
    expected = python_reader(text)
    prefix = first.parent / "prefix.txt"
    prefix.write_bytes(text)
    batches = list(read_batches("baidu", [prefix], Vocabulary(), batch_size=1 << 20))
    assert len(batches) == 1
    batch = batches[0]
    assert batch.schema.names == list(expected)
    for name, array in expected.items():
        column = batch.column(name)
        values = column.flatten().to_numpy() if array.ndim == 2 else column.to_numpy()
        np.testing.assert_array_equal(values.reshape(array.shape), array, err_msg=name)
