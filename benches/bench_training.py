"""Training throughput, the input pipeline, and sparse against dense table updates.

- `test_train_epoch`: PBM, UBM and DBN on a log simulated from DBN, PBM being the baseline. One
  round is one epoch (jitted steps over fixed-size batches, compilation done beforehand).
  Throughput in sessions per second is `sessions / mean`.
- `test_pipeline_*`: reading a gzip WSCD log with the Rust reader, one epoch of DBN training, and
  both at once (the reader on a second thread). The pipeline keeps up when the concurrent time is at
  most the slower of the two alone divided by 0.9.
- `test_table_updates`: PBM with a 10-million-row attraction table, batches of 4,096 sessions,
  Adagrad on the table, sparse against dense updates.
- `test_table_step_cost`: the same model with Adagrad or Adam on the table. Each `fit` has a fixed
  cost (copying the table, creating its optimiser slots and scratch array, writing the parameters
  back), so `fit` runs over 40 and over 80 steps, best of 5 rounds each, and the difference gives
  the time of one step alone. It reports the sparse and dense step times, their ratio and the
  fixed costs in `extra_info` and on the terminal. The benchmark's own time is that of the whole
  measurement.

XLA runs on one thread in this file (`XLA_FLAGS` below, set before JAX starts), so that training
and reading each get one core of a 2-core machine.

Run: .venv-test/bin/python -m pytest benches/bench_training.py --benchmark-only
"""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")

import threading  # noqa: E402
import time  # noqa: E402

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


def simulate_wide_log(batches: int) -> ClickLog:
    """Return `batches` batches of sessions over 10 million pairs, so that almost every id is distinct."""
    rng = np.random.default_rng(0)
    sessions = batches * BATCH_SIZE
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


@pytest.fixture(scope="module")
def wide_log():
    return simulate_wide_log(TABLE_STEPS)


@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "sparse"])
def test_table_updates(benchmark, wide_log, sparse):
    model = MODELS["pbm"](positions=POSITIONS, query_doc_pairs=TABLE_ROWS, rngs=nnx.Rngs(0))
    trainer = Trainer(epochs=1, batch_size=BATCH_SIZE, sparse=sparse)
    trainer.fit(model, wide_log)  # compile outside the measurement

    benchmark.pedantic(trainer.fit, args=(model, wide_log), rounds=3, iterations=1)
    benchmark.extra_info["steps_per_second"] = TABLE_STEPS / benchmark.stats.stats.mean


# ---------------------------------------------------------------- cost of one table step

SHORT_FIT, LONG_FIT = 40, 80


@pytest.fixture(scope="module")
def long_wide_log():
    return simulate_wide_log(LONG_FIT)


def best_fit_seconds(model, log, table_optimizer: str, sparse: bool, steps: int, rounds: int = 5) -> float:
    """Return the fastest of `rounds` fits of `steps` steps, after one fit that compiles the step."""
    trainer = Trainer(epochs=1, batch_size=BATCH_SIZE, sparse=sparse, table_optimizer=table_optimizer, max_steps=steps)
    trainer.fit(model, log)
    seconds = []
    for _ in range(rounds):
        started = time.perf_counter()
        trainer.fit(model, log)
        seconds.append(time.perf_counter() - started)
    return min(seconds)


def step_and_fixed_cost(log, table_optimizer: str, sparse: bool) -> tuple[float, float]:
    """Return the seconds of one step and the fixed seconds of one `fit`, from fits of two lengths."""
    model = MODELS["pbm"](positions=POSITIONS, query_doc_pairs=TABLE_ROWS, rngs=nnx.Rngs(0))
    short = best_fit_seconds(model, log, table_optimizer, sparse, SHORT_FIT)
    long = best_fit_seconds(model, log, table_optimizer, sparse, LONG_FIT)
    step = (long - short) / (LONG_FIT - SHORT_FIT)
    return step, short - SHORT_FIT * step


@pytest.mark.parametrize("table_optimizer", ["adagrad", "adam"])
def test_table_step_cost(benchmark, long_wide_log, capsys, table_optimizer):
    def measure():
        for sparse, name in [(True, "sparse"), (False, "dense")]:
            step, fixed = step_and_fixed_cost(long_wide_log, table_optimizer, sparse)
            benchmark.extra_info[f"{name}_step_ms"] = step * 1e3
            benchmark.extra_info[f"{name}_fixed_ms"] = fixed * 1e3
        info = benchmark.extra_info
        info["ratio"] = info["dense_step_ms"] / info["sparse_step_ms"]
        info["load_average"] = os.getloadavg()[0]

    benchmark.pedantic(measure, rounds=1, iterations=1)
    info = benchmark.extra_info
    with capsys.disabled():
        print(
            f"\n{table_optimizer}: sparse step {info['sparse_step_ms']:.2f} ms, dense step {info['dense_step_ms']:.2f} ms, "
            f"ratio {info['ratio']:.1f}; fixed cost per fit: sparse {info['sparse_fixed_ms']:.0f} ms, "
            f"dense {info['dense_fixed_ms']:.0f} ms; load average {info['load_average']:.2f}"
        )
