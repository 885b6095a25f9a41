"""chrF: evalkit's corpus chrF2 / chrF++ equal sacrebleu's own command line, and a generation spec with
``scoring: {metric: chrf}`` reports it (besides BLEU-4 / ROUGE) with each sample's sentence chrF."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.helpers import run_cli

HYPOTHESES = ["The cat is on the mat.", "The fast brown fox jumps.", "天气很好，我们去公园。", "No overlap at all"]
REFERENCES = ["The cat sat on the mat.", "A quick brown fox jumped.", "今天天气很好，我们去公园吧。", "Something else"]


@pytest.mark.parametrize("metric, flags", [("chrf", []), ("chrf++", ["--chrf-word-order", "2"])])
def test_corpus_chrf_equals_sacrebleus_command_line(tmp_path, metric, flags):
    from evalkit.metrics.text import corpus_chrf

    (tmp_path / "ref.txt").write_text("\n".join(REFERENCES) + "\n", encoding="utf-8")
    (tmp_path / "hyp.txt").write_text("\n".join(HYPOTHESES) + "\n", encoding="utf-8")
    cli = Path(sys.executable).with_name("sacrebleu")
    done = subprocess.run([str(cli), str(tmp_path / "ref.txt"), "-i", str(tmp_path / "hyp.txt"), "-m", "chrf", *flags,
                           "-b", "-w", "6"], capture_output=True, text=True, check=True)
    ours = corpus_chrf(HYPOTHESES, REFERENCES, metric)
    assert abs(ours["score"] - float(done.stdout)) < 1e-6
    assert ours["signature"].startswith("nrefs:1|case:mixed|eff:yes|nc:6|nw:" + ("2" if flags else "0"))


def test_corpus_chrf_is_not_the_mean_of_sentence_scores():
    import sacrebleu

    from evalkit.metrics.text import corpus_chrf, sentence_chrf

    corpus = corpus_chrf(HYPOTHESES, REFERENCES)["score"]
    assert corpus == sacrebleu.corpus_chrf(HYPOTHESES, [REFERENCES]).score  # lm-eval's chrf aggregation
    mean = sum(sentence_chrf(h, r) for h, r in zip(HYPOTHESES, REFERENCES)) / len(HYPOTHESES)
    assert abs(corpus - mean) > 0.1


def test_chrf_generation_spec_reports_corpus_and_sentence_chrf(tmp_path, capsys, varied_model_dir, one_thread):
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps({"src": s, "tgt": t}, ensure_ascii=False) + "\n"
                            for s, t in zip(REFERENCES, HYPOTHESES)), encoding="utf-8")
    spec = tmp_path / "translate.yaml"
    spec.write_text(yaml.safe_dump({"task": "translate", "type": "generation", "data": {"path": "pairs.jsonl", "input": "src",
                                    "reference": "tgt"}, "max_new_tokens": 8, "chat_template": False,
                                    "scoring": {"metric": "chrf++"}}), encoding="utf-8")
    code, out, err = run_cli(capsys, "run", "--model", str(varied_model_dir), "--tasks", str(spec),
                             "--output-dir", str(tmp_path / "out"), "--no-store", "--no-progress")
    assert code == 0, err
    assert "chrF++ (corpus)" in out
    results = json.loads(next((tmp_path / "out").rglob("results_*.json")).read_text(encoding="utf-8"))
    task = results["tasks"]["translate"]
    rows = [json.loads(line) for line in next((tmp_path / "out").rglob(task["samples_file"])).read_text().splitlines()]
    import sacrebleu

    expected = sacrebleu.corpus_chrf([r["prediction"] for r in rows], [[r["reference"] for r in rows]], word_order=2)
    assert task["metric"] == "chrf++" and task["chrf++"] == expected.score and "nw:2" in task["chrf++_signature"]
    assert all("chrf++" in r and "bleu-4" in r for r in rows) and task["bleu-4"] is not None


def test_chrf_scoring_takes_no_exact_match_keys(tmp_path, capsys):
    (tmp_path / "pairs.jsonl").write_text('{"src": "a", "tgt": "b"}\n', encoding="utf-8")
    spec = tmp_path / "t.yaml"
    spec.write_text(yaml.safe_dump({"task": "t", "type": "generation", "data": {"path": "pairs.jsonl", "input": "src",
                                    "reference": "tgt"}, "scoring": {"metric": "chrf", "match": "numeric"}}))
    code, _, err = run_cli(capsys, "run", "--model", "smollm2-135m-instruct", "--tasks", str(spec))
    assert code == 2 and "match" in err and len(err.strip().splitlines()) == 1
