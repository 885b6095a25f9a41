"""A team's store: two `evalkit nightly` processes into a real PostgreSQL server on 127.0.0.1, then the gate and
the leaderboard read it. Installs nothing: skipped (with the reason) where Debian's postgresql binaries or the
psycopg driver are absent (`apt-get install postgresql`, `pip install -e '.[postgres]'`)."""

from __future__ import annotations

import glob
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.test_gate import cli
from tests.test_nightly import write_suite


def _pg_bin() -> Path | None:
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(versions[-1]).parent if versions else None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def postgres_url():
    """A throwaway server: initdb in a temporary directory, pg_ctl start on a free port, stopped afterwards.
    PostgreSQL refuses to run as root, so as root it runs as the `postgres` user (runuser)."""
    pg_bin = _pg_bin()
    if pg_bin is None:
        pytest.skip("PostgreSQL server binaries not found (Debian: apt-get install postgresql)")
    pytest.importorskip("psycopg", reason="the PostgreSQL driver is not installed: pip install -e '.[postgres]'")
    as_user: list[str] = []
    root = Path(tempfile.mkdtemp(prefix="evalkit-pg-"))
    if os.geteuid() == 0:
        if shutil.which("runuser") is None:
            pytest.skip("running as root without runuser: cannot start PostgreSQL as another user")
        as_user = ["runuser", "-u", "postgres", "--"]
        root.chmod(0o755)
        shutil.chown(root, "postgres")
    data, port = root / "data", _free_port()
    subprocess.run([*as_user, str(pg_bin / "initdb"), "-D", str(data), "-A", "trust", "-U", "evalkit", "--no-sync"],
                   check=True, capture_output=True, timeout=120)
    subprocess.run([*as_user, str(pg_bin / "pg_ctl"), "-D", str(data), "-l", str(root / "server.log"), "-w", "-t", "60",
                    "-o", f"-p {port} -c listen_addresses=127.0.0.1 -k {root}", "start"],
                   check=True, capture_output=True, timeout=120)
    try:
        yield f"postgresql+psycopg://evalkit@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_user, str(pg_bin / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
                       capture_output=True, timeout=120)
        shutil.rmtree(root, ignore_errors=True)


def _evalkit(*argv: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "EVALKIT_REQUEST_CACHE": "off"}
    return subprocess.run([sys.executable, "-m", "evalkit.cli", *argv], capture_output=True, text=True, env=env,
                          timeout=900, cwd=REPO)


@pytest.mark.slow  # a real server start and two nightly runs: minutes; the nightly job runs it
def test_two_nightly_processes_into_postgres_then_gate_and_leaderboard(postgres_url, tmp_path, tiny_model_dir):
    suite = write_suite(tmp_path, [str(tiny_model_dir)])
    for night in ("2026-11-22", "2026-11-23"):  # two processes, one store
        done = _evalkit("nightly", str(suite), "--night", night, "--store", postgres_url)
        assert done.returncode == 0, done.stderr
    verdict = json.loads((tmp_path / "nightly" / "verdict.json").read_text())["models"][str(tiny_model_dir)]
    assert verdict["verdict"] == "pass" and verdict["baseline"]["runs"]  # night 2 gated against night 1

    # then the gate and the leaderboard read the store (in this process: the two writers were the processes)
    first, second = verdict["baseline"]["runs"], verdict["candidate"]["runs"]
    code, _, err = cli("gate", "--baseline", ",".join(map(str, first)), "--candidate", ",".join(map(str, second)),
                       "--store", postgres_url, "--verdict", str(tmp_path / "gate.json"))
    assert code == 0, err
    assert json.loads((tmp_path / "gate.json").read_text())["tasks"] == ["cmmlu", "alpaca_zh"]
    code, _, err = cli("gate", "--baseline", f"accepted:{tiny_model_dir}@tiny-smoke", "--candidate", str(second[0]),
                       "--store", postgres_url)
    assert code == 0, err

    code, _, err = cli("leaderboard", "--output", str(tmp_path / "site-pg"), "--store", postgres_url)
    assert code == 0, err
    page = next((tmp_path / "site-pg" / "models").glob("*.html")).read_text(encoding="utf-8")
    for run in first + second:
        assert f">{run}</td>" in page
    code, out, _ = cli("runs", "--store", postgres_url)
    assert code == 0 and "postgresql" in out and "evalkit@127.0.0.1" in out
