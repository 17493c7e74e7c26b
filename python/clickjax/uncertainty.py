"""Counts, estimates and standard errors for every query-document pair of a trained click model.

`pair_statistics(model, batches)` walks a click log once. It covers each row of the model's pair
tables, the `EmbeddingLogits` roles over `query_doc_id` such as attraction and satisfaction. For
each row it returns the weighted impressions and clicks, each role's probability and its standard
error, and the model's relevance estimate with its standard error.

How the standard errors are computed:

- The information about a row's logit z is the observed Fisher information, the negative second
  derivative of the log-likelihood, `-d2 LL / dz2`, summed over every impression of the pair
  (weighted by `weight`). It is exact for the model's likelihood, so cascade models, where a
  slot's logit also changes the probabilities of the slots below it, get the right value. It is
  preferred to the empirical Fisher information (the sum of squared per-session scores). The
  observed information is the curvature at the estimate itself, while the empirical form matches
  it only in expectation over many sessions and is noisy for pairs with few impressions.
- A table with a prior adds the prior's curvature at the estimate (a Laplace approximation of
  the posterior), so MAP estimates get posterior standard errors.
- Only the diagonal is used: each row's variance is `1 / information`, ignoring the covariance
  with the model's other parameters (examination, continuation, the other role of the same pair).
- The delta method carries the logit's variance to a probability, `se(p) = p (1 - p) se(z)`,
  and to the relevance, `se(r)**2 = sum over roles of (dr/dz_role)**2 var(z_role)`, which for
  DBN's `r = alpha * sigma` combines attraction and satisfaction.

Rows never seen in the log (impressions 0) and rows whose information is not positive get NaN
standard errors.

NOTE: the diagonal ignores the cross term of a pair shown twice in one session and the covariance
between a pair's attraction and satisfaction in DBN. The errors of such pairs are approximate,
and the calibration test covers PBM only.

Example:

    stats = pair_statistics(model, train.batches(1024))
    best = rank_by_lower_bound(stats, confidence=0.95)[:10]
    print(stats["query_doc_id"][best], stats["relevance"][best], stats["relevance_se"][best])

`examination_standard_errors(model, log)` gives the standard errors of the examination
probabilities by rank, also from the observed Fisher information.

Some models have a table of examination logits: PBM's theta per rank, UBM's theta per rank and
previous click. The standard error of each logit is the square root of the diagonal of the
inverse of the observed information matrix -H. H is the Hessian of the training log's weighted
log-likelihood with respect to the examination logits. The delta method turns it into
the standard error of the probability: se(theta) = theta (1 - theta) se(logit).

NOTE: the Hessian holds every other parameter (attraction per pair) at its fitted value, so
these standard errors leave out the uncertainty of attraction and are smaller than those of the
joint model. They are meant for error bars of the examination curve, not for hypothesis tests.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from statistics import NormalDist

import jax
import jax.numpy as jnp
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from flax import nnx
from jax.flatten_util import ravel_pytree

from clickjax.data import ClickLog
from clickjax.parameters import EmbeddingLogits, RankLogits

__all__ = [
    "examination_standard_errors",
    "examination_table",
    "lower_confidence_bound",
    "pair_statistics",
    "pair_table_roles",
    "rank_by_lower_bound",
    "write_pair_statistics",
]

logger = logging.getLogger(__name__)


def pair_table_roles(model: nnx.Module) -> list[str]:
    """Return the names of the model's roles that are `EmbeddingLogits` tables over `query_doc_id`."""
    return [
        role
        for role, module in vars(model).items()
        if isinstance(module, EmbeddingLogits) and module.column == "query_doc_id"
    ]


class _Shifted:
    """A role module whose logits are moved by `offset`, so derivatives can be taken per slot."""

    def __init__(self, module, offset):
        self.module = module
        self.offset = offset

    def __call__(self, batch):
        return self.module(batch) + self.offset


def _shifted_model(graphdef, state, offsets: dict):
    model = nnx.merge(graphdef, state)
    for role, offset in offsets.items():
        object.__setattr__(model, role, _Shifted(getattr(model, role), offset))
    return model


def _information_function(graphdef, roles: tuple[str, ...]):
    """Build a jitted function `(state, batch) -> {role: [batch, positions]}` of observed information."""

    def weighted_log_likelihood(state, batch, offsets):
        model = _shifted_model(graphdef, state, offsets)
        weight = jnp.asarray(batch["mask"], jnp.float32)
        if "weight" in batch:
            weight = weight * jnp.asarray(batch["weight"], jnp.float32)[:, None]
        return jnp.sum(weight * model.log_likelihood(batch))

    @jax.jit
    def information(state, batch):
        shape = jnp.shape(batch["mask"])
        zeros = {role: jnp.zeros(shape, jnp.float32) for role in roles}
        result = {}
        for role in roles:

            def log_likelihood_of(offset, role=role):
                return weighted_log_likelihood(state, batch, {**zeros, role: offset})

            gradient = jax.grad(log_likelihood_of)

            # Sessions are independent, so a tangent of ones in column j gives, in column j of
            # the Hessian-vector product, the second derivative of each session's log-likelihood
            # by its own slot-j logit.
            def column_curvature(tangent):
                return jax.jvp(gradient, (zeros[role],), (tangent,))[1]

            tangents = jnp.eye(shape[1], dtype=jnp.float32)[:, None, :] * jnp.ones(shape, jnp.float32)[None]
            curvature = jax.vmap(column_curvature)(tangents)
            diagonal = jnp.sum(curvature * tangents, axis=0)
            result[role] = -diagonal
        return result

    return information


def _relevance_gradients(model: nnx.Module, roles: tuple[str, ...], rows: int) -> tuple[np.ndarray, dict]:
    """Compute the relevance of every row and its derivative by each role's logit, `[rows]` each."""
    ids = np.arange(rows, dtype=np.int32)[:, None]
    batch = {
        "query_doc_id": ids,
        "doc_id": ids,
        "query_doc_hash": ids,
        "position": np.ones_like(ids),
        "mask": np.ones_like(ids, dtype=np.uint8),
    }
    graphdef, state = nnx.split(model)

    def relevance(offsets):
        return _shifted_model(graphdef, state, offsets).relevance(batch)[:, 0]

    zeros = {role: jnp.zeros(ids.shape, jnp.float32) for role in roles}
    try:
        value = np.asarray(relevance(zeros), np.float64)
    except (KeyError, ValueError) as error:
        # The batch contains only pair ids, so a role that reads another column fails here.
        raise ValueError(
            f"computing the relevance of {type(model).__name__} from the pair tables alone failed ({error}); "
            "pair statistics need an EmbeddingLogits table over query_doc_id for every relevance role"
        ) from error
    derivatives = {}
    for role in roles:
        ones = {**{name: jnp.zeros(ids.shape, jnp.float32) for name in roles}, role: jnp.ones(ids.shape, jnp.float32)}
        _, tangent = jax.jvp(relevance, (zeros,), (ones,))
        derivatives[role] = np.asarray(tangent, np.float64)
    return value, derivatives


def pair_statistics(model: nnx.Module, batches: Iterable[dict]) -> dict[str, np.ndarray]:
    """Count every pair's impressions and clicks and estimate its probabilities with standard errors.

    Args:
      model: a click model whose per-pair roles are `EmbeddingLogits` tables over `query_doc_id`
        (the default modules of every model but GCTR and RCTR).
      batches: batch dicts with `query_doc_id`, `click`, `mask`, optionally `weight` (1 when
        missing), and the columns the model reads, such as `ClickLog.batches(1024)`. Use the log
        the model was trained on.

    Returns:
      Arrays of shape `[rows]`, one entry per table row. Row i is `query_doc_id == i`, so row 0
      is padding and row 1 out of vocabulary. The arrays are `query_doc_id` (int32),
      `impressions` and `clicks` (weighted sums over real results), `relevance` and
      `relevance_se`, and for each table role `{role}` (the probability) and `{role}_se`.
      Standard errors are NaN for rows never seen.

    Raises:
      ValueError: if the model has no pair tables, its tables differ in size, its relevance
        reads a role that is not a pair table, or a batch has an id outside the tables.
    """
    roles = tuple(pair_table_roles(model))
    if not roles:
        raise ValueError(
            f"{type(model).__name__} has no EmbeddingLogits table over query_doc_id, so it has no per-pair "
            "rows to report; pair statistics need attraction (or click-through rate) tables"
        )
    sizes = {role: getattr(model, role).rows for role in roles}
    rows = max(sizes.values())
    if len(set(sizes.values())) > 1:
        raise ValueError(f"the pair tables differ in size ({sizes}); pair statistics need one row per pair")

    impressions = np.zeros(rows, np.float64)
    clicks = np.zeros(rows, np.float64)
    information = {role: np.zeros(rows, np.float64) for role in roles}
    graphdef, state = nnx.split(model)
    information_of = _information_function(graphdef, roles)
    for batch in batches:
        ids = np.asarray(batch["query_doc_id"])
        real = np.asarray(batch["mask"]).astype(bool)
        if real.any() and (ids[real].min() < 0 or ids[real].max() >= rows):
            raise ValueError(
                f"query_doc_id contains values from {ids[real].min()} to {ids[real].max()}, but the model's "
                f"pair tables have {rows} rows; use the log and vocabulary the model was trained with"
            )
        weight = np.asarray(batch.get("weight", np.ones(len(ids))), np.float64)
        weight = np.broadcast_to(weight[:, None], ids.shape)[real]
        pair = ids[real]
        impressions += np.bincount(pair, weights=weight, minlength=rows)
        clicks += np.bincount(pair, weights=weight * np.asarray(batch["click"])[real], minlength=rows)
        for role, values in information_of(state, batch).items():
            information[role] += np.bincount(pair, weights=np.asarray(values, np.float64)[real], minlength=rows)

    seen = impressions > 0
    statistics = {
        "query_doc_id": np.arange(rows, dtype=np.int32),
        "impressions": impressions,
        "clicks": clicks,
    }
    variances = {}
    for role in roles:
        module = getattr(model, role)
        logits = np.asarray(module.logits[...], np.float64)
        total = information[role]
        if module.prior is not None:
            total = total + np.asarray(module.prior.curvature(jnp.asarray(logits)), np.float64)
        valid = seen & (total > 0)
        variance = np.full(rows, np.nan)
        variance[valid] = 1.0 / total[valid]
        variances[role] = variance
        probability = 1.0 / (1.0 + np.exp(-logits))
        statistics[role] = probability
        statistics[f"{role}_se"] = probability * (1 - probability) * np.sqrt(variance)

    relevance, derivatives = _relevance_gradients(model, roles, rows)
    statistics["relevance"] = relevance
    statistics["relevance_se"] = np.sqrt(sum(derivatives[role] ** 2 * variances[role] for role in roles))
    return statistics


def lower_confidence_bound(
    statistics: dict[str, np.ndarray], column: str = "relevance", confidence: float = 0.95
) -> np.ndarray:
    """Compute the one-sided lower confidence bound `estimate - z * se` of a column, at least 0.

    Args:
      statistics: the dict `pair_statistics` returns.
      column: the estimate, such as `relevance` or `attraction`; `{column}_se` must exist.
      confidence: the one-sided confidence level in (0, 1); z is its standard normal quantile
        (1.645 for 0.95).

    Returns:
      `[rows]` bounds, NaN where the standard error is NaN.
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if column not in statistics or f"{column}_se" not in statistics:
        names = sorted(name[: -len("_se")] for name in statistics if name.endswith("_se"))
        raise ValueError(f"no column {column!r} with a standard error; expected one of {', '.join(names)}")
    z = NormalDist().inv_cdf(confidence)
    return np.maximum(statistics[column] - z * statistics[f"{column}_se"], 0.0)


def rank_by_lower_bound(
    statistics: dict[str, np.ndarray], column: str = "relevance", confidence: float = 0.95
) -> np.ndarray:
    """Order the rows by their lower confidence bound, highest first, so that well-measured pairs win ties of luck.

    A pair clicked once in one impression has a high estimate but a wide interval, so it ranks
    below a pair with a slightly lower estimate measured over thousands of impressions. Rows
    with a NaN bound (never seen) come last.

    Returns:
      `[rows]` int64 row indices; `statistics["query_doc_id"][order]` are the ranked pairs.
    """
    bound = lower_confidence_bound(statistics, column, confidence)
    return np.argsort(np.where(np.isnan(bound), np.inf, -bound), kind="stable")


def write_pair_statistics(model: nnx.Module, batches: Iterable[dict], path: Path) -> None:
    """Compute `pair_statistics` and write them to a Parquet file, one row per table row but the padding row 0."""
    statistics = pair_statistics(model, batches)
    table = pa.table({name: values[1:] for name, values in statistics.items()})
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    logger.info("wrote the statistics of %d pairs to %s", table.num_rows, path)


def examination_table(model: nnx.Module) -> nnx.Param | None:
    """Return the parameter that contains the model's examination logits, or None if it has none.

    That is `examination.logits` of a `RankLogits` module or an `examination` parameter itself.
    """
    examination = getattr(model, "examination", None)
    if isinstance(examination, RankLogits):
        return examination.logits
    if isinstance(examination, nnx.Param):
        return examination
    return None


def _hessian(graphdef, flat_logits, unravel, rest, batch):
    def log_likelihood(values):
        model = nnx.merge(graphdef, unravel(values), rest)
        weights = batch["weight"][:, None] * batch["mask"].astype(jnp.float32)
        return jnp.sum(weights * model.log_likelihood(batch))

    return jax.hessian(log_likelihood)(flat_logits)


_jitted_hessian = jax.jit(_hessian, static_argnums=(0, 2))


def examination_standard_errors(model: nnx.Module, log: ClickLog, batch_size: int = 4096) -> np.ndarray | None:
    """Compute the standard error of each examination probability of `model` on `log`.

    The model is not changed.

    Args:
      model: a trained click model.
      log: the log the model was trained on.
      batch_size: sessions per Hessian evaluation.

    Returns:
      An array of the examination table's shape (`[positions + 1]` for PBM, row 0 unused), with
      NaN where the log has no information (such as a rank it never shows), or None for a model
      without an examination table.
    """
    table = examination_table(model)
    if table is None:
        return None
    # Split the examination logits from every other variable, and flatten them into one vector.
    graphdef, examination, rest = nnx.split(model, nnx.All(nnx.Param, nnx.PathContains("examination")), ...)
    flat_logits, unravel = ravel_pytree(examination)
    logits = np.asarray(table.get_value(), np.float64)
    size = logits.size
    if flat_logits.size != size:
        raise NotImplementedError(
            f"{type(model).__name__} has {flat_logits.size} examination parameters besides its table of {size}; "
            "standard errors need the table alone"
        )
    information = np.zeros((size, size))
    for batch in log.batches(batch_size):
        hessian = _jitted_hessian(graphdef, flat_logits, unravel, rest, batch)
        information -= np.asarray(hessian, np.float64)

    # Invert only the block of logits the log informs; the others (padding row 0, unseen ranks)
    # have no curvature and no standard error.
    informed = np.diag(information) > 1e-9
    variances = np.full(size, np.nan)
    if informed.any():
        block = information[np.ix_(informed, informed)]
        variances[informed] = np.diag(np.linalg.pinv(block))
    probability = 1.0 / (1.0 + np.exp(-logits.reshape(-1)))
    with np.errstate(invalid="ignore"):
        standard_error = probability * (1.0 - probability) * np.sqrt(variances)
    return standard_error.reshape(logits.shape)
