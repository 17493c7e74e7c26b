"""Training throughput, the input pipeline, and sparse against dense table updates.

- `test_train_epoch`: PBM, UBM and DBN on a log simulated from DBN, PBM being the baseline. One
  round is one epoch (jitted steps over fixed-size batches, compilation done beforehand).
  Throughput in sessions per second is `sessions / mean`.
- `test_pipeline_*`: reading a gzip WSCD log with the Rust reader, one epoch of DBN training, and
  both at once (the reader on a second thread). The pipeline keeps up when the concurrent time is at
  most the slower of the two alone divided by 0.9.
- `test_parquet_pipeline_*`: the same log ingested into 4 Parquet shards, over 1 and over 3
  epochs. Reading them alone (the shuffled batches of each epoch, shard-order shuffle and shuffle
  buffer included, only the columns DBN's step reads), DBN training on those same batches read
  beforehand, and training while streaming the shards (`ShardedLog`, read on the trainer's worker
  thread). Each epoch's shuffle buffer fills before its first batch. The trainer starts filling
  the next epoch's while the last batches train, so over 3 epochs only the first fill is a wait.

The pipeline ratios, the slower of reading and training alone divided by the time of both, from
the medians of the same run, are printed at the end; 0.9 or more means the pipeline keeps up.
- `test_table_updates`: PBM with a 10-million-row attraction table, batches of 4,096 sessions,
  Adagrad on the table, sparse against dense updates.
- `test_table_step_cost`: the same model with Adagrad or Adam on the table. Each `fit` has a fixed
  cost (copying the table, creating its optimiser slots and scratch array, writing the parameters
  back), so `fit` runs over 40 and over 160 steps, best of 5 rounds each, and the difference gives
  the time of one step alone. It reports the sparse and dense step times, their ratio and the
  fixed costs in `extra_info` and on the terminal. The benchmark's own time is that of the whole
  measurement.

XLA runs on one thread in this file (`NPROC` and `XLA_FLAGS` below, set before JAX starts), and so do the
readers (`threads=1`, and one thread in pyarrow's pools), so that training and reading each get
one core of a 2-core machine.

Run: .venv-test/bin/python -m pytest benches/bench_training.py --benchmark-only
"""

import os

# XLA's CPU client sizes its thread pool from NPROC when it is set, and the flag keeps Eigen's
# kernels on the calling thread. Without NPROC, XLA ran a step's operations on two threads here.
os.environ.setdefault("NPROC", "1")
os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false")

import functools  # noqa: E402
import statistics  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pytest  # noqa: E402
from flax import nnx  # noqa: E402

from clickjax.data import ClickLog, Vocabulary  # noqa: E402
from clickjax.ingest import ingest  # noqa: E402
from clickjax.shards import ShardedLog  # noqa: E402
from clickjax.models import MODELS  # noqa: E402
from clickjax.simulation import Catalogue, draw_random_parameters, simulate  # noqa: E402
from clickjax.training import Trainer  # noqa: E402
from clickjax.writers import write_log  # noqa: E402

SESSIONS = 100_000
PAIRS = 50_000
POSITIONS = 10
BATCH_SIZE = 4096
SHARD_SESSIONS = 25_000
# An epoch's first batch waits until the shuffle buffer is full, so a buffer of a tenth of the log
# keeps that wait short, as the default of 100,000 sessions does on logs of millions.
BUFFER_SESSIONS = 10_000
# The trainer shuffles epoch 1 with seed * 100_003 + 1 (`Trainer._run_epoch`), here with seed 0.
EPOCH_SHUFFLE_SEED = 1

pa.set_cpu_count(1)
pa.set_io_thread_count(1)

# Median seconds of the pipeline benchmarks, by test name, for the ratios printed at the end.
medians: dict[str, float] = {}


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
    # The reader is limited to one thread, as XLA is (see NPROC above).
    return ClickLog.read("wscd", [path], Vocabulary(), positions=POSITIONS, threads=1)


@pytest.fixture(scope="module")
def dbn_trainer(log):
    model = MODELS["dbn"](positions=POSITIONS, query_doc_pairs=int(log.columns["query_doc_id"].max()) + 1, rngs=nnx.Rngs(0))
    trainer = Trainer(epochs=1, batch_size=BATCH_SIZE)
    trainer.fit(model, log)  # compile outside the measurement
    return trainer, model


@pytest.fixture(scope="module", autouse=True)
def pipeline_ratios(request):
    yield
    pairs = {
        "raw text": ("test_pipeline_reader_alone", "test_pipeline_training_alone", "test_pipeline_reading_while_training"),
    }
    for epochs in PARQUET_EPOCHS:
        pairs[f"parquet, {epochs} epoch{'s' if epochs > 1 else ''}"] = tuple(
            f"test_parquet_pipeline_{part}[{epochs}]" for part in ("reader_alone", "training_alone", "reading_while_training")
        )
    lines = ["\npipeline overlap, the slower of reading and training alone / both at once (medians):"]
    for name, (reading, training, both) in pairs.items():
        if {reading, training, both} <= medians.keys():
            slower = max(medians[reading], medians[training])
            lines.append(
                f"  {name}: reading {medians[reading] * 1e3:.0f} ms, training {medians[training] * 1e3:.0f} ms, "
                f"both {medians[both] * 1e3:.0f} ms, ratio {slower / medians[both]:.2f}"
            )
    # Printed with pytest's output capture suspended, so the summary shows without -s.
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled():
        print("\n".join(lines))


# Each pipeline round takes a fraction of a second, so many rounds steady the medians.
PIPELINE_ROUNDS = 25


def measure(benchmark, request, function, *args):
    benchmark.pedantic(function, args=args, rounds=PIPELINE_ROUNDS, iterations=1)
    medians[request.node.name] = benchmark.stats.stats.median


def test_pipeline_reader_alone(benchmark, request, log_file):
    measure(benchmark, request, read, log_file)


def test_pipeline_training_alone(benchmark, request, log, dbn_trainer):
    trainer, model = dbn_trainer
    measure(benchmark, request, trainer.fit, model, log)


def test_pipeline_reading_while_training(benchmark, request, log, log_file, dbn_trainer):
    trainer, model = dbn_trainer

    def both():
        reader = threading.Thread(target=read, args=(log_file,))
        reader.start()
        trainer.fit(model, log)
        reader.join()

    measure(benchmark, request, both)


@pytest.fixture(scope="module")
def shards(log_file, tmp_path_factory):
    folder = tmp_path_factory.mktemp("pipeline") / "shards"
    ingest("wscd", [log_file], folder, positions=POSITIONS, shard_sessions=SHARD_SESSIONS, threads=1)
    return ShardedLog([folder], buffer_sessions=BUFFER_SESSIONS, threads=1)


# The columns DBN's training step reads. The trainer finds them by tracing the step and streams
# only these from the shards, so reading alone and training alone use them too.
DBN_COLUMNS = ("query_doc_id", "click", "mask", "weight")
PARQUET_EPOCHS = (1, 3)


def epoch_seeds(epochs: int) -> list[int]:
    """Return the shuffle seeds of the trainer's epochs 1..epochs with seed 0 (`Trainer._run_epoch`)."""
    return [EPOCH_SHUFFLE_SEED + epoch for epoch in range(epochs)]


class _BatchesInMemory:
    """The shuffled batches of `epochs` epochs of `shards`, read beforehand, for the trainer's stream path."""

    def __init__(self, shards: ShardedLog, epochs: int):
        self.num_sessions = shards.num_sessions
        self._batches = {
            seed: list(shards.batches(BATCH_SIZE, shuffle=True, seed=seed, columns=DBN_COLUMNS))
            for seed in epoch_seeds(epochs)
        }

    def batches(self, batch_size, *, shuffle=False, seed=0):
        return iter(self._batches[seed])


def read_epochs(shards: ShardedLog, epochs: int) -> int:
    return sum(
        1 for seed in epoch_seeds(epochs) for _ in shards.batches(BATCH_SIZE, shuffle=True, seed=seed, columns=DBN_COLUMNS)
    )


@pytest.mark.parametrize("epochs", PARQUET_EPOCHS)
def test_parquet_pipeline_overlap(benchmark, request, log, shards, epochs):
    """Time reading alone, training alone and both, one after another in each round.

    Interleaving the three spreads slow drifts of a shared machine over all of them, where 15
    rounds of one and then 15 of the next gave ratios from 0.85 to 1.0 on the same code.
    """
    model = MODELS["dbn"](positions=POSITIONS, query_doc_pairs=int(log.columns["query_doc_id"].max()) + 1, rngs=nnx.Rngs(0))
    trainer = Trainer(epochs=epochs, batch_size=BATCH_SIZE)
    in_memory = _BatchesInMemory(shards, epochs)
    trainer.fit(model, in_memory)  # compile outside the measurement
    trainer.fit(model, shards)
    runs = {
        "reader_alone": functools.partial(read_epochs, shards, epochs),
        "training_alone": functools.partial(trainer.fit, model, in_memory),
        "reading_while_training": functools.partial(trainer.fit, model, shards),
    }
    seconds: dict[str, list[float]] = {name: [] for name in runs}

    def measure_round():
        for name, run in runs.items():
            started = time.perf_counter()
            run()
            seconds[name].append(time.perf_counter() - started)

    benchmark.pedantic(measure_round, rounds=PIPELINE_ROUNDS, iterations=1)
    for name, values in seconds.items():
        median = statistics.median(values)
        medians[f"test_parquet_pipeline_{name}[{epochs}]"] = median
        benchmark.extra_info[f"{name}_median_ms"] = median * 1e3


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

SHORT_FIT, LONG_FIT = 40, 160


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
