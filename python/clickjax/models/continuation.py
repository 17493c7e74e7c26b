"""The shared engine of the top-down click models (DBN, SDBN, DCM, CCM): scan, click, go on or stop.

Assumptions common to these models: the user examines slot 1 and walks down the page. An
examined result is clicked with probability alpha_k (attraction). After slot k the user goes on
to slot k + 1 with probability g_k^click if they clicked it and g_k^skip if they did not, and
once they stop they examine nothing more. The models differ only in g^click and g^skip:

    model   g^skip      g^click
    DBN     gamma       gamma * (1 - sigma_k)
    SDBN    1           1 - sigma_k
    DCM     1           lambda_{r_k}
    CCM     tau1        tau2 * (1 - alpha_k) + tau3 * alpha_k

With eps_k = P(slot k is examined), P(c_k = 1 | eps_k) = alpha_k * eps_k and eps_1 = 1.
Without the clicks, the examination probability falls by a factor at each slot,

    eps_{k+1} = eps_k * ((1 - alpha_k) * g_k^skip + alpha_k * g_k^click),

which is a cumulative sum in log space. Given the clicks above slot k, the posterior
examination probability follows

    after a click:  eps_{k+1} = g_k^click,
    after a skip:   eps_{k+1} = g_k^skip * (1 - alpha_k) * eps_k / (1 - alpha_k * eps_k),

because a click proves that slot k was examined, and a skip happens either without
examination or with examination and no attraction. A scan over the slots computes it, carrying
both log eps and log(1 - eps) so that neither needs a subtraction.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp

from clickjax.models.base import ClickModel, draw_bernoulli
from clickjax.numerics import exclusive_cumsum

__all__ = ["ContinuationLogProbs", "ContinuationModel"]


class ContinuationLogProbs(NamedTuple):
    """Log-probabilities of going on from slot k to slot k + 1, each `[batch, positions]`.

    Attributes:
      after_click: log g_k^click, going on after a click at slot k.
      stop_after_click: log(1 - g_k^click), computed without a subtraction.
      after_skip: log g_k^skip, or None for a model in which the user always goes on after
        examining a result without clicking it (g^skip = 1).
      stop_after_skip: log(1 - g_k^skip), or None where `after_skip` is None.
    """

    after_click: jax.Array
    stop_after_click: jax.Array
    after_skip: jax.Array | None = None
    stop_after_skip: jax.Array | None = None


def _posterior_examination_step(state: tuple, inputs: tuple) -> tuple[tuple, tuple]:
    """Compute log P(c_k = 1 | c_<k) and log P(c_k = 0 | c_<k), and advance eps past slot k given c_k.

    `state` is `(log eps_k, log(1 - eps_k))`, each `[batch]`. `inputs` contains slot k of the
    attraction logits, the continuation log-probabilities (`after_skip` and `stop_after_skip`
    may be None), the clicks and the mask. The step is a module-level function so that eager
    calls reuse the compiled scan.
    """
    log_eps, log_not_eps = state
    attraction, after_click, stop_after_click, after_skip, stop_after_skip, clicked_k, mask_k = inputs
    log_alpha = jax.nn.log_sigmoid(attraction)
    log_not_alpha = jax.nn.log_sigmoid(-attraction)

    # P(c_k = 1 | c_<k) = alpha eps and P(c_k = 0 | c_<k) = (1 - alpha) + alpha (1 - eps).
    log_click = log_alpha + log_eps
    log_skip = jnp.logaddexp(log_not_alpha, log_alpha + log_not_eps)

    # After a skip: eps' = g^skip (1 - alpha) eps / (1 - alpha eps), and
    # 1 - eps' = ((1 - eps) + eps (1 - alpha) (1 - g^skip)) / (1 - alpha eps).
    if after_skip is None:
        # With g^skip = 1 the second term of 1 - eps' vanishes. Writing it out would add two
        # -inf terms with logaddexp at the top of the page, whose gradient is nan.
        log_eps_after_skip = log_not_alpha + log_eps - log_skip
        log_not_eps_after_skip = log_not_eps - log_skip
    else:
        log_eps_after_skip = after_skip + log_not_alpha + log_eps - log_skip
        log_not_eps_after_skip = (
            jnp.logaddexp(log_not_eps, log_eps + log_not_alpha + stop_after_skip) - log_skip
        )

    # After a click: eps' = g^click.
    next_log_eps = jnp.where(clicked_k, after_click, log_eps_after_skip)
    next_log_not_eps = jnp.where(clicked_k, stop_after_click, log_not_eps_after_skip)
    next_state = (
        jnp.where(mask_k, next_log_eps, log_eps),
        jnp.where(mask_k, next_log_not_eps, log_not_eps),
    )
    return next_state, (log_click, log_skip)


class ContinuationModel(ClickModel):
    """Base class of the top-down models that go on with one probability after a click, another after a skip.

    Subclasses set `self.attraction` to a module `batch -> [batch, positions]` attraction
    logits, implement `_continuation_log_probs`, and may override `_draw_continuation` to
    report a satisfaction state from `sample`.

    `sample` returns `click`, `examination` (the slots the user reached), `attraction` (drawn
    at every real slot, examined or not) and, where the subclass models it, `satisfaction`.
    """

    def _continuation_log_probs(self, batch: dict) -> ContinuationLogProbs:
        """Compute the log-probabilities of going on from each slot to the next."""
        raise NotImplementedError(f"{type(self).__name__} does not implement _continuation_log_probs")

    def _draw_continuation(self, batch: dict, key: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array | None]:
        """Draw whether the user would go on after each slot, once for a click and once for a skip.

        Returns:
          `(goes_on_after_click, goes_on_after_skip, satisfied)`, each `[batch, positions]`
          bool. `satisfied` marks the slots where a click would satisfy the user, or is None
          for a model without a satisfaction state.
        """
        continuation = self._continuation_log_probs(batch)
        key_click, key_skip = jax.random.split(key)
        goes_on_after_click = jax.random.bernoulli(key_click, jnp.exp(continuation.after_click))
        if continuation.after_skip is None:
            goes_on_after_skip = jnp.ones_like(goes_on_after_click)
        else:
            goes_on_after_skip = jax.random.bernoulli(key_skip, jnp.exp(continuation.after_skip))
        return goes_on_after_click, goes_on_after_skip, None

    def _log_click_probs(self, batch: dict) -> jax.Array:
        mask = jnp.asarray(batch["mask"]).astype(bool)
        attraction = self.attraction(batch)
        continuation = self._continuation_log_probs(batch)
        log_alpha = jax.nn.log_sigmoid(attraction)
        log_not_alpha = jax.nn.log_sigmoid(-attraction)

        # log eps_{k+1} - log eps_k = log((1 - alpha_k) g_k^skip + alpha_k g_k^click). A padding
        # slot contributes 0, so it changes no later slot.
        log_go_on_after_skip = log_not_alpha
        if continuation.after_skip is not None:
            log_go_on_after_skip = log_go_on_after_skip + continuation.after_skip
        log_step = jnp.logaddexp(log_go_on_after_skip, log_alpha + continuation.after_click)
        log_step = jnp.where(mask, log_step, 0.0)
        return log_alpha + exclusive_cumsum(log_step, axis=1)

    def _conditional_log_probs(self, batch: dict) -> tuple[jax.Array, jax.Array]:
        mask = jnp.asarray(batch["mask"]).astype(bool)
        clicked = jnp.asarray(batch["click"]).astype(bool)
        attraction = self.attraction(batch)
        continuation = self._continuation_log_probs(batch)

        # Slot 1 is examined with certainty: eps_1 = 1, so log(1 - eps_1) = -inf.
        batch_size = attraction.shape[0]
        initial = (
            jnp.zeros((batch_size,), attraction.dtype),
            jnp.full((batch_size,), -jnp.inf, attraction.dtype),
        )
        inputs = (
            attraction.T,
            continuation.after_click.T,
            continuation.stop_after_click.T,
            None if continuation.after_skip is None else continuation.after_skip.T,
            None if continuation.stop_after_skip is None else continuation.stop_after_skip.T,
            clicked.T,
            mask.T,
        )
        _, (log_click, log_skip) = jax.lax.scan(_posterior_examination_step, initial, inputs)
        return log_click.T, log_skip.T

    def _sample(self, batch: dict, key: jax.Array) -> dict[str, jax.Array]:
        mask = jnp.asarray(batch["mask"]).astype(bool)
        key_attraction, key_continuation = jax.random.split(key)

        # Attraction is drawn at every real slot, examined or not.
        attraction = draw_bernoulli(key_attraction, self.attraction(batch)) & mask
        goes_on_after_click, goes_on_after_skip, satisfied = self._draw_continuation(batch, key_continuation)

        # While the user examines, a click happens exactly where the result attracts, so the
        # user reaches slot k when every real slot above k let them go on. A masked slot lets
        # everyone through, so it changes no later slot.
        goes_on = jnp.where(attraction, goes_on_after_click, goes_on_after_skip) | ~mask
        stops_above = exclusive_cumsum((~goes_on).astype(jnp.int32), axis=1)
        examination = (stops_above == 0) & mask
        click = examination & attraction

        states = {"click": click, "examination": examination, "attraction": attraction}
        if satisfied is not None:
            states["satisfaction"] = click & satisfied
        return states
