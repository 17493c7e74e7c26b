"""Epochs and seconds the default trainer needs to converge on the real WSCD sample.

For each model, one run of `REFERENCE_EPOCHS` epochs with the command line's defaults (no
validation data) evaluates the test log-likelihood after every epoch. The last value is the
converged one. The benchmark records the first epoch from which every later value stays within
`TOLERANCE` of it, the training seconds up to that epoch (compilation included), and the
compilation alone: the first one-step `fit` of a fresh trainer minus a second one, which reuses
the compiled step.

Needs CLICKJAX_DATA_DIR naming the folder that holds `yandex-wscd-pyclick/`. Run:

    CLICKJAX_DATA_DIR=... JAX_PLATFORMS=cpu PYTHONPATH=python python -m pytest benches/bench_convergence.py \\
        --benchmark-only -s

`-s` shows the per-epoch trace; the figures are in each benchmark's `extra_info`
(`--benchmark-json FILE` writes them).
"""

import os
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from clickjax.data import ClickLog, Vocabulary
from clickjax.models import MODELS
from clickjax.training import Trainer, _columns_read, _Plan, _result_weight

REFERENCE_EPOCHS = 60
TOLERANCE = 0.001


@pytest.fixture(scope="module")
def wscd():
    value = os.environ.get("CLICKJAX_DATA_DIR")
    if not value:
        pytest.skip("set CLICKJAX_DATA_DIR to the folder holding yandex-wscd-pyclick/")
    folder = Path(value) / "yandex-wscd-pyclick"
    vocabulary = Vocabulary()
    train = ClickLog.read("wscd", [folder / "trainSample"], vocabulary)
    vocabulary.freeze()
    test = ClickLog.read("wscd", [folder / "testSample"], vocabulary)
    return train, test, vocabulary.pair_table_size


def epochs_to_converge(trace: list[float]) -> int:
    """The first epoch (from 1) from which every test log-likelihood is within TOLERANCE of the last."""
    converged = trace[-1]
    epoch = len(trace)
    while epoch > 1 and abs(trace[epoch - 2] - converged) <= TOLERANCE:
        epoch -= 1
    return epoch


def converge(name: str, train: ClickLog, test: ClickLog, pairs: int) -> dict:
    model = MODELS[name](positions=10, query_doc_pairs=pairs, rngs=nnx.Rngs(0))
    trace, seconds = [], []

    def record(epoch_record):
        seconds.append(epoch_record.seconds)
        trace.append(trainer.evaluate(model, test).log_likelihood)

    trainer = Trainer(epochs=REFERENCE_EPOCHS, on_epoch=record)
    trainer.fit(model, train)
    epochs = epochs_to_converge(trace)

    probe = Trainer(max_steps=1)
    started = time.perf_counter()
    probe.fit(MODELS[name](positions=10, query_doc_pairs=pairs, rngs=nnx.Rngs(0)), train)
    first = time.perf_counter() - started
    started = time.perf_counter()
    probe.fit(MODELS[name](positions=10, query_doc_pairs=pairs, rngs=nnx.Rngs(0)), train)
    second = time.perf_counter() - started

    print(f"\n{name}: " + " ".join(f"{value:.5f}" for value in trace))
    return {
        "step_compile_seconds": step_compile_seconds(name, train, pairs),
        "converged_test_log_likelihood": trace[-1],
        "test_log_likelihood_at_20_epochs": trace[min(20, len(trace)) - 1],
        "epochs_to_converge": epochs,
        "seconds_to_converge": sum(seconds[:epochs]),
        "first_fit_start_up_seconds": first - second,
    }


def step_compile_seconds(name: str, train: ClickLog, pairs: int) -> float:
    """Time XLA's compilation of the training step of a fresh model (a private API of the trainer)."""
    model = MODELS[name](positions=10, query_doc_pairs=pairs, rngs=nnx.Rngs(0))
    trainer = Trainer()
    plan = _Plan.build(model, trainer, train, train_weight=lambda: _result_weight(train, trainer.batch_size))
    step = plan.step_function(trainer, trainer.total_steps(train), lambda optimizer: None)
    state = plan.initial_state(model, step.dense_optimizer, trainer.table_rule)
    scratch = plan.initial_scratch()
    batch = jax.device_put(next(train.batches(trainer.batch_size)))
    arguments = (state, scratch, batch, np.int32(0), jnp.zeros((), bool))
    # The trainer compiles the step for the columns it reads, so this compiles the same program.
    columns = _columns_read(step.function, arguments)
    lowered = step.run.lower(state, scratch, {name: batch[name] for name in columns}, *arguments[3:])
    started = time.perf_counter()
    lowered.compile()
    return time.perf_counter() - started


@pytest.mark.parametrize("name", ["pbm", "ubm", "dcm", "ccm", "dbn"])
def test_convergence(benchmark, wscd, name):
    train, test, pairs = wscd
    figures = benchmark.pedantic(converge, args=(name, train, test, pairs), rounds=1, iterations=1)
    benchmark.extra_info.update(figures)
    print(name, figures)
