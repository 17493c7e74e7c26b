"""Training throughput of PBM, UBM and DBN on a simulated log, PBM being the baseline.

One benchmark round is one epoch (jitted steps over fixed-size batches, compilation done beforehand).
Throughput in sessions per second is `sessions / mean`; the ratio column of pytest-benchmark compares
each model with the fastest.

Run: .venv-test/bin/python -m pytest benches/bench_training.py --benchmark-only
"""

import numpy as np
import pytest
from flax import nnx

from clickjax.data import ClickLog
from clickjax.models import MODELS
from clickjax.training import Trainer

SESSIONS = 100_000
PAIRS = 50_000
POSITIONS = 10
BATCH_SIZE = 4096


@pytest.fixture(scope="module")
def log():
    rng = np.random.default_rng(0)
    ids = rng.integers(2, PAIRS + 2, size=(SESSIONS, POSITIONS)).astype(np.int32)
    columns = {
        "query_id": np.full(SESSIONS, 2, np.int32),
        "doc_id": ids,
        "query_doc_id": ids,
        "query_doc_hash": ids,
        "position": np.tile(np.arange(1, POSITIONS + 1, dtype=np.int32), (SESSIONS, 1)),
        "click": (rng.random((SESSIONS, POSITIONS)) < 0.1).astype(np.uint8),
        "mask": np.ones((SESSIONS, POSITIONS), np.uint8),
        "weight": np.ones(SESSIONS, np.float32),
    }
    return ClickLog(columns=columns, positions=POSITIONS)


@pytest.mark.parametrize("name", ["pbm", "ubm", "dbn"])
def test_train_epoch(benchmark, log, name):
    model = MODELS[name](positions=POSITIONS, query_doc_pairs=PAIRS + 2, rngs=nnx.Rngs(0))
    trainer = Trainer(epochs=1, batch_size=BATCH_SIZE)
    trainer.fit(model, log)  # compile outside the measurement

    benchmark.pedantic(trainer.fit, args=(model, log), rounds=3, iterations=1)
    benchmark.extra_info["sessions_per_second"] = SESSIONS / benchmark.stats.stats.mean
