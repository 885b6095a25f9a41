"""Issue 25's table: hundreds of bad inputs through the CLI, each one error line and exit 2, nothing saved changes.

Every case runs beside a saved state (a results store holding a run, a request cache holding its requests,
an output directory holding its files) that is hashed before and after: a refused input must leave all of it
byte-identical. The cases gather the catalogue of the other hostile-input tests (specs, results, samples,
store URLs) and add flags, suites, leaderboard definitions and recipes. Server cases are in
tests/test_serve_hostile.py and tests/test_serve_openai_sdk.py.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from tests.helpers import run_cli
from tests.test_hostile_results import IMPOSSIBLE, all_wrong, copy_run
from tests.test_hostile_specs import CASES as SPEC_CASES
from tests.test_hostile_specs import _bomb

RUN = ["run", "--backend", "fake", "--model", "m", "--tasks", "cmmlu:agronomy", "--limit", "2", "--no-progress"]
BOMB = _bomb().split("task:")[0]  # the anchors alone, to prepend to any YAML file


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A store with a run, a request cache with its requests, and the run's output directory."""
    from evalkit.cli import main

    root = tmp_path_factory.mktemp("saved")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("EVALKIT_REQUEST_CACHE", str(root / "requests.sqlite"))
        code = main([*RUN[:-3], "--limit", "10", "--output-dir", str(root / "out"), "--store", str(root / "store.sqlite"),
                     "--no-progress"])
    assert code == 0 and (root / "requests.sqlite").is_file()
    return root


def snapshot(root: Path) -> dict[str, str]:
    """Each file's hash; a SQLite database by its content (its -wal/-shm files are how a reader opened it)."""
    import sqlite3

    files = {}
    for path in sorted(root.rglob("*")):
        if not path.is_file() or path.name.endswith(("-wal", "-shm")):
            continue
        if path.suffix == ".sqlite":
            with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
                content = "\n".join(db.iterdump()).encode("utf-8")
        else:
            content = path.read_bytes()
        files[str(path.relative_to(root))] = hashlib.sha256(content).hexdigest()
    return files


def results_of(saved: Path) -> Path:
    return min((saved / "out").rglob("results_*.json"))  # the fixture's run (names carry the time)


# Each case: (name, build) where build(tmp, saved) -> argv. ``tmp`` is the case's own directory.
def spec_case(content):
    def build(tmp, saved):
        spec = tmp / "bad.yaml"
        spec.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
        return ["run", "--model", "m", "--backend", "fake", "--tasks", str(spec)]
    return build


def run_flags(*flags):
    return lambda tmp, saved: [*RUN, *flags]


FLAG_CASES = {
    "seed_24_digits": ["--seed", "1" * 24], "seed_negative": ["--seed", "-1"], "seed_word": ["--seed", "x"],
    "seed_float": ["--seed", "1.5"], "threads_zero": ["--threads", "0"], "threads_word": ["--threads", "x"],
    "threads_negative": ["--threads", "-3"], "limit_zero": ["--limit", "0"], "limit_negative": ["--limit", "-1"],
    "limit_word": ["--limit", "x"], "max_new_tokens_zero": ["--max-new-tokens", "0"],
    "max_new_tokens_negative": ["--max-new-tokens", "-5"], "batch_size_zero": ["--batch-size", "0"],
    "batch_size_word": ["--batch-size", "many"], "batch_size_negative": ["--batch-size", "-1"],
    "fewshot_negative": ["--num-fewshot", "-1"], "fewshot_word": ["--num-fewshot", "x"],
    "fewshot_too_many": ["--num-fewshot", "1000"], "unknown_task": ["--tasks", "nope"],
    "unknown_subject": ["--tasks", "cmmlu:nope"], "missing_spec": ["--tasks", "nope.yaml"], "empty_tasks": ["--tasks", ","],
    "unknown_backend": ["--backend", "nope"], "backend_arg_no_equals": ["--backend-arg", "junk"],
    "backend_arg_unknown_key": ["--backend-arg", "nope=1"], "include_path_missing": ["--include-path", "/nonexistent/x"],
    "device_unknown": ["--device", "tpu"], "dtype_unknown": ["--backend", "hf", "--dtype", "float7"],
    "prompt_style_unknown": ["--prompt-style", "nope"], "truncation_unknown": ["--truncation", "middle"],
    "split_unknown": ["--split", "nope"], "reference_format_unknown": ["--reference-format", "nope"],
    "store_bad_ipv6": ["--store", "postgresql://u:pw@[::1/db"],
    "store_bad_option": ["--store", "sqlite:///x.sqlite?check_same_thread=banana"],
    "store_mode_ro": ["--store", "sqlite:///x.sqlite?mode=ro"], "store_unknown_dialect": ["--store", "nosuchdb://x"],
    "openai_no_base_url": ["--backend", "openai"],
    "openai_max_retries_negative": ["--backend", "openai", "--base-url", "http://127.0.0.1:9/v1", "--max-retries", "-5"],
    "openai_timeout_negative": ["--backend", "openai", "--base-url", "http://127.0.0.1:9/v1", "--request-timeout", "-1"],
    "openai_concurrency_zero": ["--backend", "openai", "--base-url", "http://127.0.0.1:9/v1", "--concurrency", "0"],
    "openai_concurrency_auto": ["--backend", "openai", "--base-url", "http://127.0.0.1:9/v1", "--concurrency", "auto"],
    "openai_top_logprobs_negative": ["--backend", "openai", "--base-url", "http://127.0.0.1:9/v1", "--top-logprobs", "-1"],
    "openai_base_url_not_http": ["--backend", "openai", "--base-url", "ftp://x/v1"],
    "vllm_tp_zero": ["--backend", "vllm", "--tensor-parallel-size", "0"],
    "vllm_gpu_util_above_one": ["--backend", "vllm", "--gpu-memory-utilization", "7"],
    "vllm_max_model_len_zero": ["--backend", "vllm", "--max-model-len", "0"],
}


def store_file(content: bytes):
    def build(tmp, saved):
        (tmp / "store.sqlite").write_bytes(content)
        return ["runs", "--store", str(tmp / "store.sqlite")]
    return build


def foreign_store(tmp, saved):
    import sqlite3

    with sqlite3.connect(tmp / "store.sqlite") as db:
        db.execute("create table runs (x text)")
    return ["runs", "--store", str(tmp / "store.sqlite")]


STORE_CASES = {
    "store_random_bytes": store_file(b"\x01\x02not sqlite" * 500), "store_foreign_runs_table": foreign_store,
    "runs_bad_url": lambda tmp, saved: ["runs", "--store", "postgresql://u:pw@[::1/db"],
    "runs_bad_kind": lambda tmp, saved: ["runs", "--kind", "nope"],
    "runs_limit_word": lambda tmp, saved: ["runs", "--limit", "x"],
    "import_missing_dir": lambda tmp, saved: ["import", str(tmp / "nope")],
    "import_bad_store": lambda tmp, saved: ["import", str(saved / "out"), "--store", "sqlite:///x?check_same_thread=no"],
}


def gate_candidate(**edits):
    def build(tmp, saved):
        return ["gate", "--baseline", str(results_of(saved)), "--candidate", str(copy_run(results_of(saved), tmp, **edits))]
    return build


def gate_candidate_file(content: bytes):
    def build(tmp, saved):
        (tmp / "results_x.json").write_bytes(content)
        return ["gate", "--baseline", str(results_of(saved)), "--candidate", str(tmp / "results_x.json")]
    return build


def report_pair(**edits):
    def build(tmp, saved):
        return ["report", "--base", str(results_of(saved)), "--candidate", str(copy_run(results_of(saved), tmp, **edits)),
                "--output", str(tmp / "report.html")]
    return build


RESULTS_CASES = {
    "gate_all_wrong_samples": gate_candidate(edit_rows=all_wrong),
    "gate_samples_not_utf8": gate_candidate(samples_bytes=b"\xff\xfe{}\n"),
    "gate_samples_scalar_rows": gate_candidate(samples_bytes=b"1\n2\n3\n"),
    "gate_samples_empty": gate_candidate(samples_bytes=b""),
    "gate_samples_not_json": gate_candidate(samples_bytes=b"{nope\n"),
    "gate_samples_list_rows": gate_candidate(samples_bytes=b"[1, 2]\n"),
    "gate_samples_deep_row": gate_candidate(samples_bytes=b"[" * 100_000 + b"]" * 100_000 + b"\n"),
    "gate_results_not_json": gate_candidate_file(b"{nope"),
    "gate_results_list": gate_candidate_file(b"[1, 2]"),
    "gate_results_deep": gate_candidate_file(b"[" * 100_000 + b"]" * 100_000),
    "gate_results_not_utf8": gate_candidate_file(b'{"a": "\xff"}'),
    "gate_results_empty": gate_candidate_file(b""),
    "gate_missing_candidate": lambda tmp, saved: ["gate", "--baseline", str(results_of(saved)), "--candidate", str(tmp / "x.json")],
    "gate_alpha_above_one": lambda tmp, saved: ["gate", "--baseline", str(results_of(saved)), "--candidate",
                                                str(results_of(saved)), "--alpha", "3"],
    "gate_alpha_nan": lambda tmp, saved: ["gate", "--baseline", str(results_of(saved)), "--candidate",
                                          str(results_of(saved)), "--alpha", "nan"],
    "gate_bad_floor": lambda tmp, saved: ["gate", "--baseline", str(results_of(saved)), "--candidate",
                                          str(results_of(saved)), "--floor", "cmmlu"],
    "report_all_wrong_samples": report_pair(edit_rows=all_wrong),
    "report_samples_not_utf8": report_pair(samples_bytes=b"\xff\xfe{}\n"),
    "report_samples_scalar_rows": report_pair(samples_bytes=b"1\n2\n"),
    "report_missing_base": lambda tmp, saved: ["report", "--base", str(tmp / "nope.json"), "--candidate",
                                               str(results_of(saved)), "--output", str(tmp / "r.html")],
}
for _name, _edit in IMPOSSIBLE:
    RESULTS_CASES[f"gate_{_name}"] = gate_candidate(edit_results=_edit)
    RESULTS_CASES[f"report_{_name}"] = report_pair(edit_results=_edit)


def yaml_file_case(command, content: str, *extra):
    def build(tmp, saved):
        path = tmp / "file.yaml"
        path.write_text(content, encoding="utf-8")
        return [command, str(path), *extra]
    return build


SUITE = "name: s\nmodels: [m]\ntasks:\n  - {task: cmmlu, limit: 2}\n"
BOARD = "title: t\ncolumns:\n  - {task: cmmlu, metric: acc, label: CMMLU}\n"
YAML_CASES = {
    "suite_bomb": ("nightly", BOMB + SUITE.replace("name: s", "name: *i")),
    "suite_deep": ("nightly", "name: " + "[" * 5000 + "]" * 5000),
    "suite_list": ("nightly", "- a\n- b\n"), "suite_empty": ("nightly", ""), "suite_syntax": ("nightly", "name: [x\n"),
    "suite_unknown_key": ("nightly", SUITE + "colour: red\n"), "suite_no_models": ("nightly", "name: s\ntasks: [cmmlu]\n"),
    "suite_models_string": ("nightly", SUITE.replace("models: [m]", "models: m")),
    "suite_task_unknown": ("nightly", SUITE.replace("task: cmmlu", "task: nope")),
    "suite_limit_word": ("nightly", SUITE.replace("limit: 2", "limit: lots")),
    "suite_missing_pinned_baseline": ("nightly", SUITE + "baseline: {pinned: {m: [/nonexistent/results_x.json]}}\n"),
    "suite_missing_leaderboard": ("nightly", SUITE + "leaderboard: {definition: /nonexistent/board.yaml}\n"),
    "board_bomb": ("leaderboard", BOMB + BOARD.replace("title: t", "title: *i")),
    "board_deep": ("leaderboard", "title: " + "[" * 5000 + "]" * 5000),
    "board_list": ("leaderboard", "- a\n"), "board_empty": ("leaderboard", ""),
    "board_unknown_key": ("leaderboard", BOARD + "colour: red\n"),
    "board_columns_string": ("leaderboard", "title: t\ncolumns: cmmlu\n"),
    "board_column_no_task": ("leaderboard", "title: t\ncolumns:\n  - {metric: acc, label: X}\n"),
    "board_average_unknown_column": ("leaderboard", BOARD + "averages:\n  - {label: A, columns: [NOPE]}\n"),
    "board_profile_unknown": ("leaderboard", BOARD + "profile: [colour]\n"),
    "recipe_bomb": ("train", BOMB + "method: *i\n"), "recipe_deep": ("train", "method: " + "[" * 5000 + "]" * 5000),
    "recipe_list": ("train", "- a\n"), "recipe_syntax": ("train", "method: [lora\n"),
    "recipe_unknown_key": ("train", "method: lora\ncolour: red\n"), "recipe_unknown_method": ("train", "method: magic\n"),
}

TRAIN_OVERRIDES = {
    "override_yaml_error": "max_steps=[1", "override_nan_lr": "learning_rate=.nan", "override_inf_lr": "learning_rate=.inf",
    "override_negative_lr": "learning_rate=-1", "override_scheduler": "lr_scheduler_type=bogus",
    "override_report_to": "report_to=wandb_nope", "override_seed_23_digits": "seed=" + "1" * 23,
    "override_val_size_negative": "val_size=-5", "override_unknown_key": "colour=red", "override_no_equals": "max_steps",
    "override_max_steps_zero": "max_steps=0", "override_max_steps_word": "max_steps=many",
    "override_epochs_negative_with_max_steps_minus_one": "num_train_epochs=-1",
}


def train_override(override):
    def build(tmp, saved):
        extra = ["max_steps=-1"] if override == "num_train_epochs=-1" else []
        return ["train", "trainers/lora.yaml", override, *extra, f"output_dir={tmp / 'ckpt'}"]
    return build


SERVE_CASES = {
    "serve_missing_model": ["serve", "--model", "/nonexistent/model"],
    "serve_port_too_big": ["serve", "--model", "smollm2-135m-instruct", "--port", "99999"],
    "serve_max_request_bytes_zero": ["serve", "--model", "smollm2-135m-instruct", "--max-request-bytes", "0"],
    "serve_max_tokens_limit_zero": ["serve", "--model", "smollm2-135m-instruct", "--max-tokens-limit", "0"],
    "tasks_include_path_missing": ["tasks", "--include-path", "/nonexistent/x"],
    "tasks_unknown_name": ["tasks", "nope"],
    "leaderboard_missing_definition": ["leaderboard", "/nonexistent/board.yaml"],
    "nightly_missing_suite": ["nightly", "/nonexistent/suite.yaml"],
    "train_missing_recipe": ["train", "/nonexistent/recipe.yaml"],
}

TABLE = {f"spec_{name}": spec_case(content) for name, content in SPEC_CASES.items()}
TABLE |= {f"flag_{name}": run_flags(*flags) for name, flags in FLAG_CASES.items()}
TABLE |= STORE_CASES | RESULTS_CASES
TABLE |= {name: yaml_file_case(command, content) for name, (command, content) in YAML_CASES.items()}
TABLE |= {f"train_{name}": train_override(value) for name, value in TRAIN_OVERRIDES.items()}
TABLE |= {name: (lambda argv: lambda tmp, saved: argv)(argv) for name, argv in SERVE_CASES.items()}
# A regression gate may answer 1 (regression) rather than 2 (refused) for a candidate that is all wrong: never 0.
EXIT_CODES = {"gate_all_wrong_samples": {1, 2}}


def test_the_table_has_at_least_200_cases():
    assert len(TABLE) >= 200, len(TABLE)


@pytest.mark.parametrize("name", sorted(TABLE))
def test_bad_input_is_one_line_and_changes_nothing(name, saved, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("EVALKIT_STORE", str(saved / "store.sqlite"))
    monkeypatch.setenv("EVALKIT_REQUEST_CACHE", str(saved / "requests.sqlite"))
    monkeypatch.chdir(tmp_path)
    argv = TABLE[name](tmp_path, saved)
    if argv[0] == "run":
        argv = [*argv, "--output-dir", str(saved / "out")]
    (tmp_path / "trainers").symlink_to(Path(__file__).resolve().parents[1] / "trainers")
    before = snapshot(saved)
    try:
        code, out, err = run_cli(capsys, *argv)
    except SystemExit as stop:  # argparse: a usage line, then one "error:" line
        code, (out, err) = stop.code, capsys.readouterr()
    assert code in EXIT_CODES.get(name, {2}), (argv, out, err)
    assert "Traceback" not in out + err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1 or (code == 1 and name.startswith("gate")), err
    assert snapshot(saved) == before
