"""The user browsing model (UBM): examination depends on the rank and on the rank of the previous click.

Assumptions: the user examines the result at rank r with probability theta(r, r'), where r' is
the rank of the last click above it in the session (r' = 0 if there was none), and clicks an
examined result with probability alpha_qd, its attraction. Given the clicks above slot k the
model is a product of two probabilities:

    P(c_k = 1 | c_<k) = theta(r_k, r'_k) * alpha_{qd_k}.

Without the clicks, the probability is a marginal over the slot j of the last click above k
(j = 0 for none). With q_k(j) = P(last click above slot k is at slot j),

    P(c_k = 1) = alpha_k * sum_j q_k(j) * theta(r_k, r_j),
    q_{k+1}(k) = P(c_k = 1),
    q_{k+1}(j) = q_k(j) * (1 - theta(r_k, r_j) * alpha_k)   for j < k.

A scan over the slots carries log q, a vector of positions + 1 entries, so a session costs
O(positions^2) time.

Example:

    >>> import numpy as np
    >>> from flax import nnx
    >>> from clickjax.models import UserBrowsingModel
    >>> model = UserBrowsingModel(positions=3, query_doc_pairs=6, rngs=nnx.Rngs(0))
    >>> batch = {
    ...     "query_doc_id": np.array([[2, 3, 4]], np.int32),
    ...     "position": np.array([[1, 2, 3]], np.int32),
    ...     "mask": np.array([[1, 1, 1]], np.uint8),
    ... }
    >>> model.log_click_probs(batch).shape
    (1, 3)
"""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from clickjax.models.base import ClickModel, draw_bernoulli
from clickjax.numerics import log_complement_of_product
from clickjax.parameters import EmbeddingLogits

__all__ = ["UBM", "UserBrowsingModel"]


def _marginal_click_step(log_last_click: jax.Array, inputs: tuple) -> tuple[jax.Array, jax.Array]:
    """Advance the distribution of the last click's slot by one slot and return log P(c_k = 1).

    `log_last_click` is `[batch, positions + 1]` log q_k(j), column 0 for no click so far. The
    step is a module-level function so that eager calls reuse the compiled scan.
    """
    log_examination_k, log_attraction_k, log_skip_k, mask_k, slot = inputs

    # P(c_k = 1) = alpha_k * sum_j q_k(j) * theta(r_k, r_j)
    log_click_and_last = log_last_click + log_examination_k + log_attraction_k[:, None]
    log_click = jax.nn.logsumexp(log_click_and_last, axis=1)

    # q_{k+1}(j) = q_k(j) * (1 - theta(r_k, r_j) * alpha_k), and q_{k+1}(k) = P(c_k = 1).
    updated = log_last_click + log_skip_k
    last_click_columns = jnp.arange(log_last_click.shape[1])
    updated = jnp.where(last_click_columns == slot, log_click[:, None], updated)
    log_last_click = jnp.where(mask_k[:, None], updated, log_last_click)
    return log_last_click, log_click


def _sample_step(last_click_slot: jax.Array, inputs: tuple) -> tuple[jax.Array, tuple]:
    """Draw examination and click at slot k given the slot of the last click above it.

    `last_click_slot` is `[batch]` int, the 1-based slot of the last click so far (0 if none),
    which is also the column of `examination_k`, the `[batch, positions + 1]` logits of
    theta(r_k, rank of that slot).
    """
    examination_k, uniform_k, attraction_k, mask_k, slot = inputs
    logit = jnp.take_along_axis(examination_k, last_click_slot[:, None], axis=1)[:, 0]
    examined = (uniform_k < jax.nn.sigmoid(logit)) & mask_k
    click = examined & attraction_k
    return jnp.where(click, slot, last_click_slot), (examined, click)


class UserBrowsingModel(ClickModel):
    """The user browsing model: examination theta(rank, previous click rank) times attraction alpha.

    Examination logits sit in a `[positions + 1, positions + 1]` table indexed by the rank r of
    the slot and the rank r' of the previous click (column 0 = no previous click). Only the
    entries with r' < r affect the probabilities, and row 0 belongs to padding slots.

    `sample` returns `click`, `examination` and `attraction` (drawn at every real slot). A scan
    over the slots draws examination given the rank of the last click drawn above.

    Args:
      positions: the page length.
      query_doc_pairs: rows of the attraction table, the number of real query-document pairs
        plus 2 (row 0 is padding, row 1 out of vocabulary).
      rngs: random streams. The default parameters start at logit 0 and draw nothing, but the
        argument keeps one constructor signature across models whose parameters are random.
      param_dtype: dtype of the parameters.
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
        attraction: nnx.Module | None = None,
    ):
        self._set_sizes(positions, query_doc_pairs)
        self.examination = nnx.Param(jnp.zeros((positions + 1, positions + 1), dtype=param_dtype))
        if attraction is None:
            attraction = EmbeddingLogits(query_doc_pairs, param_dtype=param_dtype)
        self.attraction = attraction

    def _positions_of(self, batch: dict) -> jax.Array:
        """Return the `position` column, rejecting a numpy column with ranks outside the table."""
        position = batch["position"]
        if isinstance(position, np.ndarray) and position.size:
            if position.min() < 0 or position.max() > self.positions:
                raise ValueError(
                    f"position contains values from {position.min()} to {position.max()}, expected "
                    f"values in 0..{self.positions}. Build the model with the page length of the data"
                )
        return jnp.asarray(position)

    def _examination_logits(self, rank: jax.Array, previous_rank: jax.Array) -> jax.Array:
        """Look up theta(rank, previous_rank) logits, with `nan` for a rank outside the table.

        JAX would clamp an out-of-range rank (and wrap a negative one) to another entry, so a
        traced batch with invalid ranks gets a `nan` loss instead of a silently wrong one.
        """
        outside = self.positions + 1
        rank = jnp.where(rank < 0, outside, rank)
        previous_rank = jnp.where(previous_rank < 0, outside, previous_rank)
        return self.examination[...].at[rank, previous_rank].get(mode="fill", fill_value=jnp.nan)

    def _examination_logits_by_slot(self, position: jax.Array) -> jax.Array:
        """Return `[batch, positions, positions + 1]` logits of theta(rank of slot k, rank of slot j).

        Column j = 0 means no previous click and column j >= 1 is slot j (1-based).
        """
        batch_size = position.shape[0]
        previous_rank = jnp.concatenate([jnp.zeros((batch_size, 1), position.dtype), position], axis=1)
        return self._examination_logits(position[:, :, None], previous_rank[:, None, :])

    def _log_click_probs(self, batch: dict) -> jax.Array:
        position = self._positions_of(batch)
        mask = jnp.asarray(batch["mask"]).astype(bool)
        attraction = self.attraction(batch)
        batch_size, slots = position.shape
        examination = self._examination_logits_by_slot(position)

        log_examination = jax.nn.log_sigmoid(examination)
        log_attraction = jax.nn.log_sigmoid(attraction)
        log_skip_given_previous = log_complement_of_product(examination, attraction[:, :, None])

        # Before slot 1 there was no click with probability 1.
        log_no_click = jnp.zeros((batch_size, 1), log_examination.dtype)
        log_impossible = jnp.full((batch_size, slots), -jnp.inf, log_examination.dtype)
        initial = jnp.concatenate([log_no_click, log_impossible], axis=1)

        inputs = (
            jnp.swapaxes(log_examination, 0, 1),
            log_attraction.T,
            jnp.swapaxes(log_skip_given_previous, 0, 1),
            mask.T,
            jnp.arange(1, slots + 1),
        )
        _, log_click = jax.lax.scan(_marginal_click_step, initial, inputs)
        return log_click.T

    def _conditional_log_probs(self, batch: dict) -> tuple[jax.Array, jax.Array]:
        position = self._positions_of(batch)
        mask = jnp.asarray(batch["mask"]).astype(bool)
        clicked = jnp.asarray(batch["click"]).astype(bool) & mask
        batch_size, slots = position.shape

        # The 1-based slot of the last click strictly above each slot, 0 if none.
        clicked_slot = jnp.where(clicked, jnp.arange(1, slots + 1), 0)
        last_clicked_slot = jax.lax.cummax(clicked_slot, axis=1)
        previous_slot = jnp.concatenate(
            [jnp.zeros((batch_size, 1), last_clicked_slot.dtype), last_clicked_slot[:, :-1]], axis=1
        )
        rank_at_previous_slot = jnp.take_along_axis(position, jnp.maximum(previous_slot - 1, 0), axis=1)
        previous_rank = jnp.where(previous_slot > 0, rank_at_previous_slot, 0)

        examination = self._examination_logits(position, previous_rank)
        attraction = self.attraction(batch)
        log_click = jax.nn.log_sigmoid(examination) + jax.nn.log_sigmoid(attraction)
        log_skip = log_complement_of_product(examination, attraction)
        return log_click, log_skip

    def _sample(self, batch: dict, key: jax.Array) -> dict[str, jax.Array]:
        position = self._positions_of(batch)
        mask = jnp.asarray(batch["mask"]).astype(bool)
        batch_size, slots = position.shape
        key_examination, key_attraction = jax.random.split(key)

        attraction = draw_bernoulli(key_attraction, self.attraction(batch)) & mask
        uniform = jax.random.uniform(key_examination, (batch_size, slots), self.examination[...].dtype)
        inputs = (
            jnp.swapaxes(self._examination_logits_by_slot(position), 0, 1),
            uniform.T,
            attraction.T,
            mask.T,
            jnp.arange(1, slots + 1, dtype=jnp.int32),
        )
        initial = jnp.zeros((batch_size,), jnp.int32)
        _, (examination, click) = jax.lax.scan(_sample_step, initial, inputs)
        return {"click": click.T, "examination": examination.T, "attraction": attraction}

    def _relevance(self, batch: dict) -> jax.Array:
        return jax.nn.sigmoid(self.attraction(batch))

    def parameter_summary(self) -> dict:
        """Return the examination probabilities by rank and by rank of the previous click.

        Returns:
          `{"examination_by_rank_and_previous_click": rows, "examination_by_rank": theta}`.
          `rows` is a positions x positions list whose row r - 1 contains theta(r, r') for
          r' = 0..r-1 (0 = no previous click) and `None` for r' >= r, which cannot occur.
          `theta` lists theta(r, 0) for r = 1..positions.
        """
        theta = jax.device_get(jax.nn.sigmoid(self.examination[...]))
        by_previous_click = [
            [float(theta[rank, previous]) if previous < rank else None for previous in range(self.positions)]
            for rank in range(1, self.positions + 1)
        ]
        return {
            "examination_by_rank_and_previous_click": by_previous_click,
            "examination_by_rank": [float(theta[rank, 0]) for rank in range(1, self.positions + 1)],
        }


UBM = UserBrowsingModel
