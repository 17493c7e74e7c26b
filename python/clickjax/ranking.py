"""Ranking quality of a click model's relevance estimates on expert-annotated result lists.

An annotation batch contains one query per row with the results to rank and their expert `label`
(`[batch, positions]` int32, -1 where a result has no label). The model's `relevance` scores each
result, the results are ranked by descending score, and for k in `DEFAULT_CUTOFFS`:

- DCG@k = sum over ranks i <= k of (2^label_i - 1) / log2(i + 1);
- nDCG@k = DCG@k / IDCG@k, where IDCG@k is the DCG@k of the results sorted by label. A query
  whose labels are all 0 has IDCG 0 and no nDCG; it is left out of the nDCG mean and counted;
- MRR@k = 1 / (rank of the first result with label >= `threshold`) if that rank is <= k, else 0.

Each metric is the mean over queries, weighted by the row `weight`. Results with label -1, and
padding, are not ranked.

Ties: results with exactly the same predicted relevance (such as several pairs unseen in
training, which all share the out-of-vocabulary parameter) are ranked in every order with equal
probability, and each metric is its expected value over those orders. The listed order of the
file, which may carry the production ranker's judgement, never breaks a tie.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from math import comb

import jax
import numpy as np
from flax import nnx

from clickjax.metrics import UNSEEN_POLICIES, reads_vocabulary_ids

__all__ = [
    "DEFAULT_CUTOFFS",
    "RankingMetrics",
    "expected_ranking_metrics",
    "ranking_metrics",
]

DEFAULT_CUTOFFS = (1, 3, 5, 10)


@dataclass(frozen=True)
class RankingMetrics:
    """Ranking metrics of relevance estimates, averaged over queries.

    Attributes:
      dcg: cutoff k -> the weighted mean of DCG@k over queries.
      ndcg: cutoff k -> the mean of nDCG@k over queries that have a relevant result.
      mrr: cutoff k -> the weighted mean of MRR@k over queries.
      queries: weighted number of queries with at least one ranked result.
      queries_without_relevant: weighted number of queries whose labels are all 0 (no nDCG).
      threshold: the smallest label that counts as relevant for MRR.
      unseen_policy: `"oov"`, `"skip"`, or `"none"` for a model that reads no vocabulary ids.
      unseen_results: number of labelled results whose pair is out of vocabulary.
      per_query: `dcg@k`, `ndcg@k` (NaN without relevant results), `mrr@k` and `weight`, each
        `[queries]`, for bootstrap comparisons; left out of `to_dict`.
    """

    dcg: dict[int, float]
    ndcg: dict[int, float]
    mrr: dict[int, float]
    queries: float
    queries_without_relevant: float
    threshold: int
    unseen_policy: str
    unseen_results: int
    per_query: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict:
        values = {}
        for name, table in [("dcg", self.dcg), ("ndcg", self.ndcg), ("mrr", self.mrr)]:
            for k, value in table.items():
                values[f"{name}@{k}"] = value
        return {
            **values,
            "queries": self.queries,
            "queries_without_relevant": self.queries_without_relevant,
            "threshold": self.threshold,
            "unseen_policy": self.unseen_policy,
            "unseen_results": self.unseen_results,
        }


def expected_ranking_metrics(
    scores: Sequence[float], labels: Sequence[int], cutoffs: Sequence[int] = DEFAULT_CUTOFFS, threshold: int = 1
) -> dict[str, float]:
    """Compute DCG@k, nDCG@k and MRR@k of one query, averaged over the orders of tied scores.

    Args:
      scores: `[results]` predicted relevance; a higher score ranks first.
      labels: `[results]` labels, non-negative integers.
      cutoffs: the values of k.
      threshold: the smallest label that counts as relevant for MRR.

    Returns:
      `dcg@k`, `ndcg@k` (NaN when every label is 0) and `mrr@k` for each k.
    """
    scores = np.asarray(scores, np.float64)
    labels = np.asarray(labels, np.int64)
    gains = np.exp2(labels.astype(np.float64)) - 1.0
    order = np.argsort(-scores, kind="stable")
    scores, gains, labels = scores[order], gains[order], labels[order]
    ranks = np.arange(1, len(scores) + 1)
    discounts = 1.0 / np.log2(ranks + 1.0)

    # A group is a run of equal scores at ranks start..end (1-based). A uniformly random order
    # within it gives each of its results the mean of the group's discounts.
    starts = np.flatnonzero(np.r_[True, scores[1:] != scores[:-1]])
    ends = np.r_[starts[1:], len(scores)]
    ideal = np.sort(gains)[::-1]

    result = {}
    for k in cutoffs:
        cut = np.where(ranks <= k, discounts, 0.0)
        dcg = sum(gains[a:b].sum() * cut[a:b].mean() for a, b in zip(starts, ends))
        idcg = float((ideal * cut).sum())
        result[f"dcg@{k}"] = float(dcg)
        result[f"ndcg@{k}"] = float(dcg / idcg) if idcg > 0 else float("nan")
        result[f"mrr@{k}"] = _expected_reciprocal_rank(labels >= threshold, starts, ends, k)
    return result


def _expected_reciprocal_rank(relevant: np.ndarray, starts, ends, k: int) -> float:
    for a, b in zip(starts, ends):
        size = b - a
        hits = int(relevant[a:b].sum())
        if hits == 0:
            continue
        # The first relevant result of the group sits at offset j (1-based) with probability
        # C(size - j, hits - 1) / C(size, hits), because the other hits - 1 fill places after it.
        expected = 0.0
        for j in range(1, size - hits + 2):
            rank = a + j
            if rank <= k:
                expected += comb(size - j, hits - 1) / comb(size, hits) / rank
        return expected
    return 0.0


@nnx.jit
def _relevance(model, batch):
    return model.relevance(batch)


def ranking_metrics(
    model: nnx.Module,
    batches: Iterable[Mapping[str, np.ndarray]],
    *,
    cutoffs: Sequence[int] = DEFAULT_CUTOFFS,
    threshold: int = 1,
    unseen: str = "oov",
) -> RankingMetrics:
    """Rank each annotated query's results by the model's `relevance` and average the metrics.

    Evaluation never changes the model.

    Args:
      model: a click model with a per-pair relevance (not GCTR or RCTR).
      batches: annotation batches with `label` `[batch, positions]` int32 besides the batch
        contract's columns, such as those of the `baidu-annotation` reader.
      cutoffs: the values of k, each at least 1.
      threshold: the smallest label that counts as relevant for MRR.
      unseen: `"oov"` ranks out-of-vocabulary results by the out-of-vocabulary parameter;
        `"skip"` leaves them out of the ranking.

    Raises:
      ValueError: no batch has a `label` column or a labelled result, a bad cutoff, or an
        unknown `unseen` policy.
    """
    if unseen not in UNSEEN_POLICIES:
        raise ValueError(f"unknown unseen-pair policy {unseen!r}; expected one of {', '.join(UNSEEN_POLICIES)}")
    if not cutoffs or min(cutoffs) < 1:
        raise ValueError(f"cutoffs must be at least 1, got {list(cutoffs)}")
    policy = unseen if reads_vocabulary_ids(model) else "none"
    rows: dict[str, list[float]] = {}
    weights: list[float] = []
    unseen_results = 0

    for batch in batches:
        if "label" not in batch:
            raise ValueError(
                "the batch has no label column; ranking metrics need expert labels, such as an "
                "annotation file read with --format baidu-annotation"
            )
        columns = {name: np.asarray(value) for name, value in batch.items()}
        scores = np.asarray(jax.device_get(_relevance(model, dict(batch))))
        ranked = (columns["mask"] == 1) & (columns["label"] >= 0)
        unseen_slots = ranked & (columns["query_doc_id"] == 1)
        unseen_results += int(unseen_slots.sum())
        if policy == "skip":
            ranked &= ~unseen_slots
        for row in np.flatnonzero(ranked.any(axis=1)):
            slots = ranked[row]
            values = expected_ranking_metrics(scores[row, slots], columns["label"][row, slots], cutoffs, threshold)
            for name, value in values.items():
                rows.setdefault(name, []).append(value)
            weights.append(float(columns["weight"][row]))

    if not weights:
        raise ValueError("no labelled result to rank: every result is padding, unlabelled (label -1) or skipped")
    weight = np.asarray(weights)
    per_query = {name: np.asarray(values) for name, values in rows.items()}
    per_query["weight"] = weight

    def mean(name: str) -> float:
        values = per_query[name]
        defined = ~np.isnan(values)
        total = weight[defined].sum()
        return float((values[defined] * weight[defined]).sum() / total) if total > 0 else float("nan")

    return RankingMetrics(
        dcg={k: mean(f"dcg@{k}") for k in cutoffs},
        ndcg={k: mean(f"ndcg@{k}") for k in cutoffs},
        mrr={k: mean(f"mrr@{k}") for k in cutoffs},
        queries=float(weight.sum()),
        queries_without_relevant=float(weight[np.isnan(per_query[f"ndcg@{cutoffs[0]}"])].sum()),
        threshold=threshold,
        unseen_policy=policy,
        unseen_results=unseen_results,
        per_query=per_query,
    )
