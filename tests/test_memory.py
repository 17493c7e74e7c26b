"""The training-memory estimate: its closed form, memory sizes, and a measurement on a 10-million-row table."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from clickjax.memory import estimate_training_memory, format_bytes, parse_bytes


def test_estimate_closed_form():
    # PBM: examination has positions + 1 float32 logits, attraction one per row.
    table_bytes = (10 + 1 + 1000) * 4

    without = estimate_training_memory("pbm", 10, 1000, validation=False)
    with_validation = estimate_training_memory("pbm", 10, 1000, validation=True)
    dense_adam = estimate_training_memory("pbm", 10, 1000, validation=False, table_optimizer="adam", sparse=False)
    sparse_sgd = estimate_training_memory("pbm", 10, 1000, validation=False, table_optimizer="sgd")

    # The sparse step's scratch array: one int32 per row of the attraction table.
    scratch_bytes = 1000 * 4

    # The defaults: sparse Adagrad, one slot per row and no full-size gradient.
    assert without.parameters == 2 * table_bytes
    assert without.optimizer_state == table_bytes
    assert without.step == 0
    assert without.scratch == scratch_bytes
    assert without.total == 3 * table_bytes + scratch_bytes
    assert with_validation.best_state == 2 * table_bytes
    assert with_validation.total == 5 * table_bytes + scratch_bytes
    # Dense Adam: two moments, and the gradient and update of a step, but no scratch array.
    assert dense_adam.optimizer_state == 2 * table_bytes
    assert dense_adam.step == 2 * table_bytes
    assert dense_adam.scratch == 0
    assert dense_adam.total == 6 * table_bytes
    assert sparse_sgd.total == 2 * table_bytes + scratch_bytes


def test_estimate_rejects_unknown_rule():
    with pytest.raises(ValueError, match="unknown table optimizer 'lion'"):
        estimate_training_memory("pbm", 10, 1000, validation=False, table_optimizer="lion")


def test_estimate_allocates_nothing():
    # DBN: two float32 tables of 2^31 - 1 rows (8 GiB each) and gamma; eval_shape only counts them.
    estimate = estimate_training_memory("dbn", 10, 2**31 - 1, validation=False)
    table_bytes = 2 * (2**31 - 1) * 4 + 4
    # The model's parameters and the training state's copy of them.
    assert estimate.parameters == 2 * table_bytes
    # Without a mesh, the distinct ids of a batch of such a table are found on the host.
    assert estimate.scratch == 0
    on_mesh = estimate_training_memory("dbn", 10, 2**31 - 1, validation=False, mesh=True)
    # Attraction and satisfaction share the column query_doc_id, so one scratch array serves both.
    assert on_mesh.scratch == 4 * (2**31 - 1)


def test_scratch_array_only_below_host_threshold():
    # Tables of 2^21 rows and more find their distinct ids on the host (clickjax.sparse).
    below = estimate_training_memory("pbm", 10, 2**21 - 1, validation=False)
    at = estimate_training_memory("pbm", 10, 2**21, validation=False)
    assert below.scratch == 4 * (2**21 - 1)
    assert at.scratch == 0


@pytest.mark.parametrize("text, expected", [("2000000", 2_000_000), ("512M", 512 * 2**20), ("16GiB", 16 * 2**30), ("1.5g", int(1.5 * 2**30))])
def test_parse_bytes(text, expected):
    assert parse_bytes(text) == expected


@pytest.mark.parametrize("text", ["", "12Q", "-5G", "0", "G"])
def test_parse_bytes_rejects(text):
    with pytest.raises(ValueError, match="invalid memory size"):
        parse_bytes(text)


def test_format_bytes():
    assert format_bytes(512) == "512 B"
    assert format_bytes(1536) == "1.5 KiB"
    assert format_bytes(3 * 2**30) == "3.0 GiB"


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="the measurement reads /proc/self/status (Linux)")
def test_estimate_within_20_percent_of_peak():
    # A fresh process, so that nothing this test session allocated inflates the peak.
    tests_folder = Path(__file__).parent
    environment = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": os.pathsep.join([str(tests_folder), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, str(tests_folder / "memory_probe.py"), "pbm", "10000000"],
        capture_output=True, text=True, timeout=600, env=environment,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    # The model's parameters and the training state's copy of them.
    assert result["parameter_bytes"] == 2 * (4 + 1 + 10_000_000) * 4
    assert 0.8 <= result["ratio"] <= 1.2, result
