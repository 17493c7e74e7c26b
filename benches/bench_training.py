"""Training throughput, the input pipeline, and sparse against dense table updates.

- `test_train_epoch`: PBM, UBM and DBN on a log simulated from DBN, PBM being the baseline. One
  round is one epoch (jitted steps over fixed-size batches, compilation done beforehand).
  Throughput in sessions per second is `sessions / mean`.
- `test_pipeline_*`: reading a gzip WSCD log with the Rust reader, one epoch of DBN training, and
  both at once (the reader on a second thread). The pipeline keeps up when the concurrent time is at
  most the slower of the two alone divided by 0.9.
- `test_table_updates`: PBM with a 10-million-row attraction table, batches of 4,096 sessions,
  Adagrad on the table, sparse against dense updates.

XLA runs on one thread in this file (`XLA_FLAGS` below, set before JAX starts), so that training
and reading each get one core of a 2-core machine.

Run: .venv-test/bin/python -m pytest benches/bench_training.py --benchmark-only
"""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")

import threading  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from flax import nnx  # noqa: E402

from clickjax.data import ClickLog, Vocabulary  # noqa: E402
from clickjax.models import MODELS  # noqa: E402
from clickjax.simulation import Catalogue, draw_random_parameters, simulate  # noqa: E402
from clickjax.training import Trainer  # noqa: E402
from clickjax.writers import write_log  # noqa: E402

SESSIONS = 100_000
PAIRS = 50_000
POSITIONS = 10
BATCH_SIZE = 4096


@pytest.fixture(scope="module")
def log():
    # 1,000 queries with 50 documents each: 50,000 query-document pairs, shown in shuffled order.
    catalogue = Catalogue.random(queries=PAIRS // 50, documents_per_query=50)
    model = MODELS["dbn"](positions=POSITIONS, query_doc_pairs=catalogue.pair_table_size, rngs=nnx.Rngs(0))
    draw_random_parameters(model, np.random.default_rng(0))
    return simulate(model, catalogue, SESSIONS, seed=0).log


@pytest.mark.parametrize("name", ["pbm", "ubm", "dbn"])
def test_train_epoch(benchmark, log, name):
    model = MODELS[name](positions=POSITIONS, query_doc_pairs=int(log.columns["query_doc_id"].max()) + 1, rngs=nnx.Rngs(0))
    trainer = Trainer(epochs=1, batch_size=BATCH_SIZE)
    trainer.fit(model, log)  # compile outside the measurement

    benchmark.pedantic(trainer.fit, args=(model, log), rounds=3, iterations=1)
    benchmark.extra_info["sessions_per_second"] = SESSIONS / benchmark.stats.stats.mean


# ---------------------------------------------------------------- input pipeline


@pytest.fixture(scope="module")
def log_file(log, tmp_path_factory):
    path = tmp_path_factory.mktemp("pipeline") / "sessions.txt.gz"
    write_log(path, log, "wscd")
    return path


def read(path):
    # The reader is limited to one thread, as XLA is (see XLA_FLAGS above).
    return ClickLog.read("wscd", [path], Vocabulary(), positions=POSITIONS, threads=1)


@pytest.fixture(scope="module")
def dbn_trainer(log):
    model = MODELS["dbn"](positions=POSITIONS, query_doc_pairs=int(log.columns["query_doc_id"].max()) + 1, rngs=nnx.Rngs(0))
    trainer = Trainer(epochs=1, batch_size=BATCH_SIZE)
    trainer.fit(model, log)  # compile outside the measurement
    return trainer, model


def test_pipeline_reader_alone(benchmark, log_file):
    benchmark.pedantic(read, args=(log_file,), rounds=3, iterations=1)


def test_pipeline_training_alone(benchmark, log, dbn_trainer):
    trainer, model = dbn_trainer
    benchmark.pedantic(trainer.fit, args=(model, log), rounds=3, iterations=1)


def test_pipeline_reading_while_training(benchmark, log, log_file, dbn_trainer):
    trainer, model = dbn_trainer

    def both():
        reader = threading.Thread(target=read, args=(log_file,))
        reader.start()
        trainer.fit(model, log)
        reader.join()

    benchmark.pedantic(both, rounds=3, iterations=1)


# ---------------------------------------------------------------- sparse against dense tables

TABLE_ROWS = 10_000_000
TABLE_STEPS = 40


@pytest.fixture(scope="module")
def wide_log():
    """TABLE_STEPS batches of sessions over 10 million pairs, so that almost every id is distinct."""
    rng = np.random.default_rng(0)
    sessions = TABLE_STEPS * BATCH_SIZE
    ids = rng.integers(2, TABLE_ROWS, size=(sessions, POSITIONS), dtype=np.int32)
    columns = {
        "query_id": np.full(sessions, 2, np.int32),
        "doc_id": ids,
        "query_doc_id": ids,
        "query_doc_hash": ids,
        "position": np.broadcast_to(np.arange(1, POSITIONS + 1, dtype=np.int32), ids.shape).copy(),
        "click": (rng.random(ids.shape) < 0.2).astype(np.uint8),
        "mask": np.ones(ids.shape, np.uint8),
        "weight": np.ones(sessions, np.float32),
    }
    return ClickLog(columns=columns, positions=POSITIONS)


@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "sparse"])
def test_table_updates(benchmark, wide_log, sparse):
    model = MODELS["pbm"](positions=POSITIONS, query_doc_pairs=TABLE_ROWS, rngs=nnx.Rngs(0))
    trainer = Trainer(epochs=1, batch_size=BATCH_SIZE, sparse=sparse)
    trainer.fit(model, wide_log)  # compile outside the measurement

    benchmark.pedantic(trainer.fit, args=(model, wide_log), rounds=3, iterations=1)
    benchmark.extra_info["steps_per_second"] = TABLE_STEPS / benchmark.stats.stats.mean
