"""Parameter recovery: training on a large simulated log finds the parameters it was simulated from.

Each test draws true parameters and simulates 200,000 sessions with shuffled rankings, so every
document of a query appears at every rank. It fits a fresh model with `Trainer` and checks that
every identifiable parameter with at least 1,000 observations lies within three standard errors
of its true value.

Standard errors come from the observed Fisher information: the inverse of the Hessian of the
total negative log-likelihood with respect to the identifiable logits, at the fitted values. The
comparison is in logit space, z = (fitted logit - true logit) / SE. The Hessian is exact and
built from the model's own `log_likelihood`. A session touches only the per-pair rows of its own
results, so `jax.hessian` runs per session on a short vector of those rows and the shared
per-rank and global entries, and the results are added into the full matrix.

Normalisations, as docs/models.md describes the identifiable quantities:
- PBM and UBM: examination and attraction share a common scale, so the fitted model is rescaled
  until theta_1 (UBM: theta(1, 0)) equals its true value. This compares theta_r / theta_1 and
  alpha * theta_1 with the truth. That entry is then fixed and left out of the Hessian.
- DCM: lambda at the last rank is not identifiable and is left out.
- CCM, DBN: every parameter is identifiable on shuffled rankings.

Observations per parameter: the impressions of a pair for attraction, the results at a rank for
PBM examination, the results at rank r whose last click above is at rank r' for UBM's
theta(r, r'), the clicks at rank r < P for DCM's lambda_r, the clicks above a session's last
result for DBN satisfaction and CCM tau2 and tau3, and the results above the last for DBN's
gamma and CCM's tau1. Every parameter enters the Hessian; only those with enough observations are
checked, because the normal approximation is poor for sparse ones.

Multiple comparisons: a test checks about 60 to 120 parameters, and each lies beyond three
standard errors with probability 0.27% even when everything is right, so a given seed fails by
chance with a probability of 15 to 30%. The seeds are fixed, so the tests are deterministic. A
change that alters the random streams (of the simulator or of a model's `sample`) can therefore
fail a test without a bug: rerun with the printed worst case in mind, and look at the mean
squared z-score, which the tests also check.

True logits are clipped to [-2.5, 2.5] (probabilities 0.076 to 0.924): near 0 or 1 the sampling
distribution of a logit is skewed and Adam needs far more epochs to converge.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from clickjax.data import ClickLog, Vocabulary
from clickjax.models import MODELS
from clickjax.parameters import EmbeddingLogits
from clickjax.simulation import Catalogue, draw_random_parameters, simulate
from clickjax.training import Trainer
from clickjax.writers import write_log

SESSIONS = 200_000
POSITIONS = 10
QUERIES = 5
DOCUMENTS_PER_QUERY = 12
LOGIT_LIMIT = 2.5

MIN_OBSERVATIONS = 1_000
MAX_Z = 3.0
# The mean of z^2 over the checked parameters is about 1 when the standard errors are right. Its
# standard deviation is about sqrt(2 / count), which is 0.13 to 0.18 here.
MEAN_SQUARED_Z_RANGE = (0.5, 1.6)
# Training has converged when a Newton step from the fitted values, which reaches the exact
# maximum of a quadratic likelihood, moves no parameter by more than this many standard errors.
MAX_NEWTON_STEP = 0.5
# ... and when the last epoch improved the mean training loss per result by less than this.
MAX_LAST_EPOCH_GAIN = 1e-5

# Adam over 25,000-session batches with a cosine decay converges in 30 epochs on these logs.
BATCH_SIZE = 25_000
EPOCHS = 30
PEAK_LEARNING_RATE = 0.2
FINAL_LEARNING_RATE = 2e-4


# ---------------------------------------------------------------- simulation and training


def build(name: str, query_doc_pairs: int) -> nnx.Module:
    return MODELS[name](positions=POSITIONS, query_doc_pairs=query_doc_pairs, rngs=nnx.Rngs(0))


def true_model(name: str, catalogue: Catalogue, seed: int) -> nnx.Module:
    model = build(name, catalogue.pair_table_size)
    draw_random_parameters(model, np.random.default_rng(seed))
    for _, variable in nnx.to_flat_state(nnx.state(model, nnx.Param)):
        variable.set_value(jnp.clip(variable.get_value(), -LOGIT_LIMIT, LOGIT_LIMIT))
    return model


def train(name: str, log: ClickLog, query_doc_pairs: int):
    """Fit a fresh model with `Trainer`; return the model and the per-epoch training losses.

    The out-of-vocabulary rate is 0, so that training maximises the exact likelihood of the log
    (the default replaces 1% of pair ids by the out-of-vocabulary id).
    """
    model = build(name, query_doc_pairs)
    steps = EPOCHS * -(-log.num_sessions // BATCH_SIZE)
    schedule = optax.cosine_decay_schedule(PEAK_LEARNING_RATE, steps, alpha=FINAL_LEARNING_RATE / PEAK_LEARNING_RATE)
    trainer = Trainer(optax.adam(schedule), epochs=EPOCHS, batch_size=BATCH_SIZE, oov_rate=0.0, seed=1)
    result = trainer.fit(model, log)
    return model, [record.train_loss for record in result.history]


# ---------------------------------------------------------------- parameter tables


def parameter_tables(model: nnx.Module) -> list[tuple[str, bool]]:
    """Return (name, is per-pair) for each parameter, in the leaf order of `nnx.state(model, nnx.Param)`.

    The name is the path of the table without a final `logit` or `logits`; per-pair tables are
    `EmbeddingLogits` over `query_doc_id`.
    """
    tables = []
    for path, _ in jax.tree_util.tree_flatten_with_path(nnx.state(model, nnx.Param))[0]:
        keys = [key.key for key in path if isinstance(key, jax.tree_util.DictKey)]
        owner = model
        for key in keys[:-1]:
            owner = owner[key] if isinstance(key, int) else getattr(owner, key)
        per_pair = isinstance(owner, EmbeddingLogits) and owner.column == "query_doc_id"
        name_keys = keys[:-1] if keys[-1] in ("logit", "logits") and len(keys) > 1 else keys
        tables.append(("/".join(str(key) for key in name_keys), per_pair))
    return tables


def logits(model: nnx.Module) -> dict[str, np.ndarray]:
    leaves = jax.tree.leaves(nnx.state(model, nnx.Param))
    return {name: np.asarray(leaf, np.float64) for (name, _), leaf in zip(parameter_tables(model), leaves)}


def set_logits(model: nnx.Module, values: dict[str, np.ndarray]) -> None:
    state = nnx.state(model, nnx.Param)
    leaves, treedef = jax.tree.flatten(state)
    names = [name for name, _ in parameter_tables(model)]
    new = [jnp.asarray(values.get(name, leaf), leaf.dtype) for name, leaf in zip(names, leaves)]
    nnx.update(model, jax.tree.unflatten(treedef, new))


def logit(p):
    return np.log(p) - np.log1p(-p)


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def rescale_examination(model: nnx.Module, entry: tuple, true_value: float) -> None:
    """Rescale examination by s and attraction by 1/s so that examination[entry] equals `true_value`.

    The likelihood does not change as long as every probability stays in (0, 1).
    """
    values = logits(model)
    scale = sigmoid(true_value) / sigmoid(values["examination"][entry])
    examination = sigmoid(values["examination"]) * scale
    attraction = sigmoid(values["attraction"]) / scale
    message = f"rescaling by {scale:.3f} pushes a probability above 1, so the fit is far from the truth"
    assert examination.max() < 1, message
    assert attraction.max() < 1, message
    set_logits(model, {"examination": logit(examination), "attraction": logit(attraction)})


# ---------------------------------------------------------------- observed information


def observed_information(model, columns, selected, chunk=8192):
    """Compute the Hessian and gradient of the total negative log-likelihood over the selected logits.

    A session's likelihood depends on the per-pair rows of its own results and on the shared
    (per-rank and global) tables. So for each session a small copy of the model, whose per-pair
    tables have one row per slot, evaluates the session's negative log-likelihood as a function
    of a local vector: the slots' per-pair logits, then the selected shared entries. The
    per-session gradients and Hessians (`jax.hessian`) are added into the full ones at the global
    positions of the local entries.

    Args:
      model: the fitted model.
      columns: the batch columns of the log, `[sessions]` and `[sessions, positions]`.
      selected: `{table name: bool array of the table's shape}`; entries not selected (and
        tables not named) stay fixed at their fitted values.

    Returns:
      (hessian `[n, n]`, gradient `[n]`, index): float64 arrays over the n selected entries, and
      index, the (table name, flat entry) of each.
    """
    tables = parameter_tables(model)
    leaves = [np.asarray(leaf) for leaf in jax.tree.leaves(nnx.state(model, nnx.Param))]
    positions = columns["mask"].shape[1]
    small = type(model)(positions=model.positions, query_doc_pairs=positions + 2, rngs=nnx.Rngs(0))
    small_graph, small_state, small_rest = nnx.split(small, nnx.Param, ...)
    small_treedef = jax.tree.structure(small_state)

    # Number the selected entries of every table.
    count = 0
    global_index, index = [], []
    for (name, _), leaf in zip(tables, leaves):
        chosen = np.asarray(selected.get(name, np.zeros(leaf.shape, bool)), bool).reshape(leaf.shape)
        numbers = np.full(leaf.shape, -1, np.int64)
        numbers[chosen] = np.arange(count, count + chosen.sum())
        count += int(chosen.sum())
        global_index.append(numbers)
        index += [(name, int(entry)) for entry in np.flatnonzero(chosen)]

    # The local vector: one entry per slot for each per-pair table, then the selected entries
    # of each shared table.
    layout, size = [], 0
    for (_, per_pair), numbers in zip(tables, global_index):
        if per_pair:
            layout.append((size, None))
            size += positions
        else:
            entries = np.flatnonzero(numbers.ravel() >= 0)
            layout.append((size, entries))
            size += len(entries)

    def session_loss(local, row):
        new = []
        for (offset, entries), leaf in zip(layout, leaves):
            if entries is None:
                new.append(jnp.concatenate([jnp.zeros(2, leaf.dtype), local[offset : offset + positions]]))
            else:
                flat = jnp.asarray(leaf).ravel().at[entries].set(local[offset : offset + len(entries)])
                new.append(flat.reshape(leaf.shape))
        session_model = nnx.merge(small_graph, jax.tree.unflatten(small_treedef, new), small_rest)
        log_likelihood = session_model.log_likelihood(row)
        return -jnp.sum(log_likelihood * row["mask"] * row["weight"][:, None])

    def per_session(local, row):
        row = {name: value[None] for name, value in row.items()}
        return jax.grad(session_loss)(local, row), jax.hessian(session_loss)(local, row)

    @jax.jit
    def chunk_sums(local, rows, numbers):
        gradient, hessian = jax.vmap(per_session)(local, rows)
        # Entries numbered `count` (fixed or padding) fall outside and are dropped.
        total_gradient = jnp.zeros(count, jnp.float32).at[numbers].add(gradient, mode="drop")
        total_hessian = jnp.zeros((count, count), jnp.float32).at[numbers[:, :, None], numbers[:, None, :]].add(
            hessian, mode="drop"
        )
        return total_gradient, total_hessian

    mask = columns["mask"].astype(bool)
    slot_ids = np.where(mask, np.arange(2, positions + 2)[None, :], 0).astype(np.int32)
    hessian = np.zeros((count, count))
    gradient = np.zeros(count)
    for start in range(0, len(mask), chunk):
        rows = slice(start, start + chunk)
        batch = {
            "query_doc_id": slot_ids[rows],
            "position": columns["position"][rows],
            "click": columns["click"][rows],
            "mask": columns["mask"][rows],
            "weight": columns["weight"][rows].astype(np.float32),
        }
        pair_ids = columns["query_doc_id"][rows]
        local = np.empty((len(pair_ids), size), np.float32)
        numbers = np.empty((len(pair_ids), size), np.int64)
        for (offset, entries), leaf, table_numbers in zip(layout, leaves, global_index):
            if entries is None:
                local[:, offset : offset + positions] = leaf[pair_ids]
                numbers[:, offset : offset + positions] = np.where(
                    mask[rows] & (table_numbers[pair_ids] >= 0), table_numbers[pair_ids], count
                )
            else:
                local[:, offset : offset + len(entries)] = leaf.ravel()[entries]
                numbers[:, offset : offset + len(entries)] = table_numbers.ravel()[entries]

        # Pad the last chunk with weight-0 rows so that every call has the same shape.
        padding = chunk - len(pair_ids)
        batch = {name: np.pad(value, [(0, padding)] + [(0, 0)] * (value.ndim - 1)) for name, value in batch.items()}
        local = np.pad(local, [(0, padding), (0, 0)])
        numbers = np.pad(numbers, [(0, padding), (0, 0)], constant_values=count)
        chunk_gradient, chunk_hessian = chunk_sums(local, batch, numbers)
        gradient += np.asarray(chunk_gradient, np.float64)
        hessian += np.asarray(chunk_hessian, np.float64)
    return hessian, gradient, index


# ---------------------------------------------------------------- observation counts


def pair_impressions(columns, table_size):
    mask = columns["mask"].astype(bool)
    return np.bincount(columns["query_doc_id"][mask], minlength=table_size)


def above_last_result(columns):
    """`[sessions, positions]` bool: real slots with another real slot below them."""
    mask = columns["mask"].astype(bool)
    return mask & (np.cumsum(mask, axis=1) < mask.sum(axis=1, keepdims=True))


def rank_counts(columns, where):
    return np.bincount(columns["position"][where], minlength=POSITIONS + 1)


def ubm_cell_counts(columns):
    """`[P + 1, P + 1]` results by rank r and rank r' of the last click above (0 = none)."""
    mask = columns["mask"].astype(bool)
    clicked_rank = np.where(mask & (columns["click"] == 1), columns["position"], 0)
    last_click = np.maximum.accumulate(clicked_rank, axis=1)
    previous = np.concatenate([np.zeros((len(mask), 1), last_click.dtype), last_click[:, :-1]], axis=1)
    counts = np.zeros((POSITIONS + 1, POSITIONS + 1), np.int64)
    np.add.at(counts, (columns["position"][mask], previous[mask]), 1)
    return counts


# ---------------------------------------------------------------- comparison


@dataclass
class Recovery:
    """Fitted and true logits of the identifiable parameters, with standard errors and observations."""

    names: list[str]
    true: np.ndarray
    fitted: np.ndarray
    standard_error: np.ndarray
    observations: np.ndarray
    newton_step: np.ndarray
    hessian_seconds: float = 0.0

    @property
    def z(self) -> np.ndarray:
        return (self.fitted - self.true) / self.standard_error

    @property
    def checked(self) -> np.ndarray:
        return self.observations >= MIN_OBSERVATIONS

    def worst(self) -> str:
        z = np.where(self.checked, np.abs(self.z), -1.0)
        i = int(np.argmax(z))
        true, fitted = sigmoid(self.true[i]), sigmoid(self.fitted[i])
        se = fitted * (1 - fitted) * self.standard_error[i]
        return (
            f"worst {self.names[i]}: true {true:.4f}, estimated {fitted:.4f}, SE {se:.4f} "
            f"(logit SE {self.standard_error[i]:.4f}), z {self.z[i]:+.2f}, "
            f"{int(self.observations[i])} observations"
        )


def entry_name(name: str, entry: int, shape: tuple) -> str:
    if not shape:
        return name
    indices = ", ".join(str(int(i)) for i in np.unravel_index(entry, shape))
    return f"{name}[{indices}]"


def compare(model, truth_logits, columns, selected, observations) -> Recovery:
    """Compare the fitted `model` with the true logits over the selected entries."""
    started = time.process_time()
    hessian, gradient, index = observed_information(model, columns, selected)
    hessian_seconds = time.process_time() - started
    covariance = np.linalg.inv(hessian)
    standard_error = np.sqrt(np.diag(covariance))
    fitted_logits = logits(model)
    names = [entry_name(name, entry, fitted_logits[name].shape) for name, entry in index]
    return Recovery(
        names=names,
        true=np.array([truth_logits[name].ravel()[entry] for name, entry in index]),
        fitted=np.array([fitted_logits[name].ravel()[entry] for name, entry in index]),
        standard_error=standard_error,
        observations=np.array([observations[name].ravel()[entry] for name, entry in index]),
        # The Newton step from the fitted values is -H^-1 g, here in units of standard errors.
        newton_step=np.abs(covariance @ gradient) / standard_error,
        hessian_seconds=hessian_seconds,
    )


def assert_recovered(label: str, recovery: Recovery, losses: list[float], started: tuple[float, float]) -> None:
    """Print the worst case and check convergence, every |z| and the mean of z^2.

    `started` contains `time.perf_counter()` and `time.process_time()` at the start of the test.
    """
    checked = recovery.checked
    z = recovery.z[checked]
    wall = time.perf_counter() - started[0]
    processor = time.process_time() - started[1]
    print(
        f"\n{label}: {SESSIONS} sessions, {checked.sum()} of {len(checked)} parameters checked, "
        f"{recovery.worst()}, mean z^2 {np.mean(z**2):.3f}, "
        f"largest Newton step {recovery.newton_step.max():.3f} SE; {wall:.1f} s "
        f"({processor:.1f} s of CPU time, {recovery.hessian_seconds:.1f} s of it for the Hessian)"
    )
    gain = losses[-2] - losses[-1]
    assert gain < MAX_LAST_EPOCH_GAIN, f"the loss still fell by {gain:.2e} in the last epoch; train longer"
    assert recovery.newton_step.max() < MAX_NEWTON_STEP, (
        f"training stopped {recovery.newton_step.max():.2f} standard errors from the maximum "
        f"(at {recovery.names[int(np.argmax(recovery.newton_step))]}); train longer"
    )
    assert checked.sum() > 0, "no parameter has enough observations to check"
    assert np.all(np.abs(z) < MAX_Z), recovery.worst()
    low, high = MEAN_SQUARED_Z_RANGE
    assert low < np.mean(z**2) < high, f"mean z^2 is {np.mean(z**2):.3f}: the standard errors are miscalibrated"


# ---------------------------------------------------------------- tests


def catalogue_and_truth(name: str, seed: int):
    catalogue = Catalogue.random(queries=QUERIES, documents_per_query=DOCUMENTS_PER_QUERY)
    return catalogue, true_model(name, catalogue, seed)


def pair_selection(table_size: int, catalogue: Catalogue) -> np.ndarray:
    chosen = np.zeros(table_size, bool)
    chosen[catalogue.query_doc_id] = True
    return chosen


def test_pbm_recovery_through_baidu_file(tmp_path):
    started = (time.perf_counter(), time.process_time())
    catalogue, truth = catalogue_and_truth("pbm", seed=11)
    simulated = simulate(truth, catalogue, SESSIONS, seed=12)

    # The whole way: gzip Baidu text, read back by the Rust reader, which numbers pairs anew.
    path = tmp_path / "pbm.txt.gz"
    write_log(path, simulated.log, "baidu")
    vocabulary = Vocabulary()
    log = ClickLog.read("baidu", [path], vocabulary, positions=POSITIONS)
    for column in ("position", "click", "mask"):
        np.testing.assert_array_equal(log.columns[column], simulated.log.columns[column])
    read_to_true = np.zeros(vocabulary.pair_table_size, np.int64)
    read_to_true[log.columns["query_doc_id"]] = simulated.log.columns["query_doc_id"]

    model, losses = train("pbm", log, vocabulary.pair_table_size)
    true_logits = logits(truth)
    true_logits["attraction"] = true_logits["attraction"][read_to_true]
    rescale_examination(model, 1, true_logits["examination"][1])

    columns = log.columns
    examination = np.zeros(POSITIONS + 1, bool)
    examination[2:] = True
    attraction = np.zeros(vocabulary.pair_table_size, bool)
    attraction[2:] = True
    recovery = compare(
        model,
        true_logits,
        columns,
        {"examination": examination, "attraction": attraction},
        {
            "examination": rank_counts(columns, columns["mask"].astype(bool)),
            "attraction": pair_impressions(columns, vocabulary.pair_table_size),
        },
    )
    assert_recovered("PBM via Baidu gzip", recovery, losses, started)


def test_ubm_recovery():
    started = (time.perf_counter(), time.process_time())
    catalogue, truth = catalogue_and_truth("ubm", seed=21)
    log = simulate(truth, catalogue, SESSIONS, seed=22).log
    model, losses = train("ubm", log, catalogue.pair_table_size)
    true_logits = logits(truth)
    rescale_examination(model, (1, 0), true_logits["examination"][1, 0])

    columns = log.columns
    cells = ubm_cell_counts(columns)
    examination = cells > 0
    examination[1, 0] = False
    recovery = compare(
        model,
        true_logits,
        columns,
        {"examination": examination, "attraction": pair_selection(catalogue.pair_table_size, catalogue)},
        {"examination": cells, "attraction": pair_impressions(columns, catalogue.pair_table_size)},
    )
    assert_recovered("UBM", recovery, losses, started)


def test_dcm_recovery():
    if "dcm" not in MODELS:
        pytest.fail("clickjax.models.MODELS has no 'dcm'")
    started = (time.perf_counter(), time.process_time())
    catalogue, truth = catalogue_and_truth("dcm", seed=31)
    log = simulate(truth, catalogue, SESSIONS, seed=32).log
    model, losses = train("dcm", log, catalogue.pair_table_size)

    columns = log.columns
    continuation = np.zeros(POSITIONS + 1, bool)
    continuation[1:POSITIONS] = True  # lambda at the last rank is not identifiable
    clicks = columns["mask"].astype(bool) & (columns["click"] == 1)
    recovery = compare(
        model,
        logits(truth),
        columns,
        {"continuation": continuation, "attraction": pair_selection(catalogue.pair_table_size, catalogue)},
        {"continuation": rank_counts(columns, clicks), "attraction": pair_impressions(columns, catalogue.pair_table_size)},
    )
    assert_recovered("DCM", recovery, losses, started)


def test_ccm_recovery():
    if "ccm" not in MODELS:
        pytest.fail("clickjax.models.MODELS has no 'ccm'")
    started = (time.perf_counter(), time.process_time())
    catalogue, truth = catalogue_and_truth("ccm", seed=41)
    log = simulate(truth, catalogue, SESSIONS, seed=42).log
    model, losses = train("ccm", log, catalogue.pair_table_size)

    columns = log.columns
    above_last = above_last_result(columns)
    clicked = columns["click"] == 1
    one = np.ones((), bool)
    recovery = compare(
        model,
        logits(truth),
        columns,
        {"tau1": one, "tau2": one, "tau3": one, "attraction": pair_selection(catalogue.pair_table_size, catalogue)},
        {
            "tau1": np.array((above_last & ~clicked).sum()),
            "tau2": np.array((above_last & clicked).sum()),
            "tau3": np.array((above_last & clicked).sum()),
            "attraction": pair_impressions(columns, catalogue.pair_table_size),
        },
    )
    assert_recovered("CCM", recovery, losses, started)


def test_dbn_recovery():
    started = (time.perf_counter(), time.process_time())
    catalogue, truth = catalogue_and_truth("dbn", seed=51)
    log = simulate(truth, catalogue, SESSIONS, seed=52).log
    model, losses = train("dbn", log, catalogue.pair_table_size)

    columns = log.columns
    above_last = above_last_result(columns)
    clicked_above_last = above_last & (columns["click"] == 1)
    pairs = pair_selection(catalogue.pair_table_size, catalogue)
    recovery = compare(
        model,
        logits(truth),
        columns,
        {"attraction": pairs, "satisfaction": pairs, "continuation": np.ones((), bool)},
        {
            "attraction": pair_impressions(columns, catalogue.pair_table_size),
            "satisfaction": np.bincount(columns["query_doc_id"][clicked_above_last], minlength=catalogue.pair_table_size),
            "continuation": np.array(above_last.sum()),
        },
    )
    assert_recovered("DBN", recovery, losses, started)
