"""Optimiser rules for embedding tables that update only the rows a batch uses.

A click model's per-pair tables (`clickjax.parameters.EmbeddingLogits`) have one row per
query-document pair, millions on a large log, while a batch of 4,096 sessions touches at most
40,960 of them. A dense optimiser step reads and writes every row and every optimiser slot of the
table at each step. The sparse step in `clickjax.training` gathers the rows present in a batch into
a small table, differentiates the loss with respect to that small table (the gather's transpose
sums the gradients of an id that occurs several times in the batch), updates those rows and their
optimiser slots with a `TableRule`, and scatters them back into the table.

Each rule has a dense twin (`TableRule.dense_transformation`), an optax transformation that
applies the same formula to every row. For `sgd` and `adagrad` a row whose gradient is 0 does not
change under the dense rule either, so the sparse and dense steps give the same parameters up to
float rounding. For `adam` the sparse rule is lazy Adam: the moments of a row decay only at the
steps that use the row, whereas dense Adam decays every row's moments at every step.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import optax

__all__ = ["TABLE_OPTIMIZERS", "TableRule", "gather_rows", "scatter_rows", "unique_ids"]

TABLE_OPTIMIZERS = ("sgd", "adagrad", "adam")

# The constants of optax.scale_by_rss and optax.scale_by_adam (optax 0.2.8), so that a dense table
# trained with `dense_transformation` follows the same formula as the sparse rule.
_ADAGRAD_INITIAL_ACCUMULATOR = 0.0
_ADAGRAD_EPS = 1e-7
_ADAM_B1 = 0.9
_ADAM_B2 = 0.999
_ADAM_EPS = 1e-8


@dataclass(frozen=True)
class TableRule:
    """An optimiser for a table that computes the update direction of the rows a batch uses.

    The training step turns the direction into the new rows as
    `row - learning_rate * (direction + weight_decay * row)`.

    Attributes:
      name: `sgd` (the direction is the gradient), `adagrad` (the gradient divided by the root of
        the row's sum of squared gradients, which starts at 0.1) or `adam` (lazy Adam with
        b1 = 0.9, b2 = 0.999, eps = 1e-8, bias-corrected with the global step count).
    """

    name: str

    def __post_init__(self):
        if self.name not in TABLE_OPTIMIZERS:
            raise ValueError(
                f"unknown table optimizer {self.name!r}; expected one of {', '.join(TABLE_OPTIMIZERS)}"
            )

    def init(self, table: jax.Array) -> dict[str, jax.Array]:
        """Create the optimiser slots of `table`, one array of the table's shape per slot."""
        if self.name == "adagrad":
            return {"sum_of_squares": jnp.full_like(table, _ADAGRAD_INITIAL_ACCUMULATOR)}
        if self.name == "adam":
            return {"mu": jnp.zeros_like(table), "nu": jnp.zeros_like(table)}
        return {}

    def direction(
        self, gradient: jax.Array, slots: dict[str, jax.Array], count: jax.Array
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        """Compute the update direction of some rows and their new slots.

        Args:
          gradient: the gradient of the rows, summed over their occurrences in the batch.
          slots: the rows' optimiser slots, gathered like `gradient`.
          count: the number of steps taken before this one (int32 scalar).
        """
        if self.name == "adagrad":
            sum_of_squares = slots["sum_of_squares"] + gradient**2
            scale = jnp.where(sum_of_squares > 0, jax.lax.rsqrt(sum_of_squares + _ADAGRAD_EPS), 0.0)
            return gradient * scale, {"sum_of_squares": sum_of_squares}
        if self.name == "adam":
            mu = _ADAM_B1 * slots["mu"] + (1 - _ADAM_B1) * gradient
            nu = _ADAM_B2 * slots["nu"] + (1 - _ADAM_B2) * gradient**2
            step = (count + 1).astype(gradient.dtype)
            mu_hat = mu / (1 - _ADAM_B1**step)
            nu_hat = nu / (1 - _ADAM_B2**step)
            return mu_hat / (jnp.sqrt(nu_hat) + _ADAM_EPS), {"mu": mu, "nu": nu}
        return gradient, {}

    def dense_transformation(self) -> optax.GradientTransformation:
        """Return the optax transformation that applies this rule to every row (learning rate excluded)."""
        if self.name == "adagrad":
            return optax.scale_by_rss(initial_accumulator_value=_ADAGRAD_INITIAL_ACCUMULATOR, eps=_ADAGRAD_EPS)
        if self.name == "adam":
            return optax.scale_by_adam(b1=_ADAM_B1, b2=_ADAM_B2, eps=_ADAM_EPS)
        return optax.identity()


def unique_ids(ids: jax.Array, rows: int) -> tuple[jax.Array, jax.Array]:
    """Find the distinct ids of an id column, in a fixed-size array so that `jit` compiles once.

    The ids are sorted without their positions and then looked up by binary search, because on
    XLA's CPU backend a sort that carries positions along (`argsort`, or `jnp.unique` with
    `return_inverse`) is several times slower than both together.

    Args:
      ids: an int id column of any shape.
      rows: the number of rows of the table the ids index.

    Returns:
      `(index, local)`: `index` `[ids.size]` contains each distinct id once, followed by `rows`
      as filler, with every id outside `0..rows - 1` also replaced by `rows`. `local` has the
      shape of `ids` and gives the position of each id in `index`.
    """
    flat = ids.reshape(-1)
    ordered = jnp.sort(flat)
    starts = jnp.concatenate([jnp.ones((1,), bool), ordered[1:] != ordered[:-1]])
    group = jnp.cumsum(starts) - 1
    # The distinct ids in increasing order, then the dtype's maximum, so the array stays sorted.
    distinct = jnp.full(flat.shape, jnp.iinfo(flat.dtype).max, flat.dtype).at[group].set(ordered)
    local = jnp.searchsorted(distinct, flat).astype(jnp.int32)
    index = jnp.where((distinct >= 0) & (distinct < rows), distinct, rows)
    return index, local.reshape(ids.shape)


def gather_rows(table: jax.Array, index: jax.Array) -> jax.Array:
    """Read `table[index]`, with `nan` for an index outside the table (as `EmbeddingLogits` does)."""
    return table.at[index].get(mode="fill", fill_value=jnp.nan)


def scatter_rows(table: jax.Array, index: jax.Array, values: jax.Array) -> jax.Array:
    """Write `values` to `table[index]`, dropping every index outside the table.

    With an `index` from `unique_ids`, every row inside the table is written at most once.
    """
    return table.at[index].set(values, mode="drop")
