"""Neural logits over dense result features: linear, MLP and DCN-v2 towers for any role of a click model.

Each module reads the `features` column, `[batch, positions, features]` float32, and returns
`[batch, positions]` logits, so it can take any role (attraction, satisfaction, ...). Unlike a
table, a tower gives a pair never seen in training the logit its features predict.

Features at padding slots (`mask == 0`) are replaced by 0 before the tower runs, so NaN or
garbage there cannot reach the loss or the gradients.

One instance passed to several models is shared: training the models together trains one set
of weights (a two-tower model, with this tower for relevance and per-rank tables for bias).

Example:

    >>> import numpy as np
    >>> from flax import nnx
    >>> from clickjax.neural import MLPLogits
    >>> tower = MLPLogits(features=3, hidden=(8,), rngs=nnx.Rngs(0))
    >>> batch = {"features": np.ones((2, 5, 3), np.float32), "mask": np.ones((2, 5), np.uint8)}
    >>> tower(batch).shape
    (2, 5)
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

__all__ = ["ACTIVATIONS", "DCNLogits", "LinearLogits", "MLPLogits"]

ACTIVATIONS = {
    "relu": jax.nn.relu,
    "gelu": jax.nn.gelu,
    "silu": jax.nn.silu,
    "tanh": jnp.tanh,
    "sigmoid": jax.nn.sigmoid,
}


def _features(batch: dict, column: str, width: int) -> jax.Array:
    """Return the checked feature column with padding slots set to 0."""
    if column not in batch:
        raise ValueError(f"batch is missing the column {column} ([batch, positions, {width}] float32)")
    features = batch[column]
    shape = tuple(jnp.shape(features))
    if len(shape) != 3 or shape[2] != width:
        raise ValueError(
            f"{column} has shape {list(shape)}, expected [batch, positions, {width}]; build the module "
            f"with features={shape[-1] if shape else 0} or pass the matching column"
        )
    features = jnp.asarray(features, jnp.float32)
    if "mask" in batch:
        real = jnp.asarray(batch["mask"]).astype(bool)[..., None]
        features = jnp.where(real, features, 0.0)
    return features


def _check_width(features: int) -> None:
    if features < 1:
        raise ValueError(f"features must be at least 1, got {features}")


def _check_hidden(hidden: Sequence[int]) -> tuple[int, ...]:
    hidden = tuple(int(size) for size in hidden)
    if any(size < 1 for size in hidden):
        raise ValueError(f"hidden sizes must be at least 1, got {list(hidden)}")
    return hidden


def _activation(name: str):
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; expected one of {', '.join(sorted(ACTIVATIONS))}")
    return ACTIVATIONS[name]


class _Tower(nnx.Module):
    """Shared call of the towers: check and mask the features, then apply `_logits`."""

    features: int
    column: str

    def __call__(self, batch: dict) -> jax.Array:
        """Compute `[batch, positions]` logits from `batch[column]`.

        Raises:
          ValueError: if the feature column is missing or its last axis is not `features` wide.
        """
        return self._logits(_features(batch, self.column, self.features))

    def _logits(self, x: jax.Array) -> jax.Array:
        raise NotImplementedError


class LinearLogits(_Tower):
    """A linear function of the features: `logit = features @ w + b`.

    Args:
      features: the width F of the feature column.
      rngs: random streams for the initial weights.
      column: the batch column of features, `[batch, positions, features]` float32.
      init: the initial bias logit.
    """

    def __init__(self, features: int, *, rngs: nnx.Rngs, column: str = "features", init: float = 0.0):
        _check_width(features)
        self.features = int(features)
        self.column = column
        self.linear = nnx.Linear(features, 1, rngs=rngs, bias_init=nnx.initializers.constant(init))

    def _logits(self, x: jax.Array) -> jax.Array:
        return self.linear(x)[..., 0]

    def config(self) -> dict:
        """Return the constructor arguments as a JSON-ready dict, for `save_model`."""
        return {"features": self.features, "column": self.column}


class _Deep(nnx.Module):
    """Dense layers with an activation after each."""

    def __init__(self, inputs: int, hidden: tuple[int, ...], activation: str, rngs: nnx.Rngs):
        sizes = (inputs, *hidden)
        self.layers = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in zip(sizes[:-1], sizes[1:])])
        self.activation = activation

    def __call__(self, x: jax.Array) -> jax.Array:
        function = ACTIVATIONS[self.activation]
        for layer in self.layers:
            x = function(layer(x))
        return x


class MLPLogits(_Tower):
    """A multilayer perceptron over the features with one logit out.

    Args:
      features: the width F of the feature column.
      hidden: the sizes of the hidden layers, in order.
      activation: the activation after each hidden layer, a name from `ACTIVATIONS`.
      rngs: random streams for the initial weights.
      column: the batch column of features, `[batch, positions, features]` float32.
      init: the initial bias of the output layer.
    """

    def __init__(
        self,
        features: int,
        hidden: Sequence[int] = (64, 32),
        *,
        activation: str = "relu",
        rngs: nnx.Rngs,
        column: str = "features",
        init: float = 0.0,
    ):
        _check_width(features)
        _activation(activation)
        self.features = int(features)
        self.hidden = _check_hidden(hidden)
        self.column = column
        self.deep = _Deep(features, self.hidden, activation, rngs)
        width = self.hidden[-1] if self.hidden else features
        self.output = nnx.Linear(width, 1, rngs=rngs, bias_init=nnx.initializers.constant(init))

    def _logits(self, x: jax.Array) -> jax.Array:
        return self.output(self.deep(x))[..., 0]

    def config(self) -> dict:
        """Return the constructor arguments as a JSON-ready dict, for `save_model`."""
        return {
            "features": self.features,
            "hidden": list(self.hidden),
            "activation": self.deep.activation,
            "column": self.column,
        }


class DCNLogits(_Tower):
    """DCN-v2: cross layers that model feature interactions explicitly, then a deep part, then one logit.

    Cross layer l computes `x_{l+1} = x_0 * (W_l x_l + b_l) + x_l` with full-rank `W_l`, where
    `*` is elementwise, so after L layers the output contains feature products up to degree L + 1.
    The deep part is an MLP on the last cross output (the stacked form of DCN-v2).

    Args:
      features: the width F of the feature column.
      cross_layers: the number of cross layers, at least 1.
      hidden: the sizes of the deep part's hidden layers; empty for none.
      activation: the deep part's activation, a name from `ACTIVATIONS`.
      rngs: random streams for the initial weights.
      column: the batch column of features, `[batch, positions, features]` float32.
      init: the initial bias of the output layer.
    """

    def __init__(
        self,
        features: int,
        cross_layers: int = 2,
        hidden: Sequence[int] = (64,),
        *,
        activation: str = "relu",
        rngs: nnx.Rngs,
        column: str = "features",
        init: float = 0.0,
    ):
        _check_width(features)
        _activation(activation)
        if cross_layers < 1:
            raise ValueError(f"cross_layers must be at least 1, got {cross_layers}")
        self.features = int(features)
        self.hidden = _check_hidden(hidden)
        self.column = column
        self.cross = nnx.List([nnx.Linear(features, features, rngs=rngs) for _ in range(cross_layers)])
        self.deep = _Deep(features, self.hidden, activation, rngs)
        width = self.hidden[-1] if self.hidden else features
        self.output = nnx.Linear(width, 1, rngs=rngs, bias_init=nnx.initializers.constant(init))

    def _logits(self, x0: jax.Array) -> jax.Array:
        x = x0
        for layer in self.cross:
            x = x0 * layer(x) + x
        return self.output(self.deep(x))[..., 0]

    def config(self) -> dict:
        """Return the constructor arguments as a JSON-ready dict, for `save_model`."""
        return {
            "features": self.features,
            "cross_layers": len(self.cross),
            "hidden": list(self.hidden),
            "activation": self.deep.activation,
            "column": self.column,
        }
