"""Log-space arithmetic that keeps click probabilities near 0 and 1 accurate and differentiable.

Click models multiply and complement probabilities many times along a result page. In log space,
the helpers below keep probabilities of 1e-7 and of 1 - 1e-7 accurate to near machine precision
and keep the gradients of the log-likelihood finite there. The naive `log(1 - p)` in float32
returns `-inf` and a `nan` gradient once p has rounded to 1.

Example:

    >>> import jax.numpy as jnp
    >>> from clickjax.numerics import log1mexp
    >>> round(float(log1mexp(jnp.log(0.25))), 4)  # log(1 - 0.25)
    -0.2877
"""

import math

import jax
import jax.numpy as jnp

__all__ = [
    "bernoulli_log_likelihood",
    "exclusive_cumsum",
    "log1mexp",
    "log_add_exp",
    "log_complement_of_product",
    "log_sigmoid_pair",
]

_LOG_HALF = -math.log(2.0)


def log1mexp(x: jax.Array) -> jax.Array:
    """Compute `log(1 - exp(x))` for `x <= 0`, the log of the complement of a log-probability.

    Uses `log(-expm1(x))` for `x > -ln 2` and `log1p(-exp(x))` below, which keeps the
    relative error near machine precision on both sides (M. Maechler, "Accurately Computing
    log(1 - exp(-|a|)) Assessed by the Rmpfr package", 2012). Each branch only receives inputs
    from its own side, so the branch that `jnp.where` discards cannot send `nan` or `inf` into
    the gradient.

    `x` is clamped to at most `-eps**2`, where `eps` is the machine epsilon of its dtype. So
    `x = 0`, a probability that rounded to 1, returns `2 * log(eps)` and a finite gradient
    instead of `-inf`. That value is about -31.9 in float32 and -72.1 in float64. Inputs above
    0 are invalid and get the same clamp.

    Args:
      x: log-probabilities of any shape, floating point.

    Returns:
      An array of the shape and dtype of `x`.
    """
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.result_type(float))
    eps = jnp.finfo(x.dtype).eps
    x = jnp.minimum(x, -(eps * eps))

    near_zero = x > _LOG_HALF
    x_near_zero = jnp.where(near_zero, x, _LOG_HALF)
    x_far_from_zero = jnp.where(near_zero, _LOG_HALF, x)
    return jnp.where(
        near_zero,
        jnp.log(-jnp.expm1(x_near_zero)),
        jnp.log1p(-jnp.exp(x_far_from_zero)),
    )


@jax.custom_jvp
def log_sigmoid_pair(logits: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Compute `log(p)` and `log(1 - p)` for `p = sigmoid(logits)` with one `exp` and one `log1p`.

    Both share `t = log1p(exp(-|x|))`: `log sigmoid(x) = min(x, 0) - t` and
    `log sigmoid(-x) = min(-x, 0) - t`, the values of `jax.nn.log_sigmoid` (jax 0.10). With two
    calls of `jax.nn.log_sigmoid`, PBM's compiled training step evaluated `t` twice, and on a CPU
    these transcendental functions take most of the model's time.

    Args:
      logits: logits of any shape, floating point.

    Returns:
      `(log p, log(1 - p))`, each of the shape of `logits`.
    """
    shared = jnp.log1p(jnp.exp(-jnp.abs(logits)))
    return jnp.minimum(logits, 0.0) - shared, jnp.minimum(-logits, 0.0) - shared


@log_sigmoid_pair.defjvp
def _log_sigmoid_pair_jvp(primals, tangents):
    # d/dx log sigmoid(x) = sigmoid(-x) and d/dx log sigmoid(-x) = -sigmoid(x). Written out, because
    # the derivatives of `minimum` and `abs` at x = 0, where every logit starts, would give 1 or 0
    # in place of 1/2.
    (logits,), (tangent,) = primals, tangents
    log_p, log_not_p = log_sigmoid_pair(logits)
    return (log_p, log_not_p), (jnp.exp(log_not_p) * tangent, -jnp.exp(log_p) * tangent)


@jax.custom_jvp
def log_add_exp(x: jax.Array, y: jax.Array) -> jax.Array:
    """Compute `log(exp(x) + exp(y))` for finite `x` and `y`, as `max + log1p(exp(-|x - y|))`.

    `jnp.logaddexp` (jax 0.10) also returns `-inf` for two `-inf` inputs, through a `nan`
    test on `x - y`. With that test, PBM's conditional log-probabilities of a batch took 3.4
    times as long on a CPU (measured with jax 0.10). Here two `-inf` inputs give `nan`. A
    click model's log-probabilities are finite wherever its logits are, and a `nan` loss stops
    training with a message.

    Args:
      x: an array of log-values.
      y: an array of log-values, broadcastable with `x`.

    Returns:
      The broadcast shape of the two inputs.
    """
    return jnp.maximum(x, y) + jnp.log1p(jnp.exp(-jnp.abs(x - y)))


@log_add_exp.defjvp
def _log_add_exp_jvp(primals, tangents):
    # The weights exp(x - out) and exp(y - out) sum to 1, and at x = y each is 1/2. The
    # derivatives of `maximum` and `abs` would give other values there.
    (x, y), (tangent_x, tangent_y) = primals, tangents
    out = log_add_exp(x, y)
    return out, tangent_x * jnp.exp(x - out) + tangent_y * jnp.exp(y - out)


def log_complement_of_product(logits_a: jax.Array, logits_b: jax.Array) -> jax.Array:
    """Compute `log(1 - a * b)` where `a = sigmoid(logits_a)` and `b = sigmoid(logits_b)`.

    Writes the complement as the sum of two disjoint events, `1 - a b = (1 - a) + a (1 - b)`,
    so no subtraction of nearly equal numbers happens even when `a b` is within 1e-7 of 1.
    This is the probability of no click when a click needs two independent events, such
    as examination and attraction.

    Args:
      logits_a: logits of the first probability.
      logits_b: logits of the second probability, broadcastable with `logits_a`.

    Returns:
      The broadcast shape of the two inputs.
    """
    return jnp.logaddexp(
        jax.nn.log_sigmoid(-logits_a),
        jax.nn.log_sigmoid(logits_a) + jax.nn.log_sigmoid(-logits_b),
    )


def bernoulli_log_likelihood(
    log_prob: jax.Array,
    click: jax.Array,
    log_complement: jax.Array | None = None,
) -> jax.Array:
    """Compute the log-probability of the observed click under a Bernoulli with `log P(click = 1)`.

    Returns `log_prob` where `click` is 1 and `log(1 - exp(log_prob))` where it is 0. When
    the caller has an accurate `log_complement` (for example from `log_complement_of_product`)
    it is used instead of `log1mexp`. Because `log1mexp` has a finite gradient everywhere, a
    `log_prob` that rounded to 0 does not make the gradient `nan`, whether or not the slot
    was clicked.

    Args:
      log_prob: `[batch, positions]` log P(c = 1).
      click: `[batch, positions]` uint8, int or bool, 1 = clicked.
      log_complement: optional `[batch, positions]` log P(c = 0).

    Returns:
      `[batch, positions]` log P(c = observed), in the dtype of `log_prob`.
    """
    clicked = jnp.asarray(click).astype(bool)
    if log_complement is None:
        log_complement = log1mexp(log_prob)
    return jnp.where(clicked, log_prob, log_complement)


def exclusive_cumsum(x: jax.Array, axis: int = 1) -> jax.Array:
    """Sum, for each slot, the entries strictly before it along `axis`, so the first slot gets 0.

    In log space this turns per-slot factors into the probability of everything above a slot,
    such as log P(no click above slot k) from the log-probabilities of a skip at each slot.

    Args:
      x: an array, usually `[batch, positions]`.
      axis: the axis to sum along.

    Returns:
      An array of the shape and dtype of `x`.
    """
    # Shifting the inclusive sum by one slot, rather than subtracting x from it, stays exact
    # when an entry is -inf (a log-probability of 0).
    total = jnp.moveaxis(jnp.cumsum(jnp.asarray(x), axis=axis), axis, -1)
    shifted = jnp.concatenate([jnp.zeros_like(total[..., :1]), total[..., :-1]], axis=-1)
    return jnp.moveaxis(shifted, -1, axis)
