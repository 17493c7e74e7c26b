"""Neural towers over features: shapes, padding, errors, any module in any role, sharing, saving, generalisation."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from clickjax.data import ClickLog
from clickjax.models import DBN, MODELS, PBM
from clickjax.parameters import DCNLogits, EmbeddingLogits, HashedLogits, LinearLogits, MLPLogits, RankLogits
from clickjax.priors import L2Prior
from clickjax.serialization import load_model, save_model
from map_training import fit, held_out_log_likelihood

FEATURES = 4


def towers():
    return {
        "linear": LinearLogits(FEATURES, rngs=nnx.Rngs(0)),
        "mlp": MLPLogits(FEATURES, hidden=(8, 4), activation="tanh", rngs=nnx.Rngs(0)),
        "dcn": DCNLogits(FEATURES, cross_layers=2, hidden=(8,), rngs=nnx.Rngs(0)),
    }


def feature_batch(rows=3, positions=5, seed=0):
    rng = np.random.default_rng(seed)
    mask = np.ones((rows, positions), np.uint8)
    mask[:, -2:] = 0
    return {
        "features": rng.normal(size=(rows, positions, FEATURES)).astype(np.float32),
        "query_doc_id": np.zeros((rows, positions), np.int32),
        "position": np.where(mask, np.arange(1, positions + 1), 0).astype(np.int32),
        "click": (rng.random((rows, positions)) < 0.4).astype(np.uint8) * mask,
        "mask": mask,
        "weight": np.ones(rows, np.float32),
    }


@pytest.mark.parametrize("name", ["linear", "mlp", "dcn"])
def test_tower_shape_and_padding(name):
    tower = towers()[name]
    batch = feature_batch()
    logits = tower(batch)
    assert logits.shape == (3, 5)
    assert np.all(np.isfinite(np.asarray(logits)))

    # NaN features at padding slots change neither the real logits nor the loss and its gradient.
    poisoned = {**batch, "features": batch["features"].copy()}
    poisoned["features"][:, -2:] = np.nan
    np.testing.assert_array_equal(np.asarray(tower(poisoned))[:, :3], np.asarray(logits)[:, :3])
    model = PBM(positions=5, query_doc_pairs=2, attraction=tower)
    loss, grads = nnx.value_and_grad(lambda m: m.loss(poisoned))(model)
    assert float(loss) == float(model.loss(batch))
    assert all(np.all(np.isfinite(np.asarray(leaf))) for leaf in jax.tree.leaves(grads))


def test_linear_tower_value_by_hand():
    tower = LinearLogits(2, rngs=nnx.Rngs(0), init=0.5)
    tower.linear.kernel.set_value(jnp.array([[2.0], [-1.0]]))
    batch = {"features": np.array([[[1.0, 3.0], [0.5, 0.0]]], np.float32)}
    np.testing.assert_allclose(np.asarray(tower(batch)), [[2 * 1 - 3 + 0.5, 2 * 0.5 + 0.5]])


def test_dcn_cross_layer_by_hand():
    # One cross layer with W = I and b = 0: x1 = x0 * x0 + x0; no deep part; output sums x1.
    tower = DCNLogits(2, cross_layers=1, hidden=(), rngs=nnx.Rngs(0))
    tower.cross[0].kernel.set_value(jnp.eye(2))
    tower.cross[0].bias.set_value(jnp.zeros(2))
    tower.output.kernel.set_value(jnp.ones((2, 1)))
    tower.output.bias.set_value(jnp.zeros(1))
    batch = {"features": np.array([[[1.0, -2.0]]], np.float32)}
    assert float(tower(batch)[0, 0]) == pytest.approx((1 + 1) + (4 - 2))


@pytest.mark.parametrize("name", ["linear", "mlp", "dcn"])
def test_tower_rejects_wrong_width(name):
    batch = feature_batch()
    batch["features"] = batch["features"][..., :3]
    with pytest.raises(ValueError, match=r"features has shape \[3, 5, 3\], expected \[batch, positions, 4\]"):
        towers()[name](batch)


@pytest.mark.parametrize("name", ["linear", "mlp", "dcn"])
def test_tower_rejects_missing_column(name):
    batch = feature_batch()
    del batch["features"]
    with pytest.raises(ValueError, match="batch is missing the column features"):
        towers()[name](batch)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: LinearLogits(0, rngs=nnx.Rngs(0)), "features must be at least 1"),
        (lambda: MLPLogits(3, hidden=(4, 0), rngs=nnx.Rngs(0)), r"hidden sizes must be at least 1, got \[4, 0\]"),
        (lambda: MLPLogits(3, activation="swish", rngs=nnx.Rngs(0)), "unknown activation 'swish'"),
        (lambda: DCNLogits(3, cross_layers=0, rngs=nnx.Rngs(0)), "cross_layers must be at least 1"),
    ],
)
def test_tower_bad_arguments(build, message):
    with pytest.raises(ValueError, match=message):
        build()


class FeatureOffset(nnx.Module):
    """A user module: a learned scale times the first feature, plus a learned offset."""

    def __init__(self):
        self.scale = nnx.Param(jnp.asarray(0.1))
        self.offset = nnx.Param(jnp.asarray(-0.2))

    def __call__(self, batch):
        return self.scale[...] * jnp.asarray(batch["features"])[..., 0] + self.offset[...]


def _roles(name):
    model = MODELS[name](positions=5, query_doc_pairs=2, rngs=nnx.Rngs(0))
    return [role for role, value in vars(model).items() if isinstance(value, nnx.Module)]


ROLES = [(name, role) for name in sorted(MODELS) for role in _roles(name)]


@pytest.mark.parametrize(("name", "role"), ROLES, ids=[f"{name}-{role}" for name, role in ROLES])
def test_user_module_in_every_role(name, role):
    user = FeatureOffset()
    model = MODELS[name](positions=5, query_doc_pairs=2, rngs=nnx.Rngs(0), **{role: user})
    batch = feature_batch()
    loss, grads = nnx.value_and_grad(lambda m: m.loss(batch))(model)

    assert np.isfinite(float(loss))
    user_grads = getattr(grads, role)
    assert float(jnp.abs(user_grads["scale"][...])) > 0
    assert float(jnp.abs(user_grads["offset"][...])) > 0


def test_user_module_save_fails_clearly(tmp_path):
    model = PBM(positions=5, query_doc_pairs=2, attraction=FeatureOffset())
    with pytest.raises(ValueError, match=r"cannot save the attraction module of PositionBasedModel: .*FeatureOffset"):
        save_model(model, tmp_path / "model", config={"model": "pbm", "positions": 5, "query_doc_pairs": 2})
    assert not (tmp_path / "model").exists()


# ---------------------------------------------------------------- simulated logs over features


def _attraction_logit(features: np.ndarray) -> np.ndarray:
    """The true attraction logit: linear in two features, with an interaction of two others."""
    return 1.2 * features[..., 0] - 0.8 * features[..., 1] + 1.0 * features[..., 2] * features[..., 3] - 0.5


def _feature_log(pair_features: np.ndarray, first_id: int, sessions: int, theta: np.ndarray, rng) -> ClickLog:
    """Simulate PBM sessions over pairs `first_id..`, each showing ten distinct pairs with their features."""
    pairs = len(pair_features)
    positions = len(theta)
    index = np.argsort(rng.random((sessions, pairs)), axis=1)[:, :positions]
    features = pair_features[index].astype(np.float32)
    alpha = 1 / (1 + np.exp(-_attraction_logit(features)))
    clicks = rng.random(index.shape) < theta[None, :] * alpha
    ids = (index + first_id).astype(np.int32)
    return ClickLog(
        columns={
            "query_id": np.full(sessions, 2, np.int32),
            "doc_id": ids,
            "query_doc_id": ids,
            "query_doc_hash": ids,
            "position": np.tile(np.arange(1, positions + 1, dtype=np.int32), (sessions, 1)),
            "click": clicks.astype(np.uint8),
            "mask": np.ones(index.shape, np.uint8),
            "weight": np.ones(sessions, np.float32),
            "features": features,
        },
        positions=positions,
    )


THETA = np.array([0.95, 0.8, 0.7, 0.6, 0.5, 0.45, 0.4, 0.35, 0.3, 0.25])


@pytest.fixture(scope="module")
def feature_logs():
    rng = np.random.default_rng(3)
    train_pairs = rng.normal(size=(300, FEATURES))
    unseen_pairs = rng.normal(size=(200, FEATURES))
    train = _feature_log(train_pairs, 2, 6000, THETA, rng)
    # Pairs never seen in training: a vocabulary built from the training log maps them to id 1.
    unseen = _feature_log(unseen_pairs, 302, 2000, THETA, rng)
    unseen.columns["query_doc_id"][:] = 1
    return train, unseen


def test_tower_generalises_to_unseen_pairs(feature_logs):
    train, unseen = feature_logs
    table = PBM(positions=10, query_doc_pairs=302)
    fit(table, train, epochs=25, batch_size=1000, learning_rate=0.05, oov_rate=0.05)
    tower = PBM(positions=10, query_doc_pairs=302, attraction=MLPLogits(FEATURES, hidden=(32, 16), rngs=nnx.Rngs(0)))
    fit(tower, train, epochs=25, batch_size=1000, learning_rate=0.01)

    table_log_likelihood = held_out_log_likelihood(table, unseen)
    tower_log_likelihood = held_out_log_likelihood(tower, unseen)
    print(f"unseen pairs: table (out-of-vocabulary parameter) {table_log_likelihood:.4f}, MLP tower {tower_log_likelihood:.4f}")
    assert tower_log_likelihood > table_log_likelihood + 0.03


def test_shared_tower_trains_jointly(feature_logs, tmp_path):
    train, unseen = feature_logs
    shared = MLPLogits(FEATURES, hidden=(16,), rngs=nnx.Rngs(1))
    initial = np.asarray(shared.output.kernel[...]).copy()
    pbm = PBM(positions=10, query_doc_pairs=302, attraction=shared)
    dbn = DBN(positions=10, query_doc_pairs=302, attraction=shared)
    fit([pbm, dbn], train, epochs=3, batch_size=1000, learning_rate=0.01)

    assert pbm.attraction is dbn.attraction
    np.testing.assert_array_equal(np.asarray(pbm.attraction.output.kernel[...]), np.asarray(dbn.attraction.output.kernel[...]))
    assert not np.allclose(np.asarray(shared.output.kernel[...]), initial)

    # Each model saves with its own copy of the tower and loads with the same predictions.
    batch = next(unseen.batches(64))
    for name, model in [("pbm", pbm), ("dbn", dbn)]:
        folder = tmp_path / name
        save_model(model, folder, config={"model": name, "positions": 10, "query_doc_pairs": 302})
        loaded = load_model(folder)
        assert isinstance(loaded.attraction, MLPLogits)
        np.testing.assert_array_equal(np.asarray(loaded.log_likelihood(batch)), np.asarray(model.log_likelihood(batch)))


def test_one_module_in_two_roles_loads_shared(tmp_path):
    shared = EmbeddingLogits(6)
    shared.logits.set_value(jnp.arange(6.0) / 10)
    model = DBN(positions=3, query_doc_pairs=6, attraction=shared, satisfaction=shared)
    save_model(model, tmp_path, config={"model": "dbn", "positions": 3, "query_doc_pairs": 6})
    loaded = load_model(tmp_path)
    assert loaded.attraction is loaded.satisfaction
    np.testing.assert_array_equal(np.asarray(loaded.attraction.logits[...]), np.arange(6.0, dtype=np.float32) / 10)


@pytest.mark.parametrize(
    "attraction",
    [
        HashedLogits(buckets=50, hashes=2, prior=L2Prior(0.5), init=0.3),
        DCNLogits(FEATURES, cross_layers=1, hidden=(3,), activation="gelu", rngs=nnx.Rngs(2)),
        LinearLogits(FEATURES, rngs=nnx.Rngs(2)),
        EmbeddingLogits(2, prior=L2Prior(2.0)),
    ],
    ids=["hashed", "dcn", "linear", "embedding-prior"],
)
def test_modules_save_and_load(tmp_path, attraction):
    model = PBM(positions=5, query_doc_pairs=2, examination=RankLogits(5, init=0.7), attraction=attraction)
    save_model(model, tmp_path, config={"model": "pbm", "positions": 5, "query_doc_pairs": 2})
    loaded = load_model(tmp_path)

    assert type(loaded.attraction) is type(attraction)
    assert loaded.attraction.config() == attraction.config()
    batch = feature_batch()
    batch["query_doc_hash"] = np.arange(15, dtype=np.int32).reshape(3, 5) * 7919
    np.testing.assert_array_equal(np.asarray(loaded.log_likelihood(batch)), np.asarray(model.log_likelihood(batch)))


def test_load_rejects_unknown_module(tmp_path):
    model = PBM(positions=3, query_doc_pairs=4, attraction=HashedLogits(buckets=8))
    save_model(model, tmp_path, config={"model": "pbm", "positions": 3, "query_doc_pairs": 4})
    metadata = json.loads((tmp_path / "clickjax-model.json").read_text())
    metadata["modules"]["attraction"]["type"] = "FutureLogits"
    (tmp_path / "clickjax-model.json").write_text(json.dumps(metadata))
    with pytest.raises(ValueError, match="names the unknown parameter module 'FutureLogits' for attraction"):
        load_model(tmp_path)


def test_load_version_1_folder_with_default_modules(tmp_path):
    model = PBM(positions=3, query_doc_pairs=4)
    model.attraction.logits.set_value(jnp.array([0.0, 0.1, 0.2, 0.3]))
    save_model(model, tmp_path, config={"model": "pbm", "positions": 3, "query_doc_pairs": 4})
    # A version 1 folder has the same files without the modules entry.
    metadata = json.loads((tmp_path / "clickjax-model.json").read_text())
    del metadata["modules"]
    metadata["format_version"] = 1
    (tmp_path / "clickjax-model.json").write_text(json.dumps(metadata))

    loaded = load_model(tmp_path)
    assert isinstance(loaded.attraction, EmbeddingLogits)
    np.testing.assert_array_equal(np.asarray(loaded.attraction.logits[...]), np.array([0.0, 0.1, 0.2, 0.3], np.float32))
