"""The click-through-rate models (GCTR, RCTR, DCTR): every result is clicked independently with one probability.

Assumptions: the clicks of a session are independent, and the click probability of a slot is

    GCTR:  P(c_k = 1) = rho                 (one global parameter),
    RCTR:  P(c_k = 1) = rho_{r_k}           (one parameter per displayed rank r_k),
    DCTR:  P(c_k = 1) = rho_{qd_k}          (one parameter per query-document pair).

Because the clicks are independent, the conditional click probability equals the unconditional
one. These models are the baselines the other click models must beat: GCTR is the overall
click-through rate, RCTR the click-through rate by rank and DCTR the click-through rate of the
pair, each the maximum-likelihood estimate when fitted to convergence. Only DCTR has a
per-document parameter, so only DCTR gives a relevance estimate.

Example:

    >>> import numpy as np
    >>> from flax import nnx
    >>> from clickjax.models import RankClickThroughRateModel
    >>> model = RankClickThroughRateModel(positions=3, query_doc_pairs=6, rngs=nnx.Rngs(0))
    >>> model.parameter_summary()
    {'click_through_rate_by_rank': [0.5, 0.5, 0.5]}
"""

import jax
import jax.numpy as jnp
from flax import nnx

from clickjax.models.base import ClickModel, draw_bernoulli
from clickjax.parameters import EmbeddingLogits, GlobalLogit, RankLogits

__all__ = [
    "DCTR",
    "GCTR",
    "RCTR",
    "DocumentClickThroughRateModel",
    "GlobalClickThroughRateModel",
    "RankClickThroughRateModel",
]


class _ClickThroughRateModel(ClickModel):
    """Shared code of the three click-through-rate models, which differ only in the default module."""

    def __init__(
        self,
        positions: int,
        query_doc_pairs: int,
        *,
        rngs: nnx.Rngs | None = None,
        param_dtype: jnp.dtype = jnp.float32,
        click_through_rate: nnx.Module | None = None,
    ):
        self._set_sizes(positions, query_doc_pairs)
        if click_through_rate is None:
            click_through_rate = self._default_module(positions, query_doc_pairs, param_dtype)
        self.click_through_rate = click_through_rate

    @staticmethod
    def _default_module(positions: int, query_doc_pairs: int, param_dtype: jnp.dtype) -> nnx.Module:
        raise NotImplementedError

    def _log_click_probs(self, batch: dict) -> jax.Array:
        return jax.nn.log_sigmoid(self.click_through_rate(batch))

    def _conditional_log_probs(self, batch: dict) -> tuple[jax.Array, jax.Array]:
        logits = self.click_through_rate(batch)
        return jax.nn.log_sigmoid(logits), jax.nn.log_sigmoid(-logits)

    def _sample(self, batch: dict, key: jax.Array) -> dict[str, jax.Array]:
        return {"click": draw_bernoulli(key, self.click_through_rate(batch))}

    def _relevance(self, batch: dict) -> jax.Array:
        raise NotImplementedError(
            f"{type(self).__name__} has no per-document parameter, so it has no relevance estimate. "
            "Use a model with per-pair parameters, such as DocumentClickThroughRateModel (dctr)"
        )


class GlobalClickThroughRateModel(_ClickThroughRateModel):
    """The global click-through-rate model: one click probability for every result.

    `sample` returns `click` only. `relevance` raises NotImplementedError, because the model
    has no per-document parameter.

    Args:
      positions: the page length.
      query_doc_pairs: the number of real query-document pairs plus 2. The model has no
        per-pair table, but the argument keeps one constructor signature across models.
      rngs: random streams. The default parameter starts at logit 0 and draws nothing, but the
        argument keeps one constructor signature across models whose parameters are random.
      param_dtype: dtype of the parameter.
      click_through_rate: a module `batch -> [batch, positions]` click logits that replaces
        the default `GlobalLogit`.
    """

    @staticmethod
    def _default_module(positions: int, query_doc_pairs: int, param_dtype: jnp.dtype) -> nnx.Module:
        return GlobalLogit(param_dtype=param_dtype)

    def parameter_summary(self) -> dict:
        """Return the click probability.

        Returns:
          `{"click_through_rate": rho}`.

        Raises:
          NotImplementedError: if the click-through rate is not a `GlobalLogit`.
        """
        if not isinstance(self.click_through_rate, GlobalLogit):
            raise NotImplementedError(
                f"parameter_summary needs a GlobalLogit click_through_rate, got {type(self.click_through_rate).__name__}"
            )
        return {"click_through_rate": float(jax.nn.sigmoid(self.click_through_rate.logit[...]))}


class RankClickThroughRateModel(_ClickThroughRateModel):
    """The rank click-through-rate model: one click probability per displayed rank.

    `sample` returns `click` only. `relevance` raises NotImplementedError, because the model
    has no per-document parameter.

    Args:
      positions: the page length, so the model has one parameter per rank 1..positions.
      query_doc_pairs: the number of real query-document pairs plus 2. The model has no
        per-pair table, but the argument keeps one constructor signature across models.
      rngs: random streams. The default parameters start at logit 0 and draw nothing, but the
        argument keeps one constructor signature across models whose parameters are random.
      param_dtype: dtype of the parameters.
      click_through_rate: a module `batch -> [batch, positions]` click logits that replaces
        the default `RankLogits`.
    """

    @staticmethod
    def _default_module(positions: int, query_doc_pairs: int, param_dtype: jnp.dtype) -> nnx.Module:
        return RankLogits(positions, param_dtype=param_dtype)

    def parameter_summary(self) -> dict:
        """Return the click probability of each rank.

        Returns:
          `{"click_through_rate_by_rank": [rho_1, ..., rho_positions]}`.

        Raises:
          NotImplementedError: if the click-through rate is not a `RankLogits` table.
        """
        if not isinstance(self.click_through_rate, RankLogits):
            raise NotImplementedError(
                f"parameter_summary needs a RankLogits click_through_rate, got {type(self.click_through_rate).__name__}"
            )
        rates = jax.nn.sigmoid(self.click_through_rate.logits[...][1:])
        return {"click_through_rate_by_rank": [float(value) for value in rates]}


class DocumentClickThroughRateModel(_ClickThroughRateModel):
    """The document click-through-rate model: one click probability per query-document pair.

    `sample` returns `click` and `attraction`, which equals `click` because the model treats
    every result as examined. `relevance` is the click probability of the pair.

    Args:
      positions: the page length.
      query_doc_pairs: rows of the click-through-rate table, the number of real query-document
        pairs plus 2 (row 0 is padding, row 1 out of vocabulary).
      rngs: random streams. The default parameters start at logit 0 and draw nothing, but the
        argument keeps one constructor signature across models whose parameters are random.
      param_dtype: dtype of the parameters.
      click_through_rate: a module `batch -> [batch, positions]` click logits that replaces
        the default `EmbeddingLogits` over `query_doc_id`.
    """

    @staticmethod
    def _default_module(positions: int, query_doc_pairs: int, param_dtype: jnp.dtype) -> nnx.Module:
        return EmbeddingLogits(query_doc_pairs, param_dtype=param_dtype)

    def _sample(self, batch: dict, key: jax.Array) -> dict[str, jax.Array]:
        click = draw_bernoulli(key, self.click_through_rate(batch))
        return {"click": click, "attraction": click}

    def _relevance(self, batch: dict) -> jax.Array:
        return jax.nn.sigmoid(self.click_through_rate(batch))

    def parameter_summary(self) -> dict:
        """Return an empty dict: every parameter of the model belongs to one query-document pair."""
        return {}


GCTR = GlobalClickThroughRateModel
RCTR = RankClickThroughRateModel
DCTR = DocumentClickThroughRateModel
