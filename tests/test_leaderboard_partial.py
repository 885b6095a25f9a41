"""The leaderboard of a store holding only --limit runs (the README's quick path) is not empty: partial runs get
a section of their own, one table per setting (--limit, subjects, few-shot), one row per model and setting with
its run count; every score shows n and a 95% interval; an average of one column is not repeated as a column;
profiler figures come from one run per row; the page fits a 1,280 px window in headless Chromium.

Runs use ``--backend fake`` (deterministic answers, no model), so the store fills in seconds; one run is
re-imported with its throughput figures removed, as an API-client run (no prefill/decode timing) would be.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from tests.test_gate import cli
from tests.test_report_pages import _wilson

QUICK = ["--tasks", "cmmlu,alpaca_zh", "--limit", "3"]
WIDE = ["--tasks", "mmlu,cmmlu,ceval,alpaca_zh,alpaca_en", "--limit", "2"]


def _run(store: str, out: Path, model: str, *argv: str) -> dict:
    code, stdout, err = cli("run", "--backend", "fake", "--model", model, *argv, "--max-new-tokens", "8",
                            "--output-dir", str(out), "--store", store, "--no-progress")
    assert code == 0, err
    run_id = int(re.search(r"store: run (\d+)", stdout).group(1))
    [results] = out.rglob("results_*.json")  # each run writes into a directory of its own here
    return {"id": run_id, "results": results}


@pytest.fixture(scope="module")
def quick_store(tmp_path_factory):
    """A: the quick path twice, a re-import of its second run without throughput figures, a subject subset,
    a full alpaca_zh run (ranked); B: the quick path once and all five tasks with --limit 2."""
    root = tmp_path_factory.mktemp("leaderboard-partial")
    store = str(root / "store.sqlite")
    runs = {"a1": _run(store, root / "a1", "a", *QUICK), "a2": _run(store, root / "a2", "a", *QUICK),
            "b1": _run(store, root / "b1", "b", *QUICK)}
    api_like = root / "api-like"  # the same model and setting, as a client that measured no token rates
    shutil.copytree(runs["a2"]["results"].parent, api_like)
    results_file = api_like / runs["a2"]["results"].name
    results = json.loads(results_file.read_text(encoding="utf-8"))
    assert results["profile"]["throughput"].get("prefill")  # the older runs have a prefill rate to leak
    results["profile"]["throughput"] = {}
    results_file.write_text(json.dumps(results, ensure_ascii=False), encoding="utf-8")
    code, out, err = cli("import", str(api_like), "--store", store)
    assert code == 0 and "recorded 1 new run(s)" in out, err
    from evalkit.store.query import list_runs

    runs["a_api"] = {"id": max(r.id for r in list_runs(store))}
    runs["a_subset"] = _run(store, root / "a3", "a", "--tasks", "cmmlu:agronomy", "--limit", "3")
    runs["a_full"] = _run(store, root / "a4", "a", "--tasks", "alpaca_zh")
    runs["b_wide"] = _run(store, root / "b2", "b", *WIDE)
    return {"root": root, "store": store, "runs": runs}


@pytest.fixture(scope="module")
def quick_only_site(tmp_path_factory):
    """Only the README's quick path (two models, --limit 3): the case that printed `0 model(s)`."""
    root = tmp_path_factory.mktemp("leaderboard-quick")
    store = str(root / "store.sqlite")
    for model in ("a", "b"):
        _run(store, root / model, model, *QUICK)
    code, out, err = cli("leaderboard", "leaderboards/default.yaml", "--store", store, "--output", str(root / "site"))
    assert code == 0, err
    return out, root / "site" / "index.html"


@pytest.fixture(scope="module")
def site(quick_store):
    code, out, err = cli("leaderboard", "leaderboards/default.yaml", "--store", quick_store["store"],
                         "--output", str(quick_store["root"] / "site"))
    assert code == 0, err
    return out, quick_store["root"] / "site" / "index.html"


def _tables(page) -> dict[str, dict]:
    """{table heading (the setting, or "ranked"): {"headers", "titles", "rows": [{label, cells, sorts}]}}."""
    return page.evaluate("""() => Object.fromEntries(Array.from(document.querySelectorAll('table.board')).map(t => {
        const heading = t.id === 'leaderboard' ? 'ranked' : document.getElementById(t.id + '-title').textContent.trim();
        const headers = Array.from(t.tHead.rows[0].cells);
        return [heading, {headers: headers.map(h => h.textContent.trim()), titles: headers.map(h => h.title),
            rows: Array.from(t.tBodies[0].rows).filter(r => getComputedStyle(r).display !== 'none').map(r => ({
                label: r.querySelector('.model-cell').dataset.sort, cells: Array.from(r.cells).map(c => c.innerText.replace(/\u00a0/g, ' ').trim()),
                sorts: Array.from(r.cells).map(c => c.dataset.sort), titles: Array.from(r.cells).map(c => c.title)}))}];
    }))""")


def _open(browser, path: Path):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(path.resolve().as_uri())
    return page


def _interval(text: str) -> tuple[float, float]:
    low, high = re.search(r"(\d+\.\d)\.\.(\d+\.\d)", text).groups()
    return float(low), float(high)


def test_quick_path_leaderboard_has_a_row_per_model(quick_only_site, browser):
    out, index = quick_only_site
    lines = out.splitlines()
    assert lines[0] == "2 model(s): fake:a, fake:b" or lines[0] == "2 model(s): fake:b, fake:a"
    assert lines[1].startswith("ranked on full runs: none yet")
    assert lines[2].startswith("2 partial run(s), not ranked") and "fake:a (limit 3) 0-shot, 1 run(s)" in lines[2]
    page = _open(browser, index)
    tables = _tables(page)
    assert "ranked" not in tables and page.locator("#no-full-runs").is_visible()  # said, not an empty table
    assert list(tables) == ["limit 3 · 0-shot"]
    rows = tables["limit 3 · 0-shot"]["rows"]
    assert sorted(r["label"] for r in rows) == ["fake:a", "fake:b"]  # shown by default, no toggle to tick
    assert "2 model(s)" in page.text_content("p.meta")


def test_partial_runs_grouped_by_setting_one_row_per_model_with_run_count(site, browser, quick_store):
    out, index = site
    runs = quick_store["runs"]
    assert out.splitlines()[1] == "ranked on full runs: fake:a"
    assert "fake:a (limit 3) 0-shot, 3 run(s)" in out and "fake:a (limit 3; cmmlu 1/67 subjects) 0-shot, 1 run(s)" in out
    tables = _tables(_open(browser, index))
    assert list(tables) == ["ranked", "limit 2 · 0-shot", "limit 3 · 0-shot", "limit 3 · 0-shot · cmmlu 1/67 subjects"]
    assert [r["label"] for r in tables["ranked"]["rows"]] == ["fake:a"]
    quick = tables["limit 3 · 0-shot"]
    assert sorted(r["label"] for r in quick["rows"]) == ["fake:a", "fake:b"]  # one row per model: no duplicates
    runs_col = quick["headers"].index("runs")
    by_label = {r["label"]: r for r in quick["rows"]}
    assert by_label["fake:a"]["cells"][runs_col] == "3" and by_label["fake:b"]["cells"][runs_col] == "1"
    for key in ("a1", "a2", "a_api"):  # the run count's tooltip names each run
        assert f"#{runs[key]['id']} " in by_label["fake:a"]["titles"][runs_col]
    [subset] = tables["limit 3 · 0-shot · cmmlu 1/67 subjects"]["rows"]
    assert subset["label"] == "fake:a" and "n=3 · 1/67 subj." in subset["cells"][1]
    [wide] = tables["limit 2 · 0-shot"]["rows"]
    assert wide["label"] == "fake:b"


def test_scores_show_n_and_a_95_interval(site, browser, quick_store):
    tables = _tables(_open(browser, site[1]))
    quick = tables["limit 3 · 0-shot"]
    cmmlu, rouge = quick["headers"].index("CMMLU"), quick["headers"].index("alpaca_zh ROUGE-L")
    [b] = [r for r in quick["rows"] if r["label"] == "fake:b"]
    stored = json.loads(quick_store["runs"]["b1"]["results"].read_text(encoding="utf-8"))["tasks"]
    micro = stored["cmmlu"]["micro"]
    assert f"n={micro['n']}" in b["cells"][cmmlu]
    expected = _wilson(micro["correct"], micro["n"])
    assert _interval(b["cells"][cmmlu]) == pytest.approx(expected, abs=0.051)
    low, high = _interval(b["cells"][rouge])  # a mean of per-sample ROUGE: an interval around it, n beside
    assert low < float(b["sorts"][rouge]) < high and "n=3" in b["cells"][rouge]
    ranked = tables["ranked"]
    [a] = ranked["rows"]
    assert "n=100 · 0-shot" in a["cells"][ranked["headers"].index("alpaca_zh ROUGE-L")]  # the full run


def test_an_average_of_one_column_is_not_repeated(site, browser):
    tables = _tables(_open(browser, site[1]))
    for heading, table in tables.items():
        for header, title in zip(table["headers"], table["titles"]):
            if header.endswith("average"):  # an average shown covers two or more of the table's columns
                assert title.startswith("mean of ") and "," in title.split(";")[0], (heading, header, title)
    quick = tables["limit 3 · 0-shot"]  # CMMLU alone, alpaca_zh alone: no average repeats them
    assert not [h for h in quick["headers"] if h.endswith("average")]
    assert quick["headers"].count("CMMLU") == 1
    wide = tables["limit 2 · 0-shot"]  # MMLU, CMMLU, C-Eval: their mean is a column of its own
    headers = wide["headers"]
    mc = headers.index("MC accuracy average")
    [row] = wide["rows"]
    parts = [float(row["sorts"][headers.index(h)]) for h in ("MMLU", "CMMLU", "C-Eval")]
    assert float(row["sorts"][mc]) == pytest.approx(sum(parts) / 3)


def test_profiler_figures_come_from_the_row_s_own_run(site, browser, quick_store):
    runs = quick_store["runs"]
    tables = _tables(_open(browser, site[1]))
    quick = tables["limit 3 · 0-shot"]
    headers = quick["headers"]
    by_label = {r["label"]: r for r in quick["rows"]}
    rss, prefill = headers.index("RSS MB"), headers.index("prefill tok/s")
    # A's newest run in this setting measured no token rates: its row shows none, not an older run's
    assert f"run #{runs['a_api']['id']}" in by_label["fake:a"]["cells"][rss]
    assert by_label["fake:a"]["cells"][prefill] == "-"
    assert f"run #{runs['b1']['id']}" in by_label["fake:b"]["cells"][rss] and by_label["fake:b"]["cells"][prefill] != "-"
    ranked = tables["ranked"]
    assert f"run #{runs['a_full']['id']}" in ranked["rows"][0]["cells"][ranked["headers"].index("RSS MB")]
    stored = json.loads(runs["a_full"]["results"].read_text(encoding="utf-8"))["profile"]["memory"]["peak_rss_mb"]
    assert float(ranked["rows"][0]["sorts"][ranked["headers"].index("RSS MB")]) == pytest.approx(stored)


def test_page_fits_1280_px_without_wrapped_timestamps(site, browser):
    page = _open(browser, site[1])
    assert page.evaluate("document.documentElement.scrollWidth") <= 1280
    # the widest table (every column, three averages, profiler figures) fits too, with no scrolling of its own
    widths = page.eval_on_selector_all(".table-scroll", "ds => ds.map(d => [d.scrollWidth, d.clientWidth])")
    assert widths and all(scroll <= client for scroll, client in widths), widths
    stamps = page.eval_on_selector_all("td.when time", "ts => ts.map(t => [t.textContent, t.getClientRects().length])")
    assert stamps and all(re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d", text) and lines == 1 for text, lines in stamps)


def test_model_pages_fit_1280_px(site, browser):
    pages = sorted((site[1].parent / "models").glob("*.html"))
    assert len(pages) == 2
    for path in pages:  # the history table (every column, every profiler figure) scrolls inside its box
        page = _open(browser, path)
        assert page.evaluate("document.documentElement.scrollWidth") <= 1280, path
        assert page.locator("#history tbody tr").count() >= 2
