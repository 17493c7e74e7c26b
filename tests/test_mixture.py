"""Mixtures of click models: the posterior weights by hand, no leak from the predicted click, relevance and errors.

Exactness on every click vector is checked by enumeration in test_models_exact.py.
"""

import math
import re

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from clickjax.models import CascadeModel
from clickjax.models import DynamicBayesianNetwork
from clickjax.models import GlobalClickThroughRateModel
from clickjax.models import Mixture
from clickjax.models import PositionBasedModel
from clickjax.models import UserBrowsingModel
from test_models import PAIRS
from test_models import logit
from test_models import make_batch
from test_models import random_sessions
from test_models import set_random_parameters
from test_models import x64  # noqa: F401 (fixture)


def build(model_class, positions=3, dtype=jnp.float64):
    return model_class(positions=positions, query_doc_pairs=PAIRS, rngs=nnx.Rngs(0), param_dtype=dtype)


def two_global_ctrs(rho_a, rho_b, weight_a):
    first, second = build(GlobalClickThroughRateModel), build(GlobalClickThroughRateModel)
    first.click_through_rate.logit[...] = jnp.asarray(logit(rho_a))
    second.click_through_rate.logit[...] = jnp.asarray(logit(rho_b))
    mixture = Mixture([first, second], param_dtype=jnp.float64)
    mixture.weight_logits[...] = jnp.array([logit(weight_a), 0.0])
    return mixture


def test_two_global_ctrs_by_hand(x64):
    rho_a, rho_b, w = 0.2, 0.7, 0.4
    mixture = two_global_ctrs(rho_a, rho_b, w)
    batch = make_batch([[2, 3, 4]] * 2, [[1, 2, 3]] * 2, [[1, 0, 1], [0, 0, 0]], width=3)

    # Without clicks every slot has the prior mixture of the two rates.
    prior = w * rho_a + (1 - w) * rho_b
    np.testing.assert_allclose(np.exp(mixture.log_click_probs(batch)), [[prior] * 3] * 2, rtol=1e-12)

    # Given the clicks above a slot, the weight of component a is its posterior:
    # w_a(k) = w P_a(c_<k) / (w P_a(c_<k) + (1 - w) P_b(c_<k)).
    def predicted(clicks_above):
        likelihood_a = math.prod(rho_a if c else 1 - rho_a for c in clicks_above)
        likelihood_b = math.prod(rho_b if c else 1 - rho_b for c in clicks_above)
        posterior_a = w * likelihood_a / (w * likelihood_a + (1 - w) * likelihood_b)
        return posterior_a * rho_a + (1 - posterior_a) * rho_b

    expected = [
        [predicted([]), predicted([1]), predicted([1, 0])],
        [predicted([]), predicted([0]), predicted([0, 0])],
    ]
    np.testing.assert_allclose(np.exp(mixture.log_conditional_click_probs(batch)), expected, rtol=1e-12)

    # The session likelihood is the mixture of the components' session likelihoods.
    session = np.exp(np.asarray(mixture.log_likelihood(batch)).sum(axis=1))
    expected_session = [
        w * rho_a * (1 - rho_a) * rho_a + (1 - w) * rho_b * (1 - rho_b) * rho_b,
        w * (1 - rho_a) ** 3 + (1 - w) * (1 - rho_b) ** 3,
    ]
    np.testing.assert_allclose(session, expected_session, rtol=1e-12)


@pytest.mark.parametrize("components", [(PositionBasedModel, DynamicBayesianNetwork), (CascadeModel, UserBrowsingModel)])
def test_conditional_ignores_predicted_click_and_below(components, x64):
    rng = np.random.default_rng(3)
    mixture = Mixture([build(model_class, 5) for model_class in components], param_dtype=jnp.float64)
    set_random_parameters(mixture, rng)
    ids, positions, clicks = random_sessions(rng, sessions=6, width=5, min_length=5)
    batch = make_batch(ids, positions, clicks, width=5)
    reference = np.asarray(mixture.log_conditional_click_probs(batch))

    # Flipping the click at slot k changes no conditional probability at slots 1..k.
    for slot in range(5):
        flipped = {name: value.copy() for name, value in batch.items()}
        flipped["click"][:, slot] = 1 - flipped["click"][:, slot]
        values = np.asarray(mixture.log_conditional_click_probs(flipped))
        np.testing.assert_array_equal(values[:, : slot + 1], reference[:, : slot + 1], err_msg=f"slot {slot + 1}")


def test_single_component_equals_component(x64):
    rng = np.random.default_rng(4)
    component = build(DynamicBayesianNetwork, 5)
    set_random_parameters(component, rng)
    mixture = Mixture([component], param_dtype=jnp.float64)
    batch = make_batch(*random_sessions(rng, sessions=4, width=5), width=5)
    for method in ("log_click_probs", "log_conditional_click_probs", "log_likelihood", "relevance"):
        np.testing.assert_allclose(getattr(mixture, method)(batch), getattr(component, method)(batch), rtol=1e-12)


def test_relevance_is_weighted_average(x64):
    pbm, dbn = build(PositionBasedModel), build(DynamicBayesianNetwork)
    rng = np.random.default_rng(5)
    set_random_parameters(pbm, rng)
    set_random_parameters(dbn, rng)
    mixture = Mixture([pbm, dbn], param_dtype=jnp.float64)
    mixture.weight_logits[...] = jnp.array([logit(0.3), 0.0])
    batch = make_batch([[2, 3, 4]], [[1, 2, 3]], [[0, 0, 0]], width=3)

    expected = 0.3 * np.asarray(pbm.relevance(batch)) + 0.7 * np.asarray(dbn.relevance(batch))
    np.testing.assert_allclose(mixture.relevance(batch), expected, rtol=1e-12)


def test_relevance_raises_for_component_without_relevance():
    mixture = Mixture([build(PositionBasedModel, dtype=jnp.float32), build(GlobalClickThroughRateModel, dtype=jnp.float32)])
    batch = make_batch([[2, 3]], [[1, 2]], [[0, 0]], width=3)
    with pytest.raises(NotImplementedError, match="GlobalClickThroughRateModel has no per-document parameter"):
        mixture.relevance(batch)


def test_parameter_summary_lists_weights_and_components():
    mixture = Mixture([build(PositionBasedModel, dtype=jnp.float32), build(DynamicBayesianNetwork, dtype=jnp.float32)])
    assert mixture.parameter_summary() == {
        "weights": [0.5, 0.5],
        "components": [
            {"model": "PositionBasedModel", "parameters": {"examination_by_rank": [0.5, 0.5, 0.5]}},
            {"model": "DynamicBayesianNetwork", "parameters": {"continuation": 0.5}},
        ],
    }


def test_weights_are_learned():
    # Sessions with a click on every result favour the component with the higher click rate.
    mixture = Mixture([build(GlobalClickThroughRateModel, dtype=jnp.float32) for _ in range(2)])
    mixture.components[1].click_through_rate.logit[...] = jnp.asarray(2.0)
    batch = make_batch([[2, 3, 4]] * 4, [[1, 2, 3]] * 4, [[1, 1, 1]] * 4, width=3)

    grads = nnx.jit(nnx.grad(lambda m: m.loss(batch)))(mixture)
    weight_gradient = np.asarray(grads["weight_logits"][...])
    assert weight_gradient[1] < 0.0 < weight_gradient[0]


def test_invalid_components_raise():
    with pytest.raises(ValueError, match="^components must contain at least one click model, got none$"):
        Mixture([])
    with pytest.raises(ValueError, match=re.escape("components[1] must be a ClickModel, got Linear")):
        Mixture([build(PositionBasedModel, dtype=jnp.float32), nnx.Linear(2, 2, rngs=nnx.Rngs(0))])
    with pytest.raises(ValueError, match=re.escape("components[1] (DynamicBayesianNetwork) has positions=4")):
        Mixture([build(PositionBasedModel, 3, jnp.float32), build(DynamicBayesianNetwork, 4, jnp.float32)])


def test_batch_wider_than_page_raises():
    mixture = Mixture([build(PositionBasedModel, 2, jnp.float32), build(CascadeModel, 2, jnp.float32)])
    batch = make_batch([[2, 3, 4]], [[1, 2, 3]], [[0, 0, 0]], width=3)
    with pytest.raises(ValueError, match=re.escape("mask has shape [1, 3], expected [batch, positions] with at most 2")):
        mixture.loss(batch)
