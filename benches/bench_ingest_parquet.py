"""Reading canonical Parquet shards against parsing the raw gzip log they came from, in the same process.

The input is a Baidu-format gzip log of 100,000 sessions simulated from a DBN (`clickjax.simulation`),
ingested once into shards of 25,000 sessions by `clickjax.ingest.ingest`. Both benchmarks stream the
whole log as Arrow batches and turn each into numpy views with `batch_to_numpy`, which is what
training does before it copies rows into its batches. Parsing the raw log is the baseline.

Run: .venv-test/bin/python -m pytest benches/bench_ingest_parquet.py --benchmark-only
"""

import numpy as np
import pytest
from flax import nnx

from clickjax.data import Vocabulary, batch_to_numpy, read_batches
from clickjax.ingest import ingest
from clickjax.models import MODELS
from clickjax.simulation import Catalogue, draw_random_parameters, simulate
from clickjax.writers import write_log

SESSIONS = 100_000
SHARD_SESSIONS = 25_000
BATCH_SIZE = 8192


@pytest.fixture(scope="module")
def logs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bench-ingest")
    catalogue = Catalogue.random(queries=1000, documents_per_query=50)
    model = MODELS["dbn"](positions=10, query_doc_pairs=catalogue.pair_table_size, rngs=nnx.Rngs(0))
    draw_random_parameters(model, np.random.default_rng(0))
    raw = folder / "part-00000.gz"
    write_log(raw, simulate(model, catalogue, SESSIONS, seed=0).log, "baidu")
    shards = folder / "shards"
    ingest("baidu", [raw], shards, shard_sessions=SHARD_SESSIONS)
    return raw, shards


def stream(format, path):
    sessions = 0
    for batch in read_batches(format, [path], Vocabulary(), batch_size=BATCH_SIZE):
        sessions += len(batch_to_numpy(batch)["weight"])
    return sessions


def test_parse_raw_gzip_baseline(benchmark, logs):
    raw, _ = logs
    sessions = benchmark(stream, "baidu", raw)
    benchmark.extra_info["sessions"] = sessions
    benchmark.extra_info["megabytes_on_disk"] = raw.stat().st_size / 1e6
    assert sessions == SESSIONS


def test_read_parquet_shards(benchmark, logs):
    _, shards = logs
    sessions = benchmark(stream, "parquet", shards)
    benchmark.extra_info["sessions"] = sessions
    benchmark.extra_info["megabytes_on_disk"] = sum(path.stat().st_size for path in shards.glob("part-*.parquet")) / 1e6
    assert sessions == SESSIONS


def test_ingest(benchmark, logs, tmp_path):
    raw, _ = logs
    folders = iter(range(1_000))
    benchmark.pedantic(lambda: ingest("baidu", [raw], tmp_path / f"out-{next(folders)}", shard_sessions=SHARD_SESSIONS), rounds=3, iterations=1)
