"""Calibration, unseen-pair policies, ranking metrics and bootstrap comparisons, checked by hand."""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from clickjax.comparison import bootstrap_click_metrics, bootstrap_ranking_metrics
from clickjax.metrics import evaluate
from clickjax.models import PositionBasedModel, SimplifiedDynamicBayesianNetwork
from clickjax.ranking import expected_ranking_metrics, ranking_metrics
from test_metrics import FixedModel, make_batch


def logit(p):
    return math.log(p / (1 - p))


def session_batch(pairs, clicks, weight=None, query_id=None, hashes=None):
    """A batch of full sessions: pair ids and clicks `[sessions, positions]`, ranks 1..positions."""
    pairs = np.asarray(pairs, np.int32)
    rows, positions = pairs.shape
    return {
        "query_id": np.asarray(query_id if query_id is not None else [2] * rows, np.int32),
        "doc_id": pairs.copy(),
        "query_doc_id": pairs.copy(),
        "query_doc_hash": np.asarray(hashes if hashes is not None else pairs, np.int32),
        "position": np.tile(np.arange(1, positions + 1, dtype=np.int32), (rows, 1)),
        "click": np.asarray(clicks, np.uint8),
        "mask": np.ones((rows, positions), np.uint8),
        "weight": np.asarray(weight if weight is not None else [1.0] * rows, np.float32),
    }


def set_logits(table, values):
    table.logits.set_value(jnp.asarray(values, jnp.float32))


def sdbn(attraction, satisfaction):
    """SDBN over pairs 2, 3, ... with the given probabilities; rows 0 and 1 get 0.5."""
    model = SimplifiedDynamicBayesianNetwork(positions=2, query_doc_pairs=len(attraction) + 2, rngs=nnx.Rngs(0))
    set_logits(model.attraction, [0.0, 0.0] + [logit(p) for p in attraction])
    set_logits(model.satisfaction, [0.0, 0.0] + [logit(p) for p in satisfaction])
    return model


def pbm(theta, alpha, oov_alpha=0.5):
    model = PositionBasedModel(positions=len(theta), query_doc_pairs=len(alpha) + 2, rngs=nnx.Rngs(0))
    set_logits(model.examination, [0.0] + [logit(p) for p in theta])
    set_logits(model.attraction, [0.0, logit(oov_alpha)] + [logit(p) for p in alpha])
    return model


def test_perplexity_per_rank_three_sessions():
    # SDBN (gamma = 1) with pair A = id 2 (attraction 0.5, satisfaction 0.4) and B = id 3
    # (attraction 0.25, satisfaction 0.8). P(c_1) = a_1; P(c_2) = (1 - a_1 s_1) a_2;
    # P(c_2 | c_1 = 1) = (1 - s_1) a_2 and P(c_2 | c_1 = 0) = a_2.
    model = sdbn([0.5, 0.25], [0.4, 0.8])
    batch = session_batch([[2, 3], [2, 3], [3, 2]], [[1, 0], [0, 1], [1, 1]])

    metrics = evaluate(model, [batch])

    # Probability of each observed click: unconditional and conditional, by session and rank.
    rank1 = [0.5, 0.5, 0.25]
    rank2 = [1 - 0.8 * 0.25, 0.8 * 0.25, 0.8 * 0.5]
    rank2_conditional = [1 - 0.6 * 0.25, 0.25, 0.2 * 0.5]
    perplexity1 = 2 ** -(sum(math.log2(p) for p in rank1) / 3)
    perplexity2 = 2 ** -(sum(math.log2(p) for p in rank2) / 3)
    conditional2 = 2 ** -(sum(math.log2(p) for p in rank2_conditional) / 3)
    log_likelihood = sum(math.log(p) for p in rank1 + rank2_conditional) / 6
    assert perplexity1 == pytest.approx(2 ** (4 / 3))
    assert metrics.perplexity_per_rank == pytest.approx([perplexity1, perplexity2], rel=1e-5)
    assert metrics.conditional_perplexity_per_rank == pytest.approx([perplexity1, conditional2], rel=1e-5)
    assert metrics.perplexity == pytest.approx((perplexity1 + perplexity2) / 2, rel=1e-5)
    assert metrics.conditional_perplexity == pytest.approx((perplexity1 + conditional2) / 2, rel=1e-5)
    assert metrics.log_likelihood == pytest.approx(log_likelihood, rel=1e-5)
    assert metrics.click_rate_per_rank == pytest.approx([2 / 3, 2 / 3])
    assert metrics.predicted_click_rate_per_rank == pytest.approx([(0.5 + 0.5 + 0.25) / 3, (0.2 + 0.2 + 0.4) / 3], rel=1e-5)


def test_weighted_session_counts_as_copies():
    # One rank, P(click) = 0.6: a clicked session of weight 1 and a skipped one of weight 3.
    model = FixedModel([0.6], [0.6])
    batch = make_batch([[1], [0]], [[1], [1]], weight=[1, 3])

    metrics = evaluate(model, [batch])

    mean_log = (math.log(0.6) + 3 * math.log(0.4)) / 4
    assert metrics.log_likelihood == pytest.approx(mean_log, rel=1e-6)
    assert metrics.perplexity == pytest.approx(2 ** -((math.log2(0.6) + 3 * math.log2(0.4)) / 4), rel=1e-6)
    assert metrics.sessions == 4
    assert metrics.results == 4
    assert metrics.click_rate_per_rank == pytest.approx([0.25])
    # One filled bin [0.6, 0.7): |0.6 - 0.25|.
    assert metrics.expected_calibration_error == pytest.approx(0.35, rel=1e-6)


def test_expected_calibration_error_weighted():
    # Rank 1 predicts 0.15 (bin [0.1, 0.2)), rank 2 predicts 0.75 (bin [0.7, 0.8)).
    model = FixedModel([0.15, 0.75], [0.15, 0.75])
    clicks = [[1, 1], [0, 1], [0, 0], [0, 1]]
    batch = make_batch(clicks, [[1, 1]] * 4, weight=[1, 1, 2, 1])

    metrics = evaluate(model, [batch])

    # Weighted click rates: rank 1 = 1/5, rank 2 = (1 + 1 + 1)/5. Each bin has weight 5 of 10.
    ece = 5 / 10 * abs(0.15 - 1 / 5) + 5 / 10 * abs(0.75 - 3 / 5)
    assert metrics.expected_calibration_error == pytest.approx(ece, rel=1e-5)
    assert metrics.click_rate_per_rank == pytest.approx([0.2, 0.6])
    assert metrics.predicted_click_rate_per_rank == pytest.approx([0.15, 0.75], rel=1e-5)
    bins = metrics.calibration_bins
    assert [b["weight"] for b in bins] == [0, 5, 0, 0, 0, 0, 0, 5, 0, 0]
    assert bins[1]["observed"] == pytest.approx(0.2)
    assert bins[7]["predicted"] == pytest.approx(0.75, rel=1e-5)
    assert bins[0]["predicted"] is None


def test_unseen_policies_oov_and_skip():
    # PBM, theta = (0.8, 0.5); pair 2 has attraction 0.5, out-of-vocabulary pairs 0.2.
    model = pbm([0.8, 0.5], [0.5], oov_alpha=0.2)
    # The second result of both sessions is unseen in training (id 1), with two distinct hashes.
    batch = session_batch([[2, 1], [2, 1]], [[1, 0], [0, 1]], hashes=[[7, 11], [7, 13]])

    oov = evaluate(model, [batch], unseen="oov")
    skip = evaluate(model, [batch], unseen="skip")

    rank1 = [0.4, 0.6]  # P(c = 1) = 0.8 * 0.5 = 0.4
    rank2 = [0.9, 0.1]  # P(c = 1) = 0.5 * 0.2 = 0.1
    assert oov.log_likelihood == pytest.approx(sum(math.log(p) for p in rank1 + rank2) / 4, rel=1e-5)
    assert skip.log_likelihood == pytest.approx(sum(math.log(p) for p in rank1) / 2, rel=1e-5)
    assert skip.perplexity_per_rank[1] is None
    assert skip.results == 2
    assert oov.results == 4
    for metrics, policy in [(oov, "oov"), (skip, "skip")]:
        assert metrics.unseen_policy == policy
        assert metrics.unseen_results == 2
        assert metrics.unseen_pairs == 2


def test_skip_of_all_results_is_an_error():
    model = pbm([0.8], [0.5])
    batch = session_batch([[1], [1]], [[1], [0]])
    with pytest.raises(ValueError, match="skipped as unseen"):
        evaluate(model, [batch], unseen="skip")


def test_unknown_unseen_policy_rejected():
    model = pbm([0.8], [0.5])
    with pytest.raises(ValueError, match="unknown unseen-pair policy 'drop'"):
        evaluate(model, [session_batch([[2]], [[1]])], unseen="drop")


def brute_force_metrics(scores, labels, k, threshold=1):
    """Average DCG@k, nDCG@k and MRR@k over every order of the results that keeps scores descending."""
    totals = np.zeros(3)
    orders = [
        order for order in itertools.permutations(range(len(scores)))
        if all(scores[order[i]] >= scores[order[i + 1]] for i in range(len(order) - 1))
    ]
    ideal = sorted((2 ** label - 1 for label in labels), reverse=True)
    idcg = sum(gain / math.log2(rank + 1) for rank, gain in enumerate(ideal[:k], start=1))
    for order in orders:
        ranked = [labels[i] for i in order][:k]
        dcg = sum((2 ** label - 1) / math.log2(rank + 1) for rank, label in enumerate(ranked, start=1))
        first = next((rank for rank, label in enumerate(ranked, start=1) if label >= threshold), None)
        totals += [dcg, dcg / idcg, 1 / first if first else 0.0]
    return totals / len(orders)


def test_ndcg_ties_by_hand():
    scores = [0.9, 0.5, 0.5, 0.1]
    labels = [0, 2, 0, 1]

    values = expected_ranking_metrics(scores, labels, cutoffs=(1, 3))

    # Ranks 2 and 3 are tied: the gain 3 takes the mean of their discounts.
    dcg3 = 3 * (1 / math.log2(3) + 1 / math.log2(4)) / 2
    idcg3 = 3 / math.log2(2) + 1 / math.log2(3)
    assert values["dcg@1"] == 0.0
    assert values["dcg@3"] == pytest.approx(dcg3)
    assert values["ndcg@3"] == pytest.approx(dcg3 / idcg3)
    # The relevant result of the tie is at rank 2 or 3 with probability 1/2 each.
    assert values["mrr@1"] == 0.0
    assert values["mrr@3"] == pytest.approx(0.5 / 2 + 0.5 / 3)


@pytest.mark.parametrize("seed", range(6))
def test_tie_expectation_matches_enumeration(seed):
    rng = np.random.default_rng(seed)
    scores = list(rng.integers(0, 3, size=6) / 2)
    labels = list(rng.integers(0, 5, size=6))
    labels[0] = max(labels[0], 1)

    for k in (1, 3, 5, 10):
        values = expected_ranking_metrics(scores, labels, cutoffs=(k,))
        dcg, ndcg, mrr = brute_force_metrics(scores, labels, k)
        assert values[f"dcg@{k}"] == pytest.approx(dcg)
        assert values[f"ndcg@{k}"] == pytest.approx(ndcg)
        assert values[f"mrr@{k}"] == pytest.approx(mrr)


def test_ndcg_undefined_without_relevant():
    values = expected_ranking_metrics([0.3, 0.2], [0, 0], cutoffs=(3,))
    assert math.isnan(values["ndcg@3"])
    assert values["dcg@3"] == 0.0
    assert values["mrr@3"] == 0.0


def annotation_batch(pairs, labels, weight=None):
    batch = session_batch(pairs, np.zeros_like(pairs), weight=weight)
    batch["label"] = np.asarray(labels, np.int32)
    batch["mask"] = (batch["query_doc_id"] > 0).astype(np.uint8)
    return batch


def test_ranking_metrics_of_model_relevance():
    # PBM relevance is attraction: pairs 2..5 with 0.9, 0.2, 0.6 and 0.6 (a tie).
    model = pbm([0.9, 0.8, 0.7], [0.9, 0.2, 0.6, 0.6], oov_alpha=0.5)
    # Query 1 ranks pairs 2, 3, 4 (labels 1, 3, 0); query 2 ranks pairs 4, 5 (labels 2, 0) and an
    # unlabelled pair 3; query 3 has only padding and is not counted.
    batch = annotation_batch([[2, 3, 4], [4, 5, 3], [0, 0, 0]], [[1, 3, 0], [2, 0, -1], [-1, -1, -1]])

    metrics = ranking_metrics(model, [batch], cutoffs=(1, 3))

    # Query 1 order by attraction: 2 (label 1), 4 (label 0), 3 (label 3).
    dcg1_q1, dcg3_q1 = 1.0, 1 + 7 / math.log2(4)
    idcg3_q1 = 7 + 1 / math.log2(3)
    # Query 2: pairs 4 and 5 tie; the gain 3 sits at rank 1 or 2 with probability 1/2.
    dcg1_q2 = 3 / 2
    dcg3_q2 = 3 * (1 + 1 / math.log2(3)) / 2
    assert metrics.queries == 2
    assert metrics.dcg[1] == pytest.approx((dcg1_q1 + dcg1_q2) / 2, rel=1e-6)
    assert metrics.dcg[3] == pytest.approx((dcg3_q1 + dcg3_q2) / 2, rel=1e-6)
    assert metrics.ndcg[3] == pytest.approx((dcg3_q1 / idcg3_q1 + dcg3_q2 / 3) / 2, rel=1e-6)
    assert metrics.mrr[3] == pytest.approx((1 + (1 / 2 + 1 / 4)) / 2, rel=1e-6)


def test_ranking_metrics_need_labels():
    model = pbm([0.9], [0.5])
    with pytest.raises(ValueError, match="no label column"):
        ranking_metrics(model, [session_batch([[2]], [[0]])])


def snapshot(model):
    return jax.tree.map(lambda x: np.array(x, copy=True), nnx.state(model))


def assert_same_state(before, model):
    after = snapshot(model)
    for (path, a), (_, b) in zip(nnx.to_flat_state(before), nnx.to_flat_state(after)):
        np.testing.assert_array_equal(np.asarray(a.get_value()), np.asarray(b.get_value()), err_msg=str(path))


def test_evaluation_leaves_parameters_unchanged():
    rng = np.random.default_rng(3)
    model = pbm([0.9, 0.6, 0.3], list(rng.uniform(0.1, 0.9, size=5)), oov_alpha=0.3)
    other = pbm([0.8, 0.7, 0.6], list(rng.uniform(0.1, 0.9, size=5)), oov_alpha=0.4)
    before = snapshot(model)
    # Test data full of unseen pairs: every result but one has the out-of-vocabulary id.
    pairs = np.ones((8, 3), np.int32)
    pairs[0, 0] = 2
    clicks = rng.integers(0, 2, size=(8, 3))
    batch = session_batch(pairs, clicks, query_id=[1] * 8, hashes=rng.integers(2, 1000, size=(8, 3)))
    labelled = annotation_batch(pairs, rng.integers(0, 5, size=(8, 3)))

    for policy in ("oov", "skip"):
        evaluate(model, [batch], unseen=policy)
        ranking_metrics(model, [labelled], unseen=policy)
        bootstrap_click_metrics(model, other, [batch], samples=20, unseen=policy)

    assert_same_state(before, model)


def test_bootstrap_identical_models_zero():
    model = pbm([0.9, 0.5], [0.3, 0.6, 0.8])
    rng = np.random.default_rng(0)
    batch = session_batch(rng.integers(2, 5, size=(30, 2)), rng.integers(0, 2, size=(30, 2)), query_id=rng.integers(2, 6, size=30))

    differences = bootstrap_click_metrics(model, model, [batch], samples=50)

    assert [d.metric for d in differences] == ["log_likelihood", "perplexity", "conditional_perplexity"]
    for difference in differences:
        assert difference.difference == 0.0
        assert difference.lower == pytest.approx(0.0, abs=1e-12)
        assert difference.upper == pytest.approx(0.0, abs=1e-12)
        assert not difference.excludes_zero


def test_bootstrap_finds_true_model_better():
    # Clicks drawn from a PBM; the second model has the true parameters, the first guesses 0.5.
    rng = np.random.default_rng(1)
    theta, alpha = np.array([0.9, 0.6, 0.3]), np.array([0.1, 0.5, 0.9, 0.3])
    pairs = np.stack([rng.choice(4, size=3, replace=False) + 2 for _ in range(600)])
    clicks = rng.random((600, 3)) < theta * alpha[pairs - 2]
    batch = session_batch(pairs, clicks, query_id=rng.integers(2, 40, size=600))
    guess, truth = pbm([0.5] * 3, [0.5] * 4), pbm(list(theta), list(alpha))

    differences = {d.metric: d for d in bootstrap_click_metrics(guess, truth, [batch], samples=200, seed=4)}

    log_likelihood = differences["log_likelihood"]
    assert log_likelihood.lower <= log_likelihood.difference <= log_likelihood.upper
    assert log_likelihood.lower > 0
    assert differences["perplexity"].upper < 0


def test_bootstrap_ranking_difference():
    good = pbm([0.9], [0.9, 0.5, 0.1])
    bad = pbm([0.9], [0.1, 0.5, 0.9])
    labels = np.tile([[3, 1, 0]], (20, 1))
    batch = annotation_batch(np.tile([[2, 3, 4]], (20, 1)), labels)
    first, second = ranking_metrics(bad, [batch]), ranking_metrics(good, [batch])

    differences = {d.metric: d for d in bootstrap_ranking_metrics(first, second, samples=100)}

    ndcg = differences["ndcg@3"]
    assert ndcg.second == pytest.approx(1.0)
    assert ndcg.difference > 0
    # Every query is identical, so every replicate gives the same difference.
    assert ndcg.lower == pytest.approx(ndcg.difference)
    assert ndcg.upper == pytest.approx(ndcg.difference)


def test_bootstrap_rejects_bad_options():
    model = pbm([0.9], [0.5])
    batch = session_batch([[2]], [[1]])
    with pytest.raises(ValueError, match="at least 1"):
        bootstrap_click_metrics(model, model, [batch], samples=0)
    with pytest.raises(ValueError, match="confidence"):
        bootstrap_click_metrics(model, model, [batch], confidence=1.5)


def test_hashed_model_needs_no_vocabulary():
    from clickjax.parameters import EmbeddingLogits

    # Attraction indexed by query_doc_hash, as compressed tables are: the unseen policy does not apply.
    attraction = EmbeddingLogits(16, column="query_doc_hash")
    model = PositionBasedModel(positions=2, query_doc_pairs=3, attraction=attraction, rngs=nnx.Rngs(0))
    batch = session_batch([[2, 1], [2, 1]], [[1, 0], [0, 1]], hashes=[[7, 11], [7, 13]])

    metrics = evaluate(model, [batch], unseen="skip")

    assert metrics.unseen_policy == "none"
    assert metrics.results == 4
    assert metrics.unseen_results == 2
