"""--backend openai against a real `evalkit serve` on 127.0.0.1: same predictions and texts as --backend hf,
and the server's behaviour on bad requests, auth and concurrent load."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.conftest import SMOLLM2
from tests.helpers import run_cli

KEY = "test-key-123"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_serving(process, port: int) -> None:
    """Return once `evalkit serve` on ``port`` answers /health (a dead or silent server is an error)."""
    deadline = time.time() + 240
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"evalkit serve exited: {process.stdout.read()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.time() > deadline:
            raise RuntimeError("evalkit serve did not start in 240 s")
        time.sleep(0.5)


def drain(process, lines: list[str] | None = None) -> None:
    """Read the server's output (one access-log line per request) as it comes, so the pipe never fills
    and blocks the server; the lines go to ``lines`` when given."""
    def read():
        for line in process.stdout:
            if lines is not None:
                lines.append(line)

    threading.Thread(target=read, daemon=True).start()


@contextmanager
def serving(model: str, *extra: str, name: str | None = None, log: list[str] | None = None, env: dict | None = None):
    """`evalkit serve` in a subprocess; yields its base URL once /health answers (its output lines go to ``log``)."""
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    command = [sys.executable, "-m", "evalkit.cli", "serve", "--model", model, "--port", str(port), *extra]
    if name:
        command += ["--served-model-name", name]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_until_serving(process, port)
        drain(process, log)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture(scope="module")
def tiny_server(varied_model_dir):
    with serving(str(varied_model_dir), "--api-key", KEY, "--max-tokens-limit", "64", name="tiny") as url:
        yield url


def samples(out: Path, task: str) -> list[dict]:
    (path,) = sorted(out.glob(f"*/samples_{task}_*.jsonl"))
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def compare_backends(capsys, monkeypatch, tmp_path, model: str, url: str, name: str, mc: list[str], gen: list[str],
                     extra: list[str] = ()) -> tuple[list, list, list, list]:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    runs = {}
    for backend in ("hf", "openai"):
        out = tmp_path / backend
        api = ["--backend", "openai", "--base-url", url, "--model", name, *extra] if backend == "openai" else ["--model", model]
        for args in (mc, gen):
            code, stdout, err = run_cli(capsys, "run", *api, *args, "--output-dir", str(out), "--no-progress", "--no-store")
            assert code == 0, err
        runs[backend] = out
    return (samples(runs["hf"], "cmmlu"), samples(runs["openai"], "cmmlu"),
            samples(runs["hf"], "alpaca_zh"), samples(runs["openai"], "alpaca_zh"))


def assert_same(hf_mc, api_mc, hf_gen, api_gen, tolerance=1e-4):
    assert [r["prediction"] for r in api_mc] == [r["prediction"] for r in hf_mc]
    worst = max(abs(a["probabilities"][k] - h["probabilities"][k]) for a, h in zip(api_mc, hf_mc) for k in "ABCD")
    print(f"{len(hf_mc)} questions, same predictions, max |p_api - p_hf| = {worst:.2e}")
    assert worst < tolerance
    assert [r["prompt_sha256"] for r in api_mc] == [r["prompt_sha256"] for r in hf_mc]  # the same prompts were sent
    assert [r["prediction"] for r in api_gen] == [r["prediction"] for r in hf_gen]
    assert [r["new_tokens"] for r in api_gen] == [r["new_tokens"] for r in hf_gen]
    assert any(r["prediction"] for r in hf_gen)  # something was generated and compared


def test_openai_backend_matches_hf_on_tiny_model(capsys, monkeypatch, tmp_path, varied_model_dir, tiny_server, one_thread):
    # A random model's letters are nowhere near the top-20, so --tokenizer lets the client bias them in.
    mc = ["--tasks", "cmmlu:agronomy,cmmlu:anatomy", "--num-fewshot", "2", "--limit", "4"]
    gen = ["--tasks", "alpaca_zh", "--limit", "3", "--max-new-tokens", "12"]
    results = compare_backends(capsys, monkeypatch, tmp_path, str(varied_model_dir), tiny_server, "tiny", mc, gen,
                               ["--tokenizer", str(varied_model_dir)])
    assert_same(*results)
    for result_file in (tmp_path / "openai").glob("*/results_*.json"):
        recorded = json.loads(result_file.read_text())
        assert recorded["backend"]["name"] == "openai" and recorded["model"]["weights_sha256"]  # served identity
        assert KEY not in result_file.read_text()  # the key is never written


def test_letters_missing_from_logprobs_stop_with_one_line(capsys, monkeypatch, tmp_path, tiny_server):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    code, _, err = run_cli(capsys, "run", "--backend", "openai", "--base-url", tiny_server, "--model", "tiny",
                           "--tasks", "cmmlu:agronomy", "--limit", "2", "--output-dir", str(tmp_path), "--no-store",
                           "--no-progress")
    assert code == 2 and "--tokenizer" in err and len(err.strip().splitlines()) == 1


def test_mc_mode_generate_counts_unparsed(capsys, monkeypatch, tmp_path, tiny_server):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    code, _, err = run_cli(capsys, "run", "--backend", "openai", "--base-url", tiny_server, "--model", "tiny",
                           "--tasks", "cmmlu:agronomy", "--limit", "3", "--mc-mode", "generate",
                           "--output-dir", str(tmp_path), "--no-store", "--no-progress")
    assert code == 0, err
    (result_file,) = tmp_path.glob("*/results_*.json")
    block = json.loads(result_file.read_text())["tasks"]["cmmlu"]
    rows = samples(tmp_path, "cmmlu")
    assert block["n_unparsed"] == sum(r["prediction"] is None for r in rows)
    assert all(r["probabilities"] is None for r in rows)


@pytest.mark.parametrize("problem", ["no key", "wrong model", "no server"])
def test_client_errors_are_one_line(capsys, monkeypatch, tmp_path, tiny_server, problem):
    monkeypatch.setenv("OPENAI_API_KEY", "" if problem == "no key" else KEY)
    url = f"http://127.0.0.1:{free_port()}/v1" if problem == "no server" else tiny_server
    code, _, err = run_cli(capsys, "run", "--backend", "openai", "--base-url", url, "--max-retries", "0",
                           "--model", "nope" if problem == "wrong model" else "tiny", "--tasks", "cmmlu:agronomy",
                           "--limit", "1", "--output-dir", str(tmp_path), "--no-store", "--no-progress")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert {"no key": "401", "wrong model": "does not serve", "no server": "cannot connect"}[problem] in err


def test_server_rejects_bad_requests_and_keeps_serving(tiny_server):
    auth = {"Authorization": f"Bearer {KEY}"}
    post = lambda body, headers=auth: httpx.post(f"{tiny_server}/completions", headers=headers, timeout=60,  # noqa: E731
                                                 **({"content": body} if isinstance(body, str) else {"json": body}))
    assert post({"model": "tiny", "prompt": "hi"}, headers={}).status_code == 401
    assert post({"model": "tiny", "prompt": "hi"}, headers={"Authorization": "Bearer wrong"}).status_code == 401
    cases = {
        "malformed JSON": ('{"model": "tiny", "prompt": ', 400),
        "unknown model": ({"model": "other", "prompt": "hi"}, 404),
        "max_tokens over the bound": ({"model": "tiny", "prompt": "hi", "max_tokens": 65}, 400),
        "prompt over the context": ({"model": "tiny", "prompt": "word " * 600, "max_tokens": 1}, 400),
        "logprobs over 20": ({"model": "tiny", "prompt": "hi", "logprobs": 21}, 400),
        "bad logit_bias": ({"model": "tiny", "prompt": "hi", "logit_bias": {"x": 1}}, 400),
    }
    for label, (body, status) in cases.items():
        response = post(body)
        assert response.status_code == status, label
        assert response.json()["error"]["message"], label
    chat = httpx.post(f"{tiny_server}/chat/completions", headers=auth, timeout=60, json={"model": "tiny", "messages": []})
    assert chat.status_code == 400
    ok = post({"model": "tiny", "prompt": "hi", "max_tokens": 2, "temperature": 0, "logprobs": 2, "echo": True})
    assert ok.status_code == 200
    logprobs = ok.json()["choices"][0]["logprobs"]
    assert logprobs["token_logprobs"][0] is None and len(logprobs["tokens"]) == ok.json()["usage"]["total_tokens"]


def test_streamed_chat_equals_whole_answer(tiny_server):
    auth = {"Authorization": f"Bearer {KEY}"}
    body = {"model": "tiny", "messages": [{"role": "user", "content": "你好，介绍一下你自己"}], "max_tokens": 16,
            "temperature": 0}
    whole = httpx.post(f"{tiny_server}/chat/completions", headers=auth, json=body, timeout=60).json()
    pieces = []
    with httpx.stream("POST", f"{tiny_server}/chat/completions", headers=auth, json={**body, "stream": True},
                      timeout=60) as response:
        for line in response.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                pieces.append(json.loads(line[6:])["choices"][0]["delta"].get("content") or "")
    assert "".join(pieces) == whole["choices"][0]["message"]["content"]
    assert whole["choices"][0]["message"]["content"]


@pytest.mark.parametrize("seconds", [pytest.param(10, id="10s"), pytest.param(60, id="60s", marks=pytest.mark.slow)])
def test_concurrent_clients_lose_no_request(tiny_server, seconds):
    auth = {"Authorization": f"Bearer {KEY}"}
    sent, answered, failures = [0] * 8, [0] * 8, []
    stop_at = time.time() + seconds

    def client(slot: int):
        with httpx.Client(headers=auth, timeout=60) as http:
            while time.time() < stop_at:
                sent[slot] += 1
                body = {"model": "tiny", "prompt": f"client {slot} request {sent[slot]}", "max_tokens": 4,
                        "temperature": 0, "logprobs": 1}
                response = http.post(f"{tiny_server}/completions", json=body)
                if response.status_code == 200 and response.json()["choices"][0]["logprobs"]["tokens"]:
                    answered[slot] += 1
                else:
                    failures.append(response.text)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(f"8 clients, {seconds} s: {sum(sent)} requests, {sum(answered)} answered")
    assert not failures and sent == answered and sum(sent) >= 8


@pytest.mark.slow
def test_openai_backend_matches_hf_on_smollm2(capsys, monkeypatch, tmp_path):
    """The issue's check: 5-shot CMMLU, 10 subjects x 20, and alpaca_zh x 10, through `evalkit serve`."""
    from evalkit.tasks.registry import resolve_tasks

    subjects = list(resolve_tasks("cmmlu")[0].spec.subjects)[:10]
    mc = ["--tasks", ",".join(f"cmmlu:{s}" for s in subjects), "--num-fewshot", "5", "--limit", "20", "--batch-size", "8"]
    gen = ["--tasks", "alpaca_zh", "--limit", "10", "--batch-size", "1", "--max-new-tokens", "64"]
    with serving(SMOLLM2, "--api-key", KEY) as url:
        results = compare_backends(capsys, monkeypatch, tmp_path, SMOLLM2, url, SMOLLM2, mc, gen)
    assert len(results[0]) == 200 and len(results[2]) == 10
    assert_same(*results)


@pytest.mark.parametrize("argv, expected", [
    (["--backend", "openai"], "needs --base-url"),
    (["--tokenizer", "smollm2-135m-instruct"], "is an option of --backend openai"),
    (["--backend", "openai", "--base-url", "http://127.0.0.1:9/v1", "--tasks", "perplexity_default"], "cannot run on --backend openai"),
])
def test_backend_flags_checked_before_anything_loads(capsys, tmp_path, argv, expected):
    args = ["run", "--model", "m", "--tasks", "cmmlu:agronomy", *argv, "--output-dir", str(tmp_path), "--no-store"]
    if "--tasks" in argv:
        args = ["run", "--model", "m", *argv, "--output-dir", str(tmp_path), "--no-store"]
    code, _, err = run_cli(capsys, *args)
    assert code == 2 and expected in err and len(err.strip().splitlines()) == 1
