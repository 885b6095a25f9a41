"""`evalkit serve` under hostile bodies (issue 25, point 1): a chunked body with no Content-Length is
bounded as it streams in, answered with 413 JSON, and the server's memory barely moves."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx
import psutil
import pytest

from tests.test_api_backend import free_port, wait_until_serving

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
