"""Sampling from every click model and from mixtures: the drawn clicks follow the model's own probabilities.

The tests draw many sessions on one ranking. The empirical click frequency of each slot must
match `exp(log_click_probs)`, and the empirical frequency of a click given each frequent pattern
of clicks above it must match `exp(log_conditional_click_probs)`, both within 4 binomial
standard errors. The random streams are seeded, so the draws are the same on every run.
"""

import numpy as np
import pytest
from flax import nnx

from clickjax.models import MODELS
from clickjax.models import Mixture
from test_models import make_batch
from test_models import set_random_parameters
from test_models_exact import CASES
from test_models_exact import WIDTH
from test_models_exact import build_case

SESSIONS = 20_000
# A ranking of 5 results that skips ranks 3 and 6, a masked hole at slot 3, and padding after.
IDS = [2, 3, 9, 4, 5, 6]
RANKS = [1, 2, 3, 4, 5, 7]
HOLE = 2
# Prefix patterns seen fewer times than this are not compared.
MIN_PREFIX_COUNT = 1_000

HIDDEN_STATES = {
    "gctr": set(),
    "rctr": set(),
    "dctr": {"attraction"},
    "pbm": {"examination", "attraction"},
    "cm": {"examination", "attraction"},
    "ubm": {"examination", "attraction"},
    "dcm": {"examination", "attraction", "satisfaction"},
    "ccm": {"examination", "attraction"},
    "dbn": {"examination", "attraction", "satisfaction"},
    "sdbn": {"examination", "attraction", "satisfaction"},
    "mixture-pbm-dbn": {"examination", "attraction", "satisfaction", "component"},
    "mixture-cm-ubm": {"examination", "attraction", "component"},
}


def ranking_batch(sessions):
    batch = make_batch([IDS] * sessions, [RANKS] * sessions, [[0] * len(IDS)] * sessions, width=WIDTH)
    batch["mask"][:, HOLE] = 0
    return batch


def assert_within_standard_errors(observed, count, probability, message):
    standard_error = np.sqrt(probability * (1.0 - probability) / count)
    assert abs(observed - probability) <= 4.0 * standard_error + 1e-12, (
        f"{message}: observed {observed:.5f} over {count} sessions, model {probability:.5f}"
    )


def check_hidden_states(name, states):
    """Check that the hidden states agree with the clicks, as the model's generative story requires."""
    click = states["click"].astype(bool)
    if "examination" in states:
        examination = states["examination"].astype(bool)
        attraction = states["attraction"].astype(bool)
        if name in ("cm", "mixture-cm-ubm"):
            # The cascade part clicks where examined and attracted, and floor clicks land on
            # slots after the first click, which are not examined.
            np.testing.assert_array_equal(click & examination, examination & attraction)
        else:
            np.testing.assert_array_equal(click, examination & attraction)
    if "satisfaction" in states:
        assert not np.any(states["satisfaction"].astype(bool) & ~click)
    if name == "dctr":
        np.testing.assert_array_equal(states["attraction"], states["click"])


@pytest.mark.parametrize("name", CASES)
def test_sampled_clicks_follow_model_probabilities(name):
    rng = np.random.default_rng(80 + CASES.index(name))
    model = build_case(name, WIDTH)
    set_random_parameters(model, rng, scale=0.8)
    batch = ranking_batch(SESSIONS)

    states = model.sample(batch, nnx.Rngs(sample=CASES.index(name)))
    assert set(states) == {"click"} | HIDDEN_STATES[name]
    real = batch["mask"].astype(bool)
    for state, value in states.items():
        value = np.asarray(value)
        if state == "component":
            assert value.shape == (SESSIONS,)
            continue
        assert value.dtype == np.uint8, state
        assert value.shape == batch["mask"].shape, state
        np.testing.assert_array_equal(value[~real], 0, err_msg=state)
        assert set(np.unique(value)) <= {0, 1}, state
    check_hidden_states(name, {state: np.asarray(value) for state, value in states.items()})

    # Unconditional: the click rate of each real slot.
    clicks = np.asarray(states["click"])
    log_click = np.asarray(model.log_click_probs(batch))[0]
    for slot in np.flatnonzero(real[0]):
        probability = float(np.exp(log_click[slot]))
        assert_within_standard_errors(clicks[:, slot].mean(), SESSIONS, probability, f"slot {slot + 1}")

    # Conditional: the click rate of each real slot among the sessions with one pattern of clicks above it.
    batch["click"] = clicks
    conditional = np.exp(np.asarray(model.log_conditional_click_probs(batch)))
    compared = 0
    for slot in np.flatnonzero(real[0])[1:]:
        patterns, inverse, counts = np.unique(clicks[:, :slot], axis=0, return_inverse=True, return_counts=True)
        for index, (pattern, count) in enumerate(zip(patterns, counts)):
            if count < MIN_PREFIX_COUNT:
                continue
            rows = inverse.ravel() == index
            np.testing.assert_allclose(conditional[rows, slot], conditional[rows, slot][0], rtol=1e-5)
            message = f"slot {slot + 1} after clicks {pattern.tolist()}"
            assert_within_standard_errors(clicks[rows, slot].mean(), count, float(conditional[rows, slot][0]), message)
            compared += 1
    assert compared >= 4


def test_sample_uses_sample_stream_and_ignores_clicks():
    model = MODELS["dbn"](positions=WIDTH, query_doc_pairs=12, rngs=nnx.Rngs(0))
    set_random_parameters(model, np.random.default_rng(0))
    batch = ranking_batch(50)
    with_clicks = dict(batch, click=np.ones_like(batch["click"]))

    # A stream named "sample" is used when present; otherwise the default stream.
    named = model.sample(batch, nnx.Rngs(0, sample=7))
    default = model.sample(with_clicks, nnx.Rngs(7))
    for state in named:
        np.testing.assert_array_equal(named[state], default[state], err_msg=state)


@pytest.mark.parametrize("name", ["ubm", "mixture-pbm-dbn"])
def test_sample_under_jit_equals_eager(name):
    model = build_case(name, WIDTH)
    set_random_parameters(model, np.random.default_rng(1))
    # The shape of the other sampling tests, so that the eager call reuses their compilation.
    batch = ranking_batch(SESSIONS)

    eager = model.sample(batch, nnx.Rngs(3))
    jitted = nnx.jit(lambda m, b, r: m.sample(b, r))(model, batch, nnx.Rngs(3))
    for state in eager:
        np.testing.assert_array_equal(jitted[state], eager[state], err_msg=state)


def test_mixture_sample_follows_component_weights():
    pbm, dbn = MODELS["pbm"](positions=3, query_doc_pairs=12), MODELS["dbn"](positions=3, query_doc_pairs=12)
    mixture = Mixture([pbm, dbn])
    mixture.weight_logits[...] = np.log(np.array([0.2, 0.8], np.float32))
    batch = make_batch([[2, 3, 4]] * SESSIONS, [[1, 2, 3]] * SESSIONS, [[0, 0, 0]] * SESSIONS, width=3)

    states = mixture.sample(batch, nnx.Rngs(5))
    component = np.asarray(states["component"])
    assert_within_standard_errors((component == 0).mean(), SESSIONS, 0.2, "share of component 0")

    # Only the DBN component models satisfaction.
    assert not np.any(np.asarray(states["satisfaction"])[component == 0])
