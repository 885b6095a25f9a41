"""`evalkit board` in headless Chromium, with real processes: launch an evaluation from the form, watch its log
stream, reload mid-run, close the page and see the job finish, find the run; cancel a job; refuse cross-site
posts; fetch nothing from outside 127.0.0.1."""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import time

import httpx
import pytest

from evalkit.board import jobs
from tests.test_api_backend import free_port


@contextlib.contextmanager
def running_board(root, store: str, *extra: str):
    """A real `evalkit board` process on a free port, started in ``root`` (its jobs run there)."""
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "EVALKIT_REQUEST_CACHE": "off"}
    process = subprocess.Popen([sys.executable, "-m", "evalkit", "board", "--store", store, "--port", str(port),
                                "--log-dir", str(root / "logs"), *extra], cwd=root, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(f"{url}/runs", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        assert process.poll() is None and time.monotonic() < deadline, process.stdout.read() if process.poll() else "slow"
        time.sleep(0.3)
    try:
        yield {"url": url, "store": store, "root": root}
    finally:
        process.terminate()
        process.wait(30)


@pytest.fixture(scope="module")
def board(tmp_path_factory):
    root = tmp_path_factory.mktemp("board")
    with running_board(root, str(root / "store.sqlite")) as served:
        yield served


def outside_requests(page) -> list[str]:
    """Route every request: anything not to 127.0.0.1 is refused and remembered (the board must work offline)."""
    refused = []

    def route(request_route):
        if re.match(r"^(http://127\.0\.0\.1[:/]|data:|about:)", request_route.request.url):
            request_route.continue_()
        else:
            refused.append(request_route.request.url)
            request_route.abort()
    page.route("**/*", route)
    return refused


def wait_for(predicate, seconds: float = 120):
    deadline = time.monotonic() + seconds
    while not (value := predicate()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)
    return value


def test_launch_watch_reload_close_and_find_the_run(board, browser, tiny_model_dir):
    context = browser.new_context()
    page = context.new_page()
    refused = outside_requests(page)
    page.goto(f"{board['url']}/jobs")
    page.fill("input[name=model]", str(tiny_model_dir))
    page.fill("input[name=tasks]", "cmmlu:agronomy,cmmlu:anatomy")
    page.fill("input[name=limit]", "8")
    shown = page.text_content("#command")
    assert shown == f"evalkit run --model {tiny_model_dir} --tasks cmmlu:agronomy,cmmlu:anatomy --limit 8"
    page.click("#launch button")
    page.wait_for_url(re.compile(r".*/jobs/\d+$"))
    job_id = int(page.url.rsplit("/", 1)[1])
    job = jobs.get_job(job_id, board["store"])
    assert job.argv[:5] == ["run", "--model", str(tiny_model_dir), "--tasks", "cmmlu:agronomy,cmmlu:anatomy"]
    page.wait_for_function("document.getElementById('log').textContent.length > 0 || "
                           "document.getElementById('progress').textContent.length > 0", timeout=120_000)
    page.reload()  # mid-run (or just after): the log replays once, no duplicated lines
    page.wait_for_function("['done', 'failed'].includes(document.getElementById('state').textContent)", timeout=180_000)
    lines = [line for line in page.text_content("#log").splitlines() if line.strip()]
    assert page.text_content("#state") == "done", lines[-10:]
    assert len(lines) == len(set(lines)), lines  # each line once, though the page was reloaded mid-stream
    assert sum(line.startswith("results:") for line in lines) == 1
    seen = page.evaluate("window.progressSeen")  # every progress update the page showed, replayed from the log
    assert len(set(seen)) > 1 and seen == sorted(seen) and seen[-1] == 16, seen
    assert page.text_content("#done").endswith("16 / 16")
    context.close()
    _same_results_as_the_cli(board, job.argv, next(line for line in lines if line.startswith("results:")))
    # a second job, finished with every page closed
    second = jobs.submit(["run", "--model", str(tiny_model_dir), "--tasks", "cmmlu:astronomy", "--limit", "3"],
                         board["store"])
    assert wait_for(lambda: jobs.get_job(second, board["store"]).state in jobs.FINISHED) and \
        jobs.get_job(second, board["store"]).state == "done"
    page = browser.new_page()
    refused += outside_requests(page)
    page.goto(f"{board['url']}/runs")
    assert page.locator("#runs tbody tr").count() >= 2 and "tiny-llama" in page.text_content("#runs")
    page.goto(f"{board['url']}/leaderboard/")
    assert "tiny-llama" in page.text_content("body")
    assert refused == []
    page.close()


def _same_results_as_the_cli(board, argv: list[str], results_line: str) -> None:
    """The job's results file and samples equal those of the same command typed in a terminal."""
    from pathlib import Path

    cli_dir = board["root"] / "cli"
    cli_dir.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "EVALKIT_REQUEST_CACHE": "off", "EVALKIT_STORE": str(cli_dir / "s.sqlite")}
    done = subprocess.run([sys.executable, "-m", "evalkit", *argv], cwd=cli_dir, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    board_file = board["root"] / results_line.split(":", 1)[1].strip()
    [cli_file] = (cli_dir / "results").rglob("results_*.json")
    files = (board_file, cli_file)
    ours, theirs = (json.loads(Path(f).read_text(encoding="utf-8"))["tasks"] for f in files)
    assert ours.keys() == theirs.keys()
    for task in ours:
        samples = [(f.parent / block.pop("samples_file")).read_text(encoding="utf-8")
                   for f, block in zip(files, (ours[task], theirs[task]))]
        assert samples[0] == samples[1] and samples[0].count("\n") == 16
        assert ours[task] == theirs[task]


def test_the_event_stream_resumes_after_the_last_event_id(board, tiny_model_dir):
    job_id = jobs.submit(["run", "--model", str(tiny_model_dir), "--tasks", "cmmlu:agronomy", "--limit", "2"],
                         board["store"])
    wait_for(lambda: jobs.get_job(job_id, board["store"]).state in jobs.FINISHED)
    events = httpx.get(f"{board['url']}/jobs/{job_id}/events", timeout=30).text
    ids = [int(x) for x in re.findall(r"^id: (\d+)$", events, re.M)]
    assert ids == sorted(ids) and len(ids) > 3 and events.rstrip().endswith("data: done")
    middle = ids[len(ids) // 2]
    resumed = httpx.get(f"{board['url']}/jobs/{job_id}/events", headers={"Last-Event-ID": str(middle)}, timeout=30).text
    assert [int(x) for x in re.findall(r"^id: (\d+)$", resumed, re.M)] == [i for i in ids if i > middle]


def test_cancel_from_the_page_kills_the_process_group(board, browser):
    job_id = jobs.submit(["run", "--model", "smollm2-135m-instruct", "--tasks", "cmmlu", "--limit", "40", "--no-cache"],
                         board["store"])
    job = wait_for(lambda: (j := jobs.get_job(job_id, board["store"])).pid and j)
    page = browser.new_page()
    page.goto(f"{board['url']}/jobs/{job_id}")
    page.click("#cancel")
    page.wait_for_url(re.compile(rf".*/jobs/{job_id}$"))
    assert wait_for(lambda: jobs.get_job(job_id, board["store"]).state == "cancelled")
    wait_for(lambda: not _group_alive(job.pid), 30)
    page.close()


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


def test_posts_without_the_token_or_from_another_site_are_refused(board):
    with httpx.Client(base_url=board["url"]) as client:
        client.get("/jobs")  # sets the CSRF cookie
        token = client.cookies.get("evalkit_csrf")
        form = {"model": "m", "tasks": "cmmlu:agronomy", "backend": "fake", "limit": "1"}
        assert client.post("/jobs", data=form).status_code == 403  # no token in the form
        assert client.post("/jobs", data={**form, "csrf": "forged"}).status_code == 403
        cross = client.post("/jobs", data={**form, "csrf": token}, headers={"Origin": "http://evil.example"})
        assert cross.status_code == 403 and "cross-site" in cross.text
        before = len(jobs.list_jobs(board["store"]))
        bad = client.post("/jobs", data={**form, "tasks": "nope", "csrf": token})
        assert bad.status_code == 400 and "unknown task" in bad.text and len(jobs.list_jobs(board["store"])) == before


def test_a_non_loopback_bind_needs_users(capsys, tmp_path):
    from tests.helpers import run_cli

    code, _, err = run_cli(capsys, "board", "--host", "0.0.0.0", "--store", str(tmp_path / "s.sqlite"))
    assert code == 2 and "board-users add" in err and err.count("\n") == 1


def test_tokens_and_roles_on_a_non_loopback_bind(tmp_path):
    from evalkit.board import auth

    store, port = str(tmp_path / "store.sqlite"), free_port()
    viewer, operator = auth.add_user("ann", "viewer", store), auth.add_user("bob", "operator", store)
    assert all(user.token_sha256 != viewer and len(user.token_sha256) == 64 for user in auth.users(store))  # hashed
    process = subprocess.Popen([sys.executable, "-m", "evalkit", "board", "--host", "0.0.0.0", "--port", str(port),
                                "--store", store, "--log-dir", str(tmp_path / "logs"), "--no-worker"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _answers(url))
        assert httpx.get(f"{url}/runs").status_code == 401  # no token
        assert httpx.get(f"{url}/runs", headers={"Authorization": "Bearer wrong"}).status_code == 401
        form = {"model": "m", "tasks": "cmmlu:agronomy", "backend": "fake", "limit": "1"}
        for token, expected in ((viewer, 403), (operator, 303)):
            with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}) as client:
                assert client.get("/jobs").status_code == 200
                posted = client.post("/jobs", data={**form, "csrf": client.cookies.get("evalkit_csrf")})
                assert posted.status_code == expected, posted.text
        assert [job.user for job in jobs.list_jobs(store)] == ["bob"]  # only the operator's job was queued
    finally:
        process.terminate()
        process.wait(30)


def _answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/login", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def test_two_voters_cast_40_blind_votes_with_the_keyboard(tmp_path, browser, capsys):
    """Blind: no model name in the page before a vote; the left/right split is recorded; the ranking has intervals."""
    from evalkit.board import auth
    from evalkit.store.engine import open_store
    from evalkit.store.schema import Vote
    from tests.helpers import run_cli

    store, port = str(tmp_path / "store.sqlite"), free_port()
    for model in ("base-model", "tuned-model"):
        assert run_cli(capsys, "run", "--backend", "fake", "--model", model, "--tasks", "alpaca_zh", "--limit", "20",
                       "--no-progress", "--store", store, "--output-dir", str(tmp_path / "out"))[0] == 0
    tokens = [auth.add_user(name, "voter", store) for name in ("ann", "cho")]
    process = subprocess.Popen([sys.executable, "-m", "evalkit", "board", "--host", "0.0.0.0", "--port", str(port),
                                "--store", store, "--log-dir", str(tmp_path / "logs"), "--no-worker"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _answers(url))
        pages = [browser.new_context(extra_http_headers={"Authorization": f"Bearer {t}"}).new_page() for t in tokens]
        for page in pages:
            page.goto(f"{url}/arena?a=1&b=2")
        keys = ["a", "l", "t", "ArrowLeft", "ArrowRight", "b"]
        for i in range(40):
            page = pages[i % 2]
            text = page.text_content("body")
            assert "base-model" not in text and "tuned-model" not in text, text[:500]
            page.keyboard.press(keys[i % len(keys)])
            page.wait_for_selector("#reveal")
            assert "base-model" in page.text_content("#reveal") and "tuned-model" in page.text_content("#reveal")
            page.keyboard.press("n")
            page.wait_for_load_state()
        factory, _ = open_store(store)
        with factory() as session:
            votes = [v for v in session.query(Vote).all() if v.verdict]
        assert len(votes) == 40 and {v.voter for v in votes} == {"ann", "cho"}
        assert {v.left_run for v in votes} == {1, 2}  # both runs were shown on the left
        assert all(v.seconds is not None and v.seconds >= 0 for v in votes)
        assert len({(v.voter, v.sample) for v in votes}) == 40  # nobody judged a sample twice
        page = pages[0]
        page.goto(f"{url}/rankings?task=alpaca_zh")
        intervals = page.eval_on_selector_all("#ranking td.ci", "cells => cells.map(c => c.textContent)")
        assert len(intervals) == 2 and all(re.fullmatch(r"\d+\.\.\d+", text) for text in intervals)
        assert "sign test" in page.text_content("#pair") and "Position bias" in page.text_content("#bias")
    finally:
        process.terminate()
        process.wait(30)


def test_the_train_and_nightly_forms_queue_their_commands(board, browser):
    page = browser.new_page()
    page.goto(f"{board['url']}/jobs")
    page.select_option("#train select[name=recipe]", "trainers/lora.yaml")
    page.fill("#train input[name=overrides]", "max_steps=2 learning_rate=1e-4")
    assert page.text_content("#train-command") == "evalkit train trainers/lora.yaml max_steps=2 learning_rate=1e-4"
    before = {job.id for job in jobs.list_jobs(board["store"])}
    page.click("#train button")
    page.wait_for_url(re.compile(r".*/jobs/\d+$"))
    job = jobs.get_job(int(page.url.rsplit("/", 1)[1]), board["store"])
    assert job.id not in before and job.argv == ["train", "trainers/lora.yaml", "max_steps=2", "learning_rate=1e-4"]
    jobs.cancel(job.id, board["store"])
    page.goto(f"{board['url']}/jobs")
    assert page.text_content("#nightly-command") == "evalkit nightly suites/smoke.yaml"
    with httpx.Client(base_url=board["url"]) as client:  # an override that does not parse never reaches the queue
        client.get("/jobs")
        bad = client.post("/jobs/train", data={"recipe": "trainers/lora.yaml", "overrides": "colour=red",
                                               "csrf": client.cookies.get("evalkit_csrf")})
        assert bad.status_code == 400
    page.close()


def test_two_workers_run_two_jobs_at_once(tmp_path):
    with running_board(tmp_path, str(tmp_path / "store.sqlite"), "--workers", "2") as served:
        ids = [jobs.submit(["run", "--model", f"fake-{n}", "--backend", "fake", "--tasks", "cmmlu:agronomy", "--limit", "5"],
                           served["store"]) for n in (1, 2)]
        finished = wait_for(lambda: all((j := jobs.get_job(i, served["store"])).state in jobs.FINISHED for i in ids)
                            and [jobs.get_job(i, served["store"]) for i in ids])
    assert [job.state for job in finished] == ["done", "done"]
    assert max(job.started_at for job in finished) < min(job.finished_at for job in finished)  # they overlapped
