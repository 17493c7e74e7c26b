"""Prior distributions on per-pair logits, which turn maximum-likelihood training into a MAP estimate.

A table module built with `prior=` gets a `penalty()` method: the negative log prior density of its
rows, summed, up to a constant. A trainer adds `penalty / N` to the mean loss per result, where N
is the weighted number of real results in the training log, so that the objective is the
negative log-posterior divided by N.

- `L2Prior(strength)`: a Gaussian prior on each logit, `0.5 * strength * (logit - mean)**2`.
- `BetaPrior(a, b)`: a Beta(a, b) prior on each probability p = sigmoid(logit),
  `-(a - 1) log p - (b - 1) log(1 - p)`. For a pair seen in n impressions with c clicks, where
  examination is certain, the MAP estimate is `(c + a - 1) / (n + a + b - 2)`: the prior adds
  `a - 1` clicks and `b - 1` skips.

Example:

    >>> from clickjax.priors import BetaPrior
    >>> prior = BetaPrior(2.0, 8.0)
    >>> round(prior.mode, 3)
    0.125
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp

__all__ = ["BetaPrior", "L2Prior", "Prior", "prior_from_config"]


@dataclass(frozen=True)
class L2Prior:
    """A Gaussian prior N(mean, 1 / strength) on each logit, the L2 penalty of ridge regression.

    Args:
      strength: the precision of the prior, `1 / variance` in logit units; larger pulls harder.
      mean: the logit the prior pulls towards. Compressed tables store deviations from a learned
        bias and apply the prior to those deviations, so they reject a `mean` other than 0.
    """

    strength: float
    mean: float = 0.0

    def __post_init__(self):
        if not (math.isfinite(self.strength) and self.strength > 0):
            raise ValueError(f"L2Prior strength must be a positive finite number, got {self.strength}")
        if not math.isfinite(self.mean):
            raise ValueError(f"L2Prior mean must be a finite logit, got {self.mean}")

    def negative_log_density(self, logits: jax.Array) -> jax.Array:
        """Compute `0.5 * strength * (logits - mean)**2` elementwise."""
        return 0.5 * self.strength * jnp.square(logits - self.mean)

    def curvature(self, logits: jax.Array) -> jax.Array:
        """Compute the second derivative of `negative_log_density` with respect to each logit."""
        return jnp.full_like(logits, self.strength)

    def config(self) -> dict:
        """Return the constructor arguments as a JSON-ready dict."""
        return {"type": "l2", "strength": self.strength, "mean": self.mean}


@dataclass(frozen=True)
class BetaPrior:
    """A Beta(a, b) prior on each probability `sigmoid(logit)`.

    Both shape parameters must be at least 1, so the density is bounded and the MAP estimate
    exists; Beta(1, 1) is flat and changes nothing.

    Args:
      a: the first shape parameter, one more than the pseudo-clicks the prior adds.
      b: the second shape parameter, one more than the pseudo-skips the prior adds.
    """

    a: float
    b: float

    def __post_init__(self):
        for name in ("a", "b"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 1):
                raise ValueError(
                    f"BetaPrior {name} must be a finite number of at least 1, got {value}; with a "
                    "shape parameter below 1 the density is unbounded and the MAP estimate does not exist"
                )

    @property
    def mode(self) -> float:
        """The probability the prior pulls towards, `(a - 1) / (a + b - 2)` (0.5 for Beta(1, 1))."""
        if self.a + self.b == 2:
            return 0.5
        return (self.a - 1) / (self.a + self.b - 2)

    def negative_log_density(self, logits: jax.Array) -> jax.Array:
        """Compute `-(a - 1) log sigmoid(logits) - (b - 1) log sigmoid(-logits)` elementwise."""
        return -(self.a - 1) * jax.nn.log_sigmoid(logits) - (self.b - 1) * jax.nn.log_sigmoid(-logits)

    def curvature(self, logits: jax.Array) -> jax.Array:
        """Compute the second derivative of `negative_log_density`, `(a + b - 2) p (1 - p)`."""
        p = jax.nn.sigmoid(logits)
        return (self.a + self.b - 2) * p * (1 - p)

    def config(self) -> dict:
        """Return the constructor arguments as a JSON-ready dict."""
        return {"type": "beta", "a": self.a, "b": self.b}


Prior = L2Prior | BetaPrior


def prior_from_config(config: dict | None) -> Prior | None:
    """Rebuild a prior from the dict its `config()` returned, or return None for None."""
    if config is None:
        return None
    kind = config.get("type")
    arguments = {name: value for name, value in config.items() if name != "type"}
    if kind == "l2":
        return L2Prior(**arguments)
    if kind == "beta":
        return BetaPrior(**arguments)
    raise ValueError(f"unknown prior type {kind!r}; expected 'l2' or 'beta'")


def check_prior(prior) -> None:
    """Raise TypeError unless `prior` is None, an `L2Prior` or a `BetaPrior`."""
    if prior is not None and not isinstance(prior, (L2Prior, BetaPrior)):
        raise TypeError(f"prior must be an L2Prior, a BetaPrior or None, got {type(prior).__name__}")
