"""`evalkit gate` states what it could have detected: per task the smallest drop its paired test
catches with power 0.8 (McNemar's exact power against a brute-force sum over every 2x2 outcome),
partial runs (--limit, a subject subset) marked in the verdict line and summary, p-values alone in
the p column, and profiler figures of unlike runs (another backend) not judged against each other."""

from __future__ import annotations

import json
import math
import shutil

import pytest
from scipy.stats import binom, binomtest

from evalkit.gate.power import (
    mcnemar_detectable_drop,
    mcnemar_power,
    mean_detectable_drop,
)
from tests.test_report_comparable import SUBJECTS, _cli


def _brute_force_power(n: int, psi: float, drop: float, alpha: float) -> float:
    """Every discordant count D and candidate-only count c, each tested with scipy's exact binomial test."""
    q = (psi - drop) / (2 * psi)
    return sum(binom.pmf(d, n, psi) * sum(binom.pmf(c, d, q) for c in range(d + 1) if binomtest(c, d, 0.5).pvalue < alpha)
               for d in range(1, n + 1))


@pytest.mark.parametrize("n, discordant, accuracy, alpha", [(40, 16, 0.3, 0.05), (60, 0, 0.5, 0.025), (12, 3, 0.5, 0.05)])
def test_mcnemar_detectable_drop_has_power_0_8_and_is_the_smallest(n, discordant, accuracy, alpha):
    drop = mcnemar_detectable_drop(n, discordant, accuracy, alpha) / 100
    psi = max(discordant / n if discordant else 2 * accuracy * (1 - accuracy), drop)
    assert mcnemar_power(n, psi, drop, alpha) == pytest.approx(_brute_force_power(n, psi, drop, alpha), abs=1e-9)
    assert _brute_force_power(n, psi, drop, alpha) >= 0.8 - 1e-6
    smaller = drop * 0.97
    assert _brute_force_power(n, max(psi, smaller) if discordant == 0 else psi, smaller, alpha) < 0.8
    # more questions detect smaller drops
    assert mcnemar_detectable_drop(4 * n, 4 * discordant, accuracy, alpha) < drop * 100


def test_mean_detectable_drop_is_the_paired_z_formula():
    z = 1.959963984540054 + 0.8416212335729143
    assert mean_detectable_drop(100, 10.0, 3.0, 0.05) == pytest.approx(z * 10 / 10)
    assert mean_detectable_drop(100, 0.0, 3.0, 0.05) == pytest.approx(z * math.sqrt(2) * 3 / 10)  # runs never differ
    assert mean_detectable_drop(1, 1.0, 1.0, 0.05) is None


@pytest.fixture(scope="module")
def gate_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("gate-power")
    files = {}
    for name in ("fake-base", "fake-cand"):
        code, _, err = _cli("run", "--model", name, "--backend", "fake", "--tasks", f"{SUBJECTS},alpaca_zh", "--limit", "10",
                            "--output-dir", str(root / name), "--no-store", "--no-progress")
        assert code == 0, err
        [files[name]] = (root / name).rglob("results_*.json")
    return root, files


def _table_rows(out: str) -> list[list[str]]:
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("task "))
    columns = [i for i, ch in enumerate(lines[header + 1]) if ch == "-" and (i == 0 or lines[header + 1][i - 1] == " ")]
    rows = []
    for line in lines[header + 2:]:
        if not line.strip() or line.startswith(("detectable:", "verdict:", "REGRESSION", "warning:")):
            break
        rows.append([line[a:b].strip() for a, b in zip(columns, columns[1:] + [len(line)])])
    return rows


def test_partial_runs_are_marked_and_each_task_states_its_detectable_drop(gate_files):
    root, files = gate_files
    code, out, err = _cli("gate", "--baseline", str(files["fake-base"]), "--candidate", str(files["fake-cand"]),
                          "--summary", str(root / "summary.md"), "--verdict", str(root / "verdict.json"))
    assert code == 0, err
    verdict_line = out.strip().splitlines()[-1]
    assert verdict_line.startswith("verdict: pass (exit 0) on a PARTIAL run: ")
    assert "cmmlu 40 items: limit 10, 4 of 67 subjects" in verdict_line and "alpaca_zh 10 items: limit 10" in verdict_line
    summary = (root / "summary.md").read_text(encoding="utf-8")
    assert "no regression (partial run)" in summary and "**Partial run**" in summary
    verdict = json.loads((root / "verdict.json").read_text())
    [cmmlu] = [r for r in verdict["rows"] if r["task"] == "cmmlu" and r["level"] == "overall"]
    detectable = verdict["detectable"]["cmmlu"]
    assert detectable["n"] == 40 and detectable["alpha"] == pytest.approx(0.05 / 2)  # Holm's first step over 2 tasks
    discordant = cmmlu["detail"]["base_only"] + cmmlu["detail"]["candidate_only"]
    assert detectable["drop"] == pytest.approx(mcnemar_detectable_drop(40, discordant, cmmlu["base"] / 100, 0.025))
    assert detectable["drop"] > 10  # 40 questions cannot see a 10-point drop
    assert f"detectable: cmmlu: at n=40 the McNemar exact test detects a drop of {detectable['drop']:.1f} points" in out
    assert "Smallest detectable drops" in summary and "alpaca_zh: at n=10 the paired bootstrap test" in summary

    # the p column holds p-values (or a dash): no percentages, not for profiler rows either
    rows = _table_rows(out)
    assert rows and any(r[1] == "peak_rss_mb" for r in rows)
    for row in rows:
        p_cell = row[6]
        assert "%" not in p_cell and (p_cell == "—" or float(p_cell.lstrip("<")) <= 1), row
        if row[1] == "peak_rss_mb":
            assert p_cell == "—" and row[5].endswith("%)")  # the relative change sits with the delta


def test_profiler_figures_of_another_backend_are_not_judged(gate_files):
    root, files = gate_files
    api = root / "api"
    shutil.copytree(files["fake-cand"].parent, api)
    path = api / files["fake-cand"].name
    data = json.loads(path.read_text(encoding="utf-8"))
    data["backend"] = {"name": "openai", "base_url": "http://127.0.0.1:9/v1"}
    data["profile"]["memory"]["peak_rss_mb"] *= 10  # an in-process figure ten times the base's would warn
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    code, out, err = _cli("gate", "--baseline", str(files["fake-base"]), "--candidate", str(path),
                          "--verdict", str(root / "api.json"))
    assert code == 0, err
    verdict = json.loads((root / "api.json").read_text())
    memory = [r for r in verdict["rows"] if r["check"] == "profile" and r["metric"] == "peak_rss_mb"]
    assert memory and memory[0]["status"] == "not compared" and "openai backend" in memory[0]["threshold"]
    assert not verdict["warnings"] and "warning:" not in out
