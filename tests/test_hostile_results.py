"""Hostile results files, samples, request caches and store URLs: one `evalkit: error:` line (or the
documented warning), exit 2, no traceback, and nothing already saved changes."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

import pytest

from tests.helpers import run_cli


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "absent"


def one_error(code: int, err: str) -> None:
    assert code == 2, err
    assert "Traceback" not in err
    assert len([line for line in err.splitlines() if line.startswith("evalkit: error:")]) == 1, err


@pytest.fixture(scope="module")
def real_run(tmp_path_factory):
    """A real (fake-backend) cmmlu run: its results file, in a directory of its own."""
    from evalkit.cli import main

    root = tmp_path_factory.mktemp("hostile")
    code = main(["run", "--backend", "fake", "--model", "m", "--tasks", "cmmlu:agronomy", "--limit", "10",
                 "--output-dir", str(root / "out"), "--store", str(root / "run_store.sqlite"), "--no-progress"])
    assert code == 0
    return next((root / "out").rglob("results_*.json"))


def copy_run(results: Path, directory: Path, edit_results=None, edit_rows=None, samples_bytes: bytes | None = None) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    data = json.loads(results.read_text(encoding="utf-8"))
    block = data["tasks"]["cmmlu"]
    source = results.parent / block["samples_file"]
    if samples_bytes is None:
        rows = [json.loads(line) for line in source.read_text(encoding="utf-8").splitlines()]
        if edit_rows:
            rows = edit_rows(rows)
        samples_bytes = "".join(json.dumps(r) + "\n" for r in rows).encode("utf-8")
    (directory / source.name).write_bytes(samples_bytes)
    if edit_results:
        edit_results(data)
    path = directory / results.name
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def all_wrong(rows):
    for row in rows:
        if row["correct"]:
            row["correct"], row["prediction"] = False, next(x for x in "ABCD" if x != row["gold"])
    return rows


def test_gate_refuses_samples_that_contradict_the_summary(real_run, tmp_path, capsys):
    candidate = copy_run(real_run, tmp_path / "cand", edit_rows=all_wrong)  # results JSON left as it was
    code, out, err = run_cli(capsys, "gate", "--baseline", str(real_run), "--candidate", str(candidate))
    assert code != 0
    one_error(code, err)
    assert "disagree" in err and "verdict: pass" not in out


def test_report_refuses_samples_edited_after_recording(real_run, tmp_path, capsys):
    store = tmp_path / "store.sqlite"
    base = copy_run(real_run, tmp_path / "a")
    cand = copy_run(real_run, tmp_path / "b", edit_results=lambda d: d["model"].update(name="other"))
    assert run_cli(capsys, "import", str(tmp_path / "a"), "--store", str(store))[0] == 0
    assert run_cli(capsys, "import", str(tmp_path / "b"), "--store", str(store))[0] == 0
    samples = next((tmp_path / "b").glob("samples_*.jsonl"))
    rows = all_wrong([json.loads(line) for line in samples.read_text().splitlines()])
    samples.write_text("".join(json.dumps(r) + "\n" for r in rows))
    before = sha(store)
    code, _, err = run_cli(capsys, "report", "--base", "1", "--candidate", "2", "--store", str(store),
                           "--output", str(tmp_path / "r.html"))
    if code != 2:  # the report's own CLI shape: fall back to positional refs
        code, _, err = run_cli(capsys, "report", "1", "2", "--store", str(store), "--output", str(tmp_path / "r.html"))
    one_error(code, err)
    assert "disagree" in err and sha(store) == before and base.is_file() and cand.is_file()


BAD_SAMPLES = [
    ("not_utf8", b"\xff\xfe\x00 not text\n", "not UTF-8"),
    ("scalar_rows", b"1\n2\n3\n", "not an object"),
    ("empty", b"", "empty"),
    ("bad_json", b"{nope\n", "not valid JSON"),
    ("no_correct", b'{"subject": "agronomy", "index": 0}\n', "disagree"),
]


@pytest.mark.parametrize("name,content,expected", BAD_SAMPLES, ids=[c[0] for c in BAD_SAMPLES])
def test_gate_names_a_bad_samples_file(real_run, tmp_path, capsys, name, content, expected):
    candidate = copy_run(real_run, tmp_path / name, samples_bytes=content)
    code, out, err = run_cli(capsys, "gate", "--baseline", str(real_run), "--candidate", str(candidate))
    one_error(code, err)
    assert expected in err or "correct" in err, err
    assert "did not see the same prompts" not in err


@pytest.mark.parametrize("samples_file", ["/etc/passwd", "../../samples.jsonl", "sub/samples.jsonl", ""])
def test_gate_refuses_a_samples_path_outside_the_results_directory(real_run, tmp_path, capsys, samples_file):
    candidate = copy_run(real_run, tmp_path / "c", edit_results=lambda d: d["tasks"]["cmmlu"].update(samples_file=samples_file))
    code, _, err = run_cli(capsys, "gate", "--baseline", str(real_run), "--candidate", str(candidate))
    one_error(code, err)
    assert "samples_file" in err and "root:" not in err


def _set(path: list, value):
    def edit(data):
        target = data["tasks"]["cmmlu"]
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return edit


IMPOSSIBLE = [
    ("nan", _set(["micro", "acc"], float("nan"))),
    ("infinity", _set(["micro", "acc"], float("inf"))),
    ("above_one", _set(["micro", "acc"], 5.0)),
    ("negative_n", _set(["micro", "n"], -3)),
    ("fractional_n", _set(["micro", "n"], 2.5)),
    ("macro_nan", _set(["macro", "acc"], float("nan"))),
    ("subject_above_one", lambda d: d["tasks"]["cmmlu"]["subjects"]["agronomy"].update(acc=1.5)),
    ("summary_contradicts_samples", _set(["micro", "acc"], 0.9)),
    ("absolute_samples_file", _set(["samples_file"], "/etc/passwd")),
]


def test_import_skips_impossible_files_and_continues(real_run, tmp_path, capsys):
    root = tmp_path / "import"
    for name, edit in IMPOSSIBLE:
        copy_run(real_run, root / name, edit_results=edit)
    deep = root / "deep"
    deep.mkdir()
    (deep / "results_deep.json").write_text("[" * 100_000 + "]" * 100_000)
    (root / "deep2").mkdir()
    (root / "deep2" / "results_deep2.json").write_text(json.dumps({"model": {"name": "m"}, "tasks": {}, "x": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}))
    copy_run(real_run, root / "zz_good")  # after the bad ones: the import must reach it
    store = tmp_path / "store.sqlite"
    code, out, err = run_cli(capsys, "import", str(root), "--store", str(store))
    assert code == 0 and "Traceback" not in err, err
    skipped = [line for line in out.splitlines() if line.startswith("skipped:")]
    assert len(skipped) == len(IMPOSSIBLE) + 2, out
    assert "recorded 1 new run(s)" in out
    code, out, err = run_cli(capsys, "runs", "--store", str(store))
    assert code == 0 and "acc 20.00 (n=10)" in out and "inf" not in out and "nan" not in out


def _corrupt(path: Path) -> None:
    """Overwrite pages inside a real cache database (as the issue's probe did)."""
    data = bytearray(path.read_bytes())
    for offset in range(4096, len(data), 4096):
        data[offset + 8:offset + 200] = b"\xa5" * 192
    path.write_bytes(bytes(data))


def _real_cache(path: Path) -> None:
    from evalkit.backends.request_cache import RequestCache

    cache = RequestCache(path, {"model": "m"})
    cache.put_many("mc", [(f"k{i}", {"p": "x" * 300}) for i in range(200)])
    cache.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    cache.db.close()


@pytest.mark.parametrize("kind", ["overwritten_pages", "random_bytes", "foreign_schema"])
def test_a_damaged_request_cache_is_set_aside_and_the_run_continues(tmp_path, capsys, monkeypatch, kind):
    cache = tmp_path / "requests.sqlite"
    if kind == "overwritten_pages":
        _real_cache(cache)
        _corrupt(cache)
    elif kind == "random_bytes":
        cache.write_bytes(bytes(range(256)) * 64)
    else:
        db = sqlite3.connect(cache)
        db.execute("CREATE TABLE responses (a INTEGER)")
        db.commit()
        db.close()
    original = sha(cache)
    monkeypatch.setenv("EVALKIT_REQUEST_CACHE", str(cache))
    code, out, err = run_cli(capsys, "cache", "info")
    one_error(code, err)
    assert sha(cache) == original  # info never changes the file
    code, out, err = run_cli(capsys, "run", "--backend", "fake", "--model", "m", "--tasks", "cmmlu:agronomy", "--limit", "4",
                             "--output-dir", str(tmp_path / "out"), "--store", str(tmp_path / "s.sqlite"), "--no-progress")
    assert code == 0 and "Traceback" not in err, err
    warnings = [line for line in err.splitlines() if "request cache" in line and "moved it to" in line]
    assert len(warnings) == 1, err
    aside = list(tmp_path.glob("requests.sqlite.corrupt-*"))
    assert [p for p in aside if not p.name.endswith(("-wal", "-shm"))], err  # the damaged file is kept, not lost
    code, out, err = run_cli(capsys, "cache", "info")
    assert code == 0 and "4 answers" in out, out + err
    assert run_cli(capsys, "cache", "clear")[0] == 0


@pytest.mark.parametrize("kind", ["random_bytes", "foreign_schema"])
def test_cache_clear_works_on_any_file(tmp_path, capsys, monkeypatch, kind):
    cache = tmp_path / "requests.sqlite"
    if kind == "random_bytes":
        cache.write_bytes(b"\x00garbage" * 1000)
    else:
        db = sqlite3.connect(cache)
        db.execute("CREATE TABLE other (a INTEGER)")
        db.commit()
        db.close()
    monkeypatch.setenv("EVALKIT_REQUEST_CACHE", str(cache))
    code, out, err = run_cli(capsys, "cache", "clear")
    assert code == 0 and "Traceback" not in err and "moved it to" in err, err
    assert not cache.exists() and list(tmp_path.glob("requests.sqlite.corrupt-*"))


STORE_URLS = [
    ("postgresql://u:pw@[::1/db", "not a database URL"),
    ("sqlite:///{tmp}/a.sqlite?check_same_thread=banana", "options"),
    ("sqlite:///{tmp}/b.sqlite?mode=ro", "options"),
]


@pytest.mark.parametrize("url,expected", STORE_URLS, ids=["bad_ipv6", "check_same_thread", "mode_ro"])
def test_bad_store_urls_are_one_line_without_the_password(tmp_path, capsys, url, expected):
    url = url.format(tmp=tmp_path)
    for argv in (["runs", "--store", url], ["import", str(tmp_path), "--store", url]):
        code, _, err = run_cli(capsys, *argv)
        one_error(code, err)
        assert expected in err and "pw" not in err
    assert not list(tmp_path.glob("*.sqlite"))  # no writable store was created behind the user's back


def test_a_foreign_runs_table_is_refused_and_left_alone(tmp_path, capsys, real_run):
    store = tmp_path / "foreign.sqlite"
    db = sqlite3.connect(store)
    db.execute("CREATE TABLE runs (a INTEGER)")
    db.execute("INSERT INTO runs VALUES (7)")
    db.commit()
    db.close()
    for argv in (["runs"], ["import", str(real_run.parent)], ["gate", "--baseline", "1", "--candidate", "1"]):
        code, _, err = run_cli(capsys, *argv, "--store", str(store))
        one_error(code, err)
        assert "not an evalkit store" in err
    db = sqlite3.connect(store)
    assert db.execute("SELECT name FROM sqlite_master").fetchall() == [("runs",)]
    assert db.execute("SELECT a FROM runs").fetchall() == [(7,)]


def test_nightly_checks_a_missing_pinned_baseline_before_evaluating(tmp_path, capsys):
    suite = tmp_path / "suite.yaml"
    suite.write_text(
        "name: hostile\nmodels: [fake:m]\ntasks:\n  - {task: 'cmmlu:agronomy', limit: 2}\n"
        f"baseline:\n  pinned:\n    'fake:m': [{tmp_path / 'missing_results.json'}]\noutput: {tmp_path / 'nightly'}\n",
        encoding="utf-8")
    code, out, err = run_cli(capsys, "nightly", str(suite), "--store", str(tmp_path / "s.sqlite"))
    one_error(code, err)
    assert "missing_results.json" in err and not (tmp_path / "nightly").exists()


def test_nightly_markdown_escapes_what_it_prints():
    from evalkit.nightly.job import markdown_text

    text = markdown_text("[x](javascript:alert(1)) <img src=x onerror=alert(1)> *bold* `code` | pipe")
    assert "<img" not in text and "&lt;img" in text
    assert "\\[x\\]\\(" in text and "\\*bold\\*" in text and "\\`code\\`" in text and "\\| pipe" in text
