"""``--threads auto`` counts the cores idle now (sampled), not the load average that lags by minutes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import psutil
import pytest

from evalkit import threads
from tests.helpers import run_cli


def test_every_allowed_core_busy_gives_one_thread():
    cores = sorted(os.sched_getaffinity(0))
    spinners = [subprocess.Popen([sys.executable, "-c", f"import os; os.sched_setaffinity(0, {{{core}}})\nwhile True: pass"])
                for core in cores]
    try:
        psutil.cpu_percent(interval=0.5)  # let the spinners start
        assert threads.auto_threads() == 1
        assert threads.last_sample["idle_cores"] < 0.5 * len(cores)
    finally:
        for spinner in spinners:
            spinner.kill()


def test_idle_share_rounds_to_threads(monkeypatch):
    cores = len(os.sched_getaffinity(0))
    for busy, expected in ((0.0, cores), (100.0, 1), (40.0, max(1, min(cores, int(cores * 0.6 + 0.5))))):
        monkeypatch.setattr(psutil, "cpu_percent", lambda interval, percpu, b=busy: [b] * psutil.cpu_count())
        assert threads.auto_threads() == expected
        assert threads.last_sample == {"cores": cores, "idle_cores": round(cores * (100 - busy) / 100, 2),
                                       "window_s": threads.SAMPLE_SECONDS, "threads": expected}


def test_threads_are_chosen_after_the_inputs_are_checked(tmp_path, capsys, monkeypatch):
    """A bad input fails before --threads auto samples the cores (that takes a moment; an error should not)."""
    monkeypatch.setattr(threads, "idle_cores", lambda *a: pytest.fail("sampled the cores before refusing the input"))
    code, _, err = run_cli(capsys, "run", "--backend", "fake", "--model", "m", "--tasks", "cmmlu:nope",
                           "--threads", "auto", "--no-store", "--output-dir", str(tmp_path))
    assert code == 2 and "unknown subject" in err


def test_results_record_what_auto_saw(tmp_path, capsys):
    code, _, err = run_cli(capsys, "run", "--backend", "fake", "--model", "m", "--tasks", "cmmlu:agronomy", "--limit", "1",
                           "--threads", "auto", "--no-store", "--no-progress", "--output-dir", str(tmp_path))
    assert code == 0, err
    config = json.loads(next(tmp_path.rglob("results_*.json")).read_text(encoding="utf-8"))["config"]
    assert config["threads_seen"]["threads"] == config["threads"] >= 1
    assert config["threads_seen"]["cores"] == len(os.sched_getaffinity(0))
