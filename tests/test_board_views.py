"""The board's views beyond jobs, in headless Chromium against a real board process: two runs side by side
as `evalkit report` shows them and the questions that flipped, the nightly gate's timeline, the Chinese UI,
the chat playground streaming the same greedy reply evaluation would score, and a training job's loss curves.
Stored runs come from ``--backend fake`` (these tests are of the board, not of a backend)."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest
import yaml

from evalkit.board import jobs
from tests.conftest import REPO
from tests.test_board import outside_requests, running_board, wait_for
from tests.test_report_comparable import _cli, _run

SUBJECTS = "cmmlu:agronomy,cmmlu:anatomy"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("views")
    store = str(root / "store.sqlite")
    runs = {"base": _run(Path(store), root / "base", "fake-base", f"{SUBJECTS},alpaca_zh", 10),
            "candidate": _run(Path(store), root / "cand", "fake-cand", f"{SUBJECTS},alpaca_zh", 10)}
    suite = {"name": "fake-nightly", "models": ["fake-nightly-model"], "backend": "fake",
             "tasks": [{"task": SUBJECTS, "limit": 6}], "gate": {"min_effect": 1.0},
             "output": str(root / "nightly"), "leaderboard": {"output": str(root / "site")}}
    (root / "suite.yaml").write_text(yaml.safe_dump(suite), encoding="utf-8")
    for night in ("2026-11-30", "2026-12-01"):
        code, _, err = _cli("nightly", str(root / "suite.yaml"), "--night", night, "--store", store)
        assert code == 0, err
    with running_board(root, store) as board:
        yield {**board, "runs": runs}


def test_compare_shows_the_report_and_what_flipped(served, browser):
    from evalkit.report.compare import compare

    data = compare(str(served["runs"]["base"]), str(served["runs"]["candidate"]), served["store"])
    [cmmlu] = [section for section in data["tasks"] if section["task"] == "cmmlu"]
    page = browser.new_page()
    refused = outside_requests(page)
    page.goto(f"{served['url']}/compare")
    page.select_option("#pick select[name=base]", str(served["runs"]["base"]))
    page.select_option("#pick select[name=candidate]", str(served["runs"]["candidate"]))
    page.click("#pick button")
    page.wait_for_selector("#summary")
    shown = page.text_content("#summary")
    for row in data["summary"]:  # the board's figures are the report's
        assert f"{row['base']:.2f}" in shown and f"{row['candidate']:.2f}" in shown
    page.click("#flip-links a:text('cmmlu')")
    page.wait_for_selector("#right-to-wrong")
    detail = cmmlu["overall"]["detail"]
    heading = page.text_content("body")
    # McNemar's discordant pairs, as the report counted them
    assert f"({detail['base_only']})" in heading and f"({detail['candidate_only']})" in heading, (detail, heading[:500])
    rows = page.locator("#right-to-wrong tbody tr, #wrong-to-right tbody tr")
    assert rows.count() == detail["base_only"] + detail["candidate_only"] > 0
    assert re.search(r"\nA\. .+\nB\. ", page.locator("#right-to-wrong pre, #wrong-to-right pre").first.text_content())
    page.goto(f"{served['url']}/compare/flips?base={served['runs']['base']}&candidate={served['runs']['candidate']}&task=alpaca_zh")
    assert page.locator("#scored tbody tr").count() == 10  # BLEU/ROUGE pairs: every pair with both scores
    assert refused == []
    page.close()


def test_the_nightly_timeline_shows_each_night(served, browser):
    page = browser.new_page()
    page.goto(f"{served['url']}/nightly")
    rows = page.locator("#nights tbody tr")
    assert rows.count() == 2
    assert "2026-12-01" in rows.nth(0).text_content() and "pass" in rows.nth(0).text_content()
    assert "2026-11-30" in rows.nth(1).text_content() and "first night" in rows.nth(1).text_content()
    rows.nth(0).locator("a").first.click()
    page.wait_for_selector("#right-to-wrong")  # the second night against the first, per question
    page.close()


def test_every_ui_text_has_a_chinese_translation_and_the_switch_sticks(served, browser):
    from evalkit.board.i18n import ZH
    from evalkit.report.render import templates_dir

    used = {found[1] for template in templates_dir().glob("*board*.j2")
            for found in re.findall(r"""\bt\((["'])(.+?)\1""", template.read_text(encoding="utf-8"))}
    missing = sorted(used - set(ZH))
    assert used and not missing, missing
    page = browser.new_page()
    page.goto(f"{served['url']}/runs")
    assert page.get_attribute("html", "lang") == "en" and "jobs" in page.text_content("nav")
    page.click("#lang-zh")
    assert page.get_attribute("html", "lang") == "zh" and "任务" in page.text_content("nav")
    page.goto(f"{served['url']}/jobs")  # the cookie keeps the choice
    assert "发起评测" in page.text_content("body") and "Launch an evaluation" not in page.text_content("body")
    page.click("#lang-en")
    page.close()


def test_the_playground_streams_the_reply_evaluation_would_score(served, browser, varied_model_dir, tiny_model_dir):
    from evalkit.backends.base import BackendOptions
    from evalkit.backends.hf import HFBackend
    from evalkit.evaluators.base import RunConfig

    page = browser.new_page()
    page.goto(f"{served['url']}/chat?a={varied_model_dir}&b={tiny_model_dir}")
    page.fill("#message", "用一句话介绍北京。")
    page.fill("#max-new-tokens", "12")
    page.click("#send")
    page.wait_for_function("document.querySelectorAll('.assistant.done').length == 2", timeout=120_000)
    shown = page.eval_on_selector_all(".assistant", "nodes => nodes.map(n => n.textContent)")
    expected = []
    for model in (varied_model_dir, tiny_model_dir):
        backend = HFBackend.load(str(model), BackendOptions())
        generations, _ = backend.generate(["用一句话介绍北京。"], chat=True, max_new_tokens=12, stop=(),
                                          config=RunConfig(batch_size=1, progress=False), label="chat")
        expected.append(generations[0].text)
    assert [text.strip() for text in shown] == expected and shown[0] != shown[1]  # evaluation strips the ends
    page.close()


def test_a_training_job_draws_its_loss_curves_over_the_earlier_run(served, browser, tiny_model_dir):
    page = browser.new_page()
    refused = outside_requests(page)
    common = f"model={tiny_model_dir} max_steps=6 save_steps=6 eval_steps=3 cutoff_len=64"
    first = jobs.submit(["train", "trainers/lora.yaml", *common.split(), f"output_dir={served['root'] / 'ck1'}"],
                        served["store"])
    assert wait_for(lambda: jobs.get_job(first, served["store"]).state in jobs.FINISHED, 300)
    assert jobs.get_job(first, served["store"]).state == "done"
    page.goto(f"{served['url']}/jobs")
    page.select_option("#train select[name=recipe]", "trainers/lora.yaml")
    page.fill("#train input[name=overrides]", f"{common} output_dir={served['root'] / 'ck2'}")
    page.click("#train button")
    page.wait_for_url(re.compile(r".*/jobs/\d+$"))
    page.wait_for_function("document.getElementById('state').textContent == 'done'", timeout=300_000)
    page.wait_for_function("document.getElementById('curve').data.find(t => t.name == 'eval loss').x.length == 2")
    traces = page.evaluate("document.getElementById('curve').data.map(t => [t.name, t.x, t.y])")
    logged = [json.loads(line) for line in (served["root"] / "ck2" / "trainer_log.jsonl").read_text().splitlines()]
    by_name = {name: (x, y) for name, x, y in traces}
    assert by_name["train loss"] == ([p["current_steps"] for p in logged if "loss" in p], [p["loss"] for p in logged if "loss" in p])
    assert by_name["train loss"][0] == [1, 2, 3, 4, 5, 6] and by_name["eval loss"][0] == [3, 6]
    assert by_name[f"job {first}: train"][0] == [1, 2, 3, 4, 5, 6]  # the earlier run of the recipe, overlaid
    page.check("#logscale")
    assert page.evaluate("document.getElementById('curve').layout.yaxis.type") == "log"
    assert page.text_content("#done").endswith("6 / 6") or "/ 6" in page.text_content("#done")
    page.set_viewport_size({"width": 1280, "height": 900})
    page.screenshot(path=str(served["root"] / "board_training.png"), full_page=False)
    if os.environ.get("EVALKIT_UPDATE_SCREENSHOTS") == "1":
        shutil.copy(served["root"] / "board_training.png", REPO / "docs" / "board_training.png")
    assert refused == []
    page.close()


@pytest.mark.parametrize("body, status, expected", [
    ({"model": "m", "messages": []}, 400, "messages: a list of 1 to 40 turns"),
    ({"model": "m", "messages": [{"role": "system", "content": "x"}]}, 400, 'each turn is {"role": "user" | "assistant"'),
    ({"model": "m", "messages": [{"role": "user", "content": "x" * 20_001}]}, 400, "at most 20000 characters"),
    ({"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_new_tokens": 10_000}, 400, "max_new_tokens: 1..512"),
    ({"model": "", "messages": [{"role": "user", "content": "hi"}]}, 400, "model: a name or path"),
    ({"model": "m", "messages": [{"role": "user", "content": "hi"}], "csrf": "forged"}, 403, "CSRF"),
])
def test_chat_refuses_bad_requests_before_loading_a_model(tmp_path, body, status, expected):
    """Each bad chat request is a JSON 4xx with one line, answered before any model loads."""
    from fastapi.testclient import TestClient

    from evalkit.board import chat
    from evalkit.board.app import create_app

    client = TestClient(create_app(f"sqlite:///{tmp_path / 's.sqlite'}", tmp_path / "logs", tmp_path / "site", workers=0))
    client.get("/chat")
    response = client.post("/chat/reply", json={"csrf": client.cookies.get("evalkit_csrf"), **body})
    assert response.status_code == status and expected in response.json()["detail"]
    assert "\n" not in response.json()["detail"] and not chat._models


def test_compare_of_an_unknown_run_is_one_line(tmp_path):
    from fastapi.testclient import TestClient

    from evalkit.board.app import create_app

    client = TestClient(create_app(f"sqlite:///{tmp_path / 's.sqlite'}", tmp_path / "logs", tmp_path / "site", workers=0))
    response = client.get("/compare?base=1&candidate=2")
    assert response.status_code == 400 and response.json()["detail"].startswith("no evaluation run 1 in the store")
