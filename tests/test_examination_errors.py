"""Standard errors of examination by rank against the closed-form Fisher information of PBM."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from clickjax.models import DynamicBayesianNetwork, PositionBasedModel
from clickjax.uncertainty import examination_standard_errors
from simulation import simulate_pbm


def observed_information(theta, alpha, clicked):
    """-d^2/dx^2 of sum log P(c) for one rank of PBM with x = logit(theta), by hand.

    A click has log P = log theta + log alpha, whose second derivative in x is -theta (1 - theta).
    A skip has log P = log(1 - alpha theta); with u = alpha theta (1 - theta) its first derivative
    is -u / (1 - alpha theta), and the second is -[u (1 - 2 theta)(1 - alpha theta) + u^2] / (1 - alpha theta)^2.
    """
    information = 0.0
    for a, click in zip(alpha, clicked):
        u = a * theta * (1 - theta)
        if click:
            information += theta * (1 - theta)
        else:
            information += (u * (1 - 2 * theta) * (1 - a * theta) + u * u) / (1 - a * theta) ** 2
    return information


def test_standard_errors_match_closed_form():
    log, alpha = simulate_pbm(300, 6, [0.8, 0.4], seed=2)
    model = PositionBasedModel(positions=2, query_doc_pairs=len(alpha), rngs=nnx.Rngs(0))
    theta = np.array([0.75, 0.35])
    model.examination.logits.set_value(jnp.asarray([0.0, *np.log(theta / (1 - theta))], jnp.float32))
    model.attraction.logits.set_value(jnp.asarray(np.log(np.clip(alpha, 1e-6, 1 - 1e-6) / (1 - np.clip(alpha, 1e-6, 1 - 1e-6))), jnp.float32))
    before = np.array(model.examination.logits.get_value())

    standard_errors = examination_standard_errors(model, log, batch_size=128)

    assert math.isnan(standard_errors[0])
    for rank in (1, 2):
        pairs = log.columns["query_doc_id"][:, rank - 1]
        clicks = log.columns["click"][:, rank - 1]
        information = observed_information(theta[rank - 1], alpha[pairs], clicks)
        expected = theta[rank - 1] * (1 - theta[rank - 1]) / math.sqrt(information)
        assert standard_errors[rank] == pytest.approx(expected, rel=2e-3)
    np.testing.assert_array_equal(model.examination.logits.get_value(), before)


def test_unshown_rank_has_no_standard_error():
    # Sessions show 2 results on a page of 3, so rank 3 carries no information.
    log, alpha = simulate_pbm(200, 6, [0.8, 0.4], seed=3, positions=3)
    model = PositionBasedModel(positions=3, query_doc_pairs=len(alpha), rngs=nnx.Rngs(0))

    standard_errors = examination_standard_errors(model, log)

    assert np.isfinite(standard_errors[1:3]).all()
    assert math.isnan(standard_errors[3])


def test_model_without_examination_table():
    log, alpha = simulate_pbm(20, 6, [0.8, 0.4], seed=3)
    model = DynamicBayesianNetwork(positions=2, query_doc_pairs=len(alpha), rngs=nnx.Rngs(0))
    assert examination_standard_errors(model, log) is None
