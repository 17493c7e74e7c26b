"""Training throughput of PBM, UBM and DBN on a log simulated from DBN, PBM being the baseline.

One benchmark round is one epoch (jitted steps over fixed-size batches, compilation done beforehand).
Throughput in sessions per second is `sessions / mean`; the ratio column of pytest-benchmark compares
each model with the fastest.

Run: .venv-test/bin/python -m pytest benches/bench_training.py --benchmark-only
"""

import numpy as np
import pytest
from flax import nnx

from clickjax.models import MODELS
from clickjax.simulation import Catalogue, draw_random_parameters, simulate
from clickjax.training import Trainer

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
