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
from scripts.screenshot_pages import CHROMIUM
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
    assert code == 0 and "recorded 1 new run(s)" in out, err
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


def _open(browser, path: Path):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    dialogs = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.goto(path.resolve().as_uri())
    return page, dialogs


def _column(page, table: str, index: int) -> list[str]:
    return page.eval_on_selector_all(f"#{table} tbody tr", f"rows => rows.map(r => r.cells[{index}].textContent.trim())")


def _wilson(correct: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score interval in %, by its formula (the report gets it from scipy)."""
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * (p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5
    return 100 * (centre - half), 100 * (centre + half)


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

    # accuracies carry Wilson intervals (worked by hand here), not normal-approximation ones
    shown = page.eval_on_selector_all("#summary tbody tr:first-child .ci:not(.delta-ci)", "cs => cs.map(c => c.textContent)")
    expected = [_wilson(round(value / 100 * n), n) for value, n in ((overall["base"], data["tasks"][0]["overall"]["n"]),
                                                                    (overall["candidate"], data["tasks"][0]["overall"]["n"]))]
    assert shown == [f"{lo:.1f}..{hi:.1f}" for lo, hi in expected]
    # the delta carries its paired (Newcombe) interval, which holds the delta
    low, high = overall["delta_ci"]
    assert low <= overall["delta"] <= high
    assert page.text_content("#summary tbody tr:first-child .delta-ci") == f"{low:+.1f}..{high:+.1f}"
    # profiler deltas are coloured by direction: memory and load time up are red, tokens/s up green
    for label, css in page.eval_on_selector_all("#profile tbody tr", "rs => rs.filter(r => r.cells[3] && r.cells[3].querySelector('span'))"
                                                ".map(r => [r.cells[0].textContent, r.cells[3].querySelector('span').className])"):
        row = next(r for r in data["profile"] if r["label"] == label)
        if row["delta"]:
            assert css == ("good" if (row["delta"] > 0) == row["higher_is_better"] else "bad"), (label, row["delta"], css)
    # an accuracy delta is coloured only when McNemar's test finds it significant; grey otherwise
    accuracy_css = page.eval_on_selector("#summary tbody tr:first-child td:nth-child(5) span", "s => s.className")
    direction = "good" if overall["delta"] > 0 else "bad" if overall["delta"] < 0 else "same"
    assert accuracy_css == (direction if overall["p_value"] < 0.05 else "same")

    page.click("#subjects-cmmlu thead th:nth-child(6)")  # delta column, ascending
    deltas = _numbers(page.eval_on_selector_all("#subjects-cmmlu tbody tr", "rs => rs.map(r => r.cells[5].dataset.sort)"))
    assert deltas == sorted(deltas)
    assert _screenshot(page, tmp_path, "report", evaluated["kind"]).stat().st_size > 10_000 and not dialogs


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
        if page.locator("#show-partial").count():  # the runs used --limit: partial rows, shown on request
            page.check("#show-partial")
        shown = page.get_by_text(INJECTED, exact=True)
        assert shown.count() >= 1 and shown.first.is_visible()
        # the only <script> elements are ours (table sorting, plotly): none holds the injected call
        scripts = page.eval_on_selector_all("script", "ss => ss.map(s => s.textContent)")
        assert not any("alert(1)" in s and "\\u003c" not in s for s in scripts)
    # the report shows the injected prediction as text in the paired predictions table
    page, _ = _open(browser, report)
    predictions = page.eval_on_selector_all("#examples-alpaca_zh td:nth-child(5) .prediction", "ds => ds.map(d => d.textContent)")
    assert INJECTED in predictions


def _small_specs(directory: Path) -> str:
    """cmmlu with one whole subject and alpaca_zh with 6 held-out samples: whole tasks (by their spec),
    small enough for the default suite; the leaderboard's columns match them by task name."""
    import yaml

    from tests.helpers import spec_copy

    data = directory / "cmmlu"  # beside the spec: the results record data files relative to it
    for split in ("test", "dev"):
        (data / split).mkdir(parents=True)
        shutil.copy(REPO / "tasks" / "data" / "cmmlu" / split / "anatomy.csv", data / split / "anatomy.csv")
    cmmlu = spec_copy("cmmlu", directory, data, subjects=["anatomy"])
    raw = yaml.safe_load((REPO / "tasks" / "alpaca_zh.yaml").read_text(encoding="utf-8"))
    raw["data"].update(path=str(REPO / "tasks" / raw["data"]["path"]), slice=[900, 906])
    alpaca = directory / "alpaca_zh.yaml"
    alpaca.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    return f"{cmmlu},{alpaca}"


@pytest.fixture(scope="module")
def checkpoint_site(tmp_path_factory, tiny_model_dir):
    """A store with: a tiny base evaluated on the whole (one-subject) cmmlu spec; a LoRA of it trained with
    `evalkit train`, evaluated on the whole cmmlu + alpaca_zh specs and once more with --limit 2."""
    import yaml

    root = tmp_path_factory.mktemp("leaderboard-checkpoint")
    store, out = str(root / "store.sqlite"), str(root / "out")
    tasks = _small_specs(root)
    capture = _Capture()
    recipe = {"model": str(tiny_model_dir), "method": "lora", "dataset": "tasks/data/sft/alpaca_zh_demo.json",
              "dataset_range": [0, 900], "max_samples": 8, "per_device_train_batch_size": 4, "cutoff_len": 128,
              "max_steps": 2, "logging_steps": 1, "save_steps": 100, "report_to": "none", "output_dir": str(root / "lora")}
    (root / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    code, _, err = capture.run("train", str(root / "recipe.yaml"), "--store", store)
    assert code == 0, err
    common = ["--max-new-tokens", "4", "--output-dir", out, "--store", store, "--no-progress"]
    for argv in (["--model", str(tiny_model_dir), "--tasks", tasks.split(",")[0]],
                 ["--model", str(root / "lora"), "--tasks", tasks],
                 ["--model", str(root / "lora"), "--tasks", tasks.split(",")[0], "--limit", "2"]):
        code, _, err = capture.run("run", *argv, *common)
        assert code == 0, err
    code, out_text, err = capture.run("leaderboard", "--store", store, "--output", str(root / "site"))
    assert code == 0, err
    assert "2 model(s): " in out_text and "1 partial run(s), not ranked" in out_text and "lora (limit 2)" in out_text
    return root / "site" / "index.html"


def _board(page, table: str) -> tuple[list[str], list[dict]]:
    """(headers, visible rows) of one leaderboard table; cells as rendered text (line breaks kept)."""
    headers = page.eval_on_selector_all(f"#{table} thead th", "hs => hs.map(h => h.textContent.trim())")
    rows = page.eval_on_selector_all(f"#{table} tbody tr", """rows => rows.filter(r => !r.hidden)
        .map(r => ({label: r.querySelector('.model-cell').dataset.sort, text: r.innerText,
                    cells: Array.from(r.cells).map(c => c.innerText.replace(/\\u00a0/g, ' ').trim()),
                    sorts: Array.from(r.cells).map(c => c.dataset.sort)}))""")
    return headers, rows


def test_leaderboard_partial_section_sorts_filters_and_links_history(evaluated, browser, tmp_path, capsys):
    site = tmp_path / "site"
    code, out, err = run_cli(capsys, "leaderboard", "--store", evaluated["store"], "--output", str(site))
    assert code == 0, err
    assert out.startswith("3 model(s): ") and "ranked on full runs: none yet" in out
    page, dialogs = _open(browser, site / "index.html")
    assert page.locator("#show-partial").count() == 0 and page.locator("#no-full-runs").is_visible()
    # every run here used --limit 4 on two CMMLU subjects: one setting, one table, shown without a toggle
    assert page.text_content("#partial-1-title").strip() == "limit 4 · 0-shot · cmmlu 2/67 subjects"
    headers, rows = _board(page, "partial-1")
    assert headers[:2] == ["model", "CMMLU"]  # one MC column, one ROUGE-L column: no average repeating them
    assert "alpaca_zh ROUGE-L" in headers and "RSS MB" in headers and "MMLU" not in headers
    label_a, label_b = evaluated["labels"]
    assert sorted(r["label"] for r in rows) == sorted([label_a, label_b, INJECTED])
    cmmlu = headers.index("CMMLU")
    for row in rows:  # n under each score, with its Wilson interval
        assert "n=8" in row["cells"][cmmlu] and ".." in row["cells"][cmmlu]

    page.click("#partial-1 thead th:nth-child(1)")
    ascending = [r["label"] for r in _board(page, "partial-1")[1]]
    assert ascending == sorted(ascending, key=str.lower)
    page.click(f"#partial-1 thead th:nth-child({cmmlu + 1})")
    values = _numbers([r["sorts"][cmmlu] for r in _board(page, "partial-1")[1]])
    assert len(values) == 3 and values == sorted(values)

    page.fill("input[data-filter]", label_b)
    assert [r["label"] for r in _board(page, "partial-1")[1]] == [label_b]
    page.fill("input[data-filter]", "")
    assert page.evaluate("document.documentElement.scrollWidth") <= 1280
    assert _screenshot(page, tmp_path, "leaderboard-sections", evaluated["kind"]).stat().st_size > 10_000

    page.get_by_role("link", name=label_a, exact=True).click()  # each model's page: its history across runs
    page.wait_for_selector("#history tbody tr")
    assert "/models/" in page.url and page.locator("#history tbody tr").count() == 1
    assert not dialogs


def test_leaderboard_ranks_full_runs_and_gives_the_partial_run_its_section(checkpoint_site, browser, tmp_path,
                                                                            tiny_model_dir):
    page, dialogs = _open(browser, checkpoint_site)
    headers, rows = _board(page, "leaderboard")
    # CMMLU is the only MC column and alpaca_zh ROUGE-L the only ROUGE-L one: no average repeats either
    assert headers[:3] == ["#", "model", "CMMLU"] and not [h for h in headers if h.endswith("average")]
    cmmlu, rouge = headers.index("CMMLU"), headers.index("alpaca_zh ROUGE-L")
    assert [r["cells"][0] for r in rows] == ["1", "2"] and {r["label"] for r in rows} == {"lora", tiny_model_dir.name}
    assert _numbers([r["sorts"][cmmlu] for r in rows]) == sorted(_numbers([r["sorts"][cmmlu] for r in rows]), reverse=True)
    [lora] = [r for r in rows if r["label"] == "lora"]
    assert "trained here: lora, 2 steps, final loss" in lora["text"]
    assert lora["cells"][headers.index("runs")] == "3"  # training + two evaluations of the same weights
    assert "n=148 · 0-shot" in lora["cells"][cmmlu] and "limit" not in lora["cells"][cmmlu]
    assert "n=6" in lora["cells"][rouge]

    # the --limit 2 run: a section of its own, shown by default, unranked, n=2 visible
    assert page.text_content("#partial-1-title").strip() == "limit 2 · 0-shot"
    headers, rows = _board(page, "partial-1")
    assert "#" not in headers and "alpaca_zh ROUGE-L" not in headers  # the run had CMMLU only
    [partial] = rows
    assert partial["label"] == "lora" and "n=2" in partial["cells"][headers.index("CMMLU")]
    assert partial["cells"][headers.index("runs")] == "1"
    assert page.evaluate("document.documentElement.scrollWidth") <= 1280
    assert _screenshot(page, tmp_path, "leaderboard-ranked-and-partial", "tiny").stat().st_size > 10_000
    assert not dialogs
