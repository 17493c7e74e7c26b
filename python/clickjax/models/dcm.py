"""The dependent click model (DCM): a top-down scan that may end after a click, with a rank-dependent chance.

Assumptions: the user examines slot 1, then walks down the page. An examined result is clicked
with probability alpha_qd (attraction). After a click at rank r the user goes on to the next
slot with probability lambda_r (continuation) and otherwise leaves. After a skip they always go
on. With eps_k = P(slot k is examined) and eps_1 = 1:

    P(c_k = 1) = alpha_k * eps_k,    eps_{k+1} = eps_k * (1 - alpha_k * (1 - lambda_{r_k})).

Given the clicks above slot k, the posterior examination probability follows

    after a click:  eps_{k+1} = lambda_{r_k},
    after a skip:   eps_{k+1} = (1 - alpha_k) * eps_k / (1 - alpha_k * eps_k),

so P(c_k = 1 | c_<k) = alpha_k * eps_k. `ContinuationModel` computes both with g^skip = 1 and
g^click = lambda. Nothing in a session shows whether the user would have gone on after the
last slot, so lambda at the last rank of the page is not identifiable.

Example:

    >>> from flax import nnx
    >>> from clickjax.models import DependentClickModel
    >>> model = DependentClickModel(positions=3, query_doc_pairs=6, rngs=nnx.Rngs(0))
    >>> model.parameter_summary()
    {'continuation': [0.5, 0.5, 0.5]}
"""

import jax
import jax.numpy as jnp
from flax import nnx

from clickjax.models.continuation import ContinuationLogProbs, ContinuationModel
from clickjax.parameters import EmbeddingLogits, GlobalLogit, RankLogits

__all__ = ["DCM", "DependentClickModel"]


class DependentClickModel(ContinuationModel):
    """The dependent click model: attraction per pair, continuation after a click per rank.

    `sample` returns `click`, `examination`, `attraction` (drawn at every real slot) and
    `satisfaction`, 1 where the user clicked and then left (probability 1 - lambda).

    Args:
      positions: the page length, so continuation has one parameter per rank 1..positions.
      query_doc_pairs: rows of the attraction table, the number of real query-document pairs
        plus 2 (row 0 is padding, row 1 out of vocabulary).
      rngs: random streams. The default parameters start at logit 0 and draw nothing, but the
        argument keeps one constructor signature across models whose parameters are random.
      param_dtype: dtype of the parameters.
      attraction: a module `batch -> [batch, positions]` attraction logits that replaces the
        default `EmbeddingLogits` over `query_doc_id`.
      continuation: a module `batch -> [batch, positions]` whose value at slot k is the logit of
        going on to slot k + 1 after a click at slot k. It replaces the default `RankLogits`.
    """

    def __init__(
        self,
        positions: int,
        query_doc_pairs: int,
        *,
        rngs: nnx.Rngs | None = None,
        param_dtype: jnp.dtype = jnp.float32,
        attraction: nnx.Module | None = None,
        continuation: nnx.Module | None = None,
    ):
        self._set_sizes(positions, query_doc_pairs)
        if attraction is None:
            attraction = EmbeddingLogits(query_doc_pairs, param_dtype=param_dtype)
        if continuation is None:
            continuation = RankLogits(positions, param_dtype=param_dtype)
        self.attraction = attraction
        self.continuation = continuation

    def _continuation_log_probs(self, batch: dict) -> ContinuationLogProbs:
        continuation = self.continuation(batch)
        return ContinuationLogProbs(
            after_click=jax.nn.log_sigmoid(continuation),
            stop_after_click=jax.nn.log_sigmoid(-continuation),
        )

    def _draw_continuation(self, batch: dict, key: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        goes_on_after_click, goes_on_after_skip, _ = super()._draw_continuation(batch, key)
        return goes_on_after_click, goes_on_after_skip, ~goes_on_after_click

    def _relevance(self, batch: dict) -> jax.Array:
        return jax.nn.sigmoid(self.attraction(batch))

    def parameter_summary(self) -> dict:
        """Return the probability lambda_r of going on after a click at each rank.

        Returns:
          `{"continuation": [lambda_1, ..., lambda_positions]}` with the default `RankLogits`,
          or `{"continuation": lambda}` with a `GlobalLogit` continuation.

        Raises:
          NotImplementedError: if the continuation module is neither of those two.
        """
        if isinstance(self.continuation, RankLogits):
            lambdas = jax.nn.sigmoid(self.continuation.logits[...][1:])
            return {"continuation": [float(value) for value in lambdas]}
        if isinstance(self.continuation, GlobalLogit):
            return {"continuation": float(jax.nn.sigmoid(self.continuation.logit[...]))}
        raise NotImplementedError(
            "parameter_summary needs a RankLogits or GlobalLogit continuation, got "
            f"{type(self.continuation).__name__}"
        )


DCM = DependentClickModel
