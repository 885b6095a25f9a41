"""`evalkit report` compares only runs of the same questions and prompts (issue 29).

A base evaluated on four CMMLU subjects with --limit 10 (40 questions) and a candidate evaluated
twice: on the same 40, then once more on 3 questions (the newest run). The report picks the
comparable 40-question run, or, asked for the 3-question run, refuses in one line; forced with
--allow-mismatch, a red banner tops the page and "paired n" is 3. Also: the delta's Newcombe
interval against a published value and a hand computation, grey non-significant deltas, profiler
figures compared only like with like (a copy of a run relabelled as the openai backend), and the
instruction beside paired generations. Runs use ``--backend fake`` (no model) and the real task data.
"""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import pytest

from evalkit.report.compare import compare
from evalkit.report.significance import newcombe_paired_interval
from tests.conftest import REPO
from tests.helpers import run_cli

SUBJECTS = "cmmlu:agronomy,cmmlu:anatomy,cmmlu:arts,cmmlu:astronomy"


def _cli(*argv: str) -> tuple[int, str, str]:
    import contextlib
    import io

    from evalkit.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def _run(store: Path, out: Path, model: str, tasks: str, limit: int) -> int:
    code, text, err = _cli("run", "--model", model, "--backend", "fake", "--tasks", tasks, "--limit", str(limit),
                           "--output-dir", str(out), "--store", str(store), "--no-progress")
    assert code == 0, err
    return int(re.search(r"store: run (\d+)", text).group(1))


def _as_api_run(results_dir: Path, directory: Path, store: Path) -> None:
    """A copy of a run's files as another model served through the openai backend (an HTTP client's memory)."""
    shutil.copytree(results_dir, directory)
    [results_file] = directory.glob("results_*.json")
    data = json.loads(results_file.read_text(encoding="utf-8"))
    data["backend"] = {"name": "openai", "base_url": "http://127.0.0.1:9/v1"}
    data["model"].update(name="fake-api", source="fake:fake-api", weights_sha256="e" * 64)  # a model of its own
    data["profile"]["memory"]["peak_rss_mb"] = 1.0
    results_file.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    code, out, err = _cli("import", str(directory), "--store", str(store))
    assert code == 0 and "recorded 1 new run(s)" in out, err


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("comparable")
    store = root / "store.sqlite"
    runs = {"base": _run(store, root / "base", "fake-base", f"{SUBJECTS},alpaca_zh", 10),
            "full": _run(store, root / "cand-full", "fake-cand", f"{SUBJECTS},alpaca_zh", 10),
            "three": _run(store, root / "cand-three", "fake-cand", "cmmlu:agronomy,cmmlu:anatomy,cmmlu:arts", 1)}
    _as_api_run(root / "cand-full" / "fake-cand", root / "api" / "fake-api", store)
    return {"root": root, "store": str(store), "runs": runs}


def _samples(directory: Path, task: str) -> list[dict]:
    [path] = directory.rglob(f"samples_{task}_*.jsonl")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_the_newest_comparable_candidate_run_is_picked(store, capsys):
    data = compare("fake-base", "fake-cand", store["store"])
    [cmmlu] = [row for row in data["summary"] if row["task"] == "cmmlu"]
    assert cmmlu["n"] == 40 and data["mismatches"] == []
    assert [r["id"] for r in data["candidate"]["runs"]] == [store["runs"]["full"]]  # not the newer 3-question run
    assert any(f"run #{store['runs']['three']}" in note and "not comparable" in note for note in data["choice_notes"])
    # the candidate's accuracy is that of its 40-question run's samples
    rows = _samples(store["root"] / "cand-full", "cmmlu")
    assert cmmlu["candidate"] == pytest.approx(100 * sum(r["correct"] for r in rows) / len(rows))
    code, out, err = run_cli(capsys, "report", "--base", "fake-base", "--candidate", "fake-cand", "--store", store["store"],
                             "--output", str(store["root"] / "picked.html"), "--force")
    assert code == 0, err
    assert "paired n 40" in out and "95% CI" in out


def test_a_run_on_other_questions_is_refused_in_one_line_or_forced_with_a_banner(store, capsys):
    three = str(store["runs"]["three"])
    output = store["root"] / "forced.html"
    code, out, err = run_cli(capsys, "report", "--base", "fake-base", "--candidate", three, "--store", store["store"],
                             "--output", str(output))
    assert code == 2 and out == "" and err.count("\n") == 1 and not output.exists()
    assert "cmmlu: no candidate run is comparable" in err
    assert "3 questions in common of the base's 40 and the candidate's 3, 37 of 40 prompts differ" in err
    assert "--base RUN --candidate RUN" in err and "--allow-mismatch" in err
    # picked by id, the comparable run is compared
    code, out, err = run_cli(capsys, "report", "--base", "fake-base", "--candidate", str(store["runs"]["full"]),
                             "--store", store["store"], "--output", str(store["root"] / "by-id.html"))
    assert code == 0 and "paired n 40" in out, err

    code, out, err = run_cli(capsys, "report", "--base", "fake-base", "--candidate", three, "--store", store["store"],
                             "--output", str(output), "--allow-mismatch")
    assert code == 0, err
    assert out.startswith("MISMATCH: cmmlu") and "paired n 3)" in out
    html = output.read_text(encoding="utf-8")
    body = html[html.index("<body>") + len("<body>"):].lstrip()
    assert body.startswith('<div id="mismatch" class="mismatch"')  # the first thing on the page
    data = compare("fake-base", three, store["store"], allow_mismatch=True)
    [row] = data["summary"]
    assert row["n"] == 3
    # scores are taken on the 3 questions both answered, not the base's 40 against the candidate's 3
    keys = {(r["subject"], r["index"]) for r in _samples(store["root"] / "cand-three", "cmmlu")}
    base_rows = [r for r in _samples(store["root"] / "base", "cmmlu") if (r["subject"], r["index"]) in keys]
    assert len(base_rows) == 3 and row["base"] == pytest.approx(100 * sum(r["correct"] for r in base_rows) / 3)


def _wilson(k: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    p = k / n
    centre, half = p + z * z / (2 * n), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (centre - half) / (1 + z * z / n), (centre + half) / (1 + z * z / n)


def _newcombe_by_hand(e: int, f: int, g: int, h: int) -> tuple[float, float]:
    """Newcombe (1998) method 10 written out from the paper's table (e both, f first only, g second only, h neither)."""
    n = e + f + g + h
    p1, p2 = (e + f) / n, (e + g) / n
    (l1, u1), (l2, u2) = _wilson(e + f, n), _wilson(e + g, n)
    a, b = (e + f) * (g + h) * (e + g) * (f + h), e * h - f * g
    c = b - n / 2 if b > n / 2 else (min(0, b))
    phi = c / math.sqrt(a) if a else 0
    low = p1 - p2 - math.sqrt((p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2)
    high = p1 - p2 + math.sqrt((u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2)
    return low, high


def test_newcombe_paired_interval_matches_a_published_value_and_the_definition():
    # Fagerland, Lydersen & Laake (2017), ch. 8, Cavo et al. 2012 (59, 6 / 16, 80): -0.0621 (95% CI -0.1186 to -0.0046)
    low, high = newcombe_paired_interval(both=59, base_only=16, candidate_only=6, neither=80)
    assert (round(low, 4), round(high, 4)) == (-0.1186, -0.0046)
    for table in ((36, 12, 2, 0), (5, 1, 10, 4), (3, 0, 0, 3), (0, 2, 1, 0), (20, 9, 9, 2)):
        e, f, g, h = table  # f: candidate only right, g: base only right
        assert newcombe_paired_interval(e, g, f, h) == pytest.approx(_newcombe_by_hand(*table), abs=1e-9)
        low, high = newcombe_paired_interval(e, g, f, h)
        assert -1 <= low <= (f - g) / sum(table) <= high <= 1


def test_non_significant_deltas_are_grey_and_carry_their_interval(store):
    output = store["root"] / "grey.html"
    code, _, err = _cli("report", "--base", "fake-base", "--candidate", "fake-cand", "--store", store["store"],
                        "--output", str(output), "--force")
    assert code == 0, err
    data = compare("fake-base", "fake-cand", store["store"])
    html = output.read_text(encoding="utf-8")
    summary = html[html.index('id="summary"'):html.index("</table>", html.index('id="summary"'))]
    for row, cells in zip(data["summary"], re.findall(r"<tr><td>.*?</tr>", summary, re.DOTALL)):
        css = re.search(r'<span class="(\w+)">[+-]\d', cells).group(1)
        expected = ("good" if row["delta"] > 0 else "bad") if row["p_value"] < 0.05 and row["delta"] else "same"
        assert css == expected, (row["task"], row["p_value"], css)
        low, high = row["delta_ci"]
        assert low <= row["delta"] <= high and f"{low:+.1f}..{high:+.1f}" in cells


def test_profiler_figures_come_from_one_run_and_only_like_with_like(store):
    same = compare("fake-base", "fake-cand", store["store"])
    rows = {r["key"]: r for r in same["profile"]}
    assert same["profile_unlike"] is None and rows["peak_rss_mb"]["delta"] is not None
    assert {r["candidate_run"] for r in same["profile"] if r["candidate"] is not None} == {store["runs"]["full"]}
    api = compare("fake-base", "fake-api", store["store"])
    rows = {r["key"]: r for r in api["profile"]}
    assert "openai backend" in api["profile_unlike"]
    assert rows["peak_rss_mb"]["candidate"] == 1.0 and rows["peak_rss_mb"]["delta"] is None  # shown, never subtracted


def test_paired_generations_show_their_instruction(store):
    data = compare("fake-base", "fake-cand", store["store"])
    [section] = [s for s in data["tasks"] if s["task"] == "alpaca_zh"]
    rows = json.loads((REPO / "tasks" / "data" / "sft" / "alpaca_zh_demo.json").read_text(encoding="utf-8"))
    assert section["examples"]
    for example in section["examples"]:
        source = rows[int(example["index"])]
        assert example["instruction"] == "\n".join(p for p in (source["instruction"], source["input"]) if p.strip())


def test_the_forced_report_in_chromium_has_the_banner_on_top_and_paired_n_3(store, tmp_path, browser):
    forced, picked = tmp_path / "forced.html", tmp_path / "picked.html"
    assert _cli("report", "--base", "fake-base", "--candidate", str(store["runs"]["three"]), "--store", store["store"],
                "--output", str(forced), "--allow-mismatch")[0] == 0
    assert _cli("report", "--base", "fake-base", "--candidate", "fake-cand", "--store", store["store"],
                "--output", str(picked))[0] == 0
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(forced.resolve().as_uri())
    banner = page.locator("#mismatch")
    assert banner.is_visible() and "Not comparable" in banner.text_content()
    assert page.eval_on_selector("body", "b => b.firstElementChild.id") == "mismatch"
    assert banner.bounding_box()["y"] < page.locator("h1").bounding_box()["y"]
    colour = page.eval_on_selector("#mismatch", "e => getComputedStyle(e).backgroundColor")
    red, green, blue = (int(x) for x in re.findall(r"\d+", colour)[:3])
    assert red > green and red > blue  # a red banner
    paired = page.eval_on_selector_all("#summary tbody tr", "rs => rs.map(r => r.cells[5].textContent.trim())")
    assert paired == ["3"]
    page.screenshot(path=str(tmp_path / "forced.png"), full_page=True)
    page.goto(picked.resolve().as_uri())
    assert page.locator("#mismatch").count() == 0
    paired = page.eval_on_selector_all("#summary tbody tr", "rs => rs.map(r => [r.cells[0].textContent, r.cells[5].textContent.trim()])")
    assert ["cmmlu", "40"] in paired
    assert page.locator("#examples-alpaca_zh td.instruction").first.text_content().strip()


def test_reports_published_together_share_one_plotly_copy(store, tmp_path):
    from evalkit.report import build_report

    alone, _ = build_report("fake-base", "fake-cand", tmp_path / "alone.html", store["store"])
    assert "<script src=" not in alone.read_text(encoding="utf-8")  # self-contained: plotly inlined
    shared = tmp_path / "site" / "plotly.min.js"
    pages = [build_report("fake-base", "fake-cand", tmp_path / "site" / "reports" / f"{task}.html", store["store"], [task],
                          shared_plotly=shared)[0] for task in ("cmmlu", "alpaca_zh")]
    assert shared.is_file() and list(tmp_path.rglob("plotly*.js")) == [shared]
    for page in pages:
        html = page.read_text(encoding="utf-8")
        assert '<script src="../plotly.min.js"></script>' in html
        assert len(html) < alone.stat().st_size / 10  # the 4.8 MB of plotly.js is not repeated per page
