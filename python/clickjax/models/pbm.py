"""The position-based model (PBM): a click needs examination, which depends only on the rank, and attraction.

Assumptions: the user examines the result at rank r with probability theta_r, independently of
everything else, and clicks an examined result with probability alpha_qd, its attraction. So

    P(c_k = 1) = theta_{r_k} * alpha_{qd_k},

where r_k is the displayed rank (`position`) of slot k. Clicks in a session are independent, so
the conditional click probability equals the unconditional one. Theta and alpha are identified
only up to a common scale: multiplying every theta by s and every alpha by 1/s leaves the
likelihood unchanged wherever both stay in (0, 1).

Example:

    >>> import numpy as np
    >>> from flax import nnx
    >>> from clickjax.models import PositionBasedModel
    >>> model = PositionBasedModel(positions=3, query_doc_pairs=6, rngs=nnx.Rngs(0))
    >>> batch = {
    ...     "query_doc_id": np.array([[2, 3, 4]], np.int32),
    ...     "position": np.array([[1, 2, 3]], np.int32),
    ...     "click": np.array([[1, 0, 0]], np.uint8),
    ...     "mask": np.array([[1, 1, 1]], np.uint8),
    ...     "weight": np.array([1.0], np.float32),
    ... }
    >>> round(float(model.loss(batch)), 4)  # every probability starts at 0.5 * 0.5
    0.6539
"""

import jax
import jax.numpy as jnp
from flax import nnx

from clickjax.models.base import ClickModel, draw_bernoulli
from clickjax.numerics import log_add_exp
from clickjax.parameters import EmbeddingLogits, RankLogits, log_sigmoid_pair_of

__all__ = ["PBM", "PositionBasedModel"]


class PositionBasedModel(ClickModel):
    """The position-based model: examination theta per rank times attraction alpha per pair.

    `sample` returns `click`, `examination` and `attraction`, drawn independently at every
    real slot, with `click = examination * attraction`.

    Args:
      positions: the page length, so examination has one parameter per rank 1..positions.
      query_doc_pairs: rows of the attraction table, the number of real query-document pairs
        plus 2 (row 0 is padding, row 1 out of vocabulary).
      rngs: random streams. The default parameters start at logit 0 and draw nothing, but the
        argument keeps one constructor signature across models whose parameters are random.
      param_dtype: dtype of the parameters.
      examination: a module `batch -> [batch, positions]` examination logits that replaces the
        default `RankLogits`.
      attraction: a module `batch -> [batch, positions]` attraction logits that replaces the
        default `EmbeddingLogits` over `query_doc_id`.
    """

    def __init__(
        self,
        positions: int,
        query_doc_pairs: int,
        *,
        rngs: nnx.Rngs | None = None,
        param_dtype: jnp.dtype = jnp.float32,
        examination: nnx.Module | None = None,
        attraction: nnx.Module | None = None,
    ):
        self._set_sizes(positions, query_doc_pairs)
        if examination is None:
            examination = RankLogits(positions, param_dtype=param_dtype)
        if attraction is None:
            attraction = EmbeddingLogits(query_doc_pairs, param_dtype=param_dtype)
        self.examination = examination
        self.attraction = attraction

    def _logits(self, batch: dict) -> tuple[jax.Array, jax.Array]:
        return self.examination(batch), self.attraction(batch)

    def _log_click_probs(self, batch: dict) -> jax.Array:
        examination, attraction = self._logits(batch)
        return jax.nn.log_sigmoid(examination) + jax.nn.log_sigmoid(attraction)

    def _conditional_log_probs(self, batch: dict) -> tuple[jax.Array, jax.Array]:
        log_examined, log_not_examined = log_sigmoid_pair_of(self.examination, batch)
        log_attracted, log_not_attracted = log_sigmoid_pair_of(self.attraction, batch)
        log_click = log_examined + log_attracted
        # 1 - theta alpha = (1 - theta) + theta (1 - alpha), as in log_complement_of_product, but
        # from the terms above. Sharing them, and computing examination's per rank rather than
        # per slot, made PBM's loss and gradient about three times faster on a CPU (jax 0.10).
        log_skip = log_add_exp(log_not_examined, log_examined + log_not_attracted)
        return log_click, log_skip

    def _sample(self, batch: dict, key: jax.Array) -> dict[str, jax.Array]:
        key_examination, key_attraction = jax.random.split(key)
        examination, attraction = self._logits(batch)
        examination = draw_bernoulli(key_examination, examination)
        attraction = draw_bernoulli(key_attraction, attraction)
        return {"click": examination & attraction, "examination": examination, "attraction": attraction}

    def _relevance(self, batch: dict) -> jax.Array:
        return jax.nn.sigmoid(self.attraction(batch))

    def parameter_summary(self) -> dict:
        """Return the examination probability of each rank.

        Returns:
          `{"examination_by_rank": [theta_1, ..., theta_positions]}`.

        Raises:
          NotImplementedError: if examination is not a `RankLogits` table.
        """
        if not isinstance(self.examination, RankLogits):
            raise NotImplementedError(
                "parameter_summary needs examination by rank (RankLogits), got "
                f"{type(self.examination).__name__}"
            )
        theta = jax.nn.sigmoid(self.examination.logits[...][1:])
        return {"examination_by_rank": [float(value) for value in theta]}


PBM = PositionBasedModel
