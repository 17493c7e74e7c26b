"""Hand-checkable examples of the cascade-family models (CM with its floor, DCM, CCM, SDBN) and their relevance.

Each test writes a 3-result session's probabilities out from the model's equations. Exactness
on every click vector is checked by enumeration in test_models_exact.py.
"""

import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from clickjax.models import CascadeModel
from clickjax.models import ClickChainModel
from clickjax.models import DependentClickModel
from clickjax.models import SimplifiedDynamicBayesianNetwork
from clickjax.models.cm import DEFAULT_CLICK_FLOOR
from clickjax.parameters import GlobalLogit
from clickjax.parameters import RankLogits
from test_models import PAIRS
from test_models import logit
from test_models import make_batch
from test_models import x64  # noqa: F401 (fixture)

A1, A2, A3 = 0.6, 0.3, 0.8
# Sessions on pairs 2, 3, 4 at ranks 1, 2, 3: no click, then clicks (1, 0, 1), then (0, 1, 1).
BATCH = make_batch([[2, 3, 4]] * 3, [[1, 2, 3]] * 3, [[0, 0, 0], [1, 0, 1], [0, 1, 1]], width=3)


def build(model_class, **options):
    model = model_class(positions=3, query_doc_pairs=PAIRS, rngs=nnx.Rngs(0), param_dtype=jnp.float64, **options)
    set_pairs(model.attraction, [A1, A2, A3])
    return model


def set_pairs(module, probabilities):
    """Set the logits of pairs 2, 3, 4 of an `EmbeddingLogits` table to the given probabilities."""
    logits = jnp.array([logit(p) for p in probabilities])
    module.logits[...] = module.logits[...].at[jnp.array([2, 3, 4])].set(logits)


def expected_log_likelihood(conditional, clicks):
    return [[math.log(p) if c else math.log(1 - p) for p, c in zip(row, row_clicks)] for row, row_clicks in zip(conditional, clicks)]


def check_probabilities(model, unconditional, conditional):
    np.testing.assert_allclose(np.exp(model.log_click_probs(BATCH)), [unconditional] * 3, rtol=1e-12)
    np.testing.assert_allclose(np.exp(model.log_conditional_click_probs(BATCH)), conditional, rtol=1e-12)
    expected = expected_log_likelihood(conditional, BATCH["click"].tolist())
    np.testing.assert_allclose(model.log_likelihood(BATCH), expected, rtol=1e-12)


# ------------------------------------------------------------------ CM


@pytest.mark.parametrize("floor", [DEFAULT_CLICK_FLOOR, 0.05])
def test_cm_three_ranks_by_hand(floor, x64):
    model = build(CascadeModel, click_floor=floor)

    # P(c_k = 1) = N_k alpha_k + (1 - N_k) f, with N_k = P(no click above k).
    n2 = 1 - A1
    n3 = (1 - A1) * (1 - A2)
    unconditional = [A1, n2 * A2 + (1 - n2) * floor, n3 * A3 + (1 - n3) * floor]

    # Given clicks: alpha until the first click, the floor after it.
    conditional = [
        [A1, A2, A3],
        [A1, floor, floor],
        [A1, A2, floor],
    ]
    check_probabilities(model, unconditional, conditional)
    assert model.parameter_summary() == {"click_floor": floor}


def test_cm_floor_default_and_range():
    assert CascadeModel(positions=2, query_doc_pairs=PAIRS).click_floor == DEFAULT_CLICK_FLOOR == 1e-3
    for floor in (0.0, 1.0, -0.1, 1.5):
        with pytest.raises(ValueError, match=re.escape(f"click_floor must be in (0, 1), got {floor}")):
            CascadeModel(positions=2, query_doc_pairs=PAIRS, click_floor=floor)


# ------------------------------------------------------------------ DCM


def test_dcm_three_ranks_by_hand(x64):
    lambda1, lambda2 = 0.7, 0.4
    model = build(DependentClickModel)
    model.continuation.logits[...] = jnp.array([0.0, logit(lambda1), logit(lambda2), logit(0.5)])

    # eps_{k+1} = eps_k (1 - alpha_k (1 - lambda_k)).
    eps2 = 1 - A1 * (1 - lambda1)
    eps3 = eps2 * (1 - A2 * (1 - lambda2))
    unconditional = [A1, A2 * eps2, A3 * eps3]

    # After a skip from certain examination the user is still certain to examine; after a
    # click, eps' = lambda; after a skip from eps, eps' = (1 - alpha) eps / (1 - alpha eps).
    eps3_click_skip = (1 - A2) * lambda1 / (1 - A2 * lambda1)
    conditional = [
        [A1, A2, A3],
        [A1, A2 * lambda1, A3 * eps3_click_skip],
        [A1, A2, A3 * lambda2],
    ]
    check_probabilities(model, unconditional, conditional)
    assert model.parameter_summary() == {"continuation": pytest.approx([lambda1, lambda2, 0.5], rel=1e-12)}


def test_dcm_accepts_global_continuation(x64):
    model = build(DependentClickModel, continuation=GlobalLogit(init=logit(0.25), param_dtype=jnp.float64))
    assert model.parameter_summary() == {"continuation": pytest.approx(0.25, rel=1e-12)}
    expected = [A1, A2 * (1 - A1 * 0.75), A3 * (1 - A1 * 0.75) * (1 - A2 * 0.75)]
    np.testing.assert_allclose(np.exp(model.log_click_probs(BATCH))[0], expected, rtol=1e-12)


# ------------------------------------------------------------------ CCM


def test_ccm_three_ranks_by_hand(x64):
    tau1, tau2, tau3 = 0.9, 0.5, 0.2
    model = build(ClickChainModel)
    model.tau1.logit[...] = jnp.asarray(logit(tau1))
    model.tau2.logit[...] = jnp.asarray(logit(tau2))
    model.tau3.logit[...] = jnp.asarray(logit(tau3))

    # Going on after a click at slot k: tau2 (1 - alpha_k) + tau3 alpha_k.
    after_click_1 = tau2 * (1 - A1) + tau3 * A1
    after_click_2 = tau2 * (1 - A2) + tau3 * A2
    eps2 = (1 - A1) * tau1 + A1 * after_click_1
    eps3 = eps2 * ((1 - A2) * tau1 + A2 * after_click_2)
    unconditional = [A1, A2 * eps2, A3 * eps3]

    # After a skip: eps' = tau1 (1 - alpha) eps / (1 - alpha eps).
    eps2_skip = tau1 * (1 - A1) / (1 - A1)
    eps3_skip_skip = tau1 * (1 - A2) * eps2_skip / (1 - A2 * eps2_skip)
    eps3_click_skip = tau1 * (1 - A2) * after_click_1 / (1 - A2 * after_click_1)
    conditional = [
        [A1, A2 * eps2_skip, A3 * eps3_skip_skip],
        [A1, A2 * after_click_1, A3 * eps3_click_skip],
        [A1, A2 * eps2_skip, A3 * after_click_2],
    ]
    check_probabilities(model, unconditional, conditional)
    assert model.parameter_summary() == {
        "tau1": pytest.approx(tau1, rel=1e-12),
        "tau2": pytest.approx(tau2, rel=1e-12),
        "tau3": pytest.approx(tau3, rel=1e-12),
    }


def test_ccm_summary_needs_global_taus():
    model = ClickChainModel(positions=3, query_doc_pairs=PAIRS, tau2=RankLogits(3))
    with pytest.raises(NotImplementedError, match="parameter_summary needs a GlobalLogit tau2, got RankLogits"):
        model.parameter_summary()


# ------------------------------------------------------------------ SDBN


def test_sdbn_three_ranks_by_hand(x64):
    s1, s2 = 0.7, 0.4
    model = build(SimplifiedDynamicBayesianNetwork)
    set_pairs(model.satisfaction, [s1, s2, 0.5])

    # DBN with gamma = 1: eps_{k+1} = eps_k (1 - alpha_k sigma_k).
    unconditional = [A1, A2 * (1 - A1 * s1), A3 * (1 - A1 * s1) * (1 - A2 * s2)]

    # After a click: eps' = 1 - sigma; after a skip: eps' = (1 - alpha) eps / (1 - alpha eps).
    eps3_click_skip = (1 - A2) * (1 - s1) / (1 - A2 * (1 - s1))
    conditional = [
        [A1, A2, A3],
        [A1, A2 * (1 - s1), A3 * eps3_click_skip],
        [A1, A2, A3 * (1 - s2)],
    ]
    check_probabilities(model, unconditional, conditional)
    assert model.parameter_summary() == {"continuation": 1.0}


def test_sdbn_has_no_continuation_parameter():
    model = SimplifiedDynamicBayesianNetwork(positions=3, query_doc_pairs=PAIRS)
    assert model.continuation is None
    assert set(nnx.state(model, nnx.Param).keys()) == {"attraction", "satisfaction"}


# ------------------------------------------------------------------ relevance


@pytest.mark.parametrize("model_class", [CascadeModel, DependentClickModel, ClickChainModel])
def test_relevance_is_attraction(model_class, x64):
    model = build(model_class)
    np.testing.assert_allclose(model.relevance(BATCH)[0], [A1, A2, A3], rtol=1e-12)


def test_sdbn_relevance_is_attraction_times_satisfaction(x64):
    model = build(SimplifiedDynamicBayesianNetwork)
    set_pairs(model.satisfaction, [0.5, 0.25, 0.9])
    np.testing.assert_allclose(model.relevance(BATCH)[0], [A1 * 0.5, A2 * 0.25, A3 * 0.9], rtol=1e-12)


def test_cascade_models_start_at_half():
    for model_class in (CascadeModel, DependentClickModel, ClickChainModel, SimplifiedDynamicBayesianNetwork):
        model = model_class(positions=3, query_doc_pairs=PAIRS, rngs=nnx.Rngs(0))
        for value in jax.tree.leaves(nnx.state(model, nnx.Param)):
            np.testing.assert_array_equal(value, 0.0)
