"""The dynamic Bayesian network model (DBN) and its simplified form (SDBN): a scan that ends when a click satisfies.

Assumptions: the user examines slot 1, then walks down the page. An examined result is clicked
with probability alpha_qd (attraction). A click satisfies the user with probability sigma_qd
(satisfaction), and a satisfied user leaves. An unsatisfied user goes on to the next slot with
probability gamma (continuation). With eps_k = P(slot k is examined):

    P(c_k = 1 | eps_k) = alpha_k * eps_k,    eps_1 = 1.

Without the clicks, the examination probability falls by a factor at each slot:

    eps_{k+1} = eps_k * gamma * (1 - alpha_k * sigma_k),

which is a cumulative sum in log space. Given the clicks above slot k, the posterior examination
probability follows

    after a click:  eps_{k+1} = gamma * (1 - sigma_k),
    after a skip:   eps_{k+1} = gamma * (1 - alpha_k) * eps_k / (1 - alpha_k * eps_k),

which a scan over the slots computes. `ContinuationModel` contains the scan that DBN shares
with SDBN, DCM and CCM.

The simplified DBN (SDBN) fixes gamma at 1: the user leaves only when satisfied, so a session's
last click is the only one that can satisfy. The formulas above hold with gamma = 1.

Example:

    >>> import numpy as np
    >>> from flax import nnx
    >>> from clickjax.models import DynamicBayesianNetwork
    >>> model = DynamicBayesianNetwork(positions=3, query_doc_pairs=6, rngs=nnx.Rngs(0))
    >>> model.parameter_summary()
    {'continuation': 0.5}
"""

import jax
import jax.numpy as jnp
from flax import nnx

from clickjax.models.base import draw_bernoulli
from clickjax.models.continuation import ContinuationLogProbs, ContinuationModel
from clickjax.parameters import EmbeddingLogits, GlobalLogit, RankLogits

__all__ = ["DBN", "SDBN", "DynamicBayesianNetwork", "SimplifiedDynamicBayesianNetwork"]


class DynamicBayesianNetwork(ContinuationModel):
    """The dynamic Bayesian network model: attraction and satisfaction per pair, global continuation.

    `sample` returns `click`, `examination`, `attraction` (drawn at every real slot) and
    `satisfaction` (1 where a click satisfied the user, 0 elsewhere).

    Args:
      positions: the page length.
      query_doc_pairs: rows of the attraction and satisfaction tables, the number of real
        query-document pairs plus 2 (row 0 is padding, row 1 out of vocabulary).
      rngs: random streams. The default parameters start at logit 0 and draw nothing, but the
        argument keeps one constructor signature across models whose parameters are random.
      param_dtype: dtype of the parameters.
      attraction: a module `batch -> [batch, positions]` attraction logits that replaces the
        default `EmbeddingLogits` over `query_doc_id`.
      satisfaction: likewise for the satisfaction logits.
      continuation: a module `batch -> [batch, positions]` whose value at slot k is the logit of
        going on from slot k to slot k + 1. It replaces the default `GlobalLogit`.
    """

    # SDBN sets this to True: then gamma is 1 and the model has no continuation module.
    _continuation_is_one = False

    def __init__(
        self,
        positions: int,
        query_doc_pairs: int,
        *,
        rngs: nnx.Rngs | None = None,
        param_dtype: jnp.dtype = jnp.float32,
        attraction: nnx.Module | None = None,
        satisfaction: nnx.Module | None = None,
        continuation: nnx.Module | None = None,
    ):
        self._set_sizes(positions, query_doc_pairs)
        if attraction is None:
            attraction = EmbeddingLogits(query_doc_pairs, param_dtype=param_dtype)
        if satisfaction is None:
            satisfaction = EmbeddingLogits(query_doc_pairs, param_dtype=param_dtype)
        if continuation is None and not self._continuation_is_one:
            continuation = GlobalLogit(param_dtype=param_dtype)
        self.attraction = attraction
        self.satisfaction = satisfaction
        self.continuation = continuation

    def _continuation_log_probs(self, batch: dict) -> ContinuationLogProbs:
        satisfaction = self.satisfaction(batch)
        log_satisfied = jax.nn.log_sigmoid(satisfaction)
        log_not_satisfied = jax.nn.log_sigmoid(-satisfaction)
        if self.continuation is None:
            return ContinuationLogProbs(after_click=log_not_satisfied, stop_after_click=log_satisfied)

        # g^click = gamma (1 - sigma), and 1 - g^click = (1 - gamma) + gamma sigma.
        continuation = self.continuation(batch)
        log_gamma = jax.nn.log_sigmoid(continuation)
        log_not_gamma = jax.nn.log_sigmoid(-continuation)
        return ContinuationLogProbs(
            after_click=log_gamma + log_not_satisfied,
            stop_after_click=jnp.logaddexp(log_not_gamma, log_gamma + log_satisfied),
            after_skip=log_gamma,
            stop_after_skip=log_not_gamma,
        )

    def _draw_continuation(self, batch: dict, key: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        # A click satisfies with sigma, and an unsatisfied user goes on with gamma whether or
        # not they clicked.
        key_satisfaction, key_continuation = jax.random.split(key)
        satisfied = draw_bernoulli(key_satisfaction, self.satisfaction(batch))
        if self.continuation is None:
            goes_on = jnp.ones_like(satisfied)
        else:
            goes_on = draw_bernoulli(key_continuation, self.continuation(batch))
        return goes_on & ~satisfied, goes_on, satisfied

    def _relevance(self, batch: dict) -> jax.Array:
        log_relevance = jax.nn.log_sigmoid(self.attraction(batch)) + jax.nn.log_sigmoid(self.satisfaction(batch))
        return jnp.exp(log_relevance)

    def parameter_summary(self) -> dict:
        """Return the continuation probability gamma.

        Returns:
          `{"continuation": gamma}` with the default `GlobalLogit` (1.0 for SDBN), or
          `{"continuation": [gamma_1, ..., gamma_positions]}` with a `RankLogits` continuation.

        Raises:
          NotImplementedError: if the continuation module is neither of those two.
        """
        if self.continuation is None:
            return {"continuation": 1.0}
        if isinstance(self.continuation, GlobalLogit):
            return {"continuation": float(jax.nn.sigmoid(self.continuation.logit[...]))}
        if isinstance(self.continuation, RankLogits):
            gamma = jax.nn.sigmoid(self.continuation.logits[...][1:])
            return {"continuation": [float(value) for value in gamma]}
        raise NotImplementedError(
            "parameter_summary needs a GlobalLogit or RankLogits continuation, got "
            f"{type(self.continuation).__name__}"
        )


class SimplifiedDynamicBayesianNetwork(DynamicBayesianNetwork):
    """The simplified DBN: DBN with continuation gamma fixed at 1, attraction and satisfaction per pair.

    The user goes on after every skip and after every click that does not satisfy. `sample`
    returns the same states as DBN.

    Args:
      positions: the page length.
      query_doc_pairs: rows of the attraction and satisfaction tables, the number of real
        query-document pairs plus 2 (row 0 is padding, row 1 out of vocabulary).
      rngs: random streams. The default parameters start at logit 0 and draw nothing, but the
        argument keeps one constructor signature across models whose parameters are random.
      param_dtype: dtype of the parameters.
      attraction: a module `batch -> [batch, positions]` attraction logits that replaces the
        default `EmbeddingLogits` over `query_doc_id`.
      satisfaction: likewise for the satisfaction logits.
    """

    _continuation_is_one = True

    def __init__(
        self,
        positions: int,
        query_doc_pairs: int,
        *,
        rngs: nnx.Rngs | None = None,
        param_dtype: jnp.dtype = jnp.float32,
        attraction: nnx.Module | None = None,
        satisfaction: nnx.Module | None = None,
    ):
        super().__init__(
            positions,
            query_doc_pairs,
            rngs=rngs,
            param_dtype=param_dtype,
            attraction=attraction,
            satisfaction=satisfaction,
        )


DBN = DynamicBayesianNetwork
SDBN = SimplifiedDynamicBayesianNetwork
