"""Faults and careless input found by probing evalkit (issue 11): each gets one ``evalkit: error:`` line and
exit 2 before the model loads, or is survived without losing what was computed.

Read-only directories are real read-only filesystems (a tmpfs remounted ``ro``): chmod does not stop
root, and these tests often run as root. Without the privilege to mount, they fall back to chmod
(which does stop other users) and skip when neither makes a directory unwritable.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, SMOLLM2
from tests.helpers import run_cli, spec_copy


class ReadOnly:
    """``make(path)`` gives an empty writable directory; ``freeze(path)`` makes it read-only for everyone."""

    def __init__(self):
        self.mounts: list[Path] = []
        self.chmods: list[Path] = []

    def make(self, path: Path) -> Path:
        path.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(path)], capture_output=True)
            if done.returncode != 0:
                pytest.skip(f"a read-only directory for root needs a tmpfs mount: {done.stderr.decode().strip()}")
            self.mounts.append(path)
        return path

    def bind(self, source: Path, path: Path) -> Path:
        """``source`` seen read-only at ``path`` (a read-only bind mount: nothing is copied)."""
        if os.geteuid() != 0:
            pytest.skip("a read-only view of an existing directory needs a bind mount (root)")
        path.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(["mount", "--bind", str(source), str(path)], capture_output=True)
        if done.returncode != 0:
            pytest.skip(f"a read-only bind mount is not possible here: {done.stderr.decode().strip()}")
        self.mounts.append(path)
        subprocess.run(["mount", "-o", "remount,bind,ro", str(path)], check=True)
        return path

    def freeze(self, path: Path) -> None:
        if path in self.mounts:
            subprocess.run(["mount", "-o", "remount,ro", str(path)], check=True)
        else:
            for directory in [path, *[p for p in path.rglob("*") if p.is_dir()]]:
                directory.chmod(0o555)
                self.chmods.append(directory)
        try:
            (path / ".probe").write_bytes(b"")
        except OSError:
            return
        (path / ".probe").unlink()
        pytest.skip(f"{path} is still writable (chmod does not stop root and mounting failed)")

    def thaw(self, path: Path) -> None:
        if path in self.mounts:
            subprocess.run(["mount", "-o", "remount,rw", str(path)], check=True)

    def cleanup(self) -> None:
        for path in reversed(self.mounts):
            subprocess.run(["umount", "-l", str(path)], check=False)
        for path in self.chmods:
            path.chmod(0o755)


@pytest.fixture
def read_only():
    helper = ReadOnly()
    yield helper
    helper.cleanup()


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("evalkit: error: "), err
    assert "Traceback" not in err
    return lines[0]


def run_fails(capsys, *argv: str) -> str:
    capsys.readouterr()
    code, out, err = run_cli(capsys, *argv)
    assert code == 2, (out, err)
    return one_error_line(err)


def run_args(model, out: Path, tasks: str = "cmmlu:agronomy", *extra: str) -> list[str]:
    return ["run", "--model", str(model), "--tasks", tasks, "--output-dir", str(out), "--limit", "2", "--no-progress",
            *extra]


# --- results are never lost ---------------------------------------------------------------------------------

def test_read_only_output_dir_fails_before_the_model_load(capsys, tmp_path, read_only):
    out = read_only.make(tmp_path / "out")
    (out / "no__such__model").mkdir()  # the model's directory exists: mkdir alone would succeed
    read_only.freeze(out)
    # the model does not exist: the output check must come first to be the error shown
    line = run_fails(capsys, *run_args("./no/such/model", out))
    assert "cannot write the output directory" in line and "Read-only file system" in line and "--output-dir" in line


def test_results_written_elsewhere_when_the_directory_turns_read_only(tmp_path, read_only, monkeypatch, capsys):
    from evalkit.results import RunOutput

    out = read_only.make(tmp_path / "out")
    output = RunOutput(out, "model", stamp="s")
    output.check_writable()
    samples = output.write_samples("cmmlu", [{"index": 0, "correct": True}])
    read_only.freeze(out)  # e.g. the disk was remounted read-only during a long run
    monkeypatch.chdir(tmp_path)
    path = output.write_results({"tasks": {"cmmlu": {"samples_file": samples.name}}})
    assert path == tmp_path / "evalkit-unsaved" / "model" / "results_s.json"
    assert f"this run's files go to {tmp_path / 'evalkit-unsaved' / 'model'}" in capsys.readouterr().err
    written = json.loads(path.read_text())
    assert written["tasks"]["cmmlu"]["samples_file"] == str(samples.resolve())  # still found from the new place
    read_only.thaw(out)
    assert not (out / "model" / "results_s.json").exists()  # no half-written file left behind


def test_failed_run_leaves_no_empty_model_directory(capsys, tmp_path):
    run_fails(capsys, *run_args("./no/such/checkpoint", tmp_path / "out"))
    assert not (tmp_path / "out").exists()


# --- checked before the model load --------------------------------------------------------------------------

def test_two_specs_with_the_same_task_name(capsys, tmp_path):
    data = tmp_path / "data"
    (data / "test").mkdir(parents=True)
    (data / "dev").mkdir()
    for split in ("test", "dev"):
        (data / split / "agronomy.csv").write_text(",Question,A,B,C,D,Answer\n0,问题,甲,乙,丙,丁,A\n", encoding="utf-8")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = spec_copy("cmmlu", tmp_path / "a", data, ["agronomy"])
    second = spec_copy("cmmlu", tmp_path / "b", data, ["agronomy"])
    line = run_fails(capsys, *run_args("./no/such/model", tmp_path / "out", f"{first},{second}"))
    assert "both define task 'cmmlu'" in line and str(first) in line and str(second) in line
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("device, needle", [("bogus", "is not a device"), ("cuda:99", "CUDA"), ("meta", "cpu, cuda or mps")])
def test_device_checked_before_the_model_load(capsys, tmp_path, device, needle):
    import torch

    if device.startswith("cuda") and torch.cuda.device_count() > 99:
        pytest.skip("this machine has 100 GPUs")
    line = run_fails(capsys, *run_args("./no/such/model", tmp_path / "out", "cmmlu:agronomy", "--device", device))
    assert needle in line and "--device" in line


def test_cuda_without_a_gpu(capsys, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    line = run_fails(capsys, *run_args("./no/such/model", tmp_path / "out", "cmmlu:agronomy", "--device", "cuda"))
    assert "no CUDA GPU" in line and "--device cpu" in line


@pytest.fixture
def not_a_database(tmp_path) -> Path:
    path = tmp_path / "notes.txt"
    path.write_text("this is not a SQLite file\n" * 100)
    return path


@pytest.mark.parametrize("kind", ["not_sqlite", "unknown_scheme", "no_driver"])
def test_bad_store_url_checked_at_start_up(capsys, tmp_path, not_a_database, kind):
    url, needle = {"not_sqlite": (str(not_a_database), "file is not a database"),
                   "unknown_scheme": ("foo://host/db", "unknown database scheme 'foo'"),
                   "no_driver": ("mysql://user:secret@host/db", "driver for 'mysql' is not installed")}[kind]
    line = run_fails(capsys, *run_args("./no/such/model", tmp_path / "out", "cmmlu:agronomy", "--store", url))
    assert needle in line and "secret" not in line
    for argv in (["runs", "--store", url], ["import", str(tmp_path), "--store", url],
                 ["leaderboard", "--output", str(tmp_path / "lb"), "--store", url],
                 ["report", "--base", "a", "--candidate", "b", "--output", str(tmp_path / "r.html"), "--store", url]):
        assert needle in run_fails(capsys, *argv), argv


# --- hostile adapters ---------------------------------------------------------------------------------------

def adapter(tmp_path: Path, name: str, config, weights: bool = True, config_name: str = "adapter_config.json") -> Path:
    directory = tmp_path / name
    directory.mkdir()
    (directory / config_name).write_text(json.dumps(config))
    if weights:
        (directory / "adapter_model.safetensors").write_bytes(b"\0" * 16)
    return directory


def test_adapter_whose_base_is_itself(capsys, tmp_path):
    directory = tmp_path / "loop"
    adapter(tmp_path, "loop", {"base_model_name_or_path": str(directory), "peft_type": "LORA"})
    line = run_fails(capsys, *run_args(directory, tmp_path / "out"))
    assert "adapter_config.json" in line and "leads back to this adapter" in line


def test_two_adapters_based_on_each_other(capsys, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    adapter(tmp_path, "a", {"base_model_name_or_path": str(b)})
    adapter(tmp_path, "b", {"base_model_name_or_path": str(a)}, config_name="evalkit_adapter_config.json")
    line = run_fails(capsys, *run_args(a, tmp_path / "out"))
    assert "leads back" in line


@pytest.mark.parametrize("config_name", ["adapter_config.json", "evalkit_adapter_config.json"])
def test_adapter_config_that_is_a_list(capsys, tmp_path, tiny_model_dir, config_name):
    directory = adapter(tmp_path, "listy", [{"base_model_name_or_path": str(tiny_model_dir)}], config_name=config_name)
    line = run_fails(capsys, *run_args(directory, tmp_path / "out"))
    assert config_name in line and "expected a JSON object, found a list" in line


def test_adapter_without_weights(capsys, tmp_path, tiny_model_dir):
    directory = adapter(tmp_path, "bare", {"base_model_name_or_path": str(tiny_model_dir), "peft_type": "LORA"},
                        weights=False)
    line = run_fails(capsys, *run_args(directory, tmp_path / "out"))
    assert "adapter without weights" in line and "HFValidationError" not in line


# --- the model cache ----------------------------------------------------------------------------------------

def test_read_only_cache_dir_that_does_not_exist(capsys, tmp_path, read_only, monkeypatch):
    root = read_only.make(tmp_path / "ro")
    read_only.freeze(root)
    monkeypatch.setenv("EVALKIT_CACHE_DIR", str(root / "cache"))
    line = run_fails(capsys, *run_args(SMOLLM2, tmp_path / "out"))
    assert "cannot create the evalkit cache directory" in line and "EVALKIT_CACHE_DIR" in line


@pytest.mark.parametrize("with_models_dir", [False, True], ids=["empty", "other_models_only"])
def test_read_only_cache_without_the_model(capsys, tmp_path, read_only, monkeypatch, with_models_dir):
    cache = read_only.make(tmp_path / "cache")
    if with_models_dir:  # the lock file cannot be created either
        (cache / "models").mkdir()
    read_only.freeze(cache)
    monkeypatch.setenv("EVALKIT_CACHE_DIR", str(cache))
    line = run_fails(capsys, *run_args(SMOLLM2, tmp_path / "out"))
    assert "cannot write the model cache" in line and "EVALKIT_CACHE_DIR" in line


def test_read_only_warm_cache_still_loads(tmp_path, read_only, monkeypatch):
    """A team's shared read-only cache: a warm hit needs no write at all."""
    from evalkit.cache import cache_dir
    from evalkit.models.embedded import resolve_embedded

    warm, _ = resolve_embedded(SMOLLM2)  # the user's own cache, warm
    shared = read_only.bind(cache_dir(), tmp_path / "shared")
    monkeypatch.setenv("EVALKIT_CACHE_DIR", str(shared))
    directory, identity = resolve_embedded(SMOLLM2)
    assert directory == shared / "models" / warm.name and identity["weights_sha256"]


def save_tiny(source: Path):
    def write(staging: Path) -> None:
        shutil.copytree(source, staging)
        (staging / "model.safetensors").chmod(0o600)  # as safetensors leaves it
        (staging / "evalkit_source.json").write_text("{}")
    return write


def test_cache_files_follow_the_umask(tmp_path, tiny_model_dir):
    from evalkit.models.embedded import publish

    target = tmp_path / "models" / "tiny-0123"
    old = os.umask(0o022)
    try:
        publish(target, save_tiny(tiny_model_dir))
    finally:
        os.umask(old)
    assert (target / "model.safetensors").stat().st_mode & 0o777 == 0o644
    assert target.stat().st_mode & 0o777 == 0o755


def test_stale_staging_directories_are_removed(tmp_path):
    from filelock import FileLock

    from evalkit.models.embedded import remove_stale_staging

    models = tmp_path / "models"
    stale = models / "SmolLM2-0123.partial-4242"  # left by a killed first load
    legacy = models / "Gemma-4567.partial"  # evalkit 0.1's staging name
    busy = models / "Busy-89ab.partial-99"  # being written right now (its lock is held)
    for directory in (stale, legacy, busy):
        directory.mkdir(parents=True)
        (directory / "model.safetensors").write_bytes(b"\0" * 1024)
    with FileLock(str(models / "Busy-89ab.lock")):
        remove_stale_staging(models)
    assert not stale.exists() and not legacy.exists()
    assert busy.is_dir()


CONCURRENT_PUBLISH = """
import shutil, sys, time
from pathlib import Path
from evalkit.models.embedded import publish
source, target = Path(sys.argv[1]), Path(sys.argv[2])
def write(staging):
    shutil.copytree(source, staging)
    time.sleep(0.5)  # widen the window in which another process could interfere
    (staging / "evalkit_source.json").write_text("{}")
publish(target, write)
assert (target / "evalkit_source.json").is_file()
"""


def test_concurrent_first_builds_of_one_cache_entry(tmp_path, tiny_model_dir):
    target = tmp_path / "models" / "tiny-0123"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [subprocess.Popen([sys.executable, "-c", CONCURRENT_PUBLISH, str(tiny_model_dir), str(target)], env=env,
                              stderr=subprocess.PIPE, text=True) for _ in range(3)]
    errors = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], errors
    assert sorted(p.name for p in target.iterdir()) == sorted([*(p.name for p in tiny_model_dir.iterdir()),
                                                              "evalkit_source.json"])
    assert [p.name for p in target.parent.iterdir() if ".partial" in p.name] == []


LOAD = "from evalkit.models import load_model; lm = load_model('smollm2-135m-instruct'); print(lm.identity['weights_sha256'])"


@pytest.mark.slow
def test_three_concurrent_first_loads_of_smollm2(tmp_path):
    """The real thing: three processes load SmolLM2 into an empty cache at once (one dequantises, ~20-60 s)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "EVALKIT_CACHE_DIR": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-c", LOAD], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(3)]
    outputs = [p.communicate(timeout=900) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [err for _, err in outputs]
    assert len({out.strip() for out, _ in outputs}) == 1
    assert sum("dequantising" in err for _, err in outputs) == 1  # the others waited and reused it
    (model_dir,) = [p for p in (tmp_path / "cache" / "models").glob("SmolLM2*") if p.is_dir()]
    assert (model_dir / "model.safetensors").stat().st_mode & 0o777 == 0o666 & ~_umask()
    assert not list((tmp_path / "cache" / "models").glob("*.partial*"))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# --- training, leaderboard, runs, CSV -----------------------------------------------------------------------

def test_train_output_dir_is_a_file(capsys, tmp_path, tiny_model_dir):
    from tests.test_train_methods import write_recipe

    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    recipe = write_recipe(tmp_path, tiny_model_dir)
    line = run_fails(capsys, "train", str(recipe), f"output_dir={blocker}", "--no-store")
    assert "output_dir" in line and "is a file" in line
    assert blocker.read_text() == "x"


@pytest.mark.parametrize("override", ["lora_rank=-4", "lora_rank=0", "adapter_size=0", "per_device_train_batch_size=0"])
def test_train_sizes_checked_before_the_model_load(capsys, tmp_path, override):
    from tests.test_train_methods import write_recipe

    recipe = write_recipe(tmp_path, tmp_path / "no-such-model")  # a load would fail with a different message
    line = run_fails(capsys, "train", str(recipe), override, "--no-store")
    assert f"{override} must be at least 1" in line


def test_leaderboard_output_is_a_file(capsys, tmp_path):
    blocker = tmp_path / "board.html"
    blocker.write_text("mine")
    line = run_fails(capsys, "leaderboard", "--output", str(blocker), "--store", str(tmp_path / "s.sqlite"))
    assert "is a file" in line and blocker.read_text() == "mine"


def test_runs_limit_must_be_positive(capsys, tmp_path):
    line = run_fails(capsys, "runs", "--limit", "-1", "--store", str(tmp_path / "s.sqlite"))
    assert "--limit -1" in line


def test_csv_field_longer_than_128_kib(tmp_path):
    from evalkit.tasks import resolve_tasks
    from evalkit.tasks.mc_data import load_split

    data = tmp_path / "data"
    (data / "test").mkdir(parents=True)
    passage = "长" * 200_000  # a long reading-comprehension passage, properly quoted
    (data / "test" / "agronomy.csv").write_text(f',Question,A,B,C,D,Answer\n0,"{passage}",甲,乙,丙,丁,A\n',
                                               encoding="utf-8")
    spec = resolve_tasks(str(spec_copy("cmmlu", tmp_path, data, ["agronomy"])))[0].spec
    (question,) = load_split(spec, "agronomy", "test")
    assert question.question == passage
