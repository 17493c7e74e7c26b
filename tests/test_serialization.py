"""Saved models load with the same parameters, and unknown format versions are rejected."""

import json

import numpy as np
import pytest
from flax import nnx

import clickjax
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


def test_load_from_training_output_folder(tmp_path):
    # `clickjax train --output RUN` saves the model in RUN/model; RUN itself loads too.
    model = MODELS["pbm"](positions=2, query_doc_pairs=5, rngs=nnx.Rngs(0))
    save_model(model, tmp_path / "run" / "model", config={"model": "pbm", "positions": 2, "query_doc_pairs": 5})

    loaded = load_model(tmp_path / "run")

    assert type(loaded) is type(model)
    assert loaded.positions == 2


@pytest.mark.parametrize("name", ["pbm", "dbn"])
def test_loaded_model_predicts_same_probabilities(tmp_path, name):
    log, _ = simulate_pbm(sessions=200, pairs=20, theta=[0.9, 0.6, 0.4], seed=1)
    model = MODELS[name](positions=3, query_doc_pairs=22, rngs=nnx.Rngs(0))
    Trainer(epochs=2, batch_size=64).fit(model, log)
    save_model(model, tmp_path, config={"model": name, "positions": 3, "query_doc_pairs": 22})
    loaded = clickjax.load_model(tmp_path)

    # A new ranking: pairs 2, 9 and 21 at ranks 1-3, and a second row with one result and padding.
    ranking = {
        "query_doc_id": np.array([[2, 9, 21], [5, 0, 0]], np.int32),
        "position": np.array([[1, 2, 3], [1, 0, 0]], np.int32),
        "mask": np.array([[1, 1, 1], [1, 0, 0]], np.uint8),
    }
    predicted = np.asarray(clickjax.predict_clicks(loaded, ranking))
    np.testing.assert_array_equal(predicted, np.asarray(clickjax.predict_clicks(model, ranking)))
    np.testing.assert_array_equal(predicted[1, 1:], 0.0)
    assert np.all((predicted[0] > 0) & (predicted[0] < 1))
    np.testing.assert_allclose(predicted, np.exp(np.asarray(model.log_click_probs(ranking))) * ranking["mask"], rtol=1e-6)
    relevance = np.asarray(clickjax.relevance(loaded, ranking))
    np.testing.assert_array_equal(relevance, np.asarray(clickjax.relevance(model, ranking)))
    np.testing.assert_array_equal(relevance[1, 1:], 0.0)


def test_load_rejects_unreadable_version(tmp_path):
    model = MODELS["pbm"](positions=2, query_doc_pairs=5, rngs=nnx.Rngs(0))
    save_model(model, tmp_path, config={"model": "pbm", "positions": 2, "query_doc_pairs": 5})
    metadata = json.loads((tmp_path / "clickjax-model.json").read_text())
    metadata["format_version"] = "two"
    (tmp_path / "clickjax-model.json").write_text(json.dumps(metadata))

    with pytest.raises(ValueError, match="model format version 'two'"):
        load_model(tmp_path)


def test_predict_names_missing_column():
    from clickjax import predict_clicks
    from clickjax.models import PositionBasedModel

    model = PositionBasedModel(positions=3, query_doc_pairs=6, rngs=nnx.Rngs(0))
    batch = {"query_doc_id": np.array([[2, 3, 4]], np.int32), "mask": np.ones((1, 3), np.uint8)}

    with pytest.raises(ValueError, match="batch is missing the column position .* it has mask, query_doc_id"):
        predict_clicks(model, batch)
