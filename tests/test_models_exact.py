"""Exactness of every click model and of mixtures against brute-force enumeration of their hidden states.

Each model is written out a second time as a generative story in plain Python: walk down the
page, draw each hidden variable (examination, attraction, satisfaction, continuation) with its
probability, and emit the clicks. Enumerating every outcome of every draw gives the exact
distribution over click vectors, which the model's log-space recursions must reproduce: the
session probabilities, the unconditional click probabilities and the conditional ones.
"""

import itertools
import math
from collections import defaultdict

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from clickjax.models import MODELS
from clickjax.models import CascadeModel
from clickjax.models import ClickChainModel
from clickjax.models import DependentClickModel
from clickjax.models import DocumentClickThroughRateModel
from clickjax.models import DynamicBayesianNetwork
from clickjax.models import GlobalClickThroughRateModel
from clickjax.models import Mixture
from clickjax.models import PositionBasedModel
from clickjax.models import RankClickThroughRateModel
from clickjax.models import SimplifiedDynamicBayesianNetwork
from clickjax.models import UserBrowsingModel
from test_models import EXTREME_LOGIT
from test_models import PAIRS
from test_models import make_batch
from test_models import random_sessions
from test_models import set_parameters_to
from test_models import set_random_parameters
from test_models import x64  # noqa: F401 (fixture)

MIXTURES = {"mixture-pbm-dbn": ("pbm", "dbn"), "mixture-cm-ubm": ("cm", "ubm")}
CASES = [*MODELS, *MIXTURES]
NEW_CASES = [name for name in CASES if name not in ("pbm", "ubm", "dbn")]
METHODS = ("log_click_probs", "log_conditional_click_probs", "log_likelihood", "loss")


def build_case(name, positions, dtype=jnp.float32):
    """Build the model of a case: a registered model, or a mixture of registered models."""
    if name in MIXTURES:
        components = [build_case(part, positions, dtype) for part in MIXTURES[name]]
        return Mixture(components, rngs=nnx.Rngs(0), param_dtype=dtype)
    return MODELS[name](positions=positions, query_doc_pairs=PAIRS, rngs=nnx.Rngs(0), param_dtype=dtype)


def sigmoid(x) -> float:
    return 1.0 / (1.0 + math.exp(-float(x)))


# ------------------------------------------------------------------ generative stories


def story(model, ids, ranks):
    """Return `process(draw) -> clicks`: one session of `model` on the given pair ids and ranks.

    `draw(p)` returns 1 with probability p. The story reads the model's parameter tables, so
    it applies only to the default parameter modules.
    """
    def by_pair(module):
        table = np.asarray(module.logits[...])
        return [sigmoid(table[i]) for i in ids]

    def by_rank(module):
        table = np.asarray(module.logits[...])
        return [sigmoid(table[r]) for r in ranks]

    def scalar(module):
        return sigmoid(module.logit[...])

    n = len(ids)
    if isinstance(model, GlobalClickThroughRateModel):
        rho = [scalar(model.click_through_rate)] * n
        return lambda draw: [draw(p) for p in rho]
    if isinstance(model, RankClickThroughRateModel):
        rho = by_rank(model.click_through_rate)
        return lambda draw: [draw(p) for p in rho]
    if isinstance(model, DocumentClickThroughRateModel):
        rho = by_pair(model.click_through_rate)
        return lambda draw: [draw(p) for p in rho]

    alpha = by_pair(model.attraction)
    if isinstance(model, PositionBasedModel):
        theta = by_rank(model.examination)

        def process(draw):
            return [draw(theta[k]) * draw(alpha[k]) for k in range(n)]

        return process

    if isinstance(model, UserBrowsingModel):
        table = np.asarray(model.examination[...])

        def process(draw):
            clicks, last_click_rank = [], 0
            for k in range(n):
                examined = draw(sigmoid(table[ranks[k], last_click_rank]))
                clicks.append(examined * draw(alpha[k]))
                if clicks[-1]:
                    last_click_rank = ranks[k]
            return clicks

        return process

    if isinstance(model, CascadeModel):
        def process(draw):
            clicks = []
            for k in range(n):
                clicks.append(draw(model.click_floor) if any(clicks) else draw(alpha[k]))
            return clicks

        return process

    # The top-down models: the user examines until they stop.
    if isinstance(model, DependentClickModel):
        lambdas = by_rank(model.continuation)

        def goes_on(draw, k, clicked):
            return draw(lambdas[k]) if clicked else 1

    elif isinstance(model, ClickChainModel):
        tau1, tau2, tau3 = scalar(model.tau1), scalar(model.tau2), scalar(model.tau3)

        def goes_on(draw, k, clicked):
            if not clicked:
                return draw(tau1)
            relevant = draw(alpha[k])
            return draw(tau3 if relevant else tau2)

    elif isinstance(model, DynamicBayesianNetwork):
        sigma = by_pair(model.satisfaction)
        gamma = 1.0 if isinstance(model, SimplifiedDynamicBayesianNetwork) else scalar(model.continuation)

        def goes_on(draw, k, clicked):
            if clicked and draw(sigma[k]):
                return 0
            return 1 if gamma == 1.0 else draw(gamma)

    else:
        raise AssertionError(f"no story for {type(model).__name__}")

    def process(draw):
        clicks, examined = [], 1
        for k in range(n):
            clicks.append(draw(alpha[k]) if examined else 0)
            if examined:
                examined = goes_on(draw, k, clicks[-1])
        return clicks

    return process


def enumerate_story(process) -> dict[tuple, float]:
    """Run `process` once for every sequence of draw outcomes and sum the probabilities by click vector."""
    distribution = defaultdict(float)
    pending = [()]
    while pending:
        forced = pending.pop()
        outcomes = list(forced)
        probability = 1.0
        step = 0

        def draw(p):
            nonlocal probability, step
            if step == len(outcomes):
                # A new draw: follow outcome 1 now and come back for outcome 0.
                pending.append((*outcomes, 0))
                outcomes.append(1)
            outcome = outcomes[step]
            step += 1
            probability *= p if outcome else 1.0 - p
            return outcome

        clicks = process(draw)
        distribution[tuple(int(click) for click in clicks)] += probability
    return distribution


def reference_distribution(model, ids, ranks) -> dict[tuple, float]:
    """Return the exact probability of every click vector of one session, by enumeration."""
    if isinstance(model, Mixture):
        weights = jax.nn.softmax(model.weight_logits[...])
        total = defaultdict(float)
        for weight, component in zip(weights, model.components):
            for clicks, probability in reference_distribution(component, ids, ranks).items():
                total[clicks] += float(weight) * probability
        return total
    return enumerate_story(story(model, ids, ranks))


# ------------------------------------------------------------------ enumeration


@pytest.mark.parametrize("name", CASES)
def test_enumeration_matches_generative_story(name, x64):
    rng = np.random.default_rng(CASES.index(name))
    width = 6
    model = build_case(name, width, jnp.float64)
    set_random_parameters(model, rng)

    # Every click vector of one session per length 1..5, each with its own pairs and ranks that
    # may skip numbers, padded to 6 slots so that every row ends in padding.
    sessions = []
    for length in range(1, 6):
        ids = [int(i) for i in rng.choice(np.arange(2, PAIRS), size=length, replace=False)]
        ranks = [int(r) for r in np.sort(rng.choice(np.arange(1, width + 1), size=length, replace=False))]
        for clicks in itertools.product([0, 1], repeat=length):
            sessions.append((ids, ranks, clicks))
    batch = make_batch(*zip(*sessions), width=width)

    log_likelihood = np.asarray(model.log_likelihood(batch))
    log_click = np.asarray(model.log_click_probs(batch))
    log_conditional = np.asarray(model.log_conditional_click_probs(batch))
    assert log_likelihood.dtype == np.float64
    np.testing.assert_array_equal(log_likelihood[batch["mask"] == 0], 0.0)
    session_probability = np.exp(log_likelihood.sum(axis=1))

    for length in range(1, 6):
        rows = [row for row, (ids, _, _) in enumerate(sessions) if len(ids) == length]
        ids, ranks, _ = sessions[rows[0]]
        clicks = np.array([sessions[row][2] for row in rows])
        probability = session_probability[rows]
        assert abs(probability.sum() - 1.0) < 1e-10, f"length {length}"

        reference = reference_distribution(model, ids, ranks)
        expected = np.array([reference.get(tuple(vector), 0.0) for vector in clicks])
        np.testing.assert_allclose(probability, expected, rtol=1e-9, atol=1e-15, err_msg=f"length {length}")

        for slot in range(length):
            marginal = probability[clicks[:, slot] == 1].sum()
            assert abs(math.exp(log_click[rows[0], slot]) - marginal) < 1e-10, f"length {length}, slot {slot + 1}"

            # P(c_k = 1 | prefix) = P(prefix, c_k = 1) / P(prefix), for every prefix of the slot.
            for row, vector in zip(rows, clicks):
                prefix = np.all(clicks[:, :slot] == vector[:slot], axis=1)
                expected_conditional = probability[prefix & (clicks[:, slot] == 1)].sum() / probability[prefix].sum()
                actual = math.exp(log_conditional[row, slot])
                assert abs(actual - expected_conditional) < 1e-10, f"length {length}, slot {slot + 1}, clicks {vector}"


# ------------------------------------------------------------------ padding, holes, jit, batches
#
# These tests share one batch shape, ROWS x WIDTH, so that the eager calls of one model compile
# once for all of them.

ROWS, WIDTH = 8, 7


def padded_batch(ids, positions, clicks, weight=None):
    """Build a ROWS x WIDTH batch, filling the rows after the given sessions with padding."""
    missing = ROWS - len(ids)
    weight = None if weight is None else [*weight, *[1.0] * missing]
    return make_batch([*ids, *[[]] * missing], [*positions, *[[]] * missing], [*clicks, *[[]] * missing], WIDTH, weight)


@pytest.mark.parametrize("name", NEW_CASES)
def test_padding_and_holes_change_nothing(name):
    rng = np.random.default_rng(20 + CASES.index(name))
    model = build_case(name, WIDTH)
    set_random_parameters(model, rng)
    ids = [[2, 3, 4, 5, 6], [7, 8, 9, 10, 11], [3, 5, 7, 9]]
    positions = [[1, 2, 3, 4, 6], [1, 3, 4, 5, 6], [1, 2, 4, 5]]
    clicks = [[1, 1, 0, 1, 0], [0, 1, 1, 0, 1], [0, 0, 1, 1]]
    compact = padded_batch(ids, positions, clicks)

    # Slot 2 of every row becomes a masked hole with a valid id, rank and click. The padding
    # slots after the real results get valid contents too.
    holed = padded_batch(
        [[row[0], 11, *row[1:]] for row in ids],
        [[row[0], 2, *row[1:]] for row in positions],
        [[row[0], 1, *row[1:]] for row in clicks],
    )
    holed["mask"][:3, 1] = 0
    padding = holed["mask"] == 0
    holed["query_doc_id"][padding] = 4
    holed["position"][padding] = 7
    holed["click"][padding] = 1

    real = compact["mask"].astype(bool)
    holed_real = holed["mask"].astype(bool)
    for method in METHODS[:3]:
        expected = np.asarray(getattr(model, method)(compact))[real]
        actual = np.asarray(getattr(model, method)(holed))[holed_real]
        np.testing.assert_allclose(actual, expected, rtol=1e-6, err_msg=method)
    np.testing.assert_array_equal(np.asarray(model.log_likelihood(holed))[~holed_real], 0.0)
    np.testing.assert_allclose(model.loss(holed), model.loss(compact), rtol=1e-6)


@pytest.mark.parametrize("name", CASES)
def test_split_batch_under_jit_equals_whole_batch(name):
    rng = np.random.default_rng(40 + CASES.index(name))
    model = build_case(name, WIDTH)
    set_random_parameters(model, rng)
    ids, positions, clicks = random_sessions(rng, sessions=ROWS, width=WIDTH)
    whole = padded_batch(ids, positions, clicks)
    first = padded_batch(ids[:3], positions[:3], clicks[:3])
    second = padded_batch(ids[3:], positions[3:], clicks[3:])

    @nnx.jit
    def all_methods(model, batch):
        return [getattr(model, method)(batch) for method in METHODS]

    # Rows are independent, so the jitted halves must match the eager whole row by row.
    first_values, second_values = all_methods(model, first), all_methods(model, second)
    real = whole["mask"].astype(bool)
    for index, method in enumerate(METHODS[:3]):
        eager = np.asarray(getattr(model, method)(whole))
        jitted = np.concatenate([np.asarray(first_values[index])[:3], np.asarray(second_values[index])[:5]])
        np.testing.assert_allclose(jitted[real], eager[real], rtol=1e-5, atol=1e-6, err_msg=method)

    # The loss is a mean over real results, so the halves weigh by their result counts.
    first_count, second_count = first["mask"].sum(), second["mask"].sum()
    combined = (first_values[3] * first_count + second_values[3] * second_count) / (first_count + second_count)
    assert float(combined) == pytest.approx(float(model.loss(whole)), rel=1e-5)


# ------------------------------------------------------------------ extreme and degenerate inputs


def long_sessions(rng, lengths, width):
    """Draw sessions of the given lengths at increasing ranks in 1..width. Pair ids may repeat."""
    ids = [rng.integers(2, PAIRS, size=length) for length in lengths]
    positions = [np.sort(rng.choice(np.arange(1, width + 1), size=length, replace=False)) for length in lengths]
    clicks = [rng.integers(0, 2, size=length) for length in lengths]
    return ids, positions, clicks


@pytest.mark.parametrize("name", CASES)
def test_gradients_finite_at_extremes_and_thirty_results(name):
    rng = np.random.default_rng(60 + CASES.index(name))
    model = build_case(name, 30)

    # Eight sessions of 30 results and eight of random length, all on a page of 30.
    lengths = [30] * 8 + [int(length) for length in rng.integers(1, 30, size=8)]
    batch = make_batch(*long_sessions(rng, lengths, 30), width=30)
    all_masked = make_batch([[]] * 16, [[]] * 16, [[]] * 16, width=30)

    @nnx.jit
    def values_and_gradients(model, batch):
        loss, grads = nnx.value_and_grad(lambda m: m.loss(batch))(model)
        return loss, grads, [getattr(model, method)(batch) for method in METHODS[:3]]

    # Probabilities at 1e-7, at 1 - 1e-7, a mix of both, and random ones.
    settings = {
        "all-1e-7": [EXTREME_LOGIT],
        "all-1-minus-1e-7": [-EXTREME_LOGIT],
        "mixed": [EXTREME_LOGIT, -EXTREME_LOGIT],
        "random": None,
    }
    for setting, logits in settings.items():
        if logits is None:
            set_random_parameters(model, rng, scale=3.0)
        else:
            set_parameters_to(model, rng, logits)
        loss, grads, values = values_and_gradients(model, batch)
        assert np.isfinite(loss), setting
        for value in jax.tree.leaves(grads):
            assert np.all(np.isfinite(value)), setting
        for method, value in zip(METHODS, values):
            assert np.all(np.isfinite(value)), f"{setting}: {method}"
            # float32 rounding along 30 slots may lift a log-probability of almost 0 above 0.
            assert np.all(np.asarray(value) <= 1e-5), f"{setting}: {method}"

    # With every slot masked the loss and its gradient are exactly 0.
    loss, grads, _ = values_and_gradients(model, all_masked)
    assert float(loss) == 0.0
    for value in jax.tree.leaves(grads):
        np.testing.assert_array_equal(value, 0.0)
