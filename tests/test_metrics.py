"""Metrics on hand-checkable examples, with a stub model whose probabilities are fixed per slot."""

import math

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from clickjax.metrics import evaluate
from clickjax.numerics import log1mexp


class FixedModel(nnx.Module):
    """Clicks at slot k with probability `unconditional[k]`, and `conditional[k]` given the clicks above."""

    def __init__(self, unconditional, conditional):
        self.unconditional = nnx.Variable(jnp.log(jnp.asarray(unconditional, jnp.float32)))
        self.conditional = nnx.Variable(jnp.log(jnp.asarray(conditional, jnp.float32)))

    def log_click_probs(self, batch):
        return jnp.broadcast_to(self.unconditional.get_value(), batch["click"].shape)

    def log_conditional_click_probs(self, batch):
        return jnp.broadcast_to(self.conditional.get_value(), batch["click"].shape)

    def log_likelihood(self, batch):
        log_p = self.log_conditional_click_probs(batch)
        observed = jnp.where(batch["click"] == 1, log_p, log1mexp(log_p))
        return jnp.where(batch["mask"] == 1, observed, 0.0)


def make_batch(clicks, mask, weight=None):
    clicks = np.asarray(clicks, np.uint8)
    mask = np.asarray(mask, np.uint8)
    rows, positions = clicks.shape
    position = np.where(mask == 1, np.arange(1, positions + 1), 0).astype(np.int32)
    return {
        "query_doc_id": np.where(mask == 1, 2, 0).astype(np.int32),
        "position": position,
        "click": clicks,
        "mask": mask,
        "weight": np.ones(rows, np.float32) if weight is None else np.asarray(weight, np.float32),
    }


def test_metrics_two_sessions_by_formula():
    p = [0.6, 0.2]  # unconditional click probability at ranks 1 and 2
    q = [0.6, 0.3]  # conditional click probability at ranks 1 and 2
    model = FixedModel(p, q)
    batch = make_batch([[1, 0], [0, 1]], [[1, 1], [1, 1]])

    metrics = evaluate(model, [batch])

    # Rank 1: one click, one skip; rank 2: one skip, one click.
    ll_rank1 = (math.log(0.6) + math.log(0.4)) / 2
    ll_rank2 = (math.log(0.7) + math.log(0.3)) / 2
    ppl_rank1 = 2 ** -((math.log2(0.6) + math.log2(0.4)) / 2)
    ppl_rank2 = 2 ** -((math.log2(0.8) + math.log2(0.2)) / 2)
    cond_ppl_rank2 = 2 ** -((math.log2(0.7) + math.log2(0.3)) / 2)
    assert metrics.log_likelihood == pytest.approx((ll_rank1 + ll_rank2) / 2, rel=1e-6)
    assert metrics.log_likelihood_per_rank == pytest.approx([ll_rank1, ll_rank2], rel=1e-6)
    assert metrics.perplexity_per_rank == pytest.approx([ppl_rank1, ppl_rank2], rel=1e-6)
    assert metrics.perplexity == pytest.approx((ppl_rank1 + ppl_rank2) / 2, rel=1e-6)
    assert metrics.conditional_perplexity_per_rank == pytest.approx([ppl_rank1, cond_ppl_rank2], rel=1e-6)
    assert metrics.sessions == 2
    assert metrics.results == 4


def test_metrics_ignore_padding_and_honour_weight():
    model = FixedModel([0.6, 0.2, 0.1], [0.6, 0.3, 0.1])
    # The second session has two results and stands for three identical sessions.
    weighted = make_batch([[1, 0, 0], [0, 1, 0]], [[1, 1, 1], [1, 1, 0]], weight=[1, 3])
    expanded = make_batch(
        [[1, 0, 0], [0, 1, 0], [0, 1, 0], [0, 1, 0], [0, 0, 0]],
        [[1, 1, 1], [1, 1, 0], [1, 1, 0], [1, 1, 0], [0, 0, 0]],
        weight=[1, 1, 1, 1, 0],
    )

    a = evaluate(model, [weighted])
    b = evaluate(model, [expanded])

    assert a.log_likelihood == pytest.approx(b.log_likelihood, rel=1e-6)
    assert a.perplexity_per_rank == pytest.approx(b.perplexity_per_rank, rel=1e-6)
    assert a.sessions == b.sessions == 4
    # Rank 3 has only the first session: perplexity 2 ** -log2(0.9).
    assert a.perplexity_per_rank[2] == pytest.approx(1 / 0.9, rel=1e-6)


def test_metrics_absent_rank_is_none():
    model = FixedModel([0.5, 0.5, 0.5], [0.5, 0.5, 0.5])
    batch = make_batch([[1, 0, 0]], [[1, 1, 0]])

    metrics = evaluate(model, [batch])

    assert metrics.perplexity_per_rank[2] is None
    assert metrics.perplexity == pytest.approx(2.0, rel=1e-6)


def test_evaluate_rejects_empty_input():
    with pytest.raises(ValueError, match="empty"):
        evaluate(FixedModel([0.5], [0.5]), [])
