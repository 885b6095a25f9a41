"""lm-evaluation-harness task files as evalkit tasks: `evalkit run --tasks file.yaml` and `tasks import-lmeval`.

The hook-free CMMLU files benchmarks/lmeval_task/make_tasks.py --jinja writes must score exactly as the shipped
`cmmlu:<subject>` (same prompts, predictions and probabilities, 0- and 5-shot); examples/lmeval/gsm8k.yaml run
directly must equal its imported spec run as a spec; anything outside the subset is one line naming the key.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, build_tiny_model
from tests.helpers import run_cli

sys.path.insert(0, str(REPO / "benchmarks" / "lmeval_task"))
import make_tasks  # noqa: E402

GSM8K = REPO / "examples" / "lmeval" / "gsm8k.yaml"


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EVALKIT_CACHE_DIR", str(tmp_path / "cache"))  # run-time imports land here


@pytest.fixture(scope="module")
def long_model_dir(tmp_path_factory) -> Path:
    """The tiny Llama with room for CMMLU's 5-shot prompts (the shared one has 512 positions)."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny-llama-2k"), context=2048)


@pytest.fixture(scope="module")
def long_varied_model_dir(tmp_path_factory) -> Path:
    """Its untied head varies greedy outputs with the prompt (conftest's varied model), with 2,048 positions."""
    return build_tiny_model(tmp_path_factory.mktemp("varied-llama-2k"), context=2048, tie_word_embeddings=False,
                            initializer_range=0.2)


def run_samples(capsys, out: Path, *argv: str) -> tuple[dict, list[dict]]:
    code, _, err = run_cli(capsys, "run", *argv, "--output-dir", str(out), "--no-store", "--no-progress")
    assert code == 0, err
    results = json.loads(next(out.rglob("results_*.json")).read_text(encoding="utf-8"))
    (task,) = results["tasks"].values()
    rows = [json.loads(line) for line in next(out.rglob(task["samples_file"])).read_text(encoding="utf-8").splitlines()]
    return task, rows


@pytest.mark.parametrize("shots", [0, 5])
def test_hook_free_cmmlu_file_scores_as_the_builtin_subject(tmp_path, capsys, long_model_dir, one_thread, shots):
    (file,) = make_tasks.jinja_tasks(tmp_path / "lmeval", shots, ["agronomy"])
    assert "!function" not in file.read_text(encoding="utf-8")
    model = ["--model", str(long_model_dir), "--limit", "12", "--batch-size", "4"]
    # no --num-fewshot: the file's num_fewshot applies, as in lm-eval
    ours, our_rows = run_samples(capsys, tmp_path / "file", *model, "--tasks", str(file))
    builtin, rows = run_samples(capsys, tmp_path / "builtin", *model, "--tasks", "cmmlu:agronomy",
                                "--num-fewshot", str(shots), "--prompt-style", "llamafactory")
    assert ours["num_fewshot"] == shots and len(our_rows) == len(rows) == 12
    for mine, theirs in zip(our_rows, rows):
        assert mine["prompt_sha256"] == theirs["prompt_sha256"]
        assert mine["prediction"] == theirs["prediction"] and mine["gold"] == theirs["gold"]
        assert mine["probabilities"] == theirs["probabilities"]  # bit for bit: the same tokens
    assert ours["micro"]["acc"] == builtin["micro"]["acc"]


def test_every_vendored_cmmlu_cell_reads_as_text_through_datasets(tmp_path):
    """datasets' csv builder (pandas) with keep_default_na: false leaves each cell as evalkit's csv reader reads it."""
    from evalkit.tasks.lmeval_import import LmevalTask
    from evalkit.tasks.mc_data import load_split
    from evalkit.tasks.registry import resolve_tasks

    spec = resolve_tasks("cmmlu")[0].spec
    subjects = ["agronomy", "college_mathematics", "elementary_mathematics", "high_school_physics"]
    for file, key in zip(make_tasks.jinja_tasks(tmp_path, 0, subjects), subjects):
        docs, _ = LmevalTask(file).documents()
        for split, lm_split in (("test", "test"), ("dev", "dev")):
            questions = load_split(spec, key, split)
            assert [(str(d["Question"]), *(str(d[x]) for x in "ABCD")) for d in docs[lm_split]] == \
                [(q.question, *q.choices) for q in questions]


def test_gsm8k_file_equals_its_imported_spec(tmp_path, capsys, long_varied_model_dir, one_thread):
    code, out, err = run_cli(capsys, "tasks", "import-lmeval", str(GSM8K), "--out", str(tmp_path / "spec"))
    assert code == 0, err
    spec_file = tmp_path / "spec" / "gsm8k_lmeval.yaml"
    assert str(spec_file) in out
    spec = yaml.safe_load(spec_file.read_text(encoding="utf-8"))
    assert spec["type"] == "generation" and spec["fewshot"]["num_fewshot"] == 5
    assert spec["stop"] == ["Question:", "</s>", "<|im_end|>"]
    assert spec["scoring"]["ignore_regexes"] == [",", "\\$", "(?s).*#### ", "\\.$"]
    assert spec["scoring"]["normalise"] == ["case"] and spec["scoring"]["fallback"] == "[invalid]"
    model = ["--model", str(long_varied_model_dir), "--limit", "5", "--max-new-tokens", "24"]
    direct, direct_rows = run_samples(capsys, tmp_path / "direct", *model, "--tasks", str(GSM8K))
    imported, imported_rows = run_samples(capsys, tmp_path / "imported", *model, "--tasks", str(spec_file))
    assert direct["n"] == 5 and direct["num_fewshot"] == 5
    keys = ("prompt_sha256", "prediction", "answer", "gold", "correct")
    assert [{k: r[k] for k in keys} for r in direct_rows] == [{k: r[k] for k in keys} for r in imported_rows]
    assert direct["exact_match"] == imported["exact_match"] and direct["spec_sha256"] == imported["spec_sha256"]
    assert direct_rows[0]["gold"].endswith("18")  # the reference's "#### 18" before regexes_to_ignore


def test_gsm8k_prompt_is_lm_evals_construction():
    """description + (text + " " + target + "\\n\\n") x 5 + text, exemplars the first train rows in order."""
    from evalkit.evaluators.generation import build_prompt
    from evalkit.tasks.generation_data import load_exemplars, load_samples
    from evalkit.tasks.registry import resolve_tasks

    spec = resolve_tasks(str(GSM8K))[0].spec
    sample = load_samples(spec, 1).samples[0]
    exemplars, _ = load_exemplars(spec, 5)
    train = [json.loads(line) for line in (REPO / "tasks/data/gsm8k/train.jsonl").read_text().splitlines()[:5]]
    test = json.loads((REPO / "tasks/data/gsm8k/test.jsonl").read_text().splitlines()[0])
    expected = "".join(f"Question: {d['question']}\nAnswer: {d['answer']}\n\n" for d in train)
    assert build_prompt(spec, exemplars, sample.input) == expected + f"Question: {test['question']}\nAnswer:"


def test_rolling_loglikelihood_file_is_a_perplexity_task(tmp_path, capsys, tiny_model_dir, one_thread):
    docs = tmp_path / "docs.jsonl"
    docs.write_text("".join(json.dumps({"page": f"Document {i}: " + "words and more words " * 5}) + "\n"
                            for i in range(3)), encoding="utf-8")
    file = tmp_path / "wiki.yaml"
    file.write_text(yaml.safe_dump({"task": "wiki_rolling", "dataset_path": "json", "output_type": "loglikelihood_rolling",
                                    "dataset_kwargs": {"data_files": {"test": "docs.jsonl"}}, "test_split": "test",
                                    "doc_to_text": "", "doc_to_target": "{{page}}",
                                    "metric_list": [{"metric": "word_perplexity"}, {"metric": "bits_per_byte"}]}))
    task, rows = run_samples(capsys, tmp_path / "out", "--model", str(tiny_model_dir), "--tasks", str(file))
    assert task["type"] == "perplexity" and task["documents"] == 3 and task["perplexity"] > 1


def test_text_choices_become_cloze_multiple_choice(tmp_path, capsys, tiny_model_dir, one_thread):
    from evalkit.tasks.loading import KNOWN_KEYS

    if "scoring" not in KNOWN_KEYS["multiple_choice"][""]:
        pytest.skip("cloze multiple choice (scoring: cloze) is not on this branch yet")
    docs = tmp_path / "docs.jsonl"
    docs.write_text("".join(json.dumps({"q": f"The sky on day {i} is", "options": ["blue", "green", "red"], "gold": i % 3})
                            + "\n" for i in range(4)), encoding="utf-8")
    file = tmp_path / "sky.yaml"
    file.write_text(yaml.safe_dump({"task": "sky", "dataset_path": "json", "output_type": "multiple_choice",
                                    "dataset_kwargs": {"data_files": {"test": "docs.jsonl"}}, "test_split": "test",
                                    "doc_to_text": "{{q}}", "doc_to_choice": "options", "doc_to_target": "gold",
                                    "metric_list": [{"metric": "acc"}, {"metric": "acc_norm"}]}))
    code, _, err = run_cli(capsys, "tasks", "import-lmeval", str(file), "--out", str(tmp_path / "spec"))
    assert code == 0, err
    spec = yaml.safe_load((tmp_path / "spec" / "sky.yaml").read_text(encoding="utf-8"))
    assert spec["scoring"] == "cloze" and spec["target_delimiter"] == " " and spec["labels"] == ["A", "B", "C"]
    task, rows = run_samples(capsys, tmp_path / "out", "--model", str(tiny_model_dir), "--tasks", str(file))
    assert len(rows) == 4 and [r["gold"] for r in rows] == ["A", "B", "C", "A"]
    assert task["micro"]["n"] == 4 and "acc_norm" in json.dumps(task)


BASE = {"task": "hostile", "dataset_path": "json", "dataset_kwargs": {"data_files": {"test": "docs.jsonl"}},
        "output_type": "generate_until", "test_split": "test", "doc_to_text": "{{q}}", "doc_to_target": "{{a}}"}


@pytest.mark.parametrize("change, named", [
    ({"doc_to_text": "!function utils.doc_to_text"}, "doc_to_text"),
    ({"process_docs": "!function utils.process_docs"}, "process_docs"),
    ({"process_results": "utils.process"}, "process_results"),
    ({"output_type": "loglikelihood"}, "output_type"),
    ({"num_fewshot": 3, "fewshot_split": "test2"}, "fewshot_config.sampler"),
    ({"num_fewshot": 1, "fewshot_split": "test", "fewshot_config": {"sampler": "first_n"}}, "fewshot_split"),
    ({"fewshot_config": {"sampler": "first_n", "fewshot_indices": [1]}}, "fewshot_config.fewshot_indices"),
    ({"metric_list": [{"metric": "f1"}]}, "metric_list[0].metric"),
    ({"metric_list": [{"metric": "exact_match", "ignore_whitespace": True}]}, "metric_list[0].ignore_whitespace"),
    ({"metric_list": [{"metric": "exact_match"}, {"metric": "bleu"}]}, "metric_list"),
    ({"generation_kwargs": {"until": ["\n"], "top_p": 0.9}}, "generation_kwargs.top_p"),
    ({"generation_kwargs": {"until": ["\n"], "do_sample": True}}, "do_sample"),
    ({"filter_list": [{"name": "a", "filter": [{"function": "take_first"}]}] * 2}, "filter_list"),
    ({"filter_list": [{"name": "a", "filter": [{"function": "majority_vote"}, {"function": "take_first"}]}]},
     "filter_list[0].filter"),
    ({"filter_list": [{"name": "a", "filter": [{"function": "regex", "group_select": 2}, {"function": "take_first"}]}]},
     "group_select"),
    ({"repeats": 4}, "repeats"),
    ({"description": "{{q}} "}, "description"),
    ({"dataset_path": "openai/gsm8k", "dataset_kwargs": None}, "dataset_path"),
    ({"doc_to_text": "{{missing_column}}"}, "doc_to_text"),
    ({"doc_to_text": "{{ q "}, "doc_to_text"),
    ({"include": "loop.yaml"}, "include"),
    ({"test_split": "validation"}, "test_split"),
])
def test_outside_the_subset_is_one_line_naming_the_key(tmp_path, capsys, change, named):
    (tmp_path / "docs.jsonl").write_text('{"q": "1+1?", "a": "2"}\n{"q": "2+2?", "a": "4"}\n', encoding="utf-8")
    text = yaml.safe_dump({**BASE, **change}).replace("'!function utils.doc_to_text'", "!function utils.doc_to_text") \
        .replace("'!function utils.process_docs'", "!function utils.process_docs")
    file = tmp_path / "loop.yaml"
    file.write_text(text, encoding="utf-8")
    for argv in (["run", "--model", "smollm2-135m-instruct", "--tasks", str(file)],
                 ["tasks", "import-lmeval", str(file), "--out", str(tmp_path / "out")]):
        code, out, err = run_cli(capsys, *argv)
        assert code == 2, (argv, out, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in err, err
        assert str(file) in lines[0] and named in lines[0], lines[0]


def test_import_refuses_an_evalkit_spec_and_a_missing_file(tmp_path, capsys):
    code, _, err = run_cli(capsys, "tasks", "import-lmeval", str(REPO / "tasks" / "gsm8k.yaml"))
    assert code == 2 and "spec already" in err
    code, _, err = run_cli(capsys, "tasks", "import-lmeval", str(tmp_path / "nope.yaml"))
    assert code == 2 and "does not exist" in err and len(err.strip().splitlines()) == 1


LMEVAL_PYTHON = REPO / "benchmarks" / ".venv-lmeval" / "bin" / "python"


def lmeval_samples(tmp_path: Path, model: Path, task: str, include: Path, *extra: str, cwd: Path = REPO) -> list[dict]:
    import glob
    import os
    import subprocess

    command = [str(LMEVAL_PYTHON), "-m", "lm_eval", "--model", "hf", "--model_args", f"pretrained={model},dtype=float32",
               "--tasks", task, "--include_path", str(include), "--device", "cpu", "--log_samples",
               "--output_path", str(tmp_path / "lmeval"), *extra]
    env = {**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stderr[-4000:]
    (file,) = glob.glob(str(tmp_path / "lmeval" / "**" / f"samples_{task}_*.jsonl"), recursive=True)
    rows = [json.loads(line) for line in Path(file).read_text(encoding="utf-8").splitlines()]
    return sorted(rows, key=lambda row: row["doc_id"])


@pytest.mark.slow
@pytest.mark.skipif(not LMEVAL_PYTHON.exists(), reason="needs bash benchmarks/setup_lmeval.sh")
def test_lmeval_itself_runs_the_hook_free_file_with_the_same_prompts_and_predictions(tmp_path, capsys, long_model_dir):
    import math

    from evalkit.cache import sha256_text

    (file,) = make_tasks.jinja_tasks(tmp_path / "tasks", 5, ["agronomy"])
    theirs = lmeval_samples(tmp_path, long_model_dir, "cmmlu_jinja_agronomy", file.parent, "--limit", "8")
    _, ours = run_samples(capsys, tmp_path / "ours", "--model", str(long_model_dir), "--tasks", str(file), "--limit", "8")
    assert len(theirs) == len(ours) == 8
    for row, mine in zip(theirs, ours):
        requests = [row["arguments"][f"gen_args_{i}"] for i in range(4)]
        assert [r["arg_1"] for r in requests] == ["A", "B", "C", "D"]  # target_delimiter ""
        assert sha256_text(requests[0]["arg_0"]) == mine["prompt_sha256"]  # the same 5-shot prompt, byte for byte
        logits = [float(r[0]) for r in row["filtered_resps"]]
        top = max(logits)
        probabilities = [math.exp(v - top) / sum(math.exp(w - top) for w in logits) for v in logits]
        assert "ABCD"[probabilities.index(max(probabilities))] == mine["prediction"]
        assert max(abs(p - mine["probabilities"][x]) for p, x in zip(probabilities, "ABCD")) < 1e-4


@pytest.mark.slow
@pytest.mark.skipif(not LMEVAL_PYTHON.exists(), reason="needs bash benchmarks/setup_lmeval.sh")
def test_lmeval_renders_the_gsm8k_file_as_evalkit_does(tmp_path, capsys, long_varied_model_dir):
    from evalkit.cache import sha256_text

    theirs = lmeval_samples(tmp_path, long_varied_model_dir, "gsm8k_lmeval", GSM8K.parent, "--limit", "3",
                            "--gen_kwargs", "max_gen_toks=16", cwd=GSM8K.parent)
    _, ours = run_samples(capsys, tmp_path / "ours", "--model", str(long_varied_model_dir), "--tasks", str(GSM8K),
                          "--limit", "3", "--max-new-tokens", "16")
    for row, mine in zip(theirs, ours):
        assert sha256_text(row["arguments"]["gen_args_0"]["arg_0"]) == mine["prompt_sha256"]
        assert row["filtered_resps"][0] == (mine["answer"] or "[invalid]")
        # the same tokens; evalkit's generations are stripped (backends/outputs.py), lm-eval keeps " " after "Answer:"
        assert row["resps"][0][0].strip() == mine["prediction"]
        assert bool(row["exact_match"]) == mine["correct"]
