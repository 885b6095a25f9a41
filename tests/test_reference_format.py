"""``--reference-format llamafactory`` reproduces LLaMA-Factory's ``predict`` BLEU-4/ROUGE: its
reference is the decoded label (answer + the template's end of turn, special tokens skipped), which for
ChatML templates ends with a newline; ``plain`` (the default) scores against the data's reference."""

from __future__ import annotations

import math

import pytest

from evalkit.metrics.text import llamafactory_reference, sample_scores, scoring_reference, template_suffix

# Predictions and labels; the expected per-sample scores were computed by LLaMA-Factory 0.9.5 itself:
# ComputeSimilarity (src/llamafactory/train/sft/metric.py) on label ids from its smollm2 template's
# encode_oneturn and prediction ids ending in EOS, with SmolLM2's tokenizer
# (tests/llamafactory_predict_fixture.py, run in .venv-llamafactory from benchmarks/setup_llamafactory.sh).
FIXTURE = [
    ("显微镜的三个常见用途：1. 医学研究，观察细胞和细菌。2. 材料科学，研究材料的结构。3. 刑事鉴定，分析指纹。",
     "显微镜的三个常见用途如下：\n\n1. 医学科研: 观察细胞、组织、病毒、细菌等微生物。\n\n2. 材料科学: 研究材料的结构。\n\n3. 刑事鉴定: 指纹学、毒品分析。"),
    ("鸟儿在枝头鸣唱，\n花香沁人心脾。", "鸟儿啁啾鸣唱，\n鹿儿在雾中嬉戏。\n花香沁人心脾，\n大地苏醒欣喜。"),
    ("The capital of France is Paris.", "Paris is the capital of France."),
]
LLAMAFACTORY_PREDICT = {
    "rouge-1": [75.8621, 58.3333, 85.7143], "rouge-2": [42.1053, 16.6667, 33.3333],
    "rouge-l": [67.5, 46.1538, 57.1429], "bleu-4": [38.8981, 20.4828, 80.3885],
}


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tiny_model_dir))  # SmolLM2's tokenizer and chat template


def test_chatml_suffix_and_decoded_label(tokenizer):
    assert template_suffix(tokenizer) == "<|im_end|>\n"
    assert llamafactory_reference("Paris.", tokenizer, chat=True) == "Paris.\n"
    assert llamafactory_reference("Paris.", tokenizer, chat=False) == "Paris."
    assert scoring_reference("Paris.", tokenizer, chat=True) == "Paris."  # plain: the data's text


def test_bleu_against_the_decoded_label_worked_by_hand(tokenizer):
    # "abcd" vs "abcd": every n-gram matches, same length -> 100. Against "abcd\n" the precisions are
    # still 1 but the reference is 5 characters: brevity penalty exp(1 - 5/4).
    reference = scoring_reference("abcd", tokenizer, chat=True, reference_format="llamafactory")
    assert sample_scores("abcd", "abcd")["bleu-4"] == 100.0
    assert sample_scores("abcd", reference)["bleu-4"] == round(100 * math.exp(1 - 5 / 4), 4) == 77.8801


def test_llamafactory_format_reproduces_its_predict_numbers(tokenizer):
    ours = [sample_scores(p, scoring_reference(r, tokenizer, chat=True, reference_format="llamafactory"))
            for p, r in FIXTURE]
    for metric, expected in LLAMAFACTORY_PREDICT.items():
        assert [s[metric] for s in ours] == expected, metric
    plain = [sample_scores(p, r) for p, r in FIXTURE]
    assert all(p["bleu-4"] > o["bleu-4"] for p, o in zip(plain, ours))  # the newline costs BLEU-4...
    assert all(p[m] == o[m] for p, o in zip(plain, ours) for m in ("rouge-1", "rouge-2", "rouge-l"))  # ...not ROUGE


def test_run_option_scores_against_the_decoded_label(capsys, tiny_model_dir, tmp_path, one_thread):
    import json

    from tests.helpers import run_cli

    code, _, err = run_cli(capsys, "run", "--model", str(tiny_model_dir), "--tasks", "alpaca_en", "--limit", "2",
                           "--max-new-tokens", "3", "--reference-format", "llamafactory", "--no-progress",
                           "--output-dir", str(tmp_path))
    assert code == 0, err
    (results_file,) = tmp_path.rglob("results_*.json")
    assert json.loads(results_file.read_text(encoding="utf-8"))["config"]["reference_format"] == "llamafactory"
    (samples_file,) = tmp_path.rglob("samples_alpaca_en_*.jsonl")
    for row in map(json.loads, samples_file.read_text(encoding="utf-8").splitlines()):
        # the row keeps the data's reference; its scores are against that reference + the ChatML newline
        assert not row["reference"].endswith("\n")
        assert {k: row[k] for k in LLAMAFACTORY_PREDICT} == sample_scores(row["prediction"], row["reference"] + "\n")
