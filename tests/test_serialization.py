"""Saved models load with the same parameters, and unknown format versions are rejected."""

import json

import numpy as np
import pytest
from flax import nnx

from clickjax.metrics import evaluate
from clickjax.models import MODELS
from clickjax.serialization import FORMAT_VERSION, load_model, save_model
from clickjax.training import Trainer
from simulation import simulate_pbm


@pytest.mark.parametrize("name", sorted(MODELS))
def test_save_load_round_trip(tmp_path, name):
    log, _ = simulate_pbm(sessions=200, pairs=20, theta=[0.9, 0.6, 0.4], seed=0)
    model = MODELS[name](positions=3, query_doc_pairs=22, rngs=nnx.Rngs(0))
    Trainer(epochs=2, batch_size=64).fit(model, log)

    save_model(model, tmp_path / "model", config={"model": name, "positions": 3, "query_doc_pairs": 22})
    loaded = load_model(tmp_path / "model")

    batch = next(log.batches(200))
    np.testing.assert_array_equal(np.asarray(loaded.log_likelihood(batch)), np.asarray(model.log_likelihood(batch)))
    assert evaluate(loaded, [batch]) == evaluate(model, [batch])


def test_load_rejects_newer_format(tmp_path):
    model = MODELS["pbm"](positions=2, query_doc_pairs=5, rngs=nnx.Rngs(0))
    save_model(model, tmp_path, config={"model": "pbm", "positions": 2, "query_doc_pairs": 5})
    metadata = json.loads((tmp_path / "clickjax-model.json").read_text())
    metadata["format_version"] = FORMAT_VERSION + 1
    metadata["clickjax_version"] = "9.0.0"
    (tmp_path / "clickjax-model.json").write_text(json.dumps(metadata))

    with pytest.raises(ValueError, match="9.0.0") as error:
        load_model(tmp_path)
    assert f"up to {FORMAT_VERSION}" in str(error.value)


def test_load_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a folder written by save_model"):
        load_model(tmp_path / "nothing")
