"""Evaluation metrics of click models: log-likelihood, (conditional) perplexity and calibration.

Definitions, each weighted by `weight` and restricted to real results (`mask` = 1):

- log-likelihood: the mean over results of ln P(c_k | c_1..c_{k-1}), natural log. For lists of equal
  length this equals the mean over sessions of the per-session mean.
- perplexity at rank r: 2 ** -(mean over sessions of log2 P(c_r)), with the unconditional click
  probability, which is exp(-(mean of ln P(c_r))). Overall perplexity is the mean over the ranks that
  occur in the data. 1 is a perfect model, 2 a coin flip.
- conditional perplexity: the same with P(c_r | c_1..c_{r-1}).
- calibration at rank r: the mean unconditional click probability P(c_r = 1) beside the observed
  click-through rate at rank r.
- expected calibration error (ECE): results are put into 10 bins of equal width by P(c = 1), and
  ECE = sum over bins of (bin weight / total weight) * |mean P(c = 1) in the bin - click rate in the
  bin|.

Ranks are the `position` column (the rank as displayed), so a rank that a log skipped has no
perplexity of its own and does not enter the overall mean.

Results whose query-document pair is out of vocabulary (`query_doc_id` 1, a pair unseen in
training) are counted. The `unseen` policy decides what happens to them: `"oov"` scores them with
the model's out-of-vocabulary parameter like any other result. `"skip"` leaves them out of every
metric, but the model still reads the whole session, so the clicks on a skipped result
still condition the probabilities of the results below it.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from clickjax.numerics import log1mexp
from clickjax.parameters import EmbeddingLogits

__all__ = [
    "CALIBRATION_BINS",
    "UNSEEN_POLICIES",
    "Metrics",
    "MetricSums",
    "evaluate",
    "metric_sums",
    "reads_vocabulary_ids",
]

# Policies for test results whose query-document pair was not in the training vocabulary.
UNSEEN_POLICIES = ("oov", "skip")

# Bins of equal width over [0, 1] for the expected calibration error.
CALIBRATION_BINS = 10

# Dense id columns that a vocabulary assigns; a model reading only `query_doc_hash` needs none.
_VOCABULARY_COLUMNS = ("query_id", "doc_id", "query_doc_id")


@dataclass(frozen=True)
class Metrics:
    """Metrics of a click model on one log.

    Per-rank lists are indexed by rank - 1 and hold `None` for a rank absent from the data.

    Attributes:
      click_rate_per_rank: the observed click-through rate at each rank.
      predicted_click_rate_per_rank: the mean unconditional click probability at each rank.
      expected_calibration_error: ECE over `CALIBRATION_BINS` bins of P(c = 1).
      calibration_bins: one dict per bin: `lower`, `upper`, `weight` (summed weight of its
        results), `predicted` (mean P(c = 1)) and `observed` (click rate), the last two `None` for
        an empty bin.
      unseen_policy: `"oov"` or `"skip"`, or `"none"` for a model that reads no vocabulary ids.
      unseen_results: weighted count of results whose pair is out of vocabulary.
      unseen_pairs: distinct out-of-vocabulary pairs, distinguished by `query_doc_hash`.
      results: weighted count of the results that entered the metrics (without skipped ones).
    """

    log_likelihood: float
    perplexity: float
    conditional_perplexity: float
    log_likelihood_per_rank: list[float | None]
    perplexity_per_rank: list[float | None]
    conditional_perplexity_per_rank: list[float | None]
    sessions: float
    results: float
    click_rate_per_rank: list[float | None] = field(default_factory=list)
    predicted_click_rate_per_rank: list[float | None] = field(default_factory=list)
    expected_calibration_error: float = math.nan
    calibration_bins: list[dict] = field(default_factory=list)
    unseen_policy: str = "oov"
    unseen_results: float = 0.0
    unseen_pairs: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class MetricSums:
    """Weighted sums over ranks from which `Metrics` are computed; index 0 collects padding.

    Attributes:
      weight: `[positions + 1]` sum of `weight` over scored results at each rank.
      conditional: `[positions + 1]` weighted sum of ln P(c_r | c_<r).
      unconditional: `[positions + 1]` weighted sum of ln P(c_r).
      sessions: sum of `weight` over sessions.
      clicks: `[positions + 1]` weighted number of clicks.
      predicted: `[positions + 1]` weighted sum of P(c_r = 1).
      bin_weight: `[CALIBRATION_BINS]` sum of `weight` by bin of P(c = 1).
      bin_predicted: `[CALIBRATION_BINS]` weighted sum of P(c = 1) by bin.
      bin_clicks: `[CALIBRATION_BINS]` weighted number of clicks by bin.
      unseen_results: weighted count of out-of-vocabulary results, skipped or not.
      unseen_hashes: the distinct `query_doc_hash` values of out-of-vocabulary results.
    """

    weight: np.ndarray
    conditional: np.ndarray
    unconditional: np.ndarray
    sessions: float
    clicks: np.ndarray | None = None
    predicted: np.ndarray | None = None
    bin_weight: np.ndarray | None = None
    bin_predicted: np.ndarray | None = None
    bin_clicks: np.ndarray | None = None
    unseen_results: float = 0.0
    unseen_hashes: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    unseen_policy: str = "oov"

    def __post_init__(self):
        positions = len(self.weight)
        for name, size in [
            ("clicks", positions), ("predicted", positions), ("bin_weight", CALIBRATION_BINS),
            ("bin_predicted", CALIBRATION_BINS), ("bin_clicks", CALIBRATION_BINS),
        ]:
            if getattr(self, name) is None:
                setattr(self, name, np.zeros(size, np.float64))

    def __add__(self, other: MetricSums) -> MetricSums:
        return MetricSums(
            self.weight + other.weight,
            self.conditional + other.conditional,
            self.unconditional + other.unconditional,
            self.sessions + other.sessions,
            self.clicks + other.clicks,
            self.predicted + other.predicted,
            self.bin_weight + other.bin_weight,
            self.bin_predicted + other.bin_predicted,
            self.bin_clicks + other.bin_clicks,
            self.unseen_results + other.unseen_results,
            np.union1d(self.unseen_hashes, other.unseen_hashes),
            self.unseen_policy,
        )

    def metrics(self) -> Metrics:
        """Turn the sums into metrics."""
        ranks = range(1, len(self.weight))
        present = [r for r in ranks if self.weight[r] > 0]
        total = float(self.weight[1:].sum())
        if not present:
            raise ValueError(
                "cannot compute metrics on a log with no results"
                + (" (every result was skipped as unseen in training)" if self.unseen_results else "")
            )

        def per_rank(values: np.ndarray, transform) -> list[float | None]:
            return [
                transform(values[r] / self.weight[r]) if self.weight[r] > 0 else None
                for r in ranks
            ]

        perplexity_per_rank = per_rank(self.unconditional, _perplexity)
        conditional_per_rank = per_rank(self.conditional, _perplexity)
        return Metrics(
            log_likelihood=float(self.conditional[1:].sum() / total),
            perplexity=float(np.mean([perplexity_per_rank[r - 1] for r in present])),
            conditional_perplexity=float(np.mean([conditional_per_rank[r - 1] for r in present])),
            log_likelihood_per_rank=per_rank(self.conditional, float),
            perplexity_per_rank=perplexity_per_rank,
            conditional_perplexity_per_rank=conditional_per_rank,
            sessions=float(self.sessions),
            results=total,
            click_rate_per_rank=per_rank(self.clicks, float),
            predicted_click_rate_per_rank=per_rank(self.predicted, float),
            expected_calibration_error=self._expected_calibration_error(),
            calibration_bins=self._calibration_bins(),
            unseen_policy=self.unseen_policy,
            unseen_results=float(self.unseen_results),
            unseen_pairs=int(len(self.unseen_hashes)),
        )

    def _expected_calibration_error(self) -> float:
        total = self.bin_weight.sum()
        filled = self.bin_weight > 0
        gaps = np.abs(self.bin_predicted[filled] - self.bin_clicks[filled]) / self.bin_weight[filled]
        return float((self.bin_weight[filled] * gaps).sum() / total)

    def _calibration_bins(self) -> list[dict]:
        bins = []
        for index in range(CALIBRATION_BINS):
            weight = float(self.bin_weight[index])
            bins.append({
                "lower": index / CALIBRATION_BINS,
                "upper": (index + 1) / CALIBRATION_BINS,
                "weight": weight,
                "predicted": float(self.bin_predicted[index] / weight) if weight > 0 else None,
                "observed": float(self.bin_clicks[index] / weight) if weight > 0 else None,
            })
        return bins


def _perplexity(mean_log_prob: float) -> float:
    # A diverged model can have a mean log-probability below -709, where exp overflows.
    return math.exp(-mean_log_prob) if mean_log_prob > -700 else math.inf


def reads_vocabulary_ids(model: nnx.Module) -> bool:
    """Tell whether any table of `model` is indexed by a dense id that a vocabulary assigns.

    A model whose per-pair tables read only `query_doc_hash` (compressed tables) has no
    out-of-vocabulary parameter and needs no vocabulary, so the `unseen` policy does not apply.
    Parameter modules other than `EmbeddingLogits` are assumed to read `query_doc_id`.
    """
    for _, module in nnx.iter_modules(model):
        if isinstance(module, EmbeddingLogits):
            if module.column in _VOCABULARY_COLUMNS:
                return True
        elif module is not model and type(module).__module__ != "clickjax.parameters":
            # NOTE: a custom parameter module might read vocabulary ids; counting it as one keeps
            # the unseen policy in force, which is the safe side.
            return True
    return False


def result_weights(batch: Mapping[str, jax.Array], skip_unseen: bool) -> jax.Array:
    """Compute `[batch, positions]` weights of the results that enter the metrics.

    The weight is the session `weight` at real results, 0 at padding, and 0 at out-of-vocabulary
    results when `skip_unseen` is true.
    """
    weights = batch["weight"][:, None] * batch["mask"].astype(jnp.float32)
    if skip_unseen:
        weights = jnp.where(batch["query_doc_id"] == 1, 0.0, weights)
    return weights


@functools.partial(nnx.jit, static_argnames=("skip_unseen",))
def _batch_sums(model, batch: Mapping[str, jax.Array], skip_unseen: bool):
    positions = batch["click"].shape[1]
    weights = result_weights(batch, skip_unseen)
    click = batch["click"].astype(bool)

    conditional = model.log_likelihood(batch)
    log_click = model.log_click_probs(batch)
    unconditional = jnp.where(click, log_click, log1mexp(log_click))
    probability = jnp.exp(log_click)

    # Sum each quantity by rank; padding lands in segment 0 with weight 0.
    segments = batch["position"].reshape(-1)

    def by_rank(values):
        return jax.ops.segment_sum(values.reshape(-1), segments, num_segments=positions + 1)

    # Bin b contains probabilities in [b / 10, (b + 1) / 10); a probability of exactly 1 joins the top bin.
    bins = jnp.clip(jnp.floor(probability * CALIBRATION_BINS).astype(jnp.int32), 0, CALIBRATION_BINS - 1)

    def by_bin(values):
        return jax.ops.segment_sum(values.reshape(-1), bins.reshape(-1), num_segments=CALIBRATION_BINS)

    weighted_clicks = weights * click
    weighted_probability = weights * probability
    real = batch["mask"] == 1
    unseen = real & (batch["query_doc_id"] == 1)
    return {
        "weight": by_rank(weights),
        "conditional": by_rank(weights * conditional),
        "unconditional": by_rank(jnp.where(weights > 0, weights * unconditional, 0.0)),
        "sessions": batch["weight"].sum(),
        "clicks": by_rank(weighted_clicks),
        "predicted": by_rank(weighted_probability),
        "bin_weight": by_bin(weights),
        "bin_predicted": by_bin(weighted_probability),
        "bin_clicks": by_bin(weighted_clicks),
        "unseen_results": jnp.sum(jnp.where(unseen, batch["weight"][:, None], 0.0)),
    }


def metric_sums(
    model: nnx.Module, batch: Mapping[str, np.ndarray], unseen: str = "oov"
) -> MetricSums:
    """Compute the weighted metric sums of one batch (jitted; the model is not changed).

    Args:
      model: a `clickjax.models.ClickModel`.
      batch: a dict with the batch contract's columns.
      unseen: `"oov"` or `"skip"`, the policy for out-of-vocabulary results (see the module
        docstring). It does not apply to a model that reads no vocabulary ids.
    """
    if unseen not in UNSEEN_POLICIES:
        raise ValueError(f"unknown unseen-pair policy {unseen!r}; expected one of {', '.join(UNSEEN_POLICIES)}")
    policy = unseen if reads_vocabulary_ids(model) else "none"
    batch = dict(batch)
    sums = jax.device_get(_batch_sums(model, batch, policy == "skip"))
    hashes = np.zeros(0, np.int32)
    # NOTE: a batch sharded over several processes cannot be read here, so its distinct unseen
    # pairs go uncounted (unseen_results, computed in the jitted sums, stays exact).
    columns = [batch[name] for name in ("mask", "query_doc_id", "query_doc_hash") if name in batch]
    if len(columns) == 3 and all(getattr(column, "is_fully_addressable", True) for column in columns):
        mask, pair_id, pair_hash = (np.asarray(column) for column in columns)
        hashes = np.unique(pair_hash[(mask == 1) & (pair_id == 1)])
    return MetricSums(
        weight=np.asarray(sums["weight"], np.float64),
        conditional=np.asarray(sums["conditional"], np.float64),
        unconditional=np.asarray(sums["unconditional"], np.float64),
        sessions=float(sums["sessions"]),
        clicks=np.asarray(sums["clicks"], np.float64),
        predicted=np.asarray(sums["predicted"], np.float64),
        bin_weight=np.asarray(sums["bin_weight"], np.float64),
        bin_predicted=np.asarray(sums["bin_predicted"], np.float64),
        bin_clicks=np.asarray(sums["bin_clicks"], np.float64),
        unseen_results=float(sums["unseen_results"]),
        unseen_hashes=hashes,
        unseen_policy=policy,
    )


def evaluate(
    model: nnx.Module, batches: Iterable[Mapping[str, np.ndarray]], unseen: str = "oov"
) -> Metrics:
    """Evaluate a click model on batches of sessions; evaluation never changes the model.

    Args:
      model: a `clickjax.models.ClickModel`.
      batches: dicts with the batch contract's columns; give every batch the same shape to avoid
        recompiling (`ClickLog.batches` does).
      unseen: `"oov"` scores results whose pair is out of vocabulary with the model's
        out-of-vocabulary parameter; `"skip"` leaves them out of the metrics. Both count them in
        `Metrics.unseen_results` and `Metrics.unseen_pairs`.

    Returns:
      The metrics over all batches.

    Raises:
      ValueError: no batches, no scored result, or an unknown `unseen` policy.
    """
    total = None
    for batch in batches:
        sums = metric_sums(model, batch, unseen)
        total = sums if total is None else total + sums
    if total is None:
        raise ValueError("cannot evaluate on an empty log: no batches were given")
    return total.metrics()
