"""A float64 expectation-maximisation reference for the position-based model.

PBM: a result at rank r is clicked with probability theta_r * alpha_qd, where examination and
attraction are independent hidden events. EM alternates between the posterior of the hidden events
given each observation and the weighted mean of those posteriors:

    P(attracted | no click) = alpha (1 - theta) / (1 - alpha theta)
    P(examined  | no click) = theta (1 - alpha) / (1 - alpha theta)
    P(attracted | click) = P(examined | click) = 1

This is an independent implementation in numpy against which the gradient-trained model is checked.
Pairs never seen in training keep the initial attraction of 0.5, which is also where the
gradient-trained model's out-of-vocabulary parameter starts (logit 0).
"""

from __future__ import annotations

import numpy as np


def fit_pbm_em(
    columns,
    num_pairs: int,
    positions: int,
    max_iterations: int = 2000,
    tolerance: float = 1e-9,
    floor: float = 1e-6,
):
    """Fit PBM by EM on contract columns; returns (alpha [num_pairs], theta [positions + 1], iterations).

    Probabilities are kept in [floor, 1 - floor] after each step. Without the floor, the attraction of
    a pair never clicked at a well-examined rank decays geometrically to exactly 0 in float64 after a
    few hundred iterations, and a single test click on such a pair makes the test log-likelihood -inf.
    """
    real = columns["mask"].astype(bool)
    ids = columns["query_doc_id"][real]
    ranks = columns["position"][real]
    clicks = columns["click"][real].astype(bool)
    weights = np.broadcast_to(columns["weight"][:, None], real.shape)[real].astype(np.float64)

    alpha = np.full(num_pairs, 0.5)
    theta = np.full(positions + 1, 0.5)
    pair_counts = np.bincount(ids, weights, minlength=num_pairs)
    rank_counts = np.bincount(ranks, weights, minlength=positions + 1)
    seen_pairs = pair_counts > 0
    seen_ranks = rank_counts > 0

    for iteration in range(1, max_iterations + 1):
        a = alpha[ids]
        t = theta[ranks]
        no_click = 1.0 - a * t
        attracted = np.where(clicks, 1.0, a * (1.0 - t) / no_click)
        examined = np.where(clicks, 1.0, t * (1.0 - a) / no_click)

        new_alpha = alpha.copy()
        new_theta = theta.copy()
        new_alpha[seen_pairs] = (np.bincount(ids, weights * attracted, minlength=num_pairs) / np.maximum(pair_counts, 1))[seen_pairs]
        new_theta[seen_ranks] = (np.bincount(ranks, weights * examined, minlength=positions + 1) / np.maximum(rank_counts, 1))[seen_ranks]
        new_alpha = np.clip(new_alpha, floor, 1.0 - floor)
        new_theta = np.clip(new_theta, floor, 1.0 - floor)
        change = max(np.abs(new_alpha - alpha).max(), np.abs(new_theta - theta).max())
        alpha, theta = new_alpha, new_theta
        if change < tolerance:
            break
    return alpha, theta, iteration


def pbm_log_likelihood(columns, alpha: np.ndarray, theta: np.ndarray) -> float:
    """Mean over real results of ln P(observed click), weighted by `weight`."""
    real = columns["mask"].astype(bool)
    probability = alpha[columns["query_doc_id"][real]] * theta[columns["position"][real]]
    clicks = columns["click"][real].astype(bool)
    weights = np.broadcast_to(columns["weight"][:, None], real.shape)[real]
    with np.errstate(divide="ignore"):
        log_prob = np.where(clicks, np.log(probability), np.log1p(-probability))
    return float((weights * log_prob).sum() / weights.sum())
