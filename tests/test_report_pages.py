"""Report and leaderboard pages in a real browser (Debian's headless Chromium via Playwright).

Two models are evaluated with ``evalkit run`` on CMMLU subjects and alpaca_zh into a temporary
store: two tiny random models (default suite), or, nightly (``-m slow``), the embedded
SmolLM2-135M-Instruct and a LoRA checkpoint of it trained here with ``evalkit train``. A third
run is the second one's results with ``<script>alert(1)</script>`` injected as its model name and
as a prediction, imported with ``evalkit import``. Screenshots go to the test's temporary
directory, or to ``$EVALKIT_SCREENSHOT_DIR`` when set. (The README's docs/*.png show a larger real
run, shot by scripts/screenshot_pages.py with the same browser settings.)
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from evalkit.report.compare import compare
from scripts.screenshot_pages import BROWSER_ARGS, CHROMIUM
from tests.conftest import REPO, SMOLLM2, build_tiny_model
from tests.helpers import run_cli

INJECTED = "<script>alert(1)</script>"
TASKS = "cmmlu:agronomy,cmmlu:anatomy,alpaca_zh"


def _tiny_pair(root: Path, capsys) -> tuple[str, str]:
    return tuple(str(build_tiny_model(root / name, seed=seed)) for name, seed in (("model-a", 0), ("model-b", 1)))


def _smollm2_and_lora(root: Path, capsys) -> tuple[str, str]:
    """SmolLM2 and a LoRA adapter of it: trainers/lora.yaml, shortened to a few steps."""
    checkpoint = root / "smollm2-lora"
    code, out, err = capsys.run("train", str(REPO / "trainers" / "lora.yaml"), f"output_dir={checkpoint}",
                                "max_steps=4", "save_steps=4", "eval_steps=4", "report_to=none", "--no-store")
    assert code == 0, err
    return SMOLLM2, str(checkpoint)


PAIRS = {"tiny": _tiny_pair, "smollm2": _smollm2_and_lora}


@pytest.fixture(scope="module", params=["tiny", pytest.param("smollm2", marks=pytest.mark.slow)])
def evaluated(request, tmp_path_factory):
    """A store with models A and B evaluated, and an imported run carrying injected markup."""
    root = tmp_path_factory.mktemp(f"report-pages-{request.param}")
    store = str(root / "store.sqlite")
    capsys = _Capture()
    models = PAIRS[request.param](root, capsys)
    for model in models:
        code, out, err = capsys.run("run", "--model", model, "--tasks", TASKS, "--limit", "4",
                                    "--max-new-tokens", "8", "--output-dir", str(root / "out"), "--store", store,
                                    "--no-progress")
        assert code == 0, err
    # B's results file and samples, re-labelled and with a prediction replaced, as if written elsewhere
    [results_path] = (root / "out" / _slug(models[1])).glob("results_*.json")
    injected_dir = root / "elsewhere"
    shutil.copytree(results_path.parent, injected_dir)
    results_file = injected_dir / results_path.name
    results = json.loads(results_file.read_text(encoding="utf-8"))
    identity = results["model"]  # another model: its own name and weights hash
    identity.update(name=INJECTED, alias=INJECTED, source="/elsewhere/model")
    identity["adapter_sha256" if identity.get("kind") == "peft_adapter" else "weights_sha256"] = "f" * 64
    results_file.write_text(json.dumps(results, ensure_ascii=False), encoding="utf-8")
    samples = injected_dir / results["tasks"]["alpaca_zh"]["samples_file"]
    rows = [json.loads(line) for line in samples.read_text(encoding="utf-8").splitlines()]
    rows[0]["prediction"] = INJECTED
    samples.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    code, out, err = capsys.run("import", str(injected_dir), "--store", store)
    assert code == 0 and "recorded 1 run(s)" in out, err
    if not CHROMIUM.is_file():
        pytest.skip("Debian chromium is not installed (scripts/setup.sh installs it)")
    sides = compare(*models, store)
    return {"root": root, "store": store, "models": models, "kind": request.param,
            "labels": (sides["base"]["label"], sides["candidate"]["label"])}


def _screenshot(page, tmp_path: Path, name: str, kind: str) -> Path:
    directory = Path(os.environ.get("EVALKIT_SCREENSHOT_DIR") or tmp_path)
    path = directory / (f"{name}.png" if kind == "smollm2" else f"{name}-{kind}.png")
    page.screenshot(path=str(path), full_page=True)
    return path


class _Capture:
    """``run_cli`` for a module-scoped fixture (no capsys there): the exit code and captured output."""

    def run(self, *argv):
        import contextlib
        import io

        from evalkit.cli import main

        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(list(argv))
        return code, out.getvalue(), err.getvalue()


def _slug(model: str) -> str:
    from evalkit.results import slug

    return slug(model)


@pytest.fixture(scope="module")
def browser():
    playwright_api = pytest.importorskip("playwright.sync_api")
    if not CHROMIUM.is_file():
        pytest.skip("Debian chromium is not installed (scripts/setup.sh installs it)")
    with playwright_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=BROWSER_ARGS)
        yield chromium
        chromium.close()


def _open(browser, path: Path):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    dialogs = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.goto(path.resolve().as_uri())
    return page, dialogs


def _column(page, table: str, index: int) -> list[str]:
    return page.eval_on_selector_all(f"#{table} tbody tr", f"rows => rows.map(r => r.cells[{index}].textContent.trim())")


def _labels(page) -> list[str]:
    """Model labels of the leaderboard rows, in page order (the cell's sort key is the label)."""
    return page.eval_on_selector_all("#leaderboard tbody tr", "rows => rows.map(r => r.cells[0].dataset.sort)")


def _numbers(cells: list[str]) -> list[float]:
    return [float(c) for c in cells if c not in ("", "-")]


def test_report_opens_in_chromium_with_rows_tests_and_sorting(evaluated, browser, tmp_path, capsys):
    a, b = evaluated["models"]
    label_a, label_b = evaluated["labels"]
    output = tmp_path / "report.html"
    code, out, err = run_cli(capsys, "report", "--base", a, "--candidate", b, "--store", evaluated["store"],
                             "--output", str(output))
    assert code == 0, err
    assert f"cmmlu acc: {label_a}" in out and "alpaca_zh rouge-l" in out
    html = output.read_text(encoding="utf-8")
    assert 'src="http' not in html and "Plotly" in html  # self-contained: plotly.js inlined

    data = compare(a, b, evaluated["store"])
    page, dialogs = _open(browser, output)
    assert page.title() == f"evalkit report: {label_a} vs {label_b}"
    assert _column(page, "summary", 0) == ["cmmlu", "alpaca_zh"]
    verdicts = _column(page, "summary", 7)
    assert verdicts == [row["verdict"] for row in data["summary"]]
    assert all(v.startswith(("better, p=", "worse, p=", "no detectable difference")) for v in verdicts)
    assert _column(page, "subjects-cmmlu", 0) == ["agronomy", "anatomy"]
    assert set(_column(page, "categories-cmmlu", 0)) == {row["group"] for row in data["tasks"][0]["categories"]}
    assert page.locator(".js-plotly-plot").count() == 2  # category bars and BLEU/ROUGE bars drawn

    # the McNemar counts shown are those of the per-sample files (paired by subject + index)
    overall = data["tasks"][0]["overall"]
    samples = {}
    for side, model in (("base", a), ("candidate", b)):
        [path] = (evaluated["root"] / "out" / _slug(model)).glob("samples_cmmlu_*.jsonl")
        samples[side] = {(r["subject"], r["index"]): r["correct"] for r in map(json.loads, path.read_text().splitlines())}
    assert overall["detail"]["base_only"] == sum(samples["base"][k] and not samples["candidate"][k] for k in samples["base"])
    assert overall["detail"]["candidate_only"] == sum(samples["candidate"][k] and not samples["base"][k] for k in samples["base"])

    page.click("#subjects-cmmlu thead th:nth-child(6)")  # delta column, ascending
    deltas = _numbers(_column(page, "subjects-cmmlu", 5))
    assert deltas == sorted(deltas)
    assert _screenshot(page, tmp_path, "report", evaluated["kind"]).stat().st_size > 10_000 and not dialogs


def test_leaderboard_sorts_filters_and_links_history(evaluated, browser, tmp_path, capsys):
    site = tmp_path / "site"
    code, out, err = run_cli(capsys, "leaderboard", "--store", evaluated["store"], "--output", str(site))
    assert code == 0, err
    page, dialogs = _open(browser, site / "index.html")
    headers = page.eval_on_selector_all("#leaderboard thead th", "hs => hs.map(h => h.textContent.trim())")
    assert headers[:4] == ["model", "MC average", "Generation average", "Average"]
    assert "CMMLU" in headers and "alpaca_zh ROUGE-L" in headers and "peak memory (RSS, MB)" in headers
    assert "MMLU" not in headers  # no model has MMLU results: the column is hidden
    labels = _labels(page)
    label_a, label_b = evaluated["labels"]
    assert sorted(labels) == sorted([label_a, label_b, INJECTED])

    page.click("#leaderboard thead th:nth-child(1)")
    ascending = _labels(page)
    assert ascending == sorted(labels, key=str.lower)
    page.click("#leaderboard thead th:nth-child(1)")
    assert _labels(page) == ascending[::-1]
    assert page.get_attribute("#leaderboard thead th:nth-child(1)", "aria-sort") == "descending"

    cmmlu = headers.index("CMMLU")
    page.click(f"#leaderboard thead th:nth-child({cmmlu + 1})")
    values = _numbers(_column(page, "leaderboard", cmmlu))
    assert len(values) == 3 and values == sorted(values)
    page.click(f"#leaderboard thead th:nth-child({cmmlu + 1})")
    assert _numbers(_column(page, "leaderboard", cmmlu)) == sorted(values, reverse=True)

    page.fill("input[data-filter=leaderboard]", label_b)
    visible = page.eval_on_selector_all("#leaderboard tbody tr", "rs => rs.filter(r => !r.hidden).map(r => r.cells[0].dataset.sort)")
    assert visible == [label_b]
    page.fill("input[data-filter=leaderboard]", "")
    assert _screenshot(page, tmp_path, "leaderboard", evaluated["kind"]).stat().st_size > 10_000

    page.get_by_role("link", name=label_a, exact=True).click()  # each model's page: its history across runs
    page.wait_for_selector("#history tbody tr")
    page.wait_for_load_state("load")
    assert page.url.endswith(".html") and "/models/" in page.url
    assert page.locator("#history tbody tr").count() == 1 and page.locator(".js-plotly-plot").count() == 1
    assert not dialogs

    # a second build rewrites the site it made; the first screenshot is not part of it
    code, _, err = run_cli(capsys, "leaderboard", "--store", evaluated["store"], "--output", str(site))
    assert code == 0, err


def test_injected_script_renders_as_text_in_both_pages(evaluated, browser, tmp_path, capsys):
    a = evaluated["models"][0]
    report = tmp_path / "report.html"
    code, _, err = run_cli(capsys, "report", "--base", a, "--candidate", INJECTED, "--store", evaluated["store"],
                           "--output", str(report))
    assert code == 0, err
    site = tmp_path / "site"
    assert run_cli(capsys, "leaderboard", "--store", evaluated["store"], "--output", str(site))[0] == 0
    for path in (report, site / "index.html"):
        html = path.read_text(encoding="utf-8")
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
        page, dialogs = _open(browser, path)
        page.wait_for_timeout(300)
        assert dialogs == []  # no alert fired
        shown = page.get_by_text(INJECTED, exact=True)
        assert shown.count() >= 1 and shown.first.is_visible()
        # the only <script> elements are ours (table sorting, plotly): none holds the injected call
        scripts = page.eval_on_selector_all("script", "ss => ss.map(s => s.textContent)")
        assert not any("alert(1)" in s and "\\u003c" not in s for s in scripts)
    # the report shows the injected prediction as text in the paired predictions table
    page, _ = _open(browser, report)
    predictions = page.eval_on_selector_all("#examples-alpaca_zh td:nth-child(4) .prediction", "ds => ds.map(d => d.textContent)")
    assert INJECTED in predictions
