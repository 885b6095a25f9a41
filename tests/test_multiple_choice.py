"""Prompts byte for byte, scoring, batch invariance on real data, results files and model kinds."""

from __future__ import annotations

import json

import pytest

from evalkit.evaluators.base import RunConfig
from evalkit.metrics.accuracy import summarize
from evalkit.requests import build_requests, choice_targets
from evalkit.backends.hf.multiple_choice import score_multiple_choice
from evalkit.tasks import resolve_tasks
from evalkit.tasks.mc_data import load_split
from tests.conftest import REPO
from tests.helpers import run_cli


def test_llamafactory_prompt_chinese_byte_for_byte():
    spec = resolve_tasks("cmmlu")[0].spec
    questions = load_split(spec, "agronomy", "test")
    exemplars = load_split(spec, "agronomy", "dev")[:2]
    request = build_requests(spec, "llamafactory", "agronomy", questions[:1], exemplars)[0]
    # Rows read straight from the vendored CSV lines, independently of evalkit's loader.
    dev_lines = (REPO / "tasks/data/cmmlu/dev/agronomy.csv").read_text(encoding="utf-8").splitlines()[1:3]
    test_line = (REPO / "tasks/data/cmmlu/test/agronomy.csv").read_text(encoding="utf-8").splitlines()[1]
    expected = "以下是中国关于农学考试的单项选择题，请选出其中的正确答案。\n\n"
    for line in dev_lines:
        _, q, a, b, c, d, ans = line.split(",")
        expected += f"{q}\nA. {a}\nB. {b}\nC. {c}\nD. {d}\n答案：{ans}\n\n"
    _, q, a, b, c, d, ans = test_line.split(",")
    expected += f"{q}\nA. {a}\nB. {b}\nC. {c}\nD. {d}\n答案："
    assert request.prompt == expected
    assert request.prefix + request.question == expected and request.question.startswith(q)
    assert request.gold == ans


def test_llamafactory_and_lm_eval_prompt_english():
    spec = resolve_tasks("mmlu")[0].spec
    questions = load_split(spec, "abstract_algebra", "test")[:1]
    exemplars = load_split(spec, "abstract_algebra", "dev")[:1]
    lf = build_requests(spec, "llamafactory", "abstract_algebra", questions, exemplars)[0]
    lm = build_requests(spec, "lm_eval", "abstract_algebra", questions, exemplars)[0]
    header = "The following are multiple choice questions (with answers) about abstract algebra.\n\n"
    e, q = exemplars[0], questions[0]
    body = lambda x: f"{x.question}\nA. {x.choices[0]}\nB. {x.choices[1]}\nC. {x.choices[2]}\nD. {x.choices[3]}\nAnswer:"
    assert lf.prompt == header + body(e) + e.answer + "\n\n" + body(q)
    assert lm.prompt == header + body(e) + " " + e.answer + "\n\n" + body(q)
    assert choice_targets(spec, "lm_eval") == [" A", " B", " C", " D"]
    assert choice_targets(spec, "llamafactory") == ["A", "B", "C", "D"]


def test_summary_by_hand():
    correct = {"s1": [True, False, True, True], "s2": [False, False]}
    summary = summarize(correct, {"s1": ("STEM",), "s2": ("STEM", "Other")}, ["STEM", "Other"])
    assert summary["micro"]["acc"] == pytest.approx(3 / 6)
    assert summary["macro"]["acc"] == pytest.approx((0.75 + 0.0) / 2)
    assert summary["categories"]["STEM"]["n"] == 6 and summary["categories"]["Other"]["acc"] == 0.0
    # s1: p = .75, sample variance = 4/3 * .75 * .25 = .25, stderr = sqrt(.25 / 4) = .25
    assert summary["subjects"]["s1"]["acc_stderr"] == pytest.approx(0.25)
    assert summary["macro"]["acc_stderr"] == pytest.approx((0.25**2 + 0.0) ** 0.5 / 2)


def _requests(subject_list, k, n, task="cmmlu"):
    spec = resolve_tasks(task)[0].spec
    requests = []
    for subject in subject_list:
        questions = load_split(spec, subject, spec.eval_split)[:n]
        exemplars = load_split(spec, subject, spec.fewshot_split)[:k]
        requests += build_requests(spec, "llamafactory", subject, questions, exemplars)
    return spec, requests


def test_batch_size_invariance_on_real_data(smollm2):
    """Same predictions at batch 1 and 8; probabilities equal up to fp32 GEMM-shape rounding."""
    spec, requests = _requests(["agronomy", "chinese_history"], k=2, n=6)
    targets = choice_targets(spec, "llamafactory")
    one = score_multiple_choice(smollm2, requests, targets, batch_size=1, progress=False, reuse_prefix=False)
    eight = score_multiple_choice(smollm2, requests, targets, batch_size=8, progress=False, reuse_prefix=False)
    assert [s.prediction for s in one] == [s.prediction for s in eight]
    for a, b in zip(one, eight):
        assert a.probabilities == pytest.approx(b.probabilities, abs=1e-5)
        assert sum(a.probabilities) == pytest.approx(1.0)
    # The scorer must have read real, different distributions (not a constant).
    assert len({tuple(round(p, 4) for p in s.probabilities) for s in one}) > 1


def test_run_writes_results_and_samples(capsys, tiny_model_dir, tmp_path):
    code, out, err = run_cli(capsys, "run", "--model", str(tiny_model_dir), "--tasks", "cmmlu:agronomy,mmlu:anatomy",
                             "--limit", "3", "--num-fewshot", "1", "--batch-size", "auto",
                             "--output-dir", str(tmp_path), "--no-progress")
    assert code == 0, err
    assert "Average (micro)" in out and "[China specific]" not in out and "[Other]" in out
    results_file = next(tmp_path.rglob("results_*.json"))
    results = json.loads(results_file.read_text())
    model = results["model"]
    assert model["kind"] == "local" and len(model["weights_sha256"]) == 64
    assert model["dtype"] == "float32" and model["device"] == "cpu"
    assert results["config"]["seed"] == 1234 and results["config"]["num_fewshot"] == 1
    assert results["environment"]["libraries"]["torch"].startswith("2.13")
    task = results["tasks"]["cmmlu"]
    assert len(task["spec_sha256"]) == 64 and len(task["prompt_sha256"]) == 64
    assert set(task["data_files"]) == {"data/cmmlu/test/agronomy.csv", "data/cmmlu/dev/agronomy.csv"}
    assert task["micro"]["n"] == 3 and task["subjects"]["agronomy"]["name"] == "农学"
    rows = [json.loads(line) for line in (results_file.parent / task["samples_file"]).read_text().splitlines()]
    assert [r["index"] for r in rows] == [0, 1, 2]
    assert all(set(r["probabilities"]) == set("ABCD") and r["gold"] in "ABCD" for r in rows)
    assert sum(r["correct"] for r in rows) == task["micro"]["correct"]


def test_ceval_layout_files(capsys, tiny_model_dir, tmp_path):
    """C-Eval evaluates `val` from files in the ceval-exam layout (id,question,A,B,C,D,answer,explanation)."""
    from tests.helpers import spec_copy

    data = tmp_path / "ceval"
    for split, rows in (("dev", 2), ("val", 3)):
        (data / split).mkdir(parents=True)
        lines = ["id,question,A,B,C,D,answer,explanation"]
        lines += [f"{i},计算机网络问题{i},一,二,三,四,{'ABCD'[i % 4]},解释" for i in range(rows)]
        (data / split / f"computer_network_{split}.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    spec = spec_copy("ceval", tmp_path, data, ["computer_network"])
    code, out, err = run_cli(capsys, "run", "--model", str(tiny_model_dir), "--tasks", str(spec), "--num-fewshot", "2",
                             "--output-dir", str(tmp_path / "out"), "--no-progress")
    assert code == 0, err
    results = json.loads(next((tmp_path / "out").rglob("results_*.json")).read_text())
    assert results["tasks"]["ceval"]["split"] == "val" and results["tasks"]["ceval"]["micro"]["n"] == 3
    assert list(results["tasks"]["ceval"]["categories"]) == ["STEM"]


def test_gguf_file_and_peft_adapter(tiny_model_dir, tmp_path):
    """A .gguf path and a PEFT adapter directory both load; the adapter changes the outputs."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from evalkit.models import load_model
    from evalkit.models.embedded import EMBEDDED

    gguf, _ = EMBEDDED["smollm2-135m-instruct"].gguf_path()
    lm = load_model(str(gguf))
    assert lm.identity["kind"] == "gguf" and lm.model.config.model_type == "llama"

    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    torch.manual_seed(0)
    peft_model = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    peft_model.save_pretrained(tmp_path / "adapter")
    config_path = tmp_path / "adapter" / "adapter_config.json"
    config = json.loads(config_path.read_text())
    config["base_model_name_or_path"] = str(tiny_model_dir)
    config_path.write_text(json.dumps(config))

    adapted = load_model(str(tmp_path / "adapter"))
    plain = load_model(str(tiny_model_dir))
    assert adapted.identity["kind"] == "peft_adapter" and adapted.identity["base"]["kind"] == "local"
    ids = plain.tokenizer("检验", return_tensors="pt")
    with torch.no_grad():
        assert not torch.allclose(adapted.model(**ids).logits, plain.model(**ids).logits)


@pytest.mark.slow
@pytest.mark.parametrize("alias", ["smollm2-135m-instruct", "gemma3-270m"])
def test_embedded_models_five_shot(capsys, tmp_path, alias):
    code, out, err = run_cli(capsys, "run", "--model", alias, "--tasks", "mmlu,cmmlu", "--num-fewshot", "5",
                             "--limit", "1", "--batch-size", "8", "--output-dir", str(tmp_path), "--no-progress")
    assert code == 0, err
    assert out.count("Average (micro)") == 2 and "[Social Sciences]" in out and "[China specific]" in out
