"""A small optax training loop for tests: mean loss plus every module's prior penalty over N.

The objective of one step is `sum over models of model.loss(batch) + sum of penalties / N`, where
N is the weighted number of real results in the training log and the penalties come from every
submodule with a `penalty()` method. Over an epoch this is the negative log-posterior divided by
N, so training converges to the MAP estimate (the maximum-likelihood estimate without priors).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from clickjax.data import ClickLog


def real_results(log: ClickLog) -> float:
    """Return the weighted number of real results of a log."""
    columns = log.columns
    return float((columns["weight"][:, None] * columns["mask"]).sum(dtype=np.float64))


def total_penalty(models) -> jax.Array:
    """Sum `penalty()` over the distinct submodules of the models that have one."""
    total = jnp.zeros(())
    seen = set()
    for model in models:
        for _, module in nnx.iter_modules(model):
            if id(module) in seen or not hasattr(module, "penalty"):
                continue
            seen.add(id(module))
            total = total + module.penalty()
    return total


class Models(nnx.Module):
    """Several models trained on one summed loss; shared submodules stay shared."""

    def __init__(self, models):
        self.models = nnx.List(models)


@nnx.jit(static_argnums=(4,))
def _step(group, optimizer, batch, oov_key, oov_rate, results):
    if oov_rate:
        real = batch["mask"] == 1
        replaced = jax.random.bernoulli(oov_key, oov_rate, real.shape) & real
        batch = {**batch, "query_doc_id": jnp.where(replaced, 1, batch["query_doc_id"])}

    def objective(group):
        loss = sum(model.loss(batch) for model in group.models)
        return loss + total_penalty(list(group.models)) / results

    loss, grads = nnx.value_and_grad(objective)(group)
    optimizer.update(group, grads)
    return loss


def fit(models, log: ClickLog, *, epochs: int, batch_size: int, learning_rate: float, oov_rate: float = 0.0, seed: int = 0):
    """Train one model, or a list of models on one summed loss, in place; return the last epoch's mean objective."""
    group = Models(models if isinstance(models, (list, tuple)) else [models])
    optimizer = nnx.Optimizer(group, optax.adam(learning_rate), wrt=nnx.Param)
    results = jnp.asarray(real_results(log), jnp.float32)
    key = jax.random.key(seed)
    mean = np.nan
    for epoch in range(epochs):
        losses = []
        for step, batch in enumerate(log.batches(batch_size, shuffle=True, seed=seed * 1000 + epoch)):
            oov_key = jax.random.fold_in(key, epoch * 100_000 + step)
            losses.append(float(_step(group, optimizer, batch, oov_key, oov_rate, results)))
        mean = float(np.mean(losses))
    return mean


def held_out_log_likelihood(model, log: ClickLog, batch_size: int = 8192) -> float:
    """Return the mean log-likelihood per real result, weighted, of `model` on `log`."""
    total = 0.0
    count = 0.0
    for batch in log.batches(batch_size):
        weight = batch["weight"][:, None] * batch["mask"]
        total += float(np.sum(weight * np.asarray(_log_likelihood(model, batch))))
        count += float(weight.sum())
    return total / count


@nnx.jit
def _log_likelihood(model, batch):
    return model.log_likelihood(batch)
