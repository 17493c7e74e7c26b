"""Parsing throughput of the Rust readers against gzip decompression alone, in the same process.

The baseline is Python's zlib-backed `gzip` module decompressing the same file to nothing; the claim
to check is that parsing a log costs about as much as decompressing it. The input is the demo's
Baidu-format log repeated as concatenated gzip members (a multi-member file, as a real download may be).

Run: .venv-test/bin/python -m pytest benches/bench_readers.py --benchmark-only
"""

import gzip
import shutil
from importlib import resources

import pytest

from clickjax.data import Vocabulary, read_batches

COPIES = 20


@pytest.fixture(scope="module")
def baidu_log(tmp_path_factory):
    source = resources.files("clickjax") / "demo_data" / "demo-train.txt.gz"
    path = tmp_path_factory.mktemp("bench") / "part-00000.gz"
    with open(path, "wb") as output:
        for _ in range(COPIES):
            with source.open("rb") as member:
                shutil.copyfileobj(member, output)
    return path


def decompress_only(path):
    size = 0
    with gzip.open(path, "rb") as file:
        while chunk := file.read(1 << 20):
            size += len(chunk)
    return size


def parse(path):
    sessions = 0
    for batch in read_batches("baidu", [path], Vocabulary(), batch_size=8192):
        sessions += batch.num_rows
    return sessions


def test_gzip_decompression_baseline(benchmark, baidu_log):
    size = benchmark(decompress_only, baidu_log)
    benchmark.extra_info["megabytes"] = size / 1e6


def test_baidu_parse(benchmark, baidu_log):
    sessions = benchmark(parse, baidu_log)
    benchmark.extra_info["sessions"] = sessions
    assert sessions > 0
