"""Report statistics and edges: McNemar's exact test and the paired bootstrap against cases worked
out by hand, pairing of per-sample files, one-line errors, training runs profiled into the store."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml

from evalkit.report.samples import pair_rows
from evalkit.report.significance import mcnemar_exact, paired_bootstrap, verdict
from tests.helpers import run_cli


def _correctness(both: int, base_only: int, candidate_only: int, neither: int) -> tuple[list[bool], list[bool]]:
    base = [True] * both + [True] * base_only + [False] * candidate_only + [False] * neither
    candidate = [True] * both + [False] * base_only + [True] * candidate_only + [False] * neither
    return base, candidate


def _exact_two_sided(b: int, c: int) -> float:
    """By hand: under H0 the discordant count c ~ Binomial(b + c, 1/2); double the smaller tail."""
    n, k = b + c, min(b, c)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n
    return min(1.0, 2 * tail)


@pytest.mark.parametrize("b, c", [(2, 9), (1, 10), (7, 3), (5, 5), (0, 6)])
def test_mcnemar_exact_matches_the_binomial_worked_by_hand(b, c):
    base, candidate = _correctness(both=5, base_only=b, candidate_only=c, neither=4)
    result = mcnemar_exact(base, candidate)
    assert result.detail == {"base_only": b, "candidate_only": c, "both": 5}
    assert result.p_value == pytest.approx(_exact_two_sided(b, c), abs=1e-12)
    assert result.delta == pytest.approx((c - b) / len(base))


def test_mcnemar_2x2_table_and_verdicts():
    # 2x2 table: both right 5, base only 2, candidate only 9, both wrong 4.
    # p = 2 * (C(11,0) + C(11,1) + C(11,2)) / 2^11 = 2 * 67 / 2048 = 0.0654296875
    result = mcnemar_exact(*_correctness(5, 2, 9, 4))
    assert result.p_value == pytest.approx(134 / 2048, abs=1e-15)
    assert result.verdict == "no detectable difference (p=0.065)"
    # base only 1, candidate only 10: p = 2 * (1 + 11) / 2048 = 0.01171875 -> better
    assert mcnemar_exact(*_correctness(5, 1, 10, 4)).verdict == "better, p=0.012"
    assert mcnemar_exact(*_correctness(5, 10, 1, 4)).verdict == "worse, p=0.012"
    # no discordant pair: nothing to tell the models apart
    assert mcnemar_exact(*_correctness(3, 0, 0, 3)).p_value == 1.0
    assert verdict(0.02, 0.003) == "better, p=0.003"


def test_paired_bootstrap_on_constructed_cases():
    base = [float(10 + (i * 7) % 13) for i in range(40)]
    shifted = [x + 5.0 + ((i % 3) - 1) * 0.5 for i, x in enumerate(base)]  # always 4.5..5.5 higher
    better = paired_bootstrap(base, shifted, resamples=2000, seed=7)
    assert better.delta == pytest.approx(sum(s - b for s, b in zip(shifted, base)) / 40)
    # no resample can have a mean difference <= 0: the p-value is its floor 2 / (resamples + 1)
    assert better.p_value == pytest.approx(2 / 2001)
    low, high = better.detail["ci95"]
    assert 4.5 <= low <= better.delta <= high <= 5.5
    assert better.verdict.startswith("better, p=")
    assert paired_bootstrap(base, shifted, resamples=2000, seed=7) == better  # fixed seed: same answer

    # differences +1/-1 in equal numbers: mean 0, no detectable difference
    wobble = [x + (1.0 if i % 2 else -1.0) for i, x in enumerate(base)]
    same = paired_bootstrap(base, wobble, resamples=2000, seed=7)
    assert same.delta == 0 and same.p_value > 0.5 and same.verdict.startswith("no detectable difference")
    assert paired_bootstrap(base, list(base)).p_value == 1.0
    worse = paired_bootstrap(shifted, base, resamples=2000, seed=7)
    assert worse.verdict.startswith("worse, p=")


def test_samples_pair_by_subject_and_index_not_by_file_order():
    base = [{"subject": s, "index": i, "correct": True} for s in ("a", "b") for i in range(3)]
    candidate = [{"subject": s, "index": i, "correct": False} for s in ("b", "a") for i in (2, 0, 1)]
    candidate.pop()  # the candidate never answered (a, 1)
    pairs = pair_rows(base, candidate)
    assert [(x["subject"], x["index"]) for x, _ in pairs] == [("a", 0), ("a", 2), ("b", 0), ("b", 1), ("b", 2)]
    assert all((x["subject"], x["index"]) == (y["subject"], y["index"]) for x, y in pairs)


def test_report_and_leaderboard_errors_are_one_line(tmp_path, capsys):
    store = str(tmp_path / "empty.sqlite")
    code, _, err = run_cli(capsys, "report", "--base", "nope", "--candidate", "other", "--store", store,
                           "--output", str(tmp_path / "r.html"))
    assert code == 2 and err.count("\n") == 1 and "no evaluation run of model 'nope'" in err
    code, _, err = run_cli(capsys, "leaderboard", "--store", store, "--output", str(tmp_path / "site"))
    assert code == 2 and "has no evaluation runs" in err and not (tmp_path / "site").exists()
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"columns": [{"task": "cmmlu"}], "averages": [{"label": "x", "columns": ["MMLU"]}]}))
    code, _, err = run_cli(capsys, "leaderboard", str(bad), "--store", store)
    assert code == 2 and f"{bad}: averages[0] names unknown column(s) MMLU" in err
    mixed = tmp_path / "mixed.yaml"
    mixed.write_text(yaml.safe_dump({"columns": [{"task": "cmmlu", "metric": "acc"}, {"task": "alpaca_zh", "metric": "rouge-l"}],
                                     "averages": [{"label": "Average", "columns": "all"}]}))
    code, _, err = run_cli(capsys, "leaderboard", str(mixed), "--store", store)
    assert code == 2 and err.count("\n") == 1 and "averages[0] (Average) mixes metrics acc, rouge-l" in err
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "index.html").write_text("mine")
    from evalkit.report.leaderboard import prepare_output
    from evalkit.errors import EvalkitError

    with pytest.raises(EvalkitError, match="not written by `evalkit leaderboard`"):
        prepare_output(occupied, force=False)
    assert (occupied / "index.html").read_text() == "mine"


def test_training_is_profiled_and_recorded(tiny_model_dir, tmp_path, capsys):
    recipe = {"model": str(tiny_model_dir), "method": "lora", "dataset": "tasks/data/sft/alpaca_zh_demo.json",
              "dataset_range": [0, 900], "max_samples": 8, "per_device_train_batch_size": 4, "cutoff_len": 128,
              "max_steps": 2, "logging_steps": 1, "save_steps": 100, "report_to": "none",
              "output_dir": str(tmp_path / "ckpt")}
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    store = str(tmp_path / "store.sqlite")
    code, out, err = run_cli(capsys, "train", str(path), "--store", store)
    assert code == 0, err
    assert "train " in out and " tok/s" in out and "peak RSS" in out and "store: run" in out
    profile = json.loads((tmp_path / "ckpt" / "train_profile.json").read_text())
    train = profile["throughput"]["train"]
    # 2 steps x 4 samples, each at most 128 tokens after the cut: the counted tokens are the real ones
    assert 8 < train["tokens"] <= 2 * 4 * 128 and train["tokens_per_s"] > 0
    assert profile["phases"]["train"] > 0 and profile["memory"]["peak_rss_mb"] > 0 and profile["hardware"]["cpu"]

    from evalkit.store.query import list_runs

    [run] = list_runs(store, kind="training")
    assert run.profile["throughput"]["train"]["tokens"] == train["tokens"]
    assert run.tasks[0].n == 2 and run.created_at
    # a later import of the same checkpoint keeps the one run and its profile
    code, out, _ = run_cli(capsys, "import", str(tmp_path / "ckpt"), "--store", store)
    assert code == 0 and "recorded 0 new run(s)" in out and f"already in the store: run(s) {run.id}" in out
    assert Path(run.model_name).name == "ckpt"


def test_wilson_interval_is_not_empty_at_the_edges():
    from evalkit.report.significance import wilson_interval

    # 2 of 2: the normal approximation gives 100..100; Wilson's lower bound is n/(n + z^2) = 2/5.84
    low, high = wilson_interval(2, 2)
    assert high == pytest.approx(1.0) and low == pytest.approx(2 / (2 + 1.959964 ** 2), abs=1e-6)
    low, high = wilson_interval(0, 2)
    assert low == pytest.approx(0.0) and high == pytest.approx(1 - 2 / (2 + 1.959964 ** 2), abs=1e-6)
    assert wilson_interval(0, 0) is None
