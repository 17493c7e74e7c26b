"""Hand-checkable examples of the click-through-rate models (GCTR, RCTR, DCTR), their relevance and summaries."""

import math
import re

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from clickjax.models import DocumentClickThroughRateModel
from clickjax.models import GlobalClickThroughRateModel
from clickjax.models import RankClickThroughRateModel
from clickjax.parameters import GlobalLogit
from clickjax.parameters import RankLogits
from test_models import PAIRS
from test_models import logit
from test_models import make_batch
from test_models import x64  # noqa: F401 (fixture)


def build(model_class, positions, **roles):
    return model_class(positions=positions, query_doc_pairs=PAIRS, rngs=nnx.Rngs(0), param_dtype=jnp.float64, **roles)


def test_gctr_two_ranks_by_hand(x64):
    rho = 0.3
    model = build(GlobalClickThroughRateModel, 2)
    model.click_through_rate.logit[...] = jnp.asarray(logit(rho))
    batch = make_batch([[2, 3]], [[1, 2]], [[1, 0]], width=2)

    np.testing.assert_allclose(np.exp(model.log_click_probs(batch))[0], [rho, rho], rtol=1e-12)
    np.testing.assert_allclose(np.exp(model.log_conditional_click_probs(batch))[0], [rho, rho], rtol=1e-12)
    np.testing.assert_allclose(model.log_likelihood(batch)[0], [math.log(rho), math.log(1 - rho)], rtol=1e-12)
    assert model.parameter_summary() == {"click_through_rate": pytest.approx(rho, rel=1e-12)}


def test_rctr_three_ranks_by_hand(x64):
    rho = {1: 0.6, 2: 0.35, 3: 0.1}
    model = build(RankClickThroughRateModel, 3)
    model.click_through_rate.logits[...] = jnp.array([0.0, logit(rho[1]), logit(rho[2]), logit(rho[3])])

    # The second session skips rank 2, so its slot 2 shows rank 3.
    batch = make_batch([[2, 3, 4], [5, 6]], [[1, 2, 3], [1, 3]], [[0, 1, 1], [1, 0]], width=3)
    expected = np.array([[rho[1], rho[2], rho[3]], [rho[1], rho[3], np.nan]])
    real = batch["mask"].astype(bool)
    np.testing.assert_allclose(np.exp(model.log_click_probs(batch))[real], expected[real], rtol=1e-12)
    np.testing.assert_allclose(np.exp(model.log_conditional_click_probs(batch))[real], expected[real], rtol=1e-12)
    expected_likelihood = [
        [math.log(1 - rho[1]), math.log(rho[2]), math.log(rho[3])],
        [math.log(rho[1]), math.log(1 - rho[3]), 0.0],
    ]
    np.testing.assert_allclose(model.log_likelihood(batch), expected_likelihood, rtol=1e-12)
    assert model.parameter_summary() == {"click_through_rate_by_rank": pytest.approx([0.6, 0.35, 0.1], rel=1e-12)}


def test_dctr_two_ranks_by_hand(x64):
    rho2, rho3 = 0.45, 0.05
    model = build(DocumentClickThroughRateModel, 2)
    model.click_through_rate.logits[...] = model.click_through_rate.logits[...].at[jnp.array([2, 3])].set(
        jnp.array([logit(rho2), logit(rho3)])
    )

    # The same pairs at swapped ranks keep their probabilities.
    batch = make_batch([[2, 3], [3, 2]], [[1, 2], [1, 2]], [[0, 1], [0, 0]], width=2)
    expected = [[rho2, rho3], [rho3, rho2]]
    np.testing.assert_allclose(np.exp(model.log_click_probs(batch)), expected, rtol=1e-12)
    np.testing.assert_allclose(np.exp(model.log_conditional_click_probs(batch)), expected, rtol=1e-12)
    expected_likelihood = [[math.log(1 - rho2), math.log(rho3)], [math.log(1 - rho3), math.log(1 - rho2)]]
    np.testing.assert_allclose(model.log_likelihood(batch), expected_likelihood, rtol=1e-12)

    np.testing.assert_allclose(model.relevance(batch), expected, rtol=1e-12)
    assert model.parameter_summary() == {}


@pytest.mark.parametrize("model_class", [GlobalClickThroughRateModel, RankClickThroughRateModel])
def test_relevance_without_document_parameter_raises(model_class):
    model = model_class(positions=2, query_doc_pairs=PAIRS, rngs=nnx.Rngs(0))
    batch = make_batch([[2, 3]], [[1, 2]], [[0, 0]], width=2)
    expected = f"{model_class.__name__} has no per-document parameter, so it has no relevance estimate"
    with pytest.raises(NotImplementedError, match=re.escape(expected)):
        model.relevance(batch)


def test_ctr_models_accept_other_modules(x64):
    # RCTR with one global logit behaves like GCTR, but its summary needs a rank table.
    model = build(RankClickThroughRateModel, 2, click_through_rate=GlobalLogit(init=logit(0.2), param_dtype=jnp.float64))
    batch = make_batch([[2, 3]], [[1, 2]], [[0, 0]], width=2)
    np.testing.assert_allclose(np.exp(model.log_click_probs(batch))[0], [0.2, 0.2], rtol=1e-12)
    with pytest.raises(NotImplementedError, match="parameter_summary needs a RankLogits click_through_rate"):
        model.parameter_summary()

    model = build(GlobalClickThroughRateModel, 2, click_through_rate=RankLogits(2, param_dtype=jnp.float64))
    with pytest.raises(NotImplementedError, match="parameter_summary needs a GlobalLogit click_through_rate"):
        model.parameter_summary()
