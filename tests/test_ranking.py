"""Bradley-Terry from blind votes: recovers known strengths, the closed form for two models, reproducible intervals."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import binomtest

from evalkit.board.ranking import Vote, fit, ranking, wilson


def synthetic_votes(strengths: dict[str, float], prompts: int, per_pair: int, seed: int, tie_share: float = 0.1):
    rng = np.random.default_rng(seed)
    names, votes = sorted(strengths), []
    for p in range(prompts):
        for i, a in enumerate(names):
            for b in names[i + 1:]:
                for _ in range(per_pair):
                    left, right = (a, b) if rng.random() < 0.5 else (b, a)
                    if rng.random() < tie_share:
                        outcome = "tie"
                    else:
                        p_left = 1 / (1 + math.exp(strengths[right] - strengths[left]))
                        outcome = "left" if rng.random() < p_left else "right"
                    votes.append(Vote(left, right, outcome, f"prompt-{p}"))
    return votes


def test_recovers_known_strengths():
    truth = {"base": 0.0, "lora": 0.8, "full": -0.5, "dora": 1.5}
    votes = synthetic_votes(truth, prompts=300, per_pair=2, seed=0, tie_share=0.0)
    models = sorted(truth)
    theta = fit(votes, models, "base")
    for model, value in zip(models, theta):
        assert value == pytest.approx(truth[model], abs=0.15), (model, value)
    result = ranking(votes, "base", rounds=100, seed=7)
    assert [row["model"] for row in result["models"]] == ["dora", "lora", "base", "full"]
    for row in result["models"]:
        assert row["low"] <= truth[row["model"]] <= row["high"]
    probabilities = result["win_probability"]
    assert probabilities["lora"]["base"] == pytest.approx(1 / (1 + math.exp(-theta[models.index("lora")])))
    assert probabilities["base"]["lora"] + probabilities["lora"]["base"] == pytest.approx(1)


def test_two_models_give_the_closed_form():
    """Without the ridge the MLE difference is log(wins / losses) (ties as half a win each)."""
    votes = ([Vote("base", "lora", "right", f"p{i}") for i in range(14)] + [Vote("lora", "base", "right", "p20")] * 5
             + [Vote("base", "lora", "tie", "p30")] * 4)
    theta = fit(votes, ["base", "lora"], "base", ridge=0.0)
    assert theta[1] == pytest.approx(math.log((14 + 2) / (5 + 2)), abs=1e-6)
    result = ranking(votes, "base", rounds=50)
    pair = result["pair"]
    assert (pair["wins"], pair["losses"], pair["ties"]) == (14, 5, 4)
    assert pair["win_rate"] == pytest.approx(16 / 23) and pair["win_rate_ci"] == wilson(16, 23)
    assert pair["sign_test_p"] == pytest.approx(binomtest(14, 19).pvalue)
    assert result["left_win_rate"] == 0.0  # every decided vote above went to the model on the right


def test_an_unbeaten_model_stays_finite_and_the_bootstrap_is_reproducible():
    votes = [Vote("a", "base", "left", f"p{i % 5}") for i in range(20)]
    theta = fit(votes, ["a", "base"], "base")
    assert math.isfinite(theta[0]) and theta[0] > 3
    first, second = ranking(votes, "base", rounds=200, seed=3), ranking(votes, "base", rounds=200, seed=3)
    assert first == second


def test_wilson_matches_its_formula():
    low, high = wilson(8, 10)
    assert (round(low, 4), round(high, 4)) == (0.4902, 0.9433)  # Wilson (1927) score interval, z = 1.96


def test_bad_outcome_is_refused():
    with pytest.raises(ValueError, match="outcome 'maybe'"):
        ranking([Vote("a", "b", "maybe", "p")], "b")
