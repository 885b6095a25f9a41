"""A killed `evalkit run` resumes from the request cache: SIGKILL at random points during scoring (multiple
choice and generation), rerun the same command, and the final results equal an uninterrupted run's."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import SMOLLM2

TASKS = "cmmlu:agronomy,cmmlu:anatomy,cmmlu:astronomy,alpaca_zh"
VOLATILE = {"created_at", "timing", "profile", "results_file", "command", "requests", "environment", "use_cache"}


def command(model: str, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "evalkit.cli", "run", "--model", model, "--tasks", TASKS, "--limit", "6",
            "--batch-size", "2", "--max-new-tokens", "12", "--output-dir", str(out), "--no-store", "--no-progress", *extra]


def rows_in(db: Path) -> dict[str, float]:
    if not db.exists():
        return {}
    with sqlite3.connect(str(db), timeout=30) as connection:
        try:
            return dict(connection.execute("SELECT key, created FROM responses"))
        except sqlite3.OperationalError:  # the table is not created yet
            return {}


def stable(results: dict) -> dict:
    """A results file without what legitimately differs between two runs (times, paths, cache counts)."""
    def strip(value):
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k not in VOLATILE and k != "samples_file"}
        return value

    return strip(results)


def outputs(out: Path) -> tuple[dict, dict[str, str]]:
    (results_file,) = sorted(out.glob("*/results_*.json"))
    results = json.loads(results_file.read_text(encoding="utf-8"))
    samples = {}
    for path in sorted(out.glob("*/samples_*.jsonl")):
        task = path.name.split("_")[1]
        samples[task] = path.read_text(encoding="utf-8")
    return results, samples


@pytest.mark.parametrize("model", [pytest.param("tiny", id="tiny"), pytest.param(SMOLLM2, id="smollm2", marks=pytest.mark.slow)])
def test_killed_run_resumes_to_identical_results(tmp_path, varied_model_dir, model):
    model = str(varied_model_dir) if model == "tiny" else model
    env = {**os.environ, "OMP_NUM_THREADS": "1", "EVALKIT_REQUEST_CACHE": str(tmp_path / "requests.sqlite")}
    db = tmp_path / "requests.sqlite"
    total = 3 * 6 + 6  # three subjects x 6 questions, 6 generated samples

    reference = tmp_path / "uninterrupted"
    subprocess.run(command(model, reference, "--no-cache"), env=env, check=True, capture_output=True)

    rng = random.Random(1234)
    # Two random points while multiple choice is scored (18 questions), one while alpaca_zh generates (6 samples).
    thresholds = [rng.randint(1, 8), rng.randint(9, 16), rng.randint(19, total - 2)]
    saved_at_kill: dict[str, float] = {}
    for attempt, threshold in enumerate(thresholds):
        if threshold <= len(saved_at_kill):
            threshold = len(saved_at_kill) + 1
        process = subprocess.Popen(command(model, tmp_path / f"killed{attempt}"), env=env,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 600
        while len(rows_in(db)) < threshold and process.poll() is None and time.time() < deadline:
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)
        process.wait()
        now = rows_in(db)
        # Nothing saved before is computed again (its row would be rewritten with a new time).
        assert all(now[key] == created for key, created in saved_at_kill.items())
        print(f"kill {attempt + 1}: SIGKILL with {len(now)}/{total} requests saved (threshold {threshold})")
        saved_at_kill = now

    final = tmp_path / "final"
    subprocess.run(command(model, final), env=env, check=True, capture_output=True)
    results, samples = outputs(final)
    counts = {name: block["requests"] for name, block in results["tasks"].items()}
    from_cache = sum(c["from_cache"] for c in counts.values())
    computed = sum(c["computed"] for c in counts.values())
    print(f"final rerun: {from_cache} from the cache, {computed} computed (per task: {counts})")
    # Every saved answer was reused; only unsaved ones were computed, and the in-flight batch (<= 2) was all a kill lost.
    assert from_cache == len(saved_at_kill) and from_cache + computed == total
    assert all(rows_in(db)[key] == created for key, created in saved_at_kill.items())

    expected, expected_samples = outputs(reference)
    assert stable(results) == stable(expected)
    assert samples == expected_samples  # per-sample files byte for byte

    again = tmp_path / "again"
    started = time.perf_counter()
    subprocess.run(command(model, again), env=env, check=True, capture_output=True)
    results_again, samples_again = outputs(again)
    assert all(block["requests"]["computed"] == 0 for block in results_again["tasks"].values())
    assert samples_again == expected_samples
    print(f"second full rerun: nothing computed, {time.perf_counter() - started:.1f} s wall (process start and model load)")


def test_cache_commands_and_no_cache(capsys, tmp_path, monkeypatch, tiny_model_dir):
    from tests.helpers import run_cli

    monkeypatch.setenv("EVALKIT_REQUEST_CACHE", str(tmp_path / "c.sqlite"))
    args = ["run", "--model", str(tiny_model_dir), "--tasks", "cmmlu:agronomy", "--limit", "2", "--no-store", "--no-progress"]
    assert run_cli(capsys, *args, "--no-cache", "--output-dir", str(tmp_path / "a"))[0] == 0
    code, out, _ = run_cli(capsys, "cache", "info")
    assert code == 0 and "empty" in out  # --no-cache wrote nothing
    assert run_cli(capsys, *args, "--output-dir", str(tmp_path / "b"))[0] == 0
    code, out, _ = run_cli(capsys, "cache", "info")
    assert "2 answers (2 multiple_choice)" in out
    code, out, _ = run_cli(capsys, "cache", "clear")
    assert code == 0 and "removed 2" in out
    assert "0 answers" in run_cli(capsys, "cache", "info")[1]


def test_unwritable_cache_warns_and_runs(capsys, tmp_path, monkeypatch, tiny_model_dir):
    from tests.helpers import run_cli

    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("EVALKIT_REQUEST_CACHE", str(blocker / "c.sqlite"))
    code, _, err = run_cli(capsys, "run", "--model", str(tiny_model_dir), "--tasks", "cmmlu:agronomy", "--limit", "1",
                           "--no-store", "--no-progress", "--output-dir", str(tmp_path / "out"))
    assert code == 0 and "request cache unavailable" in err
