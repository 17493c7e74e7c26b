"""Measure the peak memory of training a model with a large per-pair table, in a process of its own.

Run as `python memory_probe.py MODEL ROWS [--validation]`. It prints one JSON line with the
estimate of `clickjax.memory` and the measured peak. The peak is the growth of the peak resident
set size (ru_maxrss) over the resident size just before the model is built. A small warm-up run
has loaded and compiled everything the step needs before that.
"""

import json
import resource
import sys

import numpy as np
from flax import nnx

from clickjax.memory import estimate_training_memory
from clickjax.models import MODELS
from clickjax.training import Trainer
from simulation import simulate_pbm


def resident_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("VmRSS not found in /proc/self/status")


def measure(name: str, rows: int, validation: bool) -> dict:
    positions = 4
    log, _ = simulate_pbm(2000, 50, [0.9, 0.7, 0.5, 0.3], seed=0)
    held_out = log if validation else None
    warm_up = MODELS[name](positions=positions, query_doc_pairs=60, rngs=nnx.Rngs(0))
    Trainer(epochs=1, batch_size=256).fit(warm_up, log, held_out)

    before = resident_bytes()
    estimate = estimate_training_memory(name, positions, rows, validation)
    model = MODELS[name](positions=positions, query_doc_pairs=rows, rngs=nnx.Rngs(0))
    Trainer(epochs=2, batch_size=256).fit(model, log, held_out)
    # ru_maxrss is in KiB on Linux.
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {
        "model": name,
        "rows": rows,
        "validation": validation,
        "parameter_bytes": estimate.parameters,
        "estimate": estimate.total,
        "measured": peak - before,
        "ratio": estimate.total / (peak - before),
    }


if __name__ == "__main__":
    np.seterr(all="ignore")
    print(json.dumps(measure(sys.argv[1], int(sys.argv[2]), "--validation" in sys.argv[3:])))
