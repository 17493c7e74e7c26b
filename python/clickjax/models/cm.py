"""The cascade model (CM) with a click floor: the user clicks the first attractive result, later clicks are rare noise.

Assumptions: the user examines the results top-down and clicks the first one that attracts
them, each with probability alpha_qd (attraction). The classic cascade model then ends the
session, so it gives every session with two clicks probability 0 and an infinite loss on real
logs. Here, after the first click, each later result is clicked independently with a small
fixed probability f, the click floor. Given the clicks above slot k,

    P(c_k = 1 | c_<k) = alpha_k    if no slot above k was clicked,
                        f          otherwise.

Without the clicks, with N_k = P(no click above slot k) = prod_{j<k} (1 - alpha_j),

    P(c_k = 1) = N_k * alpha_k + (1 - N_k) * f.

Both come from the same distribution over click vectors, so the product of the conditional
probabilities of a session sums to 1 over all click vectors. The floor is a constant, not a
trained parameter, and a session whose first click is at slot k has the likelihood of the
classic model times f^(later clicks) * (1 - f)^(later skips).

Example:

    >>> from flax import nnx
    >>> from clickjax.models import CascadeModel
    >>> model = CascadeModel(positions=3, query_doc_pairs=6, rngs=nnx.Rngs(0))
    >>> model.parameter_summary()
    {'click_floor': 0.001}
"""

import math

import jax
import jax.numpy as jnp
from flax import nnx

from clickjax.models.base import ClickModel, draw_bernoulli
from clickjax.numerics import exclusive_cumsum, log1mexp
from clickjax.parameters import EmbeddingLogits

__all__ = ["CM", "DEFAULT_CLICK_FLOOR", "CascadeModel"]

DEFAULT_CLICK_FLOOR = 1e-3
"""The default probability of each click after the first one.

It keeps the model close to the classic cascade model, while each click after the first costs
a finite log(1e-3), about -6.9 nats, instead of an infinite loss.
"""


class CascadeModel(ClickModel):
    """The cascade model with a click floor: attraction per pair and a fixed floor after the first click.

    `sample` returns `click`, `examination` and `attraction`. `examination` is 1 from slot 1
    down to the first click and 0 after it, where only floor clicks happen. `attraction` is
    drawn at every real slot, so the first click is at the first real slot with attraction 1.

    Args:
      positions: the page length.
      query_doc_pairs: rows of the attraction table, the number of real query-document pairs
        plus 2 (row 0 is padding, row 1 out of vocabulary).
      rngs: random streams. The default parameters start at logit 0 and draw nothing, but the
        argument keeps one constructor signature across models whose parameters are random.
      param_dtype: dtype of the parameters.
      attraction: a module `batch -> [batch, positions]` attraction logits that replaces the
        default `EmbeddingLogits` over `query_doc_id`.
      click_floor: the probability f of each click after the first one, in (0, 1). It must be
        above 0 so that sessions with several clicks keep a finite likelihood.

    Raises:
      ValueError: if `click_floor` is not in (0, 1).
    """

    def __init__(
        self,
        positions: int,
        query_doc_pairs: int,
        *,
        rngs: nnx.Rngs | None = None,
        param_dtype: jnp.dtype = jnp.float32,
        attraction: nnx.Module | None = None,
        click_floor: float = DEFAULT_CLICK_FLOOR,
    ):
        self._set_sizes(positions, query_doc_pairs)
        if not 0.0 < click_floor < 1.0:
            raise ValueError(f"click_floor must be in (0, 1), got {click_floor}")
        if attraction is None:
            attraction = EmbeddingLogits(query_doc_pairs, param_dtype=param_dtype)
        self.attraction = attraction
        # NOTE: the floor is a plain attribute, not a parameter, so save_model does not store
        # it and load_model rebuilds the model with DEFAULT_CLICK_FLOOR.
        self.click_floor = float(click_floor)

    def _log_floor(self, dtype: jnp.dtype) -> tuple[jax.Array, jax.Array]:
        """Return log f and log(1 - f) as scalars of `dtype`."""
        return jnp.asarray(math.log(self.click_floor), dtype), jnp.asarray(math.log1p(-self.click_floor), dtype)

    def _log_click_probs(self, batch: dict) -> jax.Array:
        mask = jnp.asarray(batch["mask"]).astype(bool)
        attraction = self.attraction(batch)
        log_floor, _ = self._log_floor(attraction.dtype)

        # log N_k = sum over real slots j < k of log(1 - alpha_j).
        log_not_alpha = jnp.where(mask, jax.nn.log_sigmoid(-attraction), 0.0)
        log_no_click_above = exclusive_cumsum(log_not_alpha, axis=1)

        # log(1 - N_k) is -inf while no real slot is above k. log1mexp would return its clamp
        # there, which is finite but not exact.
        real_slot_above = exclusive_cumsum(mask.astype(jnp.int32), axis=1) > 0
        log_click_above = jnp.where(real_slot_above, log1mexp(log_no_click_above), -jnp.inf)

        # P(c_k = 1) = N_k alpha_k + (1 - N_k) f.
        return jnp.logaddexp(log_no_click_above + jax.nn.log_sigmoid(attraction), log_click_above + log_floor)

    def _conditional_log_probs(self, batch: dict) -> tuple[jax.Array, jax.Array]:
        mask = jnp.asarray(batch["mask"]).astype(bool)
        clicked = jnp.asarray(batch["click"]).astype(bool) & mask
        attraction = self.attraction(batch)
        log_floor, log_not_floor = self._log_floor(attraction.dtype)

        clicked_above = exclusive_cumsum(clicked.astype(jnp.int32), axis=1) > 0
        log_click = jnp.where(clicked_above, log_floor, jax.nn.log_sigmoid(attraction))
        log_skip = jnp.where(clicked_above, log_not_floor, jax.nn.log_sigmoid(-attraction))
        return log_click, log_skip

    def _sample(self, batch: dict, key: jax.Array) -> dict[str, jax.Array]:
        mask = jnp.asarray(batch["mask"]).astype(bool)
        key_attraction, key_floor = jax.random.split(key)
        attraction = draw_bernoulli(key_attraction, self.attraction(batch)) & mask
        floor_click = jax.random.bernoulli(key_floor, self.click_floor, shape=mask.shape)

        # The first click is at the first attractive real slot, and the floor decides each later slot.
        clicked_above = exclusive_cumsum(attraction.astype(jnp.int32), axis=1) > 0
        examination = ~clicked_above & mask
        click = jnp.where(clicked_above, floor_click, attraction) & mask
        return {"click": click, "examination": examination, "attraction": attraction}

    def _relevance(self, batch: dict) -> jax.Array:
        return jax.nn.sigmoid(self.attraction(batch))

    def parameter_summary(self) -> dict:
        """Return the click floor.

        Returns:
          `{"click_floor": f}`.
        """
        return {"click_floor": self.click_floor}


CM = CascadeModel
