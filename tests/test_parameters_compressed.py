"""Compressed tables over query_doc_hash: exact 32-bit hashing, shapes, errors, priors and accuracy."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from hypothesis import given, settings
from hypothesis import strategies as st

from clickjax.data import ClickLog
from clickjax.models import DCTR, PBM
from clickjax.parameters import (
    BetaPrior,
    EmbeddingLogits,
    HashedLogits,
    L2Prior,
    QuotientRemainderLogits,
    RankLogits,
    RobeLogits,
)
from clickjax.compressed import hash_ids
from map_training import fit, held_out_log_likelihood

MASK_32 = np.uint64(0xFFFFFFFF)

# Ids at both ends of the 31-bit range, where int32 arithmetic would overflow.
EDGE_IDS = np.array([0, 1, 2, 12345, 2**30, 2**31 - 3, 2**31 - 2, 2**31 - 1], np.int64)


def reference_hash(ids: np.ndarray, seed: int) -> np.ndarray:
    """murmur3's fmix32 of (id + seed * 0x9E3779B9) mod 2**32, in 64-bit numpy arithmetic."""
    h = (ids.astype(np.uint64) + np.uint64(seed * 0x9E3779B9)) & MASK_32
    h ^= h >> np.uint64(16)
    h = (h * np.uint64(0x85EBCA6B)) & MASK_32
    h ^= h >> np.uint64(13)
    h = (h * np.uint64(0xC2B2AE35)) & MASK_32
    h ^= h >> np.uint64(16)
    return h


def id_batch(ids: np.ndarray) -> dict:
    return {"query_doc_hash": np.asarray(ids, np.int32)[None, :]}


def test_reference_hash_known_value():
    # fmix32(1) step by step: the first xor-shift leaves 1, so the first product is the constant.
    h = 0x85EBCA6B ^ (0x85EBCA6B >> 13)
    h = (h * 0xC2B2AE35) % 2**32
    h ^= h >> 16
    assert reference_hash(np.array([1]), 0)[0] == h
    assert h == 0x514E28B7


@pytest.fixture
def edge_ids():
    rng = np.random.default_rng(0)
    near_top = 2**31 - 1 - rng.integers(0, 1000, size=50)
    return np.concatenate([EDGE_IDS, near_top])


@pytest.mark.parametrize("buckets", [1, 7, 10_000, 2**20 + 3])
@pytest.mark.parametrize("seed", [0, 1, 5])
def test_hashed_buckets_match_reference(edge_ids, buckets, seed):
    module = HashedLogits(buckets=buckets, signed=False, seed=seed)
    # Entry i is i, so the logit is the bucket (exact in float32 below 2**24).
    module.table.set_value(jnp.arange(buckets, dtype=jnp.float32))
    expected = reference_hash(edge_ids, seed) % np.uint64(buckets)
    np.testing.assert_array_equal(np.asarray(module(id_batch(edge_ids)))[0], expected.astype(np.float32))


@settings(max_examples=50, deadline=None)
@given(
    ids=st.lists(st.integers(0, 2**31 - 1), min_size=1, max_size=20),
    seed=st.integers(0, 1000),
    buckets=st.integers(1, 2**24),
)
def test_hash_ids_any_id_matches_reference(ids, seed, buckets):
    ids = np.array(ids, np.int64)
    hashed = hash_ids(ids.astype(np.int32), seed)
    np.testing.assert_array_equal(np.asarray(hashed).astype(np.uint64), reference_hash(ids, seed))
    # The bucket is taken in uint32 by JAX, as the tables do.
    bucket = np.asarray(hashed % jnp.uint32(buckets)).astype(np.uint64)
    np.testing.assert_array_equal(bucket, reference_hash(ids, seed) % np.uint64(buckets))


def test_hashed_signs_match_reference(edge_ids):
    module = HashedLogits(buckets=1, seed=3)
    module.table.set_value(jnp.ones(1, jnp.float32))
    expected_sign = 1.0 - 2.0 * (reference_hash(edge_ids, 4) >> np.uint64(31)).astype(np.float64)
    logits = np.asarray(module(id_batch(edge_ids)))[0]
    np.testing.assert_array_equal(logits, expected_sign)
    assert set(np.unique(logits)) == {-1.0, 1.0}


def test_hashed_several_hashes_sum(edge_ids):
    module = HashedLogits(buckets=1000, hashes=3, signed=False, seed=2, init=0.5)
    module.table.set_value(jnp.arange(1000, dtype=jnp.float32))
    expected = 0.5 + sum(
        (reference_hash(edge_ids, 2 + 2 * j) % np.uint64(1000)).astype(np.float64) for j in range(3)
    )
    np.testing.assert_array_equal(np.asarray(module(id_batch(edge_ids)))[0], expected)


def test_quotient_remainder_indices_match_reference(edge_ids):
    module = QuotientRemainderLogits(buckets=2000, seed=1)
    assert (module.remainders, module.quotients) == (1000, 1000)
    # Remainder entries hold r and quotient entries are 1000 q, so the logit encodes both.
    module.table.set_value(jnp.concatenate([jnp.arange(1000.0), 1000.0 * jnp.arange(1000.0)]))
    x = reference_hash(edge_ids, 1)
    expected = x % np.uint64(1000) + np.uint64(1000) * ((x // np.uint64(1000)) % np.uint64(1000))
    np.testing.assert_array_equal(np.asarray(module(id_batch(edge_ids)))[0], expected.astype(np.float32))


def test_robe_offsets_match_reference(edge_ids):
    module = RobeLogits(buckets=4099, block_size=1, signed=False, seed=6)
    module.table.set_value(jnp.arange(4099, dtype=jnp.float32))
    expected = reference_hash(edge_ids, 6) % np.uint64(4099)
    np.testing.assert_array_equal(np.asarray(module(id_batch(edge_ids)))[0], expected.astype(np.float32))


def test_robe_block_wraps_around():
    ids = np.arange(200)
    module = RobeLogits(buckets=5, block_size=3, signed=False)
    table = np.array([1.0, 10.0, 100.0, 1000.0, 10000.0], np.float32)
    module.table.set_value(jnp.asarray(table))
    offsets = (reference_hash(ids, 0) % np.uint64(5)).astype(np.int64)
    expected = [sum(table[(offset + t) % 5] for t in range(3)) for offset in offsets]
    np.testing.assert_array_equal(np.asarray(module(id_batch(ids)))[0], expected)
    # Offset 4 reads entries 4, 0 and 1.
    assert 10011.0 in expected


def test_hashing_under_jit_equals_eager(edge_ids):
    module = HashedLogits(buckets=977, hashes=2, seed=9)
    module.table.set_value(jax.random.normal(jax.random.key(0), (977,)))
    eager = module(id_batch(edge_ids))
    jitted = nnx.jit(lambda m, batch: m(batch))(module, id_batch(edge_ids))
    np.testing.assert_array_equal(np.asarray(eager), np.asarray(jitted))


def test_table_size_from_compression():
    assert HashedLogits(1_000_000, compression=100).buckets == 10_000
    assert HashedLogits(10, compression=3).buckets == 4
    assert HashedLogits(5, compression=1).buckets == 5
    assert HashedLogits(buckets=17).buckets == 17
    assert QuotientRemainderLogits(3, compression=3).buckets == 2
    assert RobeLogits(1000, compression=10, block_size=4).buckets == 100


@pytest.mark.parametrize("module", [HashedLogits, QuotientRemainderLogits, RobeLogits])
@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"pairs": 100, "compression": 0.5}, "compression must be a finite number of at least 1"),
        ({"pairs": 100, "compression": float("nan")}, "compression must be a finite number"),
        ({"pairs": 0, "compression": 2}, "pairs must be at least 1"),
        ({"buckets": 0}, "buckets must be at least 1"),
        ({"pairs": 100, "compression": 2, "buckets": 10}, "either buckets or compression"),
        ({"pairs": 100}, "give buckets, or pairs"),
        ({"buckets": 10, "prior": L2Prior(1.0, mean=-1.0)}, "prior mean must be 0"),
        ({"buckets": 10, "prior": "l2"}, "prior must be an L2Prior"),
    ],
)
def test_compressed_bad_arguments(module, arguments, message):
    with pytest.raises((ValueError, TypeError), match=message):
        module(**arguments)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: HashedLogits(buckets=10, hashes=0), "hashes must be at least 1"),
        (lambda: HashedLogits(buckets=10, hashes=2, prior=BetaPrior(2, 2)), "hashes=2 sums several"),
        (lambda: QuotientRemainderLogits(buckets=10, prior=BetaPrior(2, 2)), "QuotientRemainderLogits sums"),
        (lambda: RobeLogits(buckets=10, prior=BetaPrior(2, 2)), "RobeLogits sums"),
        (lambda: RobeLogits(buckets=3, block_size=4), "fewer than block_size=4"),
        (lambda: RobeLogits(buckets=30, block_size=0), "block_size must be at least 1"),
        (lambda: BetaPrior(0.5, 2), "a must be a finite number of at least 1"),
        (lambda: BetaPrior(2, float("inf")), "b must be a finite number of at least 1"),
        (lambda: L2Prior(0.0), "strength must be a positive finite number"),
        (lambda: EmbeddingLogits(5, prior=0.1), "prior must be an L2Prior"),
    ],
)
def test_module_bad_arguments(build, message):
    with pytest.raises((ValueError, TypeError), match=message):
        build()


@pytest.mark.parametrize("module", [HashedLogits, QuotientRemainderLogits, RobeLogits])
def test_negative_id_rejected(module):
    with pytest.raises(ValueError, match="query_doc_hash contains the negative value -5"):
        module(buckets=10)(id_batch(np.array([3, -5])))


@pytest.mark.parametrize(
    "module",
    [
        HashedLogits(buckets=50, hashes=2),
        QuotientRemainderLogits(buckets=50),
        RobeLogits(buckets=50, block_size=3),
    ],
    ids=["hashed", "quotient-remainder", "robe"],
)
def test_compressed_shape_and_padding(module):
    rng = np.random.default_rng(1)
    module.table.set_value(jnp.asarray(rng.normal(size=50), jnp.float32))
    model = PBM(positions=4, query_doc_pairs=2, attraction=module)
    batch = {
        "query_doc_hash": rng.integers(0, 2**31 - 1, size=(3, 4)).astype(np.int32),
        "query_doc_id": np.zeros((3, 4), np.int32),
        "position": np.tile(np.arange(1, 5, dtype=np.int32), (3, 1)),
        "click": rng.integers(0, 2, size=(3, 4)).astype(np.uint8),
        "mask": np.ones((3, 4), np.uint8),
        "weight": np.ones(3, np.float32),
    }
    batch["mask"][:, 3] = 0
    batch["position"][:, 3] = 0
    assert module(batch).shape == (3, 4)

    # A padding slot's hash and click do not change the loss.
    changed = {**batch, "query_doc_hash": batch["query_doc_hash"].copy(), "click": batch["click"].copy()}
    changed["query_doc_hash"][:, 3] = [0, 2**31 - 1, 77]
    changed["click"][:, 3] = 1 - changed["click"][:, 3]
    assert float(model.loss(batch)) == float(model.loss(changed))


# ---------------------------------------------------------------- priors


def test_embedding_penalty_by_hand():
    table = EmbeddingLogits(4, prior=L2Prior(2.0))
    table.logits.set_value(jnp.array([9.0, 1.0, -2.0, 0.5]))
    # Row 0 (padding) is left out: 0.5 * 2 * (1 + 4 + 0.25).
    assert float(table.penalty()) == pytest.approx(5.25)

    beta = EmbeddingLogits(5, prior=BetaPrior(2.0, 3.0))
    # At logit 0 each row costs -(2 - 1) log 0.5 - (3 - 1) log 0.5 = 3 log 2, over rows 1..4.
    assert float(beta.penalty()) == pytest.approx(4 * 3 * math.log(2), rel=1e-6)
    assert float(EmbeddingLogits(5).penalty()) == 0.0


def test_hashed_beta_penalty_averages_signs():
    prior = BetaPrior(3.0, 1.0)
    signed = HashedLogits(buckets=2, prior=prior, init=0.5)
    signed.table.set_value(jnp.array([1.0, -2.0]))
    plain = HashedLogits(buckets=2, signed=False, prior=prior, init=0.5)
    plain.table.set_value(jnp.array([1.0, -2.0]))

    def cost(logit):
        return -2 * math.log(1 / (1 + math.exp(-logit)))

    assert float(plain.penalty()) == pytest.approx(cost(1.5) + cost(-1.5), rel=1e-6)
    expected = 0.5 * (cost(1.5) + cost(-0.5)) + 0.5 * (cost(-1.5) + cost(2.5))
    assert float(signed.penalty()) == pytest.approx(expected, rel=1e-6)


def test_compressed_l2_penalty_on_deviations():
    module = QuotientRemainderLogits(buckets=4, prior=L2Prior(0.5), init=3.0)
    module.table.set_value(jnp.array([1.0, 2.0, 0.0, -1.0]))
    assert float(module.penalty()) == pytest.approx(0.25 * (1 + 4 + 0 + 1))


def _two_pair_log():
    """Pair 2: one impression, clicked. Pair 3: 10,000 impressions, 9,000 clicked (as two weighted rows)."""
    columns = {
        "query_id": np.full(3, 2, np.int32),
        "doc_id": np.array([[2], [3], [3]], np.int32),
        "query_doc_id": np.array([[2], [3], [3]], np.int32),
        "query_doc_hash": np.array([[2], [3], [3]], np.int32),
        "position": np.ones((3, 1), np.int32),
        "click": np.array([[1], [1], [0]], np.uint8),
        "mask": np.ones((3, 1), np.uint8),
        "weight": np.array([1.0, 9000.0, 1000.0], np.float32),
    }
    return ClickLog(columns=columns, positions=1)


def test_beta_prior_map_worked_example():
    log = _two_pair_log()
    prior = BetaPrior(2.0, 8.0)
    model = DCTR(positions=1, query_doc_pairs=4, click_through_rate=EmbeddingLogits(4, prior=prior))
    fit(model, log, epochs=800, batch_size=3, learning_rate=0.1)
    probability = np.asarray(jax.nn.sigmoid(model.click_through_rate.logits[...]))

    # MAP = (clicks + a - 1) / (impressions + a + b - 2): the prior adds one click and seven skips.
    assert probability[2] == pytest.approx((1 + 1) / (1 + 8), abs=2e-3)
    assert probability[3] == pytest.approx((9000 + 1) / (10000 + 8), abs=2e-3)
    # The maximum-likelihood estimates, 1.0 and 0.9, would rank the single click first.
    assert probability[2] < probability[3]


def test_l2_prior_map_stationary_point():
    log = _two_pair_log()
    strength = 1.0
    model = DCTR(positions=1, query_doc_pairs=4, click_through_rate=EmbeddingLogits(4, prior=L2Prior(strength)))
    fit(model, log, epochs=800, batch_size=3, learning_rate=0.1)
    logits = np.asarray(model.click_through_rate.logits[...], np.float64)

    # The MAP logit z of a pair solves clicks - n sigmoid(z) - strength z = 0; solve by bisection.
    def solve(clicks, n):
        low, high = -20.0, 20.0
        for _ in range(200):
            middle = (low + high) / 2
            if clicks - n / (1 + math.exp(-middle)) - strength * middle > 0:
                low = middle
            else:
                high = middle
        return low

    assert logits[2] == pytest.approx(solve(1, 1), abs=5e-3)
    assert logits[3] == pytest.approx(solve(9000, 10000), abs=5e-3)
    # Rows never seen stay at the prior mean.
    assert logits[1] == pytest.approx(0.0, abs=1e-3)


# ---------------------------------------------------------------- accuracy at compression 100


def _pbm_log(alpha: np.ndarray, theta: np.ndarray, repeats: int, rng) -> ClickLog:
    """Show every pair `repeats` times, ten distinct pairs per session, and draw PBM clicks."""
    pairs = len(alpha) - 2
    positions = len(theta)
    ids = np.concatenate([rng.permutation(pairs) + 2 for _ in range(repeats)]).reshape(-1, positions)
    clicks = rng.random(ids.shape) < theta[None, :] * alpha[ids]
    sessions = len(ids)
    columns = {
        "query_id": np.full(sessions, 2, np.int32),
        "doc_id": ids.astype(np.int32),
        "query_doc_id": ids.astype(np.int32),
        "query_doc_hash": (reference_hash(ids, 99) & np.uint64(0x7FFFFFFF)).astype(np.int32),
        "position": np.tile(np.arange(1, positions + 1, dtype=np.int32), (sessions, 1)),
        "click": clicks.astype(np.uint8),
        "mask": np.ones(ids.shape, np.uint8),
        "weight": np.ones(sessions, np.float32),
    }
    return ClickLog(columns=columns, positions=positions)


THETA = np.array([0.95, 0.85, 0.75, 0.65, 0.55, 0.5, 0.45, 0.4, 0.35, 0.3])


def _held_out_by_attraction(attractions: dict, train: ClickLog, test: ClickLog, **training) -> dict[str, float]:
    """Train a PBM with each attraction module and return its held-out log-likelihood by name."""
    results = {}
    for name, attraction in attractions.items():
        model = PBM(positions=10, query_doc_pairs=2, attraction=attraction)
        fit(model, train, **training)
        results[name] = held_out_log_likelihood(model, test)
    return results


def _parameter_count(module) -> int:
    return sum(int(np.size(variable.get_value())) for _, variable in nnx.to_flat_state(nnx.state(module, nnx.Param)))


def test_compressed_tables_match_full_table_at_compression_100():
    pairs = 1_000_000
    rng = np.random.default_rng(42)
    alpha = np.concatenate([[0.0, 0.5], rng.beta(2.0, 5.0, size=pairs)])
    train = _pbm_log(alpha, THETA, repeats=2, rng=rng)
    test = _pbm_log(alpha, THETA, repeats=1, rng=rng)

    # With two training impressions per pair the plain full table overfits. The same table with
    # an L2 prior is the stronger reference, and the compressed tables must come close to both.
    attractions = {
        "full table": EmbeddingLogits(pairs + 2),
        "full table, L2 prior": EmbeddingLogits(pairs + 2, prior=L2Prior(1.0)),
        "hashed": HashedLogits(pairs, compression=100),
        "quotient-remainder": QuotientRemainderLogits(pairs, compression=100),
    }
    results = _held_out_by_attraction(attractions, train, test, epochs=6, batch_size=16384, learning_rate=0.1)
    parameters = {name: _parameter_count(attraction) for name, attraction in attractions.items()}

    full_log_likelihood = max(results["full table"], results["full table, L2 prior"])
    for name, log_likelihood in results.items():
        # Parameters and Adam's two moments scale alike, so the parameter ratio is the memory ratio.
        memory = parameters[name] / parameters["full table"]
        print(f"{name}: test log-likelihood {log_likelihood:.4f}, {parameters[name]} parameters ({memory:.2%} of the full table)")
    for name in ("hashed", "quotient-remainder"):
        assert results[name] >= full_log_likelihood - 0.01, name
        assert parameters[name] <= 0.02 * parameters["full table"], name


def test_compressed_tables_learn_each_pair_without_collisions():
    # With 100 times more entries than pairs, few pairs share one, so a compressed table can
    # learn each pair's attraction about as well as a full table.
    pairs = 50
    rng = np.random.default_rng(7)
    alpha = np.concatenate([[0.0, 0.5], rng.uniform(0.05, 0.95, size=pairs)])
    train = _pbm_log(alpha, THETA, repeats=200, rng=rng)
    test = _pbm_log(alpha, THETA, repeats=100, rng=rng)

    attractions = {
        "full table": EmbeddingLogits(pairs + 2),
        # One shared entry gives every pair the mean attraction, which scores far lower here.
        "mean only": HashedLogits(buckets=1, signed=False),
        "hashed": HashedLogits(buckets=5000),
        "quotient-remainder": QuotientRemainderLogits(buckets=5000),
        "robe": RobeLogits(buckets=5000, block_size=4),
    }
    results = _held_out_by_attraction(attractions, train, test, epochs=40, batch_size=1000, learning_rate=0.05)
    print(", ".join(f"{name} {value:.4f}" for name, value in results.items()))

    for name in ("hashed", "quotient-remainder", "robe"):
        assert results[name] >= results["full table"] - 0.005, name
        assert results[name] > results["mean only"] + 0.02, name
