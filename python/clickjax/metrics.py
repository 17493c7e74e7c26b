"""Evaluation metrics of click models: log-likelihood and (conditional) perplexity, overall and per rank.

Definitions, each weighted by `weight` and restricted to real results (`mask` = 1):

- log-likelihood: the mean over results of ln P(c_k | c_1..c_{k-1}), natural log. For lists of equal
  length this equals the mean over sessions of the per-session mean.
- perplexity at rank r: 2 ** -(mean over sessions of log2 P(c_r)), with the unconditional click
  probability, which is exp(-(mean of ln P(c_r))). Overall perplexity is the mean over the ranks that
  occur in the data. 1 is a perfect model, 2 a coin flip.
- conditional perplexity: the same with P(c_r | c_1..c_{r-1}).

Ranks are the `position` column (the rank as displayed), so a rank that a log skipped has no
perplexity of its own and does not enter the overall mean.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from clickjax.numerics import log1mexp

__all__ = ["Metrics", "MetricSums", "evaluate", "metric_sums"]


@dataclass(frozen=True)
class Metrics:
    """Metrics of a click model on one log.

    Per-rank lists are indexed by rank - 1 and hold `None` for a rank absent from the data.
    """

    log_likelihood: float
    perplexity: float
    conditional_perplexity: float
    log_likelihood_per_rank: list[float | None]
    perplexity_per_rank: list[float | None]
    conditional_perplexity_per_rank: list[float | None]
    sessions: float
    results: float

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class MetricSums:
    """Weighted sums over ranks from which `Metrics` are computed; index 0 collects padding.

    Attributes:
      weight: `[positions + 1]` sum of `weight` over real results at each rank.
      conditional: `[positions + 1]` weighted sum of ln P(c_r | c_<r).
      unconditional: `[positions + 1]` weighted sum of ln P(c_r).
      sessions: sum of `weight` over sessions.
    """

    weight: np.ndarray
    conditional: np.ndarray
    unconditional: np.ndarray
    sessions: float

    def __add__(self, other: MetricSums) -> MetricSums:
        return MetricSums(
            self.weight + other.weight,
            self.conditional + other.conditional,
            self.unconditional + other.unconditional,
            self.sessions + other.sessions,
        )

    def metrics(self) -> Metrics:
        """Turn the sums into metrics."""
        ranks = range(1, len(self.weight))
        present = [r for r in ranks if self.weight[r] > 0]
        total = float(self.weight[1:].sum())
        if not present:
            raise ValueError("cannot compute metrics on a log with no results")

        def per_rank(values: np.ndarray, transform) -> list[float | None]:
            return [
                transform(values[r] / self.weight[r]) if self.weight[r] > 0 else None
                for r in ranks
            ]

        def perplexity(mean_log_prob: float) -> float:
            # A diverged model can have a mean log-probability below -709, where exp overflows.
            return math.exp(-mean_log_prob) if mean_log_prob > -700 else math.inf

        perplexity_per_rank = per_rank(self.unconditional, perplexity)
        conditional_per_rank = per_rank(self.conditional, perplexity)
        return Metrics(
            log_likelihood=float(self.conditional[1:].sum() / total),
            perplexity=float(np.mean([perplexity_per_rank[r - 1] for r in present])),
            conditional_perplexity=float(np.mean([conditional_per_rank[r - 1] for r in present])),
            log_likelihood_per_rank=per_rank(self.conditional, float),
            perplexity_per_rank=perplexity_per_rank,
            conditional_perplexity_per_rank=conditional_per_rank,
            sessions=float(self.sessions),
            results=total,
        )


@nnx.jit
def _batch_sums(model, batch: Mapping[str, jax.Array]):
    positions = batch["click"].shape[1]
    weights = batch["weight"][:, None] * batch["mask"].astype(jnp.float32)
    click = batch["click"].astype(bool)

    conditional = model.log_likelihood(batch)
    log_click = model.log_click_probs(batch)
    unconditional = jnp.where(click, log_click, log1mexp(log_click))

    # Sum each quantity by rank; padding lands in segment 0 with weight 0.
    segments = batch["position"].reshape(-1)

    def by_rank(values):
        return jax.ops.segment_sum(values.reshape(-1), segments, num_segments=positions + 1)

    return (
        by_rank(weights),
        by_rank(weights * conditional),
        by_rank(jnp.where(weights > 0, weights * unconditional, 0.0)),
        batch["weight"].sum(),
    )


def metric_sums(model: nnx.Module, batch: Mapping[str, np.ndarray]) -> MetricSums:
    """Compute the weighted metric sums of one batch (jitted; the model is not changed)."""
    weight, conditional, unconditional, sessions = _batch_sums(model, dict(batch))
    return MetricSums(
        np.asarray(weight, np.float64),
        np.asarray(conditional, np.float64),
        np.asarray(unconditional, np.float64),
        float(sessions),
    )


def evaluate(model: nnx.Module, batches: Iterable[Mapping[str, np.ndarray]]) -> Metrics:
    """Evaluate a click model on batches of sessions; evaluation never changes the model.

    Args:
      model: a `clickjax.models.ClickModel`.
      batches: dicts with the batch contract's columns; give every batch the same shape to avoid
        recompiling (`ClickLog.batches` does).

    Returns:
      The metrics over all batches.
    """
    total = None
    for batch in batches:
        sums = metric_sums(model, batch)
        total = sums if total is None else total + sums
    if total is None:
        raise ValueError("cannot evaluate on an empty log: no batches were given")
    return total.metrics()
