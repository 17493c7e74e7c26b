"""Standard errors of the examination probabilities by rank, from the observed Fisher information.

Some models have a table of examination logits: PBM's theta per rank, UBM's theta per rank and
previous click. The standard error of each logit is the square root of the diagonal of the
inverse of the observed information matrix -H. H is the Hessian of the training log's weighted
log-likelihood with respect to the examination logits. The delta method turns it into
the standard error of the probability: se(theta) = theta (1 - theta) se(logit).

NOTE: the Hessian holds every other parameter (attraction per pair) at its fitted value, so
these standard errors leave out the uncertainty of attraction and are smaller than those of the
joint model. They are meant for error bars of the examination curve, not for hypothesis tests.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree
import numpy as np
from flax import nnx

from clickjax.data import ClickLog
from clickjax.parameters import RankLogits

__all__ = ["examination_standard_errors", "examination_table"]


def examination_table(model: nnx.Module) -> nnx.Param | None:
    """Return the parameter that contains the model's examination logits, or None if it has none.

    That is `examination.logits` of a `RankLogits` module or an `examination` parameter itself.
    """
    examination = getattr(model, "examination", None)
    if isinstance(examination, RankLogits):
        return examination.logits
    if isinstance(examination, nnx.Param):
        return examination
    return None


def _hessian(graphdef, flat_logits, unravel, rest, batch):
    def log_likelihood(values):
        model = nnx.merge(graphdef, unravel(values), rest)
        weights = batch["weight"][:, None] * batch["mask"].astype(jnp.float32)
        return jnp.sum(weights * model.log_likelihood(batch))

    return jax.hessian(log_likelihood)(flat_logits)


_jitted_hessian = jax.jit(_hessian, static_argnums=(0, 2))


def examination_standard_errors(model: nnx.Module, log: ClickLog, batch_size: int = 4096) -> np.ndarray | None:
    """Compute the standard error of each examination probability of `model` on `log`.

    The model is not changed.

    Args:
      model: a trained click model.
      log: the log the model was trained on.
      batch_size: sessions per Hessian evaluation.

    Returns:
      An array of the examination table's shape (`[positions + 1]` for PBM, row 0 unused), with
      NaN where the log has no information (such as a rank it never shows), or None for a model
      without an examination table.
    """
    table = examination_table(model)
    if table is None:
        return None
    # Split the examination logits from every other variable, and flatten them into one vector.
    graphdef, examination, rest = nnx.split(model, nnx.All(nnx.Param, nnx.PathContains("examination")), ...)
    flat_logits, unravel = ravel_pytree(examination)
    logits = np.asarray(table.get_value(), np.float64)
    size = logits.size
    if flat_logits.size != size:
        raise NotImplementedError(
            f"{type(model).__name__} has {flat_logits.size} examination parameters besides its table of {size}; "
            "standard errors need the table alone"
        )
    information = np.zeros((size, size))
    for batch in log.batches(batch_size):
        hessian = _jitted_hessian(graphdef, flat_logits, unravel, rest, batch)
        information -= np.asarray(hessian, np.float64)

    # Invert only the block of logits the log informs; the others (padding row 0, unseen ranks)
    # have no curvature and no standard error.
    informed = np.diag(information) > 1e-9
    variances = np.full(size, np.nan)
    if informed.any():
        block = information[np.ix_(informed, informed)]
        variances[informed] = np.diag(np.linalg.pinv(block))
    probability = 1.0 / (1.0 + np.exp(-logits.reshape(-1)))
    with np.errstate(invalid="ignore"):
        standard_error = probability * (1.0 - probability) * np.sqrt(variances)
    return standard_error.reshape(logits.shape)
