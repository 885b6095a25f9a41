"""`evalkit gate`: exit 0 on the same model twice, 1 on a drop (naming the task, scores, delta, p and threshold),
2 with one line when the runs saw different prompts; Holm's correction and the Wilson floor against the textbook."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from evalkit.gate.holm import holm

TASKS = "cmmlu:agronomy,cmmlu:anatomy,cmmlu:ancient_chinese,cmmlu:arts,cmmlu:astronomy,alpaca_zh"


def cli(*argv: str) -> tuple[int, str, str]:
    """`evalkit ARGV` in this process: (exit code, stdout, stderr)."""
    import contextlib
    import io

    from evalkit.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def evaluate(model, output: Path, store: Path, limit: int = 12, tasks: str = TASKS, max_new_tokens: int = 4) -> Path:
    code, _, err = cli("run", "--model", str(model), "--tasks", tasks, "--limit", str(limit), "--max-new-tokens", str(max_new_tokens),
                       "--truncation", "left", "--output-dir", str(output), "--store", str(store), "--no-progress")
    assert code == 0, err
    return next(output.rglob("results_*.json"))


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory, tiny_model_dir):
    """The tiny model evaluated twice (same prompts) into one store: (store, first results, second results, tmp)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("gate")
    store = root / "store.sqlite"
    yield store, evaluate(tiny_model_dir, root / "a", store), evaluate(tiny_model_dir, root / "b", store), root
    torch.set_num_threads(before)


def _worse_copy(results: Path, directory: Path) -> Path:
    """The run's files with every correct cmmlu answer turned wrong (a candidate that lost all it knew)."""
    directory.mkdir()
    data = json.loads(results.read_text(encoding="utf-8"))
    block = data["tasks"]["cmmlu"]
    samples = results.parent / block["samples_file"]
    rows = [json.loads(line) for line in samples.read_text(encoding="utf-8").splitlines()]
    for row in rows:
        if row["correct"]:
            row["correct"], row["prediction"] = False, next(x for x in "ABCD" if x != row["gold"])
    (directory / samples.name).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    for part in (block["micro"], block["macro"], *block["subjects"].values(), *block.get("categories", {}).values()):
        part["acc"] = 0.0
    for task, other in data["tasks"].items():
        if task != "cmmlu":
            shutil.copy(results.parent / other["samples_file"], directory / other["samples_file"])
    path = directory / results.name
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return path


def test_same_model_twice_passes_from_files_and_from_the_store(two_runs, tiny_model_dir):
    store, first, second, root = two_runs
    code, out, err = cli("gate", "--baseline", str(first), "--candidate", str(second), "--store", str(store),
                         "--summary", str(root / "same.md"), "--verdict", str(root / "same.json"))
    assert code == 0, err
    assert "verdict: pass" in out and "REGRESSION" not in out
    verdict = json.loads((root / "same.json").read_text())
    overall = {r["task"]: r for r in verdict["rows"] if r["check"] == "paired" and r["level"] == "overall"}
    assert set(overall) == {"cmmlu", "alpaca_zh"}
    assert overall["cmmlu"]["delta"] == 0 and overall["cmmlu"]["status"] == "no detectable difference"
    assert overall["cmmlu"]["n"] == 60  # 5 subjects x --limit 12, paired by subject + index
    assert "no regression" in (root / "same.md").read_text()
    # the same through run ids and a store query
    code, out, err = cli("gate", "--baseline", "1", "--candidate", f"latest:{tiny_model_dir}", "--store", str(store))
    assert code == 0, err
    assert "candidate: " in out and "cmmlu" in out


def test_a_worse_candidate_exits_1_naming_the_task_scores_delta_p_and_threshold(two_runs):
    store, first, _, root = two_runs
    worse = _worse_copy(first, root / "worse")
    code, out, err = cli("gate", "--baseline", str(first), "--candidate", str(worse), "--store", str(store),
                         "--summary", str(root / "worse.md"), "--verdict", str(root / "worse.json"))
    assert code == 1, err
    verdict = json.loads((root / "worse.json").read_text())
    assert verdict["verdict"] == "regression"
    failing = [r for r in verdict["failing"] if r["level"] == "overall"]
    assert [r["task"] for r in failing] == ["cmmlu"]  # alpaca_zh is unchanged
    row = failing[0]
    assert row["candidate"] == 0 and row["delta"] == pytest.approx(-row["base"]) and row["delta"] < -1
    assert row["p_adjusted"] < 0.05
    line = next(line for line in out.splitlines() if line.startswith("REGRESSION: cmmlu acc"))
    assert f"baseline {row['base']:.2f} -> candidate 0.00" in line and f"delta {row['delta']:+.2f}" in line
    assert "p=" in line and "threshold p<0.05" in line
    assert "regression" in (root / "worse.md").read_text()
    # the same drop below a minimum effect the suite would set larger than it is not a regression
    code, out, _ = cli("gate", "--baseline", str(first), "--candidate", str(worse), "--min-effect", "99")
    assert code == 0 and "worse (below the minimum effect)" in out
    # reversed, the candidate is reported better
    code, out, _ = cli("gate", "--baseline", str(worse), "--candidate", str(first))
    assert code == 0 and " better" in out


def test_different_prompts_are_refused_with_one_line(two_runs, tiny_model_dir):
    store, first, _, root = two_runs
    fewer = evaluate(tiny_model_dir, root / "fewer", store, limit=6, tasks="cmmlu:agronomy")
    code, out, err = cli("gate", "--baseline", str(first), "--candidate", str(fewer), "--tasks", "cmmlu")
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1
    assert "cmmlu: the two runs did not see the same prompts" in err and "--limit" in err
    code, _, err = cli("gate", "--baseline", str(first), "--candidate", str(root / "nope.json"))
    assert code == 2 and "no such results file" in err
    code, _, err = cli("gate", "--baseline", "accepted:nobody", "--candidate", str(first), "--store", str(store))
    assert code == 2 and "no accepted run" in err
    code, _, err = cli("gate", "--baseline", str(first), "--candidate", str(first), "--floor", "cmmlu")
    assert code == 2 and "TASK=POINTS" in err


def test_floor_is_judged_by_the_one_sided_wilson_lower_bound(two_runs):
    from scipy.stats import binomtest

    _, first, second, _ = two_runs
    rows = [json.loads(line) for line in (first.parent / json.loads(first.read_text())["tasks"]["cmmlu"]["samples_file"]).read_text().splitlines()]
    k, n = sum(r["correct"] for r in rows), len(rows)
    lower = binomtest(k, n).proportion_ci(0.90, method="wilson").low * 100  # one-sided 95%
    assert lower < 100 * k / n
    point = 100 * k / n
    code, out, _ = cli("gate", "--baseline", str(first), "--candidate", str(second), "--floor", f"cmmlu={lower - 0.01:.4f}")
    assert code == 0
    # a floor under the point estimate but above the lower bound fails: the sample cannot show it is met
    code, out, _ = cli("gate", "--baseline", str(first), "--candidate", str(second), "--floor", f"cmmlu={(lower + point) / 2:.4f}")
    assert code == 1 and "REGRESSION: cmmlu acc" in out and "Wilson lower bound" in out


def test_holm_matches_the_textbook_step_down():
    p = [0.01, 0.04, 0.03, 0.005]
    # sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 -> 0.02, 0.03, 0.06, 0.04 -> running max 0.02, 0.03, 0.06, 0.06
    assert holm(p) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.9]) == [1.0, 1.0]
    assert holm([]) == []
