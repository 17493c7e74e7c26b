"""The interface every click model implements: click probabilities, the exact log-likelihood and the loss.

A click model describes one session, results d_1..d_n shown in slots 1..n with clicks c_1..c_n,
as a distribution over click vectors. From a batch of sessions (the dict of columns of the batch
contract, each `[batch, positions]` except `weight` `[batch]`) every model computes:

- `log_click_probs`: log P(c_k = 1), the marginal over the hidden states, ignoring the
  session's clicks.
- `log_conditional_click_probs`: log P(c_k = 1 | c_1..c_{k-1}), through the exact posterior of
  the hidden state given the clicks above slot k.
- `log_likelihood`: log P(c_k = observed | c_1..c_{k-1}). Its sum over a session is the exact
  log-probability of the session's click vector.
- `loss`: the mean negative log-likelihood per real result, weighted by `weight`.
- `relevance`: the model's relevance estimate of each query-document pair.
- `sample`: clicks and hidden states (examination, attraction, satisfaction) drawn from the
  model for the rankings of a batch, for simulation.

Padding slots (`mask == 0`) sit at the end of a row and never change a value at a real slot.
The recursions also skip a masked slot in the middle of a row, which then acts like an absent
result.

Subclasses implement `_log_click_probs`, `_conditional_log_probs`, `_relevance`, `_sample` and
`parameter_summary`. The public methods check the batch first, using shapes and dtypes only,
so they also work inside `jax.jit` and `nnx.jit`.
"""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from clickjax.numerics import bernoulli_log_likelihood

__all__ = ["ClickModel", "draw_bernoulli"]

# Columns of shape [batch, positions] that contain integer ids or ranks.
_ID_COLUMNS = ("query_doc_id", "doc_id", "query_doc_hash", "position")
_ID_KINDS = "iu"
_CLICK_KINDS = "iub"


def _shape_and_dtype(value) -> tuple[tuple[int, ...], np.dtype]:
    if not hasattr(value, "shape") or not hasattr(value, "dtype"):
        value = np.asarray(value)
    return tuple(value.shape), np.dtype(value.dtype)


def _format_shape(shape: tuple[int, ...]) -> str:
    return "[" + ", ".join(str(size) for size in shape) + "]"


def draw_bernoulli(key: jax.Array, logits: jax.Array) -> jax.Array:
    """Draw independent Bernoulli variables with success probability `sigmoid(logits)`.

    Args:
      key: a JAX random key.
      logits: logits of any shape.

    Returns:
      A bool array of the shape of `logits`.
    """
    return jax.random.bernoulli(key, jax.nn.sigmoid(logits))


class ClickModel(nnx.Module):
    """Base class of the click models: a distribution over the click vectors of a session.

    Attributes:
      positions: the page length the model was built for. Batches passed to the probability
        methods and the loss may have at most this many slots per row.
      query_doc_pairs: the number of rows of the model's query-document tables, the number of
        real pairs plus 2.
    """

    positions: int
    query_doc_pairs: int

    def _set_sizes(self, positions: int, query_doc_pairs: int) -> None:
        if positions < 1:
            raise ValueError(f"positions must be at least 1, got {positions}")
        if query_doc_pairs < 1:
            raise ValueError(f"query_doc_pairs must be at least 1, got {query_doc_pairs}")
        self.positions = positions
        self.query_doc_pairs = query_doc_pairs

    # ---------------------------------------------------------------- public interface

    def log_click_probs(self, batch: dict) -> jax.Array:
        """Compute log P(c_k = 1) for each slot, without looking at the session's clicks.

        Args:
          batch: a batch dict with `mask` and the id columns the model uses, each
            `[batch, positions]`.

        Returns:
          `[batch, positions]` log-probabilities, finite but meaningless where `mask == 0`.

        Raises:
          ValueError: if a column has the wrong shape or dtype.
        """
        self._check_batch(batch, needs_click=False)
        return self._log_click_probs(batch)

    def log_conditional_click_probs(self, batch: dict) -> jax.Array:
        """Compute log P(c_k = 1 | c_1..c_{k-1}) for each slot, given the clicks above it.

        Args:
          batch: a batch dict with `click`, `mask` and the id columns the model uses, each
            `[batch, positions]`.

        Returns:
          `[batch, positions]` log-probabilities, finite but meaningless where `mask == 0`.

        Raises:
          ValueError: if a column has the wrong shape or dtype.
        """
        self._check_batch(batch, needs_click=True)
        log_prob, _ = self._conditional_log_probs(batch)
        return log_prob

    def log_likelihood(self, batch: dict) -> jax.Array:
        """Compute log P(c_k = observed | c_1..c_{k-1}) for each slot.

        The sum over a row is the exact log-probability of that session's click vector.

        Args:
          batch: a batch dict with `click`, `mask` and the id columns the model uses, each
            `[batch, positions]`.

        Returns:
          `[batch, positions]` log-probabilities, 0 where `mask == 0`.

        Raises:
          ValueError: if a column has the wrong shape or dtype.
        """
        self._check_batch(batch, needs_click=True)
        return self._log_likelihood(batch)

    def loss(self, batch: dict) -> jax.Array:
        """Compute the mean negative log-likelihood per real result, weighted by `weight`.

        The loss is `-(sum of weight * mask * log_likelihood) / max(sum of weight * mask, 1)`,
        so extra padding slots or rows with weight 0 do not change it.

        Args:
          batch: a batch dict with `click`, `mask` and the id columns the model uses, each
            `[batch, positions]`, and optionally `weight` `[batch]` float32 (1 when missing).

        Returns:
          A scalar.

        Raises:
          ValueError: if a column has the wrong shape or dtype.
        """
        self._check_batch(batch, needs_click=True)
        log_likelihood = self._log_likelihood(batch)

        mask = jnp.asarray(batch["mask"]).astype(log_likelihood.dtype)
        weight = batch.get("weight")
        if weight is not None:
            mask = mask * jnp.asarray(weight).astype(log_likelihood.dtype)[:, None]

        total = jnp.sum(mask * log_likelihood)
        count = jnp.maximum(jnp.sum(mask), 1.0)
        return -total / count

    def relevance(self, batch: dict) -> jax.Array:
        """Estimate the relevance of each slot's query-document pair, a probability in (0, 1).

        Args:
          batch: a batch dict with `mask` and the id columns the model uses, each
            `[batch, positions]`. The number of slots is not limited by `positions`, so a
            batch of annotated lists of any length works.

        Returns:
          `[batch, positions]` relevance estimates, meaningless where `mask == 0`.

        Raises:
          ValueError: if a column has the wrong shape or dtype.
        """
        self._check_batch(batch, needs_click=False, limit_width=False)
        return self._relevance(batch)

    def sample(self, batch: dict, rngs: nnx.Rngs) -> dict[str, jax.Array]:
        """Draw clicks and hidden states from the model for the rankings in `batch`.

        Each row is one session on the ranking given by the id columns, `position` and `mask`.
        The `click` column of the batch, if present, is ignored. The random key comes from
        `rngs.sample()`, so a stream named "sample" is used when `rngs` has one and the
        default stream otherwise.

        Args:
          batch: a batch dict with `mask` and the id columns the model uses, each
            `[batch, positions]`.
          rngs: random streams.

        Returns:
          A dict of `[batch, positions]` uint8 arrays, 0 where `mask == 0`: `click`, and the
          hidden states of the model among `examination`, `attraction` and `satisfaction`.
          The model's docstring lists which ones it returns and what they mean.

        Raises:
          ValueError: if a column has the wrong shape or dtype.
        """
        self._check_batch(batch, needs_click=False)
        states = self._sample(batch, rngs.sample())
        return _masked_uint8(states, batch["mask"])

    def parameter_summary(self) -> dict:
        """Return the model's global and per-rank parameters as probabilities, ready for JSON."""
        raise NotImplementedError(f"{type(self).__name__} does not implement parameter_summary")

    # ---------------------------------------------------------------- subclass hooks

    def _log_click_probs(self, batch: dict) -> jax.Array:
        """Compute `[batch, positions]` log P(c_k = 1) from a batch that passed the checks."""
        raise NotImplementedError(f"{type(self).__name__} does not implement _log_click_probs")

    def _conditional_log_probs(self, batch: dict) -> tuple[jax.Array, jax.Array]:
        """Compute `[batch, positions]` log P(c_k = 1 | c_<k) and log P(c_k = 0 | c_<k).

        Returning the complement separately lets a model compute it without cancellation,
        which `log1mexp` of the first array cannot do once it has rounded to 0.
        """
        raise NotImplementedError(f"{type(self).__name__} does not implement _conditional_log_probs")

    def _relevance(self, batch: dict) -> jax.Array:
        """Compute `[batch, positions]` relevance estimates from a batch that passed the checks."""
        raise NotImplementedError(f"{type(self).__name__} does not implement _relevance")

    def _sample(self, batch: dict, key: jax.Array) -> dict[str, jax.Array]:
        """Draw `[batch, positions]` bool clicks and hidden states from a batch that passed the checks.

        The values at masked slots are replaced by 0 afterwards, but a masked slot must not
        change the draws at real slots.
        """
        raise NotImplementedError(f"{type(self).__name__} does not implement _sample")

    # ---------------------------------------------------------------- shared steps

    def _log_likelihood(self, batch: dict) -> jax.Array:
        log_prob, log_complement = self._conditional_log_probs(batch)
        log_likelihood = bernoulli_log_likelihood(log_prob, batch["click"], log_complement)
        mask = jnp.asarray(batch["mask"]).astype(bool)
        return jnp.where(mask, log_likelihood, 0.0)

    def _check_batch(self, batch: dict, *, needs_click: bool, limit_width: bool = True) -> None:
        """Raise ValueError unless the batch's columns have the shapes and dtypes of the contract.

        Only shapes and dtypes are read, never values, so the check also runs on traced arrays.
        """
        if not isinstance(batch, dict):
            raise ValueError(f"batch must be a dict of columns, got {type(batch).__name__}")
        if "mask" not in batch:
            raise ValueError("batch is missing the column mask ([batch, positions] uint8)")
        if needs_click and "click" not in batch:
            raise ValueError("batch is missing the column click ([batch, positions] uint8)")

        # mask fixes [batch, positions] for every other column.
        mask_shape, mask_dtype = _shape_and_dtype(batch["mask"])
        if len(mask_shape) != 2:
            raise ValueError(
                f"mask has shape {_format_shape(mask_shape)}, expected [batch, positions] "
                f"with at most {self.positions} positions"
            )
        if limit_width and mask_shape[1] > self.positions:
            raise ValueError(
                f"mask has shape {_format_shape(mask_shape)}, expected [batch, positions] with at "
                f"most {self.positions} positions, the page length of the model. Build the model "
                f"with positions={mask_shape[1]} or truncate the batch"
            )
        _check_integer_dtype("mask", mask_dtype)

        columns = [name for name in ("click", *_ID_COLUMNS) if name in batch]
        for name in columns:
            shape, dtype = _shape_and_dtype(batch[name])
            if shape != mask_shape:
                raise ValueError(
                    f"{name} has shape {_format_shape(shape)}, expected "
                    f"{_format_shape(mask_shape)} ([batch, positions], the shape of mask)"
                )
            _check_integer_dtype(name, dtype)

        if "weight" in batch:
            shape, dtype = _shape_and_dtype(batch["weight"])
            if shape != mask_shape[:1]:
                raise ValueError(
                    f"weight has shape {_format_shape(shape)}, expected "
                    f"{_format_shape(mask_shape[:1])} ([batch], one weight per row of mask)"
                )
            if dtype.kind != "f":
                raise ValueError(f"weight has dtype {dtype}, expected float32")


def _masked_uint8(states: dict[str, jax.Array], mask) -> dict[str, jax.Array]:
    """Set every state to 0 where `mask == 0` and convert it to uint8."""
    real = jnp.asarray(mask).astype(bool)
    return {name: (jnp.asarray(value).astype(bool) & real).astype(jnp.uint8) for name, value in states.items()}


def _check_integer_dtype(name: str, dtype: np.dtype) -> None:
    if name in _ID_COLUMNS:
        if dtype.kind not in _ID_KINDS:
            raise ValueError(f"{name} has dtype {dtype}, expected int32 (or another integer dtype)")
    elif dtype.kind not in _CLICK_KINDS:
        raise ValueError(f"{name} has dtype {dtype}, expected uint8 (or another integer or bool dtype)")
