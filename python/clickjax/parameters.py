"""Parameter modules that give a click model its logits: global, per rank, per id, compressed or neural.

A click model gets the logits of each of its roles (examination, attraction, satisfaction,
continuation) through one interface: `module(batch) -> logits` of shape `[batch, positions]`, where
`batch` is the dict of columns described by the batch contract (`query_doc_id`, `position`,
`mask`, ... each `[batch, positions]`). Any Flax NNX module with that call signature can take a
role, so a lookup table can be swapped for a hashed table or a neural network over features
without touching the model.

Every module here initialises its logits to 0 (probability 0.5) unless given another `init`.
This module also re-exports the compressed tables over `query_doc_hash` (`clickjax.compressed`),
the neural towers over `features` (`clickjax.neural`) and the priors (`clickjax.priors`).
`PARAMETER_MODULES` maps the class names of all built-in modules to their classes, which
`load_model` uses to rebuild a saved model's modules.

Example:

    >>> import numpy as np
    >>> from clickjax.parameters import EmbeddingLogits
    >>> attraction = EmbeddingLogits(rows=5)
    >>> batch = {"query_doc_id": np.array([[2, 4, 0]], np.int32)}
    >>> attraction(batch).shape
    (1, 3)
"""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from clickjax.compressed import HashedLogits, QuotientRemainderLogits, RobeLogits
from clickjax.neural import DCNLogits, LinearLogits, MLPLogits
from clickjax.numerics import log_sigmoid_pair
from clickjax.priors import BetaPrior, L2Prior, check_prior

__all__ = [
    "PARAMETER_MODULES",
    "BetaPrior",
    "DCNLogits",
    "EmbeddingLogits",
    "GlobalLogit",
    "HashedLogits",
    "L2Prior",
    "LinearLogits",
    "MLPLogits",
    "QuotientRemainderLogits",
    "RankLogits",
    "RobeLogits",
    "log_sigmoid_pair_of",
]


def batch_column(batch: dict, name: str):
    """Return `batch[name]`, or raise ValueError naming the missing column and the batch's columns."""
    if name not in batch:
        raise ValueError(
            f"batch is missing the column {name} ([batch, positions] int32), which the model reads; "
            f"it has {', '.join(sorted(batch))}"
        )
    return batch[name]


def _lookup(table: jax.Array, index, column: str) -> jax.Array:
    """Look up `table[index]` for an integer id column, rejecting or flagging ids outside the table.

    A numpy `index` is checked here and raises ValueError. Inside `jit` the values are unknown,
    so an id outside `0..len(table) - 1` returns `nan` instead. JAX would otherwise clamp it (or
    wrap a negative id) and silently give it the logit of another row. A `nan` makes the loss
    `nan`, which a trainer notices.
    """
    rows = table.shape[0]
    if isinstance(index, np.ndarray) and index.size and (index.min() < 0 or index.max() >= rows):
        raise ValueError(
            f"{column} contains values from {index.min()} to {index.max()}, but the parameter "
            f"table has {rows} rows (expected values in 0..{rows - 1}). Build the model with the "
            "page length and vocabulary size of the data"
        )

    index = jnp.asarray(index)
    index = jnp.where(index < 0, rows, index)
    # A model whose parameters were gathered to the host holds numpy tables.
    return jnp.asarray(table).at[index].get(mode="fill", fill_value=jnp.nan)


class GlobalLogit(nnx.Module):
    """One logit shared by every session and slot, such as DBN's continuation probability.

    Args:
      init: the initial logit.
      param_dtype: dtype of the logit.
    """

    def __init__(self, *, init: float = 0.0, param_dtype: jnp.dtype = jnp.float32):
        self.logit = nnx.Param(jnp.asarray(init, dtype=param_dtype))

    def __call__(self, batch: dict) -> jax.Array:
        """Broadcast the logit to the shape of the batch's `mask`.

        Args:
          batch: a batch dict that contains `mask` `[batch, positions]`.

        Returns:
          `[batch, positions]` logits, all equal.
        """
        return jnp.broadcast_to(self.logit[...], jnp.shape(batch["mask"]))

    def config(self) -> dict:
        """Return the constructor arguments as a JSON-ready dict, for `save_model`."""
        return {"param_dtype": self.logit[...].dtype.name}


class RankLogits(nnx.Module):
    """One logit per displayed rank, looked up by the `position` column.

    The table has `positions + 1` rows. Row 0 belongs to padding slots (`position == 0`) and
    is never trained by a correct model, because the model masks those slots.

    Args:
      positions: the highest rank the table covers.
      init: the initial logit of every row.
      param_dtype: dtype of the table.
    """

    def __init__(self, positions: int, *, init: float = 0.0, param_dtype: jnp.dtype = jnp.float32):
        if positions < 1:
            raise ValueError(f"positions must be at least 1, got {positions}")
        self.positions = positions
        self.logits = nnx.Param(jnp.full((positions + 1,), init, dtype=param_dtype))

    def __call__(self, batch: dict) -> jax.Array:
        """Look up the logit of each slot's rank.

        Args:
          batch: a batch dict that contains `position` `[batch, positions]` int32, 1-based,
            0 for padding.

        Returns:
          `[batch, positions]` logits, `nan` where `position` is outside `0..positions` and
          the batch is traced by `jit`.

        Raises:
          ValueError: if `position` is a numpy array with a value outside `0..positions`.
        """
        return _lookup(self.logits[...], batch_column(batch, "position"), "position")

    def log_sigmoid_pair(self, batch: dict) -> tuple[jax.Array, jax.Array]:
        """Look up `log(p)` and `log(1 - p)` of each slot's rank, where `p = sigmoid(logit)`.

        They are computed on the `positions + 1` rows of the table and then looked up, which
        gives the values of `clickjax.numerics.log_sigmoid_pair(self(batch))` at a fraction of
        the cost on a large batch.

        Args:
          batch: a batch dict that contains `position` `[batch, positions]` int32.

        Returns:
          Two `[batch, positions]` arrays, `nan` where `position` is outside `0..positions` and
          the batch is traced by `jit`.

        Raises:
          ValueError: if `position` is a numpy array with a value outside `0..positions`.
        """
        log_p, log_not_p = log_sigmoid_pair(self.logits[...])
        position = batch_column(batch, "position")
        return _lookup(log_p, position, "position"), _lookup(log_not_p, position, "position")

    def config(self) -> dict:
        """Return the constructor arguments as a JSON-ready dict, for `save_model`."""
        return {"positions": self.positions, "param_dtype": self.logits[...].dtype.name}


def log_sigmoid_pair_of(module: nnx.Module, batch: dict) -> tuple[jax.Array, jax.Array]:
    """Compute `log(p)` and `log(1 - p)` of a parameter module's probabilities for a batch.

    A module with a `log_sigmoid_pair(batch)` method, such as `RankLogits`, computes them itself.
    Any other module's logits go through `clickjax.numerics.log_sigmoid_pair`.

    Args:
      module: a parameter module `batch -> [batch, positions]` logits.
      batch: the batch dict the module reads.

    Returns:
      `(log p, log(1 - p))`, each of the shape of the module's logits.
    """
    own = getattr(module, "log_sigmoid_pair", None)
    if callable(own):
        return own(batch)
    return log_sigmoid_pair(module(batch))


class EmbeddingLogits(nnx.Module):
    """One logit per dense id, such as attraction per query-document pair.

    The table is indexed by a dense id column of the batch, by default `query_doc_id`. By the
    id convention, row 0 is padding, row 1 is shared by every out-of-vocabulary id, and real
    ids start at 2, so `rows` is the number of real ids plus 2.

    Args:
      rows: the number of rows of the table.
      column: the batch column that contains the ids, `[batch, positions]` int32.
      init: the initial logit of every row.
      prior: an `L2Prior` or `BetaPrior` on every row but the padding row 0, which gives the
        module a `penalty()` for MAP training; None for maximum likelihood.
      param_dtype: dtype of the table.
    """

    def __init__(
        self,
        rows: int,
        *,
        column: str = "query_doc_id",
        init: float = 0.0,
        prior: L2Prior | BetaPrior | None = None,
        param_dtype: jnp.dtype = jnp.float32,
    ):
        if rows < 1:
            raise ValueError(f"rows must be at least 1, got {rows}")
        check_prior(prior)
        self.rows = rows
        self.column = column
        self.prior = prior
        self.logits = nnx.Param(jnp.full((rows,), init, dtype=param_dtype))

    def __call__(self, batch: dict) -> jax.Array:
        """Look up the logit of each slot's id.

        Args:
          batch: a batch dict that contains the id column named by `column`.

        Returns:
          `[batch, positions]` logits, `nan` where an id is outside `0..rows - 1` and the
          batch is traced by `jit`.

        Raises:
          ValueError: if the id column is a numpy array with an id outside `0..rows - 1`.
        """
        return _lookup(self.logits[...], batch_column(batch, self.column), self.column)

    def penalty(self) -> jax.Array:
        """Compute the prior's negative log density of rows 1.., summed, or 0 without a prior."""
        logits = self.logits[...]
        if self.prior is None:
            return jnp.zeros((), logits.dtype)
        return jnp.sum(self.prior.negative_log_density(logits[1:]))

    def config(self) -> dict:
        """Return the constructor arguments as a JSON-ready dict, for `save_model`."""
        return {
            "rows": self.rows,
            "column": self.column,
            "prior": None if self.prior is None else self.prior.config(),
            "param_dtype": self.logits[...].dtype.name,
        }


PARAMETER_MODULES: dict[str, type[nnx.Module]] = {
    module.__name__: module
    for module in (
        GlobalLogit,
        RankLogits,
        EmbeddingLogits,
        HashedLogits,
        QuotientRemainderLogits,
        RobeLogits,
        LinearLogits,
        MLPLogits,
        DCNLogits,
    )
}
