"""The training engine: sparse table updates, options, the NaN guard and the penalty hook."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from clickjax.data import ClickLog
from clickjax.models import MODELS, PositionBasedModel
from clickjax.compressed import HashedLogits
from clickjax.pipeline import BatchPipeline
from clickjax.simulation import Catalogue, simulate
from clickjax.sparse import distinct_ids, find_representatives, representative_rows
from clickjax.training import Trainer, TrainingDivergedError, _Plan, _replace_with_oov
from simulation import simulate_pbm

THETA = [0.9, 0.6, 0.4, 0.3]


def pbm(pairs: int, positions: int = 4) -> PositionBasedModel:
    return PositionBasedModel(positions=positions, query_doc_pairs=pairs + 2, rngs=nnx.Rngs(0))


def parameters(model) -> dict:
    flat = nnx.to_flat_state(nnx.state(model, nnx.Param))
    return {"/".join(map(str, path)): np.asarray(variable.get_value()) for path, variable in flat}


def one_session_log(ids, clicks, positions=None) -> ClickLog:
    """A log of one session showing `ids` at ranks 1..n with the given clicks."""
    shown = len(ids)
    positions = positions or shown
    columns = {
        "query_id": np.full(1, 2, np.int32),
        "doc_id": np.zeros((1, positions), np.int32),
        "query_doc_id": np.zeros((1, positions), np.int32),
        "query_doc_hash": np.zeros((1, positions), np.int32),
        "position": np.zeros((1, positions), np.int32),
        "click": np.zeros((1, positions), np.uint8),
        "mask": np.zeros((1, positions), np.uint8),
        "weight": np.ones(1, np.float32),
    }
    columns["query_doc_id"][0, :shown] = ids
    columns["doc_id"][0, :shown] = ids
    columns["position"][0, :shown] = np.arange(1, shown + 1)
    columns["click"][0, :shown] = clicks
    columns["mask"][0, :shown] = 1
    return ClickLog(columns=columns, positions=positions)


def sgd_trainer(sparse: bool, **options) -> Trainer:
    return Trainer(
        "sgd", learning_rate=0.6, table_optimizer="sgd", table_learning_rate=0.6, sparse=sparse, oov_rate=0.0, **options
    )


# ---------------------------------------------------------------- sparse updates


def test_representatives_with_ids_outside_table():
    # Table of 10 rows. Id 5 occurs at flat positions 0 and 2, so both get the same one of the
    # two as representative. -3 and 12 are outside the table, so each occurrence is its own
    # representative, as is the single 0.
    ids = jnp.asarray([[5, -3, 5], [12, 0, -3]], jnp.int32)

    scratch, representative = find_representatives(jnp.zeros(10, jnp.int32), ids)
    rows = np.asarray(representative_rows(ids, representative, 10))

    representative = np.asarray(representative)
    assert representative[0] == representative[2]
    assert representative[0] in (0, 2)
    np.testing.assert_array_equal(representative[[1, 3, 4, 5]], [1, 3, 4, 5])
    # Row 5 is read and written once, at its representative. Every other occurrence of an id
    # and every id outside the table become the filler row 10.
    expected = np.full(6, 10)
    expected[representative[0]] = 5
    expected[4] = 0
    np.testing.assert_array_equal(rows, expected)
    assert scratch.shape == (10,)


def brute_force_groups(ids: np.ndarray, rows: int) -> dict[int, list[int]]:
    """Map each id inside `0..rows - 1` to the flat positions where it occurs."""
    groups: dict[int, list[int]] = {}
    for position, value in enumerate(ids.reshape(-1).tolist()):
        if 0 <= value < rows:
            groups.setdefault(value, []).append(position)
    return groups


DEDUP_ROWS = 12
dedup_ids = hnp.arrays(np.int32, (6, 5), elements=st.integers(-4, DEDUP_ROWS + 3))


@jax.jit
def deduplicate_twice(scratch, first, second):
    """Run two steps' deduplication in a row on one scratch array, as the training step does."""
    scratch, first_representative = find_representatives(scratch, first)
    scratch, second_representative = find_representatives(scratch, second)
    return (
        first_representative,
        representative_rows(first, first_representative, DEDUP_ROWS),
        second_representative,
        representative_rows(second, second_representative, DEDUP_ROWS),
    )


@settings(max_examples=60, deadline=None)
@given(
    scratch=hnp.arrays(np.int32, (DEDUP_ROWS,), elements=st.integers(-(2**31), 2**31 - 1)),
    first=dedup_ids,
    second=dedup_ids,
)
def test_representatives_match_brute_force(scratch, first, second):
    # The scratch array starts with arbitrary content, and the second call reuses the first
    # one's, so a stale entry would show up as a wrong representative.
    outputs = [np.asarray(array) for array in deduplicate_twice(scratch, first, second)]

    for ids, representative, rows in [(first, *outputs[:2]), (second, *outputs[2:])]:
        flat = ids.reshape(-1)
        groups = brute_force_groups(ids, DEDUP_ROWS)
        for value, positions in groups.items():
            chosen = representative[positions]
            assert np.all(chosen == chosen[0]), (value, chosen)
            assert chosen[0] in positions
        outside = (flat < 0) | (flat >= DEDUP_ROWS)
        np.testing.assert_array_equal(representative[outside], np.flatnonzero(outside))
        # Each id inside the table is read and written exactly once. All others go to the filler.
        real = rows[rows != DEDUP_ROWS]
        assert sorted(real.tolist()) == sorted(groups)
        np.testing.assert_array_equal(rows[representative[np.flatnonzero(~outside)]], flat[~outside])


def test_distinct_ids_with_ids_outside_table():
    # Table of 8 rows: 3 and 5 occur twice each; -1 and 9 are outside and share the entry of 8.
    ids = np.asarray([[5, 3, 5], [-1, 9, 3]], np.int32)

    distinct, inverse = distinct_ids(ids, 8)

    np.testing.assert_array_equal(distinct, [3, 5, 8, 8, 8, 8])
    np.testing.assert_array_equal(inverse, [[1, 0, 1], [2, 2, 0]])
    assert distinct.dtype == inverse.dtype == np.int32


@settings(max_examples=80, deadline=None)
@given(ids=dedup_ids)
def test_distinct_ids_match_brute_force(ids):
    distinct, inverse = distinct_ids(ids, DEDUP_ROWS)

    groups = brute_force_groups(ids, DEDUP_ROWS)
    found = distinct[distinct != DEDUP_ROWS]
    assert found.tolist() == sorted(groups)
    flat = ids.reshape(-1)
    outside = (flat < 0) | (flat >= DEDUP_ROWS)
    read = distinct[inverse.reshape(-1)]
    np.testing.assert_array_equal(read[~outside], flat[~outside])
    assert np.all(read[outside] == DEDUP_ROWS)
    # All ids outside the table share one entry, so a step scatters at most one filler row.
    assert len(set(inverse.reshape(-1)[outside].tolist())) <= 1


@pytest.mark.parametrize("sparse", [True, False])
def test_sgd_step_sums_duplicate_ids(sparse, distinct_on):
    # One session shows pair 2 twice (ranks 1 and 2), clicked at rank 1 only. With every logit 0,
    # P(click) = 0.5 * 0.5 = 0.25. The loss is the mean over the 2 results of -log P(observed), whose
    # gradient in the attraction logit a is -(1 - sigmoid(a)) = -1/2 for the click and
    # P / (1 - P) * (1 - sigmoid(a)) = 1/6 for the skip. Their mean is -1/6, so one SGD step at
    # learning rate 0.6 moves a to 0.1. Had the two occurrences not been summed, a would be
    # 0.15 (click only) or -0.05 (skip only).
    log = one_session_log([2, 2], [1, 0])
    model = pbm(3, positions=2)

    sgd_trainer(sparse, epochs=1, batch_size=1).fit(model, log)

    attraction = parameters(model)["attraction/logits"]
    np.testing.assert_allclose(attraction[2], 0.1, rtol=1e-6)
    np.testing.assert_array_equal(attraction[[0, 1, 3, 4]], 0.0)


@pytest.mark.parametrize("name", ["pbm", "dbn", "ubm"])
def test_sparse_sgd_matches_dense(name, distinct_on):
    # 40 pairs in sessions of 4 results, batches of 32: most batches repeat some pairs.
    log, _ = simulate_pbm(sessions=300, pairs=40, theta=THETA, seed=3)
    log.columns["query_doc_id"][::7, 1] = log.columns["query_doc_id"][::7, 0]  # a duplicate within a session
    sparse_model = MODELS[name](positions=4, query_doc_pairs=42, rngs=nnx.Rngs(0))
    dense_model = MODELS[name](positions=4, query_doc_pairs=42, rngs=nnx.Rngs(0))

    sgd_trainer(True, epochs=2, batch_size=32, seed=4).fit(sparse_model, log)
    sgd_trainer(False, epochs=2, batch_size=32, seed=4).fit(dense_model, log)

    sparse, dense = parameters(sparse_model), parameters(dense_model)
    assert sparse.keys() == dense.keys()
    for key in sparse:
        # float32 sums of the same gradients in another order: equal to a few units in the last place.
        np.testing.assert_allclose(sparse[key], dense[key], rtol=1e-5, atol=1e-6, err_msg=key)
    assert not np.allclose(sparse["attraction/logits"], 0.0)


def test_sparse_adagrad_matches_dense(distinct_on):
    log, _ = simulate_pbm(sessions=300, pairs=40, theta=THETA, seed=5)
    sparse_model, dense_model = pbm(40), pbm(40)

    Trainer(sparse=True, epochs=2, batch_size=32, oov_rate=0.05).fit(sparse_model, log)
    Trainer(sparse=False, epochs=2, batch_size=32, oov_rate=0.05).fit(dense_model, log)

    sparse, dense = parameters(sparse_model), parameters(dense_model)
    for key in sparse:
        np.testing.assert_allclose(sparse[key], dense[key], rtol=1e-5, atol=1e-6, err_msg=key)


def test_sparse_by_table_name():
    log, _ = simulate_pbm(sessions=100, pairs=10, theta=THETA, seed=6)
    trainer = Trainer(sparse=["attraction"], epochs=1, batch_size=32)
    trainer.fit(pbm(10), log)

    with pytest.raises(ValueError, match="not per-pair tables of the model; its tables are attraction"):
        Trainer(sparse=["satisfaction"], epochs=1).fit(pbm(10), log)


def test_sparse_step_updates_state_in_place(distinct_on):
    # The step donates the training state and the scratch arrays, so XLA writes the new table
    # and its Adagrad slot (one array) and the scratch array into the old buffers instead of
    # copying them. With the distinct ids found on the host, the step has no scratch array.
    log, _ = simulate_pbm(sessions=64, pairs=20, theta=THETA, seed=8)
    model = pbm(20)
    trainer = Trainer(epochs=1, batch_size=64)
    trainer.fit(model, log)
    (step,) = trainer._compiled.values()
    plan = _Plan.build(model, trainer, log, train_weight=lambda: 1.0)
    state = plan.initial_state(model, step.dense_optimizer, trainer.table_rule)
    scratch = plan.initial_scratch()
    if distinct_on == "host":
        assert plan.host_distinct == (("query_doc_id", 22),)
        assert scratch == ()
    else:
        assert len(scratch) == 1
    batch = jax.device_put(plan.with_distinct_ids(next(iter(log.batches(64)))))

    def buffers(state, scratch):
        arrays = [state.tables[0], *scratch]
        return [array.unsafe_buffer_pointer() for array in arrays]

    # The table's logits and its Adagrad slot, side by side.
    assert state.tables[0].shape == (22, 2)
    before = buffers(state, scratch)
    old_table = state.tables[0]
    state, scratch, halted = step.run(state, scratch, batch, jnp.zeros((), jnp.int32), jnp.zeros((), bool))

    assert not bool(halted)
    assert old_table.is_deleted()
    assert buffers(state, scratch) == before


@pytest.mark.parametrize("table_optimizer", ["adagrad", "adam"])
def test_host_and_device_distinct_ids_give_same_parameters(monkeypatch, table_optimizer):
    # DBN's two tables share query_doc_id. 40 pairs in batches of 32 sessions repeat pairs, and
    # the out-of-vocabulary draws put id 1 in every batch. Both ways sum the same gradients in
    # the same order, so the parameters are equal, not just close.
    import clickjax.sparse

    log, _ = simulate_pbm(sessions=300, pairs=40, theta=THETA, seed=21)
    log.columns["query_doc_id"][::5, 2] = log.columns["query_doc_id"][::5, 0]
    models = [MODELS["dbn"](positions=4, query_doc_pairs=42, rngs=nnx.Rngs(0)) for _ in range(2)]
    trainers = []
    for model, minimum in zip(models, [2**21, 1]):
        monkeypatch.setattr(clickjax.sparse, "HOST_DISTINCT_MIN_ROWS", minimum)
        trainer = Trainer(epochs=2, batch_size=32, table_optimizer=table_optimizer, oov_rate=0.1, seed=2)
        trainer.fit(model, log)
        trainers.append(trainer)

    device, host = (parameters(model) for model in models)
    for key in device:
        np.testing.assert_array_equal(device[key], host[key], err_msg=key)
    assert not np.allclose(device["attraction/logits"], 0.0)
    # The device-side step reads the pair ids; the host-side one reads what the worker found.
    (device_step,) = trainers[0]._compiled.values()
    (host_step,) = trainers[1]._compiled.values()
    assert "query_doc_id" in device_step.columns
    assert {"_distinct_query_doc_id", "_inverse_query_doc_id"} <= set(host_step.columns)
    assert "query_doc_id" not in host_step.columns


def test_oov_draws_replace_real_results():
    # 2,000 sessions of 10 slots, the last 4 of each padding: 12,000 real results. At rate 0.25
    # the replaced count is binomial with mean 3,000 and standard deviation about 47.
    ids = np.arange(20_000, dtype=np.int32).reshape(2000, 10) + 2
    mask = np.zeros((2000, 10), np.uint8)
    mask[:, :6] = 1
    batch = {"query_doc_id": ids, "mask": mask, "doc_id": ids.copy()}

    drawn = _replace_with_oov(3, batch, rate=0.25, seed=(0, 1, 0))
    again = _replace_with_oov(3, batch, rate=0.25, seed=(0, 1, 0))
    next_step = _replace_with_oov(4, batch, rate=0.25, seed=(0, 1, 0))

    replaced = drawn["query_doc_id"] == 1
    assert drawn["query_doc_id"].dtype == np.int32
    assert not replaced[:, 6:].any()
    assert 3000 - 5 * 47 <= replaced.sum() <= 3000 + 5 * 47
    np.testing.assert_array_equal(drawn["query_doc_id"][~replaced], ids[~replaced])
    np.testing.assert_array_equal(drawn["doc_id"], ids)
    np.testing.assert_array_equal(batch["query_doc_id"], ids)  # the input batch is left intact
    np.testing.assert_array_equal(again["query_doc_id"], drawn["query_doc_id"])
    assert not np.array_equal(next_step["query_doc_id"], drawn["query_doc_id"])


def test_lazy_adam_leaves_unused_rows(distinct_on):
    # Pair 5 never occurs, so lazy Adam never touches its row, while every used row moves.
    log, _ = simulate_pbm(sessions=200, pairs=4, theta=THETA, seed=7)
    model = pbm(6)

    Trainer(table_optimizer="adam", table_learning_rate=0.05, epochs=1, batch_size=32, oov_rate=0.0).fit(model, log)

    attraction = parameters(model)["attraction/logits"]
    assert attraction[6] == 0.0
    assert attraction[7] == 0.0
    assert np.all(attraction[2:6] != 0.0)


# ---------------------------------------------------------------- options


def test_same_seed_same_parameters_with_options():
    log, _ = simulate_pbm(sessions=400, pairs=30, theta=THETA, seed=8)
    options = dict(
        schedule="cosine", warmup_steps=3, clip_norm=0.5, weight_decay=0.01, epochs=3, batch_size=64, seed=11
    )
    first, second, other_seed = pbm(30), pbm(30), pbm(30)

    Trainer(**options).fit(first, log)
    Trainer(**options).fit(second, log)
    Trainer(**{**options, "seed": 12}).fit(other_seed, log)

    a, b, c = parameters(first), parameters(second), parameters(other_seed)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    assert not np.array_equal(a["attraction/logits"], c["attraction/logits"])


def test_warmup_first_step_has_rate_zero():
    log, _ = simulate_pbm(sessions=64, pairs=10, theta=THETA, seed=9)
    model = pbm(10)

    result = Trainer(schedule="warmup", warmup_steps=10, max_steps=1, batch_size=32).fit(model, log)

    assert result.steps == 1
    for key, value in parameters(model).items():
        np.testing.assert_array_equal(value, 0.0, err_msg=key)


def test_clip_norm_limits_sgd_step():
    # With SGD every parameter moves by -learning_rate * gradient, so after clipping the change of
    # all parameters together has norm learning_rate * clip_norm.
    log = one_session_log([2, 3, 2], [1, 0, 0])
    model = pbm(3, positions=3)

    sgd_trainer(True, clip_norm=0.01, max_steps=1, batch_size=1).fit(model, log)

    change = np.concatenate([value.ravel() for value in parameters(model).values()])
    assert math.isclose(float(np.linalg.norm(change)), 0.6 * 0.01, rel_tol=1e-5)


def test_max_steps_stops_mid_epoch():
    log, _ = simulate_pbm(sessions=320, pairs=10, theta=THETA, seed=10)

    result = Trainer(max_steps=7, epochs=5, batch_size=64).fit(pbm(10), log)

    assert result.steps == 7
    assert [record.steps for record in result.history] == [5, 2]


def test_optax_transformation_trains_everything():
    log, _ = simulate_pbm(sessions=200, pairs=10, theta=THETA, seed=11)
    model = pbm(10)

    Trainer(optax.sgd(0.0), epochs=1, batch_size=64).fit(model, log)

    for key, value in parameters(model).items():
        np.testing.assert_array_equal(value, 0.0, err_msg=key)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"optimizer": "adamax"}, "unknown optimizer 'adamax'"),
        ({"table_optimizer": "ftrl"}, "unknown table optimizer 'ftrl'"),
        ({"schedule": "linear"}, "unknown schedule 'linear'"),
        ({"learning_rate": 0.0}, "learning_rate must be a positive finite number"),
        ({"table_learning_rate": math.nan}, "table_learning_rate must be a positive finite number"),
        ({"clip_norm": -1.0}, "clip_norm must be a positive finite number"),
        ({"weight_decay": -0.1}, "weight_decay must be a finite number >= 0"),
        ({"max_steps": 0}, "max_steps must be an integer of at least 1"),
        ({"warmup_steps": -1}, "warmup_steps must be an integer of at least 0"),
        ({"checkpoint_every": 0}, "checkpoint_every must be an integer of at least 1"),
    ],
)
def test_trainer_rejects_bad_options(options, message):
    with pytest.raises(ValueError, match=message):
        Trainer(**options)


def test_trainer_rejects_sparse_string():
    with pytest.raises(TypeError, match="not a single string"):
        Trainer(sparse="attraction")


# ---------------------------------------------------------------- NaN guard


def test_nan_loss_stops_with_last_good_parameters():
    # Session 77 has weight nan. With batches of 32 in the seed's order it sits in some step k of
    # epoch 1; the error names that step and its rows, and the model keeps the parameters after
    # step k - 1, which a run stopped by max_steps at k steps reproduces.
    log, _ = simulate_pbm(sessions=320, pairs=20, theta=THETA, seed=12)
    log.columns["weight"][77] = np.nan
    clean = ClickLog(columns={name: column.copy() for name, column in log.columns.items()}, positions=4)
    clean.columns["weight"][77] = 1.0
    model = pbm(20)

    with pytest.raises(TrainingDivergedError, match="not finite in epoch 1, step") as error:
        Trainer(epochs=3, batch_size=32, seed=1).fit(model, log)

    assert error.value.epoch == 1
    assert 77 in error.value.rows
    assert len(error.value.rows) == 32
    assert error.value.global_step == error.value.step
    assert error.value.step > 0
    reference = pbm(20)
    Trainer(epochs=3, batch_size=32, seed=1, max_steps=error.value.global_step).fit(reference, clean)
    expected = parameters(reference)
    for key, value in parameters(model).items():
        np.testing.assert_array_equal(value, expected[key], err_msg=key)


@pytest.mark.parametrize("sparse", [True, False])
@pytest.mark.parametrize("outside", [500, -3])
def test_nan_from_id_outside_table(sparse, outside, distinct_on):
    # JAX would wrap -3 around to row 19 of a 22-row table and clamp 500 to the last row.
    log, _ = simulate_pbm(sessions=64, pairs=20, theta=THETA, seed=13)
    log.columns["query_doc_id"][5, 0] = outside
    with pytest.raises(TrainingDivergedError, match="ids outside the model's tables"):
        Trainer(epochs=1, batch_size=64, oov_rate=0.0, sparse=sparse).fit(pbm(20), log)


# ---------------------------------------------------------------- penalty hook


class PenalisedLogit(nnx.Module):
    """One parameter with the penalty strength / 2 * value**2."""

    def __init__(self, strength: float):
        self.strength = strength
        self.value = nnx.Param(jnp.asarray(0.0))

    def penalty(self):
        return self.strength / 2 * self.value[...] ** 2


class SquaredErrorModel(nnx.Module):
    """Loss (value - 1)**2, whatever the batch."""

    def __init__(self, strength: float):
        self.prior = PenalisedLogit(strength)

    def loss(self, batch):
        return (self.prior.value[...] - 1.0) ** 2


def test_penalty_divided_by_training_results():
    # 50 sessions of 4 real results each: 200 weighted results. The objective is
    # (v - 1)**2 + 40 / 2 * v**2 / 200, whose gradient at v = 0 is -2, so one SGD step at rate 0.1
    # gives 0.2. At v = 0.2 the gradient is 2 * (0.2 - 1) + 40 * 0.2 / 200 = -1.56: 0.356.
    log, _ = simulate_pbm(sessions=50, pairs=10, theta=THETA, seed=14)
    model = SquaredErrorModel(strength=40.0)

    Trainer("sgd", learning_rate=0.1, max_steps=2, batch_size=25).fit(model, log)

    assert math.isclose(float(model.prior.value[...]), 0.356, rel_tol=1e-6)


# ---------------------------------------------------------------- streamed batches


@pytest.mark.parametrize("prefetch", [0, 2])
def test_pipeline_stream_skips_to_first_step(prefetch):
    # Five streamed batches whose weight column is their step number; a run resumed at step 2 and
    # stopped before step 4 gets steps 2 and 3, with no log rows to report.
    stream = ({"weight": np.full(4, step, np.float32)} for step in range(5))
    log = ClickLog(columns={"weight": np.zeros(0, np.float32)}, positions=1)
    with BatchPipeline(log, None, 4, range(2, 4), lambda batch: batch, prefetch, stream=stream) as pipeline:
        items = list(pipeline)

    assert [step for step, _, _ in items] == [2, 3]
    assert [float(batch["weight"][0]) for _, _, batch in items] == [2.0, 3.0]
    assert all(len(rows) == 0 for _, rows, _ in items)


def test_pipeline_needs_order_or_stream():
    log = ClickLog(columns={"weight": np.zeros(0, np.float32)}, positions=1)
    with pytest.raises(ValueError, match="either the epoch's session order or a stream"):
        BatchPipeline(log, None, 4, range(1), lambda batch: batch, 0)


def test_diverged_error_on_streamed_batch():
    error = TrainingDivergedError(2, 3, 13, np.zeros(0, np.int64))
    assert "on a batch streamed from disk" in str(error)
    assert "rows []" not in str(error)


# ---------------------------------------------------------------- columns of a step


def simulated_log(name: str, sessions: int = 300):
    """A small log simulated from model `name` on 5 queries of 4 documents."""
    catalogue = Catalogue.random(queries=5, documents_per_query=4)
    model = MODELS[name](positions=4, query_doc_pairs=catalogue.pair_table_size, rngs=nnx.Rngs(0))
    return simulate(model, catalogue, sessions, seed=1).log, catalogue


# PBM: attraction by pair, examination by rank. DBN reads no rank: its examination follows the
# clicks above a slot. Neither reads query_id, doc_id or query_doc_hash.
@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("pbm", {"click", "mask", "weight", "query_doc_id", "position"}),
        ("dbn", {"click", "mask", "weight", "query_doc_id"}),
    ],
)
def test_step_reads_model_columns(name, expected):
    log, catalogue = simulated_log(name)
    model = MODELS[name](positions=4, query_doc_pairs=catalogue.pair_table_size, rngs=nnx.Rngs(0))
    trainer = Trainer(epochs=1, batch_size=64)
    trainer.fit(model, log)

    (step,) = trainer._compiled.values()
    assert set(step.columns) == expected


def test_hashed_attraction_reads_hash_column():
    # With hashed attraction, the pair ids are not read, so the out-of-vocabulary draws skip them.
    log, _ = simulated_log("pbm")
    model = PositionBasedModel(positions=4, query_doc_pairs=2, attraction=HashedLogits(buckets=64, seed=0), rngs=nnx.Rngs(0))
    trainer = Trainer(epochs=2, batch_size=64, oov_rate=0.5)
    trainer.fit(model, log)

    (step,) = trainer._compiled.values()
    assert "query_doc_hash" in step.columns
    assert "query_doc_id" not in step.columns


@pytest.mark.parametrize("prefetch", [0, 2])
def test_pipeline_cuts_selected_columns(prefetch):
    log, _ = simulated_log("pbm", sessions=10)
    order = np.arange(10)
    selected = ("mask", "weight", "click")
    with BatchPipeline(log, order, 4, range(3), lambda batch: batch, prefetch, columns=selected) as pipeline:
        items = list(pipeline)

    assert [step for step, _, _ in items] == [0, 1, 2]
    for step, _, batch in items:
        assert set(batch) == set(selected)
        rows = order[step * 4 : (step + 1) * 4]
        np.testing.assert_array_equal(batch["click"][: len(rows)], log.columns["click"][rows])
    # The last batch has 2 sessions and 2 rows of padding with weight 0.
    np.testing.assert_array_equal(items[2][2]["weight"][2:], [0.0, 0.0])
