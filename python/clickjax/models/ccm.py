"""The click chain model (CCM): a top-down scan whose chance of going on depends on the click and its attraction.

Assumptions: the user examines slot 1, then walks down the page. An examined result is clicked
with probability alpha_qd (attraction). After a skip the user goes on with probability tau1.
After a click the user finds the result relevant with probability alpha_k, the same probability
that drew the click. They go on with tau3 after a relevant result and with tau2 otherwise, so
with tau2 * (1 - alpha_k) + tau3 * alpha_k in all. The three taus are global. With eps_k = P(slot k is examined) and eps_1 = 1:

    P(c_k = 1) = alpha_k * eps_k,
    eps_{k+1} = eps_k * ((1 - alpha_k) * tau1 + alpha_k * (tau2 * (1 - alpha_k) + tau3 * alpha_k)).

Given the clicks above slot k, the posterior examination probability follows

    after a click:  eps_{k+1} = tau2 * (1 - alpha_k) + tau3 * alpha_k,
    after a skip:   eps_{k+1} = tau1 * (1 - alpha_k) * eps_k / (1 - alpha_k * eps_k),

so P(c_k = 1 | c_<k) = alpha_k * eps_k. `ContinuationModel` computes both with g^skip = tau1
and g^click = tau2 (1 - alpha) + tau3 alpha.

Example:

    >>> from flax import nnx
    >>> from clickjax.models import ClickChainModel
    >>> model = ClickChainModel(positions=3, query_doc_pairs=6, rngs=nnx.Rngs(0))
    >>> model.parameter_summary()
    {'tau1': 0.5, 'tau2': 0.5, 'tau3': 0.5}
"""

import jax
import jax.numpy as jnp
from flax import nnx

from clickjax.models.continuation import ContinuationLogProbs, ContinuationModel
from clickjax.parameters import EmbeddingLogits, GlobalLogit

__all__ = ["CCM", "ClickChainModel"]


class ClickChainModel(ContinuationModel):
    """The click chain model: attraction per pair and three global continuation probabilities.

    `sample` returns `click`, `examination` and `attraction` (drawn at every real slot).

    Args:
      positions: the page length.
      query_doc_pairs: rows of the attraction table, the number of real query-document pairs
        plus 2 (row 0 is padding, row 1 out of vocabulary).
      rngs: random streams. The default parameters start at logit 0 and draw nothing, but the
        argument keeps one constructor signature across models whose parameters are random.
      param_dtype: dtype of the parameters.
      attraction: a module `batch -> [batch, positions]` attraction logits that replaces the
        default `EmbeddingLogits` over `query_doc_id`.
      tau1: a module `batch -> [batch, positions]` whose value at slot k is the logit of going
        on after a skip at slot k. It replaces the default `GlobalLogit`.
      tau2: likewise for going on after a click on a result that the user found not relevant.
      tau3: likewise for going on after a click on a result that the user found relevant.
    """

    def __init__(
        self,
        positions: int,
        query_doc_pairs: int,
        *,
        rngs: nnx.Rngs | None = None,
        param_dtype: jnp.dtype = jnp.float32,
        attraction: nnx.Module | None = None,
        tau1: nnx.Module | None = None,
        tau2: nnx.Module | None = None,
        tau3: nnx.Module | None = None,
    ):
        self._set_sizes(positions, query_doc_pairs)
        if attraction is None:
            attraction = EmbeddingLogits(query_doc_pairs, param_dtype=param_dtype)
        self.attraction = attraction
        self.tau1 = GlobalLogit(param_dtype=param_dtype) if tau1 is None else tau1
        self.tau2 = GlobalLogit(param_dtype=param_dtype) if tau2 is None else tau2
        self.tau3 = GlobalLogit(param_dtype=param_dtype) if tau3 is None else tau3

    def _continuation_log_probs(self, batch: dict) -> ContinuationLogProbs:
        attraction = self.attraction(batch)
        log_alpha = jax.nn.log_sigmoid(attraction)
        log_not_alpha = jax.nn.log_sigmoid(-attraction)
        tau1, tau2, tau3 = self.tau1(batch), self.tau2(batch), self.tau3(batch)

        # g^click = tau2 (1 - alpha) + tau3 alpha, and 1 - g^click = (1 - tau2) (1 - alpha) + (1 - tau3) alpha.
        after_click = jnp.logaddexp(jax.nn.log_sigmoid(tau2) + log_not_alpha, jax.nn.log_sigmoid(tau3) + log_alpha)
        stop_after_click = jnp.logaddexp(
            jax.nn.log_sigmoid(-tau2) + log_not_alpha, jax.nn.log_sigmoid(-tau3) + log_alpha
        )
        return ContinuationLogProbs(
            after_click=after_click,
            stop_after_click=stop_after_click,
            after_skip=jax.nn.log_sigmoid(tau1),
            stop_after_skip=jax.nn.log_sigmoid(-tau1),
        )

    def _relevance(self, batch: dict) -> jax.Array:
        return jax.nn.sigmoid(self.attraction(batch))

    def parameter_summary(self) -> dict:
        """Return the three continuation probabilities.

        Returns:
          `{"tau1": tau1, "tau2": tau2, "tau3": tau3}`.

        Raises:
          NotImplementedError: if a tau is not a `GlobalLogit`.
        """
        summary = {}
        for name in ("tau1", "tau2", "tau3"):
            module = getattr(self, name)
            if not isinstance(module, GlobalLogit):
                raise NotImplementedError(f"parameter_summary needs a GlobalLogit {name}, got {type(module).__name__}")
            summary[name] = float(jax.nn.sigmoid(module.logit[...]))
        return summary


CCM = ClickChainModel
