"""Mixtures of click models: each session follows one component, chosen with learned weights.

Assumptions: a session is drawn from component m with probability w_m = softmax(logits)_m, and
then follows that component's click model. Without the clicks,

    P(c_k = 1) = sum_m w_m * P_m(c_k = 1).

Given the clicks above slot k, the weights become the posterior over components given those
clicks only,

    w_m(k) = w_m * P_m(c_<k) / sum_m' w_m' * P_m'(c_<k),
    P(c_k = 1 | c_<k) = sum_m w_m(k) * P_m(c_k = 1 | c_<k),

where P_m(c_<k) is the product of component m's conditional probabilities of the observed
clicks above k. The click being predicted never enters its own weights, and the product of
these conditionals over a session telescopes to sum_m w_m * P_m(c_1..c_n), the exact mixture
likelihood of the session.

Example:

    >>> from flax import nnx
    >>> from clickjax.models import DBN, PBM, Mixture
    >>> components = [PBM(positions=3, query_doc_pairs=6), DBN(positions=3, query_doc_pairs=6)]
    >>> mixture = Mixture(components, rngs=nnx.Rngs(0))
    >>> mixture.parameter_summary()["weights"]
    [0.5, 0.5]
"""

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from clickjax.models.base import ClickModel, _masked_uint8
from clickjax.numerics import bernoulli_log_likelihood, exclusive_cumsum

__all__ = ["Mixture"]


class Mixture(ClickModel):
    """A mixture of click models with learned component weights.

    The weights start equal. `relevance` is the weight-averaged relevance of the components,
    so every component needs a relevance estimate. `sample` draws a component for each row,
    then samples that row from it.

    Args:
      components: the click models to mix, at least one. They must share `positions` and
        `query_doc_pairs`.
      rngs: random streams. The default weights start at logit 0 and draw nothing, but the
        argument keeps one constructor signature across models whose parameters are random.
      param_dtype: dtype of the weight logits.

    Raises:
      ValueError: if `components` is empty, contains something other than a `ClickModel`, or
        mixes page lengths or table sizes.
    """

    def __init__(
        self,
        components: Sequence[ClickModel],
        *,
        rngs: nnx.Rngs | None = None,
        param_dtype: jnp.dtype = jnp.float32,
    ):
        components = list(components)
        if not components:
            raise ValueError("components must contain at least one click model, got none")
        for index, component in enumerate(components):
            if not isinstance(component, ClickModel):
                raise ValueError(f"components[{index}] must be a ClickModel, got {type(component).__name__}")

        first = components[0]
        for index, component in enumerate(components[1:], start=1):
            if (component.positions, component.query_doc_pairs) != (first.positions, first.query_doc_pairs):
                raise ValueError(
                    f"components[{index}] ({type(component).__name__}) has positions={component.positions} and "
                    f"query_doc_pairs={component.query_doc_pairs}, but components[0] ({type(first).__name__}) has "
                    f"positions={first.positions} and query_doc_pairs={first.query_doc_pairs}. Build every "
                    "component with the same sizes"
                )

        self._set_sizes(first.positions, first.query_doc_pairs)
        self.components = nnx.List(components)
        self.weight_logits = nnx.Param(jnp.zeros((len(components),), param_dtype))

    def _log_weights(self) -> jax.Array:
        """Return the `[components]` log-weights, log softmax of the logits."""
        return jax.nn.log_softmax(self.weight_logits[...])

    def _log_click_probs(self, batch: dict) -> jax.Array:
        # [components, batch, positions]
        log_click = jnp.stack([component._log_click_probs(batch) for component in self.components])
        return jax.nn.logsumexp(self._log_weights()[:, None, None] + log_click, axis=0)

    def _conditional_log_probs(self, batch: dict) -> tuple[jax.Array, jax.Array]:
        mask = jnp.asarray(batch["mask"]).astype(bool)
        conditionals = [component._conditional_log_probs(batch) for component in self.components]
        log_click = jnp.stack([log_prob for log_prob, _ in conditionals])
        log_skip = jnp.stack([log_complement for _, log_complement in conditionals])

        # log P_m(c_<k): the component's log-likelihood of the observed clicks above slot k.
        log_likelihood = bernoulli_log_likelihood(log_click, batch["click"], log_skip)
        log_likelihood = jnp.where(mask, log_likelihood, 0.0)
        log_prefix = exclusive_cumsum(log_likelihood, axis=2)

        # w_m(k) = w_m P_m(c_<k) / sum_m' w_m' P_m'(c_<k)
        log_joint = self._log_weights()[:, None, None] + log_prefix
        log_posterior = log_joint - jax.nn.logsumexp(log_joint, axis=0, keepdims=True)

        return (
            jax.nn.logsumexp(log_posterior + log_click, axis=0),
            jax.nn.logsumexp(log_posterior + log_skip, axis=0),
        )

    def _relevance(self, batch: dict) -> jax.Array:
        relevance = jnp.stack([component._relevance(batch) for component in self.components])
        weights = jax.nn.softmax(self.weight_logits[...])
        return jnp.tensordot(weights, relevance, axes=1)

    def sample(self, batch: dict, rngs: nnx.Rngs) -> dict[str, jax.Array]:
        """Draw a component for each row, then clicks and hidden states from that component.

        The random key comes from `rngs.sample()`, so a stream named "sample" is used when
        `rngs` has one and the default stream otherwise.

        Args:
          batch: a batch dict with `mask` and the id columns the components use, each
            `[batch, positions]`.
          rngs: random streams.

        Returns:
          A dict with `component`, the `[batch]` int32 index of each row's component, and
          `[batch, positions]` uint8 arrays, 0 where `mask == 0`: `click` and every hidden
          state that some component returns. A hidden state is 0 on the rows of a component
          that does not model it.

        Raises:
          ValueError: if a column has the wrong shape or dtype.
        """
        self._check_batch(batch, needs_click=False)
        key_component, *keys = jax.random.split(rngs.sample(), len(self.components) + 1)
        batch_size = jnp.shape(batch["mask"])[0]
        component = jax.random.categorical(key_component, self.weight_logits[...], shape=(batch_size,))

        # Every component samples every row, and each row keeps the draws of its own component.
        states = {}
        for index, (member, key) in enumerate(zip(self.components, keys)):
            chosen = (component == index)[:, None]
            for name, value in member._sample(batch, key).items():
                value_on_chosen_rows = chosen & jnp.asarray(value).astype(bool)
                states[name] = states.get(name, False) | value_on_chosen_rows

        return {**_masked_uint8(states, batch["mask"]), "component": component.astype(jnp.int32)}

    def parameter_summary(self) -> dict:
        """Return the component weights and each component's own summary.

        Returns:
          `{"weights": [w_1, ...], "components": [{"model": class name, "parameters": summary}, ...]}`.

        Raises:
          NotImplementedError: if a component's `parameter_summary` raises it.
        """
        weights = jax.nn.softmax(self.weight_logits[...])
        return {
            "weights": [float(value) for value in weights],
            "components": [
                {"model": type(component).__name__, "parameters": component.parameter_summary()}
                for component in self.components
            ],
        }
