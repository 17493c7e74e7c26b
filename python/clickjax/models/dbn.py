"""The dynamic Bayesian network model (DBN): a top-down scan that ends when a click satisfies the user.

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

which a scan over the slots computes, carrying both log eps and log(1 - eps) so that neither
needs a subtraction.

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

from clickjax.models.base import ClickModel
from clickjax.numerics import log_complement_of_product
from clickjax.parameters import EmbeddingLogits, GlobalLogit, RankLogits

__all__ = ["DBN", "DynamicBayesianNetwork"]


def _posterior_examination_step(state: tuple, inputs: tuple) -> tuple[tuple, tuple]:
    """Compute log P(c_k = 1 | c_<k) and log P(c_k = 0 | c_<k), and advance eps past slot k given c_k.

    `state` is `(log eps_k, log(1 - eps_k))`, each `[batch]`. The step is a module-level
    function so that eager calls reuse the compiled scan.
    """
    log_eps, log_not_eps = state
    alpha_logit, sigma_logit, gamma_logit, clicked_k, mask_k = inputs
    log_alpha = jax.nn.log_sigmoid(alpha_logit)
    log_not_alpha = jax.nn.log_sigmoid(-alpha_logit)
    log_gamma = jax.nn.log_sigmoid(gamma_logit)
    log_not_gamma = jax.nn.log_sigmoid(-gamma_logit)

    # P(c_k = 1 | c_<k) = alpha eps and P(c_k = 0 | c_<k) = (1 - alpha) + alpha (1 - eps).
    log_click = log_alpha + log_eps
    log_skip = jnp.logaddexp(log_not_alpha, log_alpha + log_not_eps)

    # After a click: eps' = gamma (1 - sigma), 1 - eps' = (1 - gamma) + gamma sigma.
    log_eps_after_click = log_gamma + jax.nn.log_sigmoid(-sigma_logit)
    log_not_eps_after_click = jnp.logaddexp(log_not_gamma, log_gamma + jax.nn.log_sigmoid(sigma_logit))

    # After a skip: eps' = gamma (1 - alpha) eps / (1 - alpha eps), and
    # 1 - eps' = ((1 - eps) + eps (1 - alpha) (1 - gamma)) / (1 - alpha eps).
    log_eps_after_skip = log_gamma + log_not_alpha + log_eps - log_skip
    log_not_eps_after_skip = (
        jnp.logaddexp(log_not_eps, log_eps + log_not_alpha + log_not_gamma) - log_skip
    )

    next_log_eps = jnp.where(clicked_k, log_eps_after_click, log_eps_after_skip)
    next_log_not_eps = jnp.where(clicked_k, log_not_eps_after_click, log_not_eps_after_skip)
    next_state = (
        jnp.where(mask_k, next_log_eps, log_eps),
        jnp.where(mask_k, next_log_not_eps, log_not_eps),
    )
    return next_state, (log_click, log_skip)


class DynamicBayesianNetwork(ClickModel):
    """The dynamic Bayesian network model: attraction and satisfaction per pair, global continuation.

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
        if continuation is None:
            continuation = GlobalLogit(param_dtype=param_dtype)
        self.attraction = attraction
        self.satisfaction = satisfaction
        self.continuation = continuation

    def _log_click_probs(self, batch: dict) -> jax.Array:
        mask = jnp.asarray(batch["mask"]).astype(bool)
        attraction = self.attraction(batch)
        satisfaction = self.satisfaction(batch)
        continuation = self.continuation(batch)

        # log eps_{k+1} - log eps_k = log gamma + log(1 - alpha_k sigma_k). A padding slot
        # contributes 0, so it changes no later slot.
        log_step = jax.nn.log_sigmoid(continuation) + log_complement_of_product(attraction, satisfaction)
        log_step = jnp.where(mask, log_step, 0.0)
        log_examination = jnp.cumsum(log_step, axis=1)
        log_examination = jnp.concatenate(
            [jnp.zeros_like(log_examination[:, :1]), log_examination[:, :-1]], axis=1
        )
        return jax.nn.log_sigmoid(attraction) + log_examination

    def _conditional_log_probs(self, batch: dict) -> tuple[jax.Array, jax.Array]:
        mask = jnp.asarray(batch["mask"]).astype(bool)
        clicked = jnp.asarray(batch["click"]).astype(bool)
        attraction = self.attraction(batch)
        satisfaction = self.satisfaction(batch)
        continuation = self.continuation(batch)

        # Slot 1 is examined with certainty: eps_1 = 1, so log(1 - eps_1) = -inf.
        batch_size = attraction.shape[0]
        initial = (
            jnp.zeros((batch_size,), attraction.dtype),
            jnp.full((batch_size,), -jnp.inf, attraction.dtype),
        )
        inputs = (attraction.T, satisfaction.T, continuation.T, clicked.T, mask.T)
        _, (log_click, log_skip) = jax.lax.scan(_posterior_examination_step, initial, inputs)
        return log_click.T, log_skip.T

    def _relevance(self, batch: dict) -> jax.Array:
        log_relevance = jax.nn.log_sigmoid(self.attraction(batch)) + jax.nn.log_sigmoid(self.satisfaction(batch))
        return jnp.exp(log_relevance)

    def parameter_summary(self) -> dict:
        """Return the continuation probability gamma.

        Returns:
          `{"continuation": gamma}` with the default `GlobalLogit`, or
          `{"continuation": [gamma_1, ..., gamma_positions]}` with a `RankLogits` continuation.

        Raises:
          NotImplementedError: if the continuation module is neither of those two.
        """
        if isinstance(self.continuation, GlobalLogit):
            return {"continuation": float(jax.nn.sigmoid(self.continuation.logit[...]))}
        if isinstance(self.continuation, RankLogits):
            gamma = jax.nn.sigmoid(self.continuation.logits[...][1:])
            return {"continuation": [float(value) for value in gamma]}
        raise NotImplementedError(
            "parameter_summary needs a GlobalLogit or RankLogits continuation, got "
            f"{type(self.continuation).__name__}"
        )


DBN = DynamicBayesianNetwork
