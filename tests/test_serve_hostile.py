"""`evalkit serve` under hostile bodies (issue 25, point 1): a chunked body with no Content-Length is
bounded as it streams in, answered with 413 JSON, and the server's memory barely moves."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import httpx
import psutil
import pytest

from tests.test_api_backend import drain, free_port, wait_until_serving

KEY = "hostile-key"


@pytest.fixture(scope="module")
def server(varied_model_dir):
    port = free_port()
    command = [sys.executable, "-m", "evalkit", "serve", "--model", str(varied_model_dir), "--port", str(port),
               "--served-model-name", "tiny", "--max-tokens-limit", "64"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "EVALKIT_SERVE_API_KEY": KEY}
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_until_serving(process, port)
        drain(process)
        yield f"http://127.0.0.1:{port}", process.pid
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_chunked_40_mb_body_gets_413_json_and_memory_stays_flat(server):
    url, pid = server
    before = psutil.Process(pid).memory_info().rss

    def chunks():  # 40 MB in 64 KiB pieces; httpx sends a generator with Transfer-Encoding: chunked
        piece = b'{"model": "tiny", "prompt": "' + b"x" * 65_000
        yield piece
        for _ in range(40 * 2**20 // 65_536):
            yield b"x" * 65_536

    started = time.perf_counter()
    response = httpx.post(f"{url}/v1/completions", content=chunks(), timeout=60,
                          headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"})
    seconds = time.perf_counter() - started
    grown = (psutil.Process(pid).memory_info().rss - before) / 2**20
    print(f"\nchunked 40 MB body: {response.status_code} after {seconds:.2f} s, server RSS +{grown:.1f} MB")
    assert response.status_code == 413
    error = response.json()["error"]
    assert error["code"] == "request_too_large" and "limit" in error["message"]
    assert grown < 100
    assert httpx.get(f"{url}/health", timeout=5).status_code == 200  # still serving


def test_declared_oversize_body_is_refused_before_reading(server):
    url, _ = server
    response = httpx.post(f"{url}/v1/completions", content=b"{" + b" " * (5 << 20) + b"}", timeout=60,
                          headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"})
    assert response.status_code == 413 and response.json()["error"]["code"] == "request_too_large"


def post_timed(url: str, body) -> tuple[httpx.Response, float]:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    started = time.perf_counter()
    response = httpx.post(f"{url}/v1/completions", content=content, timeout=60,
                          headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"})
    return response, time.perf_counter() - started


def assert_openai_error(response, status: int, param: str | None = None) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    if param is not None:
        assert error["param"] == param, error
    assert response.headers["x-request-id"].startswith("req-")
    return error


OUT_OF_RANGE = {  # issue 25 point 7: each refused before any work, in milliseconds
    "seed 2**70": ({"seed": 2**70}, "seed"),
    "200 stops of 2000 chars": ({"stop": ["x" * 2000] * 200}, "stop"),
    "5 stops": ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
    "stop of 65 chars": ({"stop": "y" * 65}, "stop"),
    "n 2**80": ({"n": 2**80}, "n"),
    "max_tokens 2**64": ({"max_tokens": 2**64}, "max_tokens"),
    "max_tokens -1": ({"max_tokens": -1}, "max_tokens"),
    "logprobs 21": ({"logprobs": 21}, "logprobs"),
    "temperature 2.5": ({"temperature": 2.5}, "temperature"),
    "top_p 0": ({"top_p": 0}, "top_p"),
    "logit_bias 101": ({"logit_bias": {"5": 101}}, "logit_bias.5"),
    "logit_bias key not an id": ({"logit_bias": {"x" * 40: 1}}, None),
    "token id over the vocab": ({"prompt": [[1, 2, 10**9]]}, "prompt"),
    "empty token list": ({"prompt": [[1], []]}, "prompt"),
}


@pytest.mark.parametrize("label", list(OUT_OF_RANGE))
def test_out_of_range_fields_get_json_400_fast(server, label):
    url, _ = server
    fields, param = OUT_OF_RANGE[label]
    response, seconds = post_timed(url, {"model": "tiny", "prompt": "hi", **fields})
    print(f"\n{label}: {response.status_code} in {seconds * 1000:.0f} ms")
    assert_openai_error(response, 400, param)
    assert seconds < 1  # the bound: refused before any work


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"1e999"])
def test_non_finite_temperature_is_400(server, literal):
    response, _ = post_timed(server[0], b'{"model": "tiny", "prompt": "hi", "temperature": ' + literal + b"}")
    assert_openai_error(response, 400, "temperature")


UNSUPPORTED = {"response_format": {"type": "json_object"}, "tools": [{"type": "function", "function": {"name": "f"}}],
               "tool_choice": "auto", "functions": [{"name": "f"}], "function_call": "auto", "presence_penalty": 0.5,
               "frequency_penalty": -1, "best_of": 2, "suffix": "end", "n": 2, "logprobs_typo": 1}


@pytest.mark.parametrize("field", list(UNSUPPORTED))
def test_unsupported_field_is_400_naming_it(server, field):
    response, _ = post_timed(server[0], {"model": "tiny", "prompt": "hi", "max_tokens": 1, field: UNSUPPORTED[field]})
    error = assert_openai_error(response, 400, field)
    assert field in error["message"]


def test_unsupported_fields_at_their_off_values_are_answered(server):
    body = {"model": "tiny", "prompt": "hi", "max_tokens": 1, "temperature": 0, "presence_penalty": 0,
            "frequency_penalty": 0.0, "best_of": 1, "n": 1, "suffix": None, "user": "u1", "seed": 1234,
            "logprobs": 1, "echo": True, "stop": ["\n\n", "Question:"]}  # lm-eval's and the SDK's usual fields
    response, _ = post_timed(server[0], body)
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("method, path, status", [("GET", "/v1/nothing-here", 404), ("GET", "/v1/completions", 405),
                                                   ("DELETE", "/v1/chat/completions", 405), ("PUT", "/health", 405)])
def test_routing_errors_are_openai_json(server, method, path, status):
    response = httpx.request(method, server[0] + path, headers={"Authorization": f"Bearer {KEY}"}, timeout=10)
    error = assert_openai_error(response, status)
    assert path in error["message"]


def test_unexpected_exception_is_500_json_with_request_id_and_logged(tiny_lm, caplog):
    """A bug in a handler (here a test route that raises) reaches the client as JSON with an id, never a traceback."""
    from fastapi.testclient import TestClient

    from evalkit.serve.app import create_app
    from evalkit.serve.engine import ServedModel

    app = create_app(ServedModel(tiny_lm, "tiny"))

    @app.get("/v1/broken")
    def broken():
        raise RuntimeError("secret internal detail")

    with caplog.at_level("INFO", logger="evalkit.serve"):
        response = TestClient(app, raise_server_exceptions=False).get("/v1/broken")
    error = assert_openai_error(response, 500)
    request_id = response.headers["x-request-id"]
    assert request_id in error["message"] and "secret" not in response.text and "Traceback" not in response.text
    logged = [r for r in caplog.records if request_id in r.getMessage()]
    assert any(r.exc_info and "secret internal detail" in str(r.exc_info[1]) for r in logged)  # the server keeps it
    assert any(r.name == "evalkit.serve.access" and " 500 " in r.getMessage() for r in logged)


def test_vllm_child_gets_the_key_in_its_environment_not_argv(tmp_path, tiny_model_dir):
    """`evalkit serve --engine vllm` execs `vllm serve`: a stand-in vllm records what the child was given."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "vllm"
    fake.write_text('#!/bin/sh\nprintf "%s\\n" "$@" > "$RECORD/argv"\nprintf "%s" "$VLLM_API_KEY" > "$RECORD/key"\n')
    fake.chmod(0o755)
    key_file = tmp_path / "key"
    key_file.write_text("vllm-secret-key\n")
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "RECORD": str(tmp_path)}
    env.pop("EVALKIT_SERVE_API_KEY", None)
    done = subprocess.run([sys.executable, "-m", "evalkit", "serve", "--engine", "vllm", "--model", str(tiny_model_dir),
                           "--api-key-file", str(key_file)], check=False, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    argv = (tmp_path / "argv").read_text()
    assert argv.startswith("serve\n") and "vllm-secret-key" not in argv and "--api-key" not in argv
    assert (tmp_path / "key").read_text() == "vllm-secret-key"
    assert "vllm-secret-key" not in done.stdout + done.stderr


@pytest.mark.parametrize("content, expected", [("", "first line is empty"), (None, "cannot read it")])
def test_bad_api_key_file_is_one_line_exit_2(tmp_path, content, expected):
    key_file = tmp_path / "key"
    if content is not None:
        key_file.write_text(content)
    done = subprocess.run([sys.executable, "-m", "evalkit", "serve", "--model", "m", "--api-key-file", str(key_file)],
                          check=False, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and expected in done.stderr and len(done.stderr.strip().splitlines()) == 1
