"""Rankings from blind A/B votes: Bradley-Terry by maximum likelihood, bootstrap intervals over prompts.

Written from the model's definition (Bradley & Terry 1952): P(i beats j) = sigmoid(theta_i - theta_j). A tie
(and "both bad") counts half a win to each side, as in FastChat's arena. A small ridge on theta keeps an
unbeaten model finite. Ratings are anchored at the base model (theta_base = 0) and also shown on the Elo
scale (1000 + 400 * theta / ln 10). Votes on one prompt are correlated, so the bootstrap resamples prompts,
not votes, with a fixed seed: the same votes give the same intervals.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit, log_expit
from scipy.stats import binomtest

OUTCOMES = ("left", "right", "tie", "both_bad")
ELO_SCALE = 400 / math.log(10)


@dataclass(frozen=True)
class Vote:
    left: str  # the model shown on the left
    right: str
    outcome: str  # left | right | tie | both_bad
    prompt: str  # the sample id: the bootstrap's unit


def _wins(votes: list[Vote], models: list[str]) -> np.ndarray:
    """wins[i, j]: how often i beat j, ties as half a win each."""
    index = {m: k for k, m in enumerate(models)}
    wins = np.zeros((len(models), len(models)))
    for vote in votes:
        a, b = index[vote.left], index[vote.right]
        if vote.outcome == "left":
            wins[a, b] += 1
        elif vote.outcome == "right":
            wins[b, a] += 1
        else:
            wins[a, b] += 0.5
            wins[b, a] += 0.5
    return wins


def fit(votes: list[Vote], models: list[str], anchor: str, ridge: float = 1e-3) -> np.ndarray:
    """theta per model (in ``models`` order), theta[anchor] = 0, maximising the penalised log-likelihood."""
    wins = _wins(votes, models)

    def loss(theta):
        diff = theta[:, None] - theta[None, :]
        value = -(wins * log_expit(diff)).sum() + 0.5 * ridge * (theta @ theta)
        # d/dtheta_i of -sum w_ij log s(t_i - t_j): -(w_ij - (w_ij + w_ji) s(t_i - t_j)) summed over j
        p = expit(diff)
        grad = -((wins - (wins + wins.T) * p).sum(axis=1)) + ridge * theta
        return value, grad

    theta = minimize(loss, np.zeros(len(models)), jac=True, method="L-BFGS-B",
                     options={"gtol": 1e-10, "ftol": 1e-14, "maxiter": 1000}).x
    return theta - theta[models.index(anchor)]


def bootstrap(votes: list[Vote], models: list[str], anchor: str, rounds: int = 1000, seed: int = 1234,
              ridge: float = 1e-3) -> np.ndarray:
    """(rounds, models) thetas, each fitted to the votes of prompts drawn with replacement."""
    prompts = sorted({v.prompt for v in votes})
    by_prompt = {p: [v for v in votes if v.prompt == p] for p in prompts}
    rng = np.random.default_rng(seed)
    draws = np.empty((rounds, len(models)))
    for r in range(rounds):
        sample = [v for k in rng.integers(0, len(prompts), len(prompts)) for v in by_prompt[prompts[k]]]
        draws[r] = fit(sample, models, anchor, ridge)
    return draws


def wilson(successes: float, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """Wilson's score interval for a proportion (ties as half successes keep it a proportion of n)."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def ranking(votes: list[Vote], anchor: str, rounds: int = 1000, seed: int = 1234) -> dict:
    """Ratings with 95% intervals and tiers, the win-probability matrix, vote counts, position bias, and
    for exactly two models the win rate (Wilson) and an exact sign test."""
    for vote in votes:
        if vote.outcome not in OUTCOMES:
            raise ValueError(f"vote outcome {vote.outcome!r}: use one of {', '.join(OUTCOMES)}")
    models = sorted({v.left for v in votes} | {v.right for v in votes} | {anchor})
    theta = fit(votes, models, anchor)
    draws = bootstrap(votes, models, anchor, rounds, seed)
    low, high = np.percentile(draws, [2.5, 97.5], axis=0)
    order = sorted(range(len(models)), key=lambda k: -theta[k])
    rows, tier, tier_low = [], 1, None
    for k in order:  # a new tier starts when a model's interval lies wholly below the tier leader's
        if tier_low is not None and high[k] < tier_low:
            tier += 1
            tier_low = None
        if tier_low is None:
            tier_low = low[k]
        rows.append({"model": models[k], "theta": float(theta[k]), "low": float(low[k]), "high": float(high[k]),
                     "elo": 1000 + ELO_SCALE * float(theta[k]), "elo_low": 1000 + ELO_SCALE * float(low[k]),
                     "elo_high": 1000 + ELO_SCALE * float(high[k]), "tier": tier,
                     "votes": sum(v.left == models[k] or v.right == models[k] for v in votes)})
    decided = [v for v in votes if v.outcome in ("left", "right")]
    result = {"models": rows, "anchor": anchor, "votes": len(votes), "prompts": len({v.prompt for v in votes}),
              "rounds": rounds, "seed": seed,
              "win_probability": {a: {b: float(expit(theta[i] - theta[j])) for j, b in enumerate(models)}
                                  for i, a in enumerate(models)},
              "left_win_rate": (sum(v.outcome == "left" for v in decided) / len(decided)) if decided else None}
    if len(models) == 2:
        other = next(m for m in models if m != anchor)
        wins = sum((v.left == other) == (v.outcome == "left") for v in decided)
        ties = len(votes) - len(decided)
        result["pair"] = {"model": other, "wins": wins, "losses": len(decided) - wins, "ties": ties,
                          "win_rate": (wins + 0.5 * ties) / len(votes) if votes else None,
                          "win_rate_ci": wilson(wins + 0.5 * ties, len(votes)),
                          "sign_test_p": binomtest(wins, len(decided)).pvalue if decided else 1.0}
    return result
