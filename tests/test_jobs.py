"""Jobs (the board's launcher, `evalkit jobs` on the command line): a job is its CLI command, in its own process
group, logged to a file; one at a time; cancel kills the group; a restart marks vanished jobs failed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from evalkit.board import jobs
from evalkit.errors import EvalkitError
from tests.conftest import SMOLLM2
from tests.helpers import run_cli

FAKE_RUN = ["run", "--backend", "fake", "--model", "m", "--tasks", "cmmlu:agronomy,alpaca_zh", "--limit", "4", "--no-progress"]


def outputs(directory: Path) -> dict:
    """The results files' scores and the samples files' rows (what must not depend on how the run was started)."""
    found = {}
    for path in sorted(directory.rglob("results_*.json")):
        tasks = json.loads(path.read_text(encoding="utf-8"))["tasks"]
        for name, block in tasks.items():
            rows = (path.parent / block["samples_file"]).read_text(encoding="utf-8").splitlines()
            found[name] = ({k: v for k, v in block.items() if k not in ("samples_file", "requests", "timing")}, rows)
    return found


def test_a_job_gives_the_same_results_as_its_command(tmp_path, capsys):
    store = str(tmp_path / "store.sqlite")
    first = jobs.submit([*FAKE_RUN, "--output-dir", str(tmp_path / "job")], store, user="lead")
    second = jobs.submit([*FAKE_RUN, "--output-dir", str(tmp_path / "job2")], store)
    assert jobs.work(store, tmp_path / "logs", once=True) == 2
    done = {job.id: job for job in jobs.list_jobs(store)}
    assert [done[first].state, done[second].state] == ["done", "done"] and done[first].exit_code == 0
    assert done[second].started_at >= done[first].finished_at  # one at a time, in order
    assert "results:" in Path(done[first].log_path).read_text(encoding="utf-8") and done[first].user == "lead"
    code, _, err = run_cli(capsys, *FAKE_RUN, "--output-dir", str(tmp_path / "cli"), "--store", store)
    assert code == 0, err
    assert outputs(tmp_path / "job") == outputs(tmp_path / "cli") != {}


@pytest.mark.parametrize("argv, expected", [
    (["serve", "--model", "m"], "a job is one of"), ([], "a job is one of"),
    (["run", "--model", "m", "--tasks", "cmmlu", "--seed", "x"], "--seed"),
    (["run", "--model", "m", "--tasks", "nope"], "unknown task 'nope'"),
    (["train", "trainers/lora.yaml", "--colour"], "unrecognized arguments"),
])
def test_a_bad_command_is_refused_before_it_is_queued(tmp_path, capsys, argv, expected):
    store = str(tmp_path / "store.sqlite")
    code, _, err = run_cli(capsys, "jobs", "submit", "--store", store, "--", *argv)
    assert code == 2 and expected in err and err.count("\n") == 1 and "Traceback" not in err
    assert jobs.list_jobs(store) == []


def test_cancel_kills_the_running_jobs_process_group(tmp_path):
    store = str(tmp_path / "store.sqlite")
    job_id = jobs.submit(["run", "--model", SMOLLM2, "--tasks", "cmmlu", "--limit", "50", "--no-progress",
                          "--output-dir", str(tmp_path / "out"), "--no-cache"], store)
    worker = threading.Thread(target=jobs.work, args=(store, tmp_path / "logs"), kwargs={"once": True})
    worker.start()
    deadline = time.monotonic() + 120
    while (job := jobs.get_job(job_id, store)).pid is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert job.state == "running" and os.getpgid(job.pid) == job.pid  # its own process group
    time.sleep(2)  # let it get going (imports, model load)
    assert jobs.cancel(job_id, store, grace=5).state == "cancelled"
    worker.join(30)
    assert not worker.is_alive()
    with pytest.raises(ProcessLookupError):
        os.killpg(job.pid, 0)
    job = jobs.get_job(job_id, store)
    assert job.state == "cancelled" and job.exit_code is not None and not list((tmp_path / "out").rglob("results_*"))
    with pytest.raises(EvalkitError, match="already finished"):
        jobs.cancel(job_id, store)


def test_a_restarted_worker_marks_vanished_jobs_failed(tmp_path):
    from evalkit.store.engine import open_store
    from evalkit.store.schema import Job

    store = str(tmp_path / "store.sqlite")
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    factory, _ = open_store(store)
    with factory.begin() as session:
        session.add(Job(argv=["run"], state="running", pid=gone.pid))
    assert jobs.reconcile(store) == [1]
    job = jobs.get_job(1, store)
    assert job.state == "failed" and "is gone" in job.note


def test_a_queued_job_cancelled_never_starts(tmp_path):
    store = str(tmp_path / "store.sqlite")
    job_id = jobs.submit([*FAKE_RUN, "--output-dir", str(tmp_path / "out")], store)
    jobs.cancel(job_id, store)
    assert jobs.work(store, tmp_path / "logs", once=True) == 0
    assert jobs.get_job(job_id, store).state == "cancelled" and not (tmp_path / "out").exists()
