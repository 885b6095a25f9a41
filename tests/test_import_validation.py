"""``evalkit import`` checks every file against its schema before writing: a bad file is skipped with one
line naming it and why, the other files still import, and every command reading the store keeps working."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from evalkit.evaluate import run_evaluation
from evalkit.evaluators.base import RunConfig
from tests.helpers import run_cli


@pytest.fixture(scope="module")
def real_results(tiny_lm, tmp_path_factory) -> dict:
    """A real results file of the tiny model on 2 CMMLU questions (the template of the bad ones)."""
    out = tmp_path_factory.mktemp("results")
    results = run_evaluation("tiny", "cmmlu:agronomy", RunConfig(limit=2, progress=False), str(out), lm=tiny_lm,
                             record=False)
    return json.loads(Path(results["results_file"]).read_text(encoding="utf-8"))


def mutate(results: dict, change) -> dict:
    data = copy.deepcopy(results)
    change(data)
    return data


BAD_RESULTS = {
    "peak_rss_string": (lambda d: d["profile"]["memory"].__setitem__("peak_rss_mb", "812"),
                        "profile.memory.peak_rss_mb: Input should be a valid number"),
    "model_string": (lambda d: d.__setitem__("model", "smollm2"), "model: Input should be a valid dictionary or instance of Model"),
    "tasks_list": (lambda d: d.__setitem__("tasks", [d["tasks"]["cmmlu"]]), "tasks: Input should be a valid dictionary"),
    "no_micro": (lambda d: d["tasks"]["cmmlu"].pop("micro"), "tasks.cmmlu.multiple_choice.micro: Field required"),
    "acc_high": (lambda d: d["tasks"]["cmmlu"]["micro"].__setitem__("acc", "high"),
                 "tasks.cmmlu.multiple_choice.micro.acc: Input should be a valid number"),
}


def import_lines(capsys, directory: Path, store: Path) -> list[str]:
    capsys.readouterr()
    code, out, err = run_cli(capsys, "import", str(directory), "--store", str(store))
    assert code == 0 and err == "", err
    return out.strip().splitlines()


@pytest.mark.parametrize("case", sorted(BAD_RESULTS))
def test_bad_results_file_is_skipped_and_the_rest_imported(capsys, tmp_path, real_results, case):
    change, reason = BAD_RESULTS[case]
    # the bad file sorts first: files after it must still be imported
    (tmp_path / "results_a_bad.json").write_text(json.dumps(mutate(real_results, change)), encoding="utf-8")
    (tmp_path / "results_b_good.json").write_text(json.dumps(real_results), encoding="utf-8")
    store = tmp_path / "store.sqlite"
    lines = import_lines(capsys, tmp_path, store)
    skipped = [line for line in lines if line.startswith("skipped:")]
    assert skipped == [f"skipped: {tmp_path / 'results_a_bad.json'} ({reason})"], lines
    assert lines[-1].startswith("recorded 1 new run(s)")
    # the commands that crashed on such a store before
    code, out, err = run_cli(capsys, "runs", "--store", str(store))
    assert code == 0 and "cmmlu: acc" in out, err
    code, out, err = run_cli(capsys, "leaderboard", "--output", str(tmp_path / "board"), "--store", str(store))
    assert code == 0 and (tmp_path / "board" / "index.html").is_file(), err


def test_non_utf8_file(capsys, tmp_path, real_results):
    (tmp_path / "results_a.json").write_bytes(json.dumps(real_results).encode("utf-8").replace(b'"tiny"', b'"t\xffy"'))
    (tmp_path / "results_b.json").write_text(json.dumps(real_results), encoding="utf-8")
    lines = import_lines(capsys, tmp_path, tmp_path / "store.sqlite")
    assert any(line.startswith(f"skipped: {tmp_path / 'results_a.json'} (not UTF-8 text") for line in lines), lines
    assert lines[-1].startswith("recorded 1 new run(s)")


def manifest_dir(root: Path, manifest, profile_text: str | None = None) -> Path:
    directory = root / "checkpoint"
    directory.mkdir(parents=True)
    (directory / "train_manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    if profile_text is not None:
        (directory / "train_profile.json").write_text(profile_text, encoding="utf-8")
    return directory


GOOD_MANIFEST = {"final_loss": 1.5, "global_step": 3, "base_model": {"identity": {"kind": "local", "weights_sha256": "ab"}}}


@pytest.mark.parametrize("manifest, profile, reason", [
    ([GOOD_MANIFEST], None, "the file: Input should be a valid dictionary"),
    ({**GOOD_MANIFEST, "final_loss": "low"}, None, "final_loss: Input should be a valid number"),
    (GOOD_MANIFEST, "{truncated", "its train_profile.json: not readable JSON"),
    (GOOD_MANIFEST, json.dumps({"memory": {"peak_rss_mb": [1]}}), "its train_profile.json: memory.peak_rss_mb"),
], ids=["manifest_list", "loss_string", "profile_corrupt", "profile_wrong_type"])
def test_bad_training_files(capsys, tmp_path, real_results, manifest, profile, reason):
    directory = manifest_dir(tmp_path / "a", manifest, profile)
    (tmp_path / "results_z.json").write_text(json.dumps(real_results), encoding="utf-8")
    lines = import_lines(capsys, tmp_path, tmp_path / "store.sqlite")
    skipped = [line for line in lines if line.startswith("skipped:")]
    assert len(skipped) == 1 and skipped[0].startswith(f"skipped: {directory / 'train_manifest.json'} ({reason}"), lines
    assert lines[-1].startswith("recorded 1 new run(s)")


def test_good_training_manifest_imports(capsys, tmp_path):
    manifest_dir(tmp_path, GOOD_MANIFEST, json.dumps({"memory": {"peak_rss_mb": 900.5}}))
    lines = import_lines(capsys, tmp_path, tmp_path / "store.sqlite")
    assert lines == [f"recorded 1 new run(s) into sqlite:///{tmp_path / 'store.sqlite'}: 1"]


def test_reimport_says_nothing_new_was_recorded(capsys, tmp_path, real_results):
    (tmp_path / "results_x.json").write_text(json.dumps(real_results), encoding="utf-8")
    store = tmp_path / "store.sqlite"
    assert import_lines(capsys, tmp_path, store)[-1].startswith("recorded 1 new run(s)")
    again = import_lines(capsys, tmp_path, store)
    assert again[0].startswith("recorded 0 new run(s)") and again[1] == "1 file(s) were already in the store: run(s) 1"
