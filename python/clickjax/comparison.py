"""Paired bootstrap confidence intervals for the difference between two models on the same test data.

Both models score the same sessions. The sessions are grouped into clusters by query (sessions
of one query are not independent), and each bootstrap replicate draws as many clusters as there
are, with replacement, and recomputes every metric for both models on the drawn clusters. The
interval for a difference (second model minus first) is the percentile interval of the
replicates' differences. Because both models see the same drawn clusters, the interval reflects
how the models differ on the same queries, which is narrower than comparing two separate
intervals.

A session whose query is out of vocabulary (`query_id` 1, a query unseen in training) is a
cluster of its own, because unseen queries share one id and cannot be distinguished.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from clickjax.metrics import UNSEEN_POLICIES, evaluate, reads_vocabulary_ids, result_weights
from clickjax.numerics import log1mexp
from clickjax.ranking import RankingMetrics

__all__ = ["Difference", "bootstrap_click_metrics", "bootstrap_ranking_metrics"]

# Replicates are drawn in chunks of at most this many (replicate, cluster) counts, bounding memory.
_CHUNK_CELLS = 4_000_000


@dataclass(frozen=True)
class Difference:
    """The difference of one metric between two models (second minus first) with its interval.

    Attributes:
      metric: the metric's name, as in `Metrics` or `RankingMetrics.to_dict`.
      first: the metric of the first model on the whole test data.
      second: the metric of the second model.
      difference: `second - first`.
      lower: the lower end of the percentile bootstrap interval of the difference.
      upper: the upper end of that interval.
      confidence: the interval's coverage, such as 0.95.
      samples: number of bootstrap replicates.
    """

    metric: str
    first: float
    second: float
    difference: float
    lower: float
    upper: float
    confidence: float
    samples: int

    @property
    def excludes_zero(self) -> bool:
        """Whether the interval lies entirely on one side of 0."""
        return self.lower > 0 or self.upper < 0


@functools.partial(nnx.jit, static_argnames=("skip_unseen",))
def _result_sums(model, batch, skip_unseen: bool):
    weights = result_weights(batch, skip_unseen)
    click = batch["click"].astype(bool)
    log_click = model.log_click_probs(batch)
    unconditional = jnp.where(click, log_click, log1mexp(log_click))
    return weights, weights * model.log_likelihood(batch), jnp.where(weights > 0, weights * unconditional, 0.0)


def _cluster_sums(model, batches, skip_unseen: bool, positions: int) -> tuple[np.ndarray, np.ndarray]:
    """Return cluster keys `[sessions]` and sums `[sessions, 3, positions + 1]` per session row."""
    keys, sums = [], []
    next_unseen = -1
    for batch in batches:
        batch = dict(batch)
        weights, conditional, unconditional = jax.device_get(_result_sums(model, batch, skip_unseen))
        position = np.asarray(batch["position"])
        rows = np.zeros((len(position), 3, positions + 1))
        row_index = np.broadcast_to(np.arange(len(position))[:, None], position.shape)
        for slot, values in enumerate((weights, conditional, unconditional)):
            np.add.at(rows[:, slot, :], (row_index, position), np.asarray(values, np.float64))

        # Padding rows (weight 0) carry no result and are dropped; unseen queries get unique keys.
        query = np.asarray(batch["query_id"]).astype(np.int64)
        keep = np.asarray(batch["weight"]) > 0
        unseen = keep & (query == 1)
        query[unseen] = np.arange(next_unseen, next_unseen - unseen.sum(), -1)
        next_unseen -= int(unseen.sum())
        keys.append(query[keep])
        sums.append(rows[keep])
    if not keys:
        raise ValueError("cannot compare models on an empty log: no batches were given")
    return np.concatenate(keys), np.concatenate(sums)


def _click_metrics_from_sums(sums: np.ndarray) -> dict[str, np.ndarray]:
    """Compute the click metrics from sums `[..., 3, positions + 1]` (weight, conditional, unconditional)."""
    weight, conditional, unconditional = sums[..., 0, 1:], sums[..., 1, 1:], sums[..., 2, 1:]
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        present = weight > 0
        perplexity = np.where(present, np.exp(-unconditional / weight), np.nan)
        conditional_perplexity = np.where(present, np.exp(-conditional / weight), np.nan)
        # The mean over the ranks present in the replicate; a replicate without results gets NaN.
        ranks = present.sum(-1)
        return {
            "log_likelihood": conditional.sum(-1) / weight.sum(-1),
            "perplexity": np.where(present, perplexity, 0.0).sum(-1) / ranks,
            "conditional_perplexity": np.where(present, conditional_perplexity, 0.0).sum(-1) / ranks,
        }


def _replicate_counts(clusters: int, samples: int, rng: np.random.Generator):
    chunk = max(1, _CHUNK_CELLS // max(clusters, 1))
    for start in range(0, samples, chunk):
        size = min(chunk, samples - start)
        yield rng.multinomial(clusters, np.full(clusters, 1.0 / clusters), size=size).astype(np.float64)


def _interval(values: np.ndarray, confidence: float) -> tuple[float, float]:
    tail = (1.0 - confidence) / 2.0 * 100.0
    finite = values[np.isfinite(values)]
    if len(finite) == 0:
        return float("nan"), float("nan")
    low, high = np.percentile(finite, [tail, 100.0 - tail])
    return float(low), float(high)


def _check(samples: int, confidence: float) -> None:
    if samples < 1:
        raise ValueError(f"the number of bootstrap samples must be at least 1, got {samples}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")


def bootstrap_click_metrics(
    first: nnx.Module,
    second: nnx.Module,
    batches: Iterable[Mapping[str, np.ndarray]],
    *,
    second_batches: Iterable[Mapping[str, np.ndarray]] | None = None,
    samples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    unseen: str = "oov",
) -> list[Difference]:
    """Compare log-likelihood, perplexity and conditional perplexity of two models on the same log.

    Args:
      first: a click model.
      second: the click model compared with `first`; differences are `second` minus `first`.
      batches: the test log's batches (materialised here, so any iterable works).
      second_batches: the same sessions in the same order, read with the second model's
        vocabulary, when the two models were trained on different logs; default: `batches`.
        Clusters follow the query ids of `batches`.
      samples: bootstrap replicates.
      confidence: coverage of the percentile intervals.
      seed: seed of the resampling.
      unseen: the policy for out-of-vocabulary results, applied to each model that reads
        vocabulary ids (see `clickjax.metrics`).

    Returns:
      One `Difference` per metric, second model minus first. A higher log-likelihood and a lower
      perplexity are better.
    """
    _check(samples, confidence)
    if unseen not in UNSEEN_POLICIES:
        raise ValueError(f"unknown unseen-pair policy {unseen!r}; expected one of {', '.join(UNSEEN_POLICIES)}")
    batches = list(batches)
    second_batches = batches if second_batches is None else list(second_batches)
    if not batches:
        raise ValueError("cannot compare models on an empty log: no batches were given")
    positions = max(first.positions, second.positions, int(max(np.max(b["position"]) for b in batches)))

    per_model = []
    cluster_keys = []
    for model, model_batches in ((first, batches), (second, second_batches)):
        skip = unseen == "skip" and reads_vocabulary_ids(model)
        keys, rows = _cluster_sums(model, model_batches, skip, positions)
        per_model.append(rows)
        cluster_keys.append(keys)
    if len(cluster_keys[0]) != len(cluster_keys[1]):
        raise ValueError(
            f"the two logs have {len(cluster_keys[0])} and {len(cluster_keys[1])} sessions; pass the same "
            "sessions in the same order to both models"
        )
    keys = cluster_keys[0]
    _, cluster_index = np.unique(keys, return_inverse=True)
    clusters = int(cluster_index.max()) + 1
    stacked = []
    for rows in per_model:
        flat = rows.reshape(len(rows), -1)
        cluster_sums = np.zeros((clusters, flat.shape[1]))
        np.add.at(cluster_sums, cluster_index, flat)
        stacked.append(cluster_sums)

    # The point estimates come from the same code path as `clickjax.metrics.evaluate`.
    point = [evaluate(first, batches, unseen), evaluate(second, second_batches, unseen)]
    names = ("log_likelihood", "perplexity", "conditional_perplexity")
    replicates = {name: [] for name in names}
    rng = np.random.default_rng(seed)
    for counts in _replicate_counts(clusters, samples, rng):
        values = [_click_metrics_from_sums((counts @ sums).reshape(len(counts), 3, -1)) for sums in stacked]
        for name in names:
            replicates[name].append(values[1][name] - values[0][name])

    differences = []
    for name in names:
        a, b = getattr(point[0], name), getattr(point[1], name)
        lower, upper = _interval(np.concatenate(replicates[name]), confidence)
        differences.append(Difference(name, a, b, b - a, lower, upper, confidence, samples))
    return differences


def bootstrap_ranking_metrics(
    first: RankingMetrics,
    second: RankingMetrics,
    *,
    samples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    metrics: Sequence[str] | None = None,
) -> list[Difference]:
    """Compare the ranking metrics of two models on the same annotated queries by resampling queries.

    Args:
      first: `clickjax.ranking.ranking_metrics` of the first model.
      second: those of the second model on the same batches with the same unseen policy, so
        that the per-query values line up.
      samples: bootstrap replicates.
      confidence: coverage of the percentile intervals.
      seed: seed of the resampling.
      metrics: names such as `"ndcg@10"`; default: every DCG, nDCG and MRR cutoff.

    Raises:
      ValueError: the two results cover different queries.
    """
    _check(samples, confidence)
    weight = first.per_query["weight"]
    if len(weight) != len(second.per_query["weight"]):
        raise ValueError(
            f"the two models ranked {len(weight)} and {len(second.per_query['weight'])} queries; compare "
            "them on the same annotation data with the same unseen policy"
        )
    names = metrics or [name for name in first.per_query if name != "weight"]
    rng = np.random.default_rng(seed)
    replicates = {name: [] for name in names}
    for counts in _replicate_counts(len(weight), samples, rng):
        for name in names:
            means = []
            for result in (first, second):
                values = result.per_query[name]
                defined = ~np.isnan(values)
                drawn = counts[:, defined] * weight[defined]
                with np.errstate(invalid="ignore", divide="ignore"):
                    means.append((drawn @ values[defined]) / drawn.sum(axis=1))
            replicates[name].append(means[1] - means[0])

    differences = []
    for name in names:
        a, b = first.to_dict()[name], second.to_dict()[name]
        lower, upper = _interval(np.concatenate(replicates[name]), confidence)
        differences.append(Difference(name, a, b, b - a, lower, upper, confidence, samples))
    return differences
