"""Measure the peak memory of training a model with a large per-pair table, in a process of its own.

Run as `python memory_probe.py MODEL ROWS [--validation] [--dense-adam]`. It prints one JSON line
with the estimate of `clickjax.memory` and the measured peak. `--dense-adam` trains the per-pair
tables with dense Adam updates instead of the default sparse Adagrad. A small warm-up run first loads and compiles
everything the step needs. The peak is then the growth of anonymous resident memory (`RssAnon`,
sampled every millisecond by a thread) over its value just before the model is built. Anonymous
memory leaves out the pages of shared libraries, which the kernel may drop and load again under
memory pressure. `measured_rss` is the same growth of the whole resident set (ru_maxrss), for
comparison.
"""

import json
import resource
import sys
import threading
import time

import numpy as np
from flax import nnx

from clickjax.memory import estimate_training_memory
from clickjax.models import MODELS
from clickjax.training import Trainer
from simulation import simulate_pbm


def status_bytes(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not found in /proc/self/status")


class PeakSampler(threading.Thread):
    """Record the largest `RssAnon` seen while running, sampled every millisecond."""

    def __init__(self):
        super().__init__(daemon=True)
        self.peak = status_bytes("RssAnon")
        self.running = True

    def run(self):
        while self.running:
            self.peak = max(self.peak, status_bytes("RssAnon"))
            time.sleep(0.001)

    def stop(self) -> int:
        self.running = False
        self.join()
        return max(self.peak, status_bytes("RssAnon"))


def measure(name: str, rows: int, validation: bool, dense_adam: bool = False) -> dict:
    positions = 4
    log, _ = simulate_pbm(2000, 50, [0.9, 0.7, 0.5, 0.3], seed=0)
    held_out = log if validation else None
    options = {"table_optimizer": "adam", "sparse": False} if dense_adam else {}
    warm_up = MODELS[name](positions=positions, query_doc_pairs=60, rngs=nnx.Rngs(0))
    Trainer(epochs=1, batch_size=256, **options).fit(warm_up, log, held_out)

    before = status_bytes("RssAnon")
    before_rss = status_bytes("VmRSS")
    sampler = PeakSampler()
    sampler.start()
    estimate = estimate_training_memory(name, positions, rows, validation, **options)
    model = MODELS[name](positions=positions, query_doc_pairs=rows, rngs=nnx.Rngs(0))
    Trainer(epochs=2, batch_size=256, **options).fit(model, log, held_out)
    peak = sampler.stop()
    # ru_maxrss is in KiB on Linux.
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {
        "model": name,
        "rows": rows,
        "validation": validation,
        "dense_adam": dense_adam,
        "parameter_bytes": estimate.parameters,
        "estimate": estimate.total,
        "measured": peak - before,
        "measured_rss": peak_rss - before_rss,
        "ratio": estimate.total / (peak - before),
    }


if __name__ == "__main__":
    np.seterr(all="ignore")
    print(json.dumps(measure(sys.argv[1], int(sys.argv[2]), "--validation" in sys.argv[3:], "--dense-adam" in sys.argv[3:])))
