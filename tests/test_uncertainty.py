"""Pair statistics: counts, observed information against the exact Hessian, calibration and ranking."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pyarrow.parquet as pq
import pytest
from flax import nnx

from clickjax.cli import main
from clickjax.data import ClickLog
from clickjax.models import DBN, DCTR, GCTR, MODELS, PBM
from clickjax.parameters import BetaPrior, EmbeddingLogits, LinearLogits
from clickjax.uncertainty import lower_confidence_bound, pair_statistics, pair_table_roles, rank_by_lower_bound
from map_training import fit
from test_cli import WSCD_TEST, WSCD_TRAIN


def _single_slot_log(ids, clicks, weights) -> ClickLog:
    ids = np.asarray(ids, np.int32)[:, None]
    rows = len(ids)
    return ClickLog(
        columns={
            "query_id": np.full(rows, 2, np.int32),
            "doc_id": ids,
            "query_doc_id": ids,
            "query_doc_hash": ids,
            "position": np.ones((rows, 1), np.int32),
            "click": np.asarray(clicks, np.uint8)[:, None],
            "mask": np.ones((rows, 1), np.uint8),
            "weight": np.asarray(weights, np.float32),
        },
        positions=1,
    )


def _logit(p):
    return math.log(p / (1 - p))


def test_dctr_standard_error_is_binomial():
    # Pair 2: 3 clicks in 4 impressions; pair 3: 1 click in 10 (one row of weight 9 is a skip).
    log = _single_slot_log([2, 2, 2, 2, 3, 3], [1, 1, 1, 0, 1, 0], [1, 1, 1, 1, 1, 9])
    model = DCTR(positions=1, query_doc_pairs=5)
    model.click_through_rate.logits.set_value(jnp.array([0.0, 0.0, _logit(0.75), _logit(0.1), 0.0]))
    stats = pair_statistics(model, log.batches(4))

    np.testing.assert_array_equal(stats["query_doc_id"], np.arange(5))
    np.testing.assert_array_equal(stats["impressions"], [0, 0, 4, 10, 0])
    np.testing.assert_array_equal(stats["clicks"], [0, 0, 3, 1, 0])
    # At the maximum-likelihood estimate p = c / n the standard error is sqrt(p (1 - p) / n).
    assert stats["click_through_rate"][2] == pytest.approx(0.75)
    assert stats["click_through_rate_se"][2] == pytest.approx(math.sqrt(0.75 * 0.25 / 4), rel=1e-4)
    assert stats["click_through_rate_se"][3] == pytest.approx(math.sqrt(0.1 * 0.9 / 10), rel=1e-4)
    assert stats["relevance_se"][3] == pytest.approx(math.sqrt(0.1 * 0.9 / 10), rel=1e-4)
    for row in (0, 1, 4):
        assert np.isnan(stats["click_through_rate_se"][row])
        assert np.isnan(stats["relevance_se"][row])


def test_prior_curvature_added():
    log = _single_slot_log([2, 2, 2, 2], [1, 1, 1, 0], [1, 1, 1, 1])
    model = DCTR(positions=1, query_doc_pairs=3, click_through_rate=EmbeddingLogits(3, prior=BetaPrior(3.0, 2.0)))
    model.click_through_rate.logits.set_value(jnp.array([0.0, 0.0, _logit(0.6)]))
    stats = pair_statistics(model, log.batches(4))
    # Information n p (1 - p) from the data plus (a + b - 2) p (1 - p) from the prior.
    information = (4 + 3) * 0.6 * 0.4
    assert stats["click_through_rate_se"][2] == pytest.approx(0.6 * 0.4 / math.sqrt(information), rel=1e-4)


def _random_log(positions: int, pairs: int, sessions: int, seed: int) -> ClickLog:
    """Sessions of distinct pairs with random clicks and some padding."""
    rng = np.random.default_rng(seed)
    ids = np.stack([rng.choice(pairs, size=positions, replace=False) + 2 for _ in range(sessions)]).astype(np.int32)
    mask = np.ones((sessions, positions), np.uint8)
    mask[::3, -1] = 0
    return ClickLog(
        columns={
            "query_id": np.full(sessions, 2, np.int32),
            "doc_id": ids * mask,
            "query_doc_id": ids * mask,
            "query_doc_hash": ids * mask,
            "position": (np.arange(1, positions + 1)[None, :] * mask).astype(np.int32),
            "click": (rng.random((sessions, positions)) < 0.35).astype(np.uint8) * mask,
            "mask": mask,
            "weight": rng.integers(1, 4, size=sessions).astype(np.float32),
        },
        positions=positions,
    )


def _randomise(model, seed):
    graphdef, state = nnx.split(model)
    leaves, tree = jax.tree.flatten(state)
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    leaves = [jax.random.normal(key, jnp.shape(leaf)) * 0.8 for key, leaf in zip(keys, leaves)]
    return nnx.merge(graphdef, jax.tree.unflatten(tree, leaves))


def _hessian_diagonal(model, role: str, log: ClickLog) -> np.ndarray:
    """The exact diagonal of the Hessian of the weighted log-likelihood by a table's rows."""
    graphdef, state = nnx.split(model)
    batch = log.columns

    def total(table):
        # The role reads the traced table directly, the way EmbeddingLogits indexes its rows.
        copy = nnx.merge(graphdef, state)
        object.__setattr__(copy, role, lambda batch: table[jnp.asarray(batch["query_doc_id"])])
        weight = batch["weight"][:, None] * batch["mask"]
        return jnp.sum(weight * copy.log_likelihood(batch))

    return np.diag(np.asarray(jax.hessian(total)(getattr(model, role).logits[...])))


# One model of each likelihood form: independent clicks (PBM, DCTR), the cascade (CM), the
# scan shared by DBN, SDBN, DCM and CCM (DBN with two roles, DCM with a per-rank continuation),
# and UBM's recursion over the previous click.
TABLE_MODELS = ["cm", "dbn", "dcm", "dctr", "pbm", "ubm"]


@pytest.mark.parametrize("name", TABLE_MODELS)
def test_information_equals_exact_hessian(name):
    log = _random_log(positions=4, pairs=8, sessions=30, seed=1)
    model = _randomise(MODELS[name](positions=4, query_doc_pairs=10, rngs=nnx.Rngs(0)), seed=2)
    stats = pair_statistics(model, log.batches(7))

    for role in pair_table_roles(model):
        information = -_hessian_diagonal(model, role, log)
        p = np.asarray(jax.nn.sigmoid(getattr(model, role).logits[...]), np.float64)
        expected = np.full(len(p), np.nan)
        positive = information > 0
        expected[positive] = p[positive] * (1 - p[positive]) / np.sqrt(information[positive])
        expected[stats["impressions"] == 0] = np.nan
        np.testing.assert_allclose(stats[f"{role}_se"], expected, rtol=2e-4, err_msg=role)
        assert np.isfinite(stats[f"{role}_se"][2:]).sum() > 0


def test_dbn_relevance_combines_both_roles():
    log = _random_log(positions=4, pairs=8, sessions=40, seed=3)
    model = _randomise(DBN(positions=4, query_doc_pairs=10), seed=4)
    stats = pair_statistics(model, log.batches(16))

    attraction = stats["attraction"]
    satisfaction = stats["satisfaction"]
    np.testing.assert_allclose(stats["relevance"], attraction * satisfaction, rtol=1e-6)
    # Delta method for r = alpha * sigma: se(r)^2 = (sigma se(alpha))^2 + (alpha se(sigma))^2.
    expected = np.sqrt((satisfaction * stats["attraction_se"]) ** 2 + (attraction * stats["satisfaction_se"]) ** 2)
    np.testing.assert_allclose(stats["relevance_se"], expected, rtol=1e-5)


class FixedExamination(nnx.Module):
    """Examination by rank fixed at known values: an `nnx.Variable`, so training leaves it alone."""

    def __init__(self, theta):
        self.logits = nnx.Variable(jnp.asarray(np.log(theta / (1 - theta)), jnp.float32))

    def __call__(self, batch):
        return self.logits[...][jnp.maximum(jnp.asarray(batch["position"]) - 1, 0)]


def test_standard_errors_calibrated_on_pbm():
    pairs = 600
    theta = np.array([0.98, 0.9, 0.8, 0.7, 0.6, 0.55, 0.5, 0.45, 0.4, 0.35])
    rng = np.random.default_rng(11)
    alpha = np.concatenate([[0.0, 0.5], rng.uniform(0.1, 0.7, size=pairs)])
    # Every pair is shown 250 times, ten distinct pairs per session, at random ranks.
    ids = np.concatenate([rng.permutation(pairs) + 2 for _ in range(250)]).reshape(-1, 10).astype(np.int32)
    sessions = len(ids)
    clicks = rng.random(ids.shape) < theta[None, :] * alpha[ids]
    log = ClickLog(
        columns={
            "query_id": np.full(sessions, 2, np.int32),
            "doc_id": ids,
            "query_doc_id": ids,
            "query_doc_hash": ids,
            "position": np.tile(np.arange(1, 11, dtype=np.int32), (sessions, 1)),
            "click": clicks.astype(np.uint8),
            "mask": np.ones(ids.shape, np.uint8),
            "weight": np.ones(sessions, np.float32),
        },
        positions=10,
    )
    # Examination is fixed at the truth: PBM's examination and attraction share a free scale,
    # and the per-pair standard errors describe attraction given examination.
    model = PBM(positions=10, query_doc_pairs=pairs + 2, examination=FixedExamination(theta))
    fit(model, log, epochs=300, batch_size=sessions, learning_rate=0.1)
    stats = pair_statistics(model, log.batches(8192))

    estimate = stats["attraction"][2:]
    se = stats["attraction_se"][2:]
    covered = np.abs(estimate - alpha[2:]) <= 1.96 * se
    print(f"95% intervals cover {covered.mean():.3f} of {pairs} true attractions; median se {np.median(se):.4f}")
    assert np.all(np.isfinite(se))
    assert 0.90 <= covered.mean() <= 0.99


def test_lower_confidence_bound_ranking():
    stats = {
        "query_doc_id": np.array([2, 3, 4, 5], np.int32),
        "relevance": np.array([1.0, 0.9, 0.5, 0.95]),
        "relevance_se": np.array([0.4, 0.003, 0.01, np.nan]),
    }
    z = 1.6448536269514722
    bound = lower_confidence_bound(stats, confidence=0.95)
    np.testing.assert_allclose(bound[:3], [1.0 - z * 0.4, 0.9 - z * 0.003, 0.5 - z * 0.01])
    assert np.isnan(bound[3])
    # The pair clicked in its single impression ranks below the well-measured ones; unseen last.
    np.testing.assert_array_equal(rank_by_lower_bound(stats), [1, 2, 0, 3])
    # A wide interval is cut at 0.
    assert lower_confidence_bound(stats, confidence=0.999)[0] == 0.0


def test_lower_confidence_bound_bad_arguments():
    stats = {"relevance": np.ones(2), "relevance_se": np.ones(2), "attraction": np.ones(2), "attraction_se": np.ones(2)}
    with pytest.raises(ValueError, match=r"confidence must be in \(0, 1\), got 1.5"):
        lower_confidence_bound(stats, confidence=1.5)
    with pytest.raises(ValueError, match="no column 'satisfaction' with a standard error; expected one of attraction, relevance"):
        rank_by_lower_bound(stats, column="satisfaction")


def test_pair_statistics_errors():
    log = _single_slot_log([2, 7], [1, 0], [1, 1])
    with pytest.raises(ValueError, match="GlobalClickThroughRateModel has no EmbeddingLogits table"):
        pair_statistics(GCTR(positions=1, query_doc_pairs=4), log.batches(2))
    with pytest.raises(ValueError, match="query_doc_id contains values from 2 to 7, but the model's pair tables have 4 rows"):
        pair_statistics(DCTR(positions=1, query_doc_pairs=4), log.batches(2))


@pytest.mark.parametrize("model", ["dbn", "gctr"])
def test_train_writes_pair_statistics(tmp_path, model):
    train = tmp_path / "train.txt"
    test = tmp_path / "test.txt"
    train.write_text(WSCD_TRAIN)
    test.write_text(WSCD_TEST)
    output = tmp_path / "run"
    code = main([
        "train", "--model", model, "--format", "wscd", "--train", str(train), "--test", str(test),
        "--positions", "3", "--epochs", "2", "--batch-size", "4", "--output", str(output),
    ])
    assert code == 0

    path = output / "model" / "pair-statistics.parquet"
    if model == "gctr":
        assert not path.exists()
        return
    table = pq.read_table(path).to_pydict()
    expected_columns = {
        "query_doc_id", "impressions", "clicks", "relevance", "relevance_se",
        "attraction", "attraction_se", "satisfaction", "satisfaction_se",
    }
    assert set(table) == expected_columns
    # Six training pairs get ids 2..7; row 1 (out of vocabulary) is never seen in training.
    assert table["query_doc_id"] == [1, 2, 3, 4, 5, 6, 7]
    assert sum(table["impressions"]) == 18
    # Six clicks in the file, but a repeated click on URL 21 counts once.
    assert sum(table["clicks"]) == 5
    assert math.isnan(table["attraction_se"][0])


def test_relevance_needs_pair_tables():
    # Satisfaction is a table, but attraction is a tower over features, so relevance needs features.
    log = _single_slot_log([2, 3], [1, 0], [1, 1])
    model = DBN(positions=1, query_doc_pairs=4, attraction=LinearLogits(2, rngs=nnx.Rngs(0)))
    log.columns["features"] = np.zeros((2, 1, 2), np.float32)
    with pytest.raises(ValueError, match="relevance of DynamicBayesianNetwork from the pair tables alone failed .*missing the column features"):
        pair_statistics(model, log.batches(2))


def test_batches_without_weight():
    log = _single_slot_log([2, 2, 3], [1, 0, 1], [1, 1, 1])
    model = DCTR(positions=1, query_doc_pairs=4)
    with_weight = pair_statistics(model, log.batches(3))
    batches = [{name: column for name, column in batch.items() if name != "weight"} for batch in log.batches(3)]
    without_weight = pair_statistics(model, batches)
    for name, values in with_weight.items():
        np.testing.assert_array_equal(without_weight[name], values, err_msg=name)
