"""Predictions of a trained click model for new rankings: click probabilities and relevance.

Both functions take a batch dict with the batch contract's columns (`mask`, `position` and the id
columns the model uses, each `[batch, positions]`); the `click` column is not needed. Build the ids
with the vocabulary of the training log, so that known query-document pairs get their trained
parameters and unknown ones the out-of-vocabulary parameter.

Example:

    >>> model = load_model("runs/pbm/model")
    >>> probabilities = predict_clicks(model, batch)  # [batch, positions], 0 at padding
"""

import jax
import jax.numpy as jnp
from flax import nnx

__all__ = ["predict_clicks", "relevance"]


def predict_clicks(model: nnx.Module, batch: dict) -> jax.Array:
    """Compute the probability that each result of a ranking is clicked, P(c_k = 1).

    The probabilities are marginal over the hidden states and ignore any clicks in the batch, so
    they are the model's prediction for a ranking no one has seen yet.

    Args:
      model: a click model from `clickjax.models` or `load_model`.
      batch: a batch dict with `mask`, `position` and the id columns the model uses.

    Returns:
      `[batch, positions]` probabilities, 0 where `mask == 0`.

    Raises:
      ValueError: if a column has the wrong shape or dtype.
    """
    probabilities = jnp.exp(model.log_click_probs(batch))
    return jnp.where(jnp.asarray(batch["mask"]).astype(bool), probabilities, 0.0)


def relevance(model: nnx.Module, batch: dict) -> jax.Array:
    """Estimate the relevance of each result's query-document pair, a probability in (0, 1).

    What relevance means depends on the model: the attraction probability for PBM and UBM, the
    product of attraction and satisfaction for DBN; `clickjax.models` documents each one.

    Args:
      model: a click model from `clickjax.models` or `load_model`.
      batch: a batch dict with `mask` and the id columns the model uses; it may have more slots
        than the model's page length.

    Returns:
      `[batch, positions]` relevance estimates, 0 where `mask == 0`.

    Raises:
      ValueError: if a column has the wrong shape or dtype.
    """
    estimates = model.relevance(batch)
    return jnp.where(jnp.asarray(batch["mask"]).astype(bool), estimates, 0.0)
