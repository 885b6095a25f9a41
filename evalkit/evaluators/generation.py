"""Generation tasks (alpaca_zh/en, AdGen, XSum, CNN/DailyMail): greedy outputs scored with BLEU-4 and ROUGE.

Samples come from a fixed slice of the task's data (``--limit`` keeps the first N of it), in file
order, so a base model and its fine-tuned checkpoint are always scored on the same samples; the
results record the data hash, the sample rows and a hash over the samples to check that.
"""

from __future__ import annotations

from dataclasses import dataclass

from evalkit.cache import sha256_text
from evalkit.errors import EvalkitError
from evalkit.evaluators.base import RunConfig, register
from evalkit.metrics.text import (METRICS, corpus_sacrebleu, sacrebleu_tokenizer, sample_scores, scoring_reference,
                                  summarize_scores)
from evalkit.results import RunOutput
from evalkit.tasks.generation_data import GenerationSamples, load_samples
from evalkit.tasks.generation_spec import GenerationSpec
from evalkit.tasks.registry import TaskSelection

LABELS = {"bleu-4": "BLEU-4", "rouge-1": "ROUGE-1", "rouge-2": "ROUGE-2", "rouge-l": "ROUGE-L"}


@dataclass
class PreparedGeneration:
    spec: GenerationSpec
    data: GenerationSamples
    max_new_tokens: int


@register("generation")
class GenerationEvaluator:
    def prepare(self, selection: TaskSelection, config: RunConfig) -> PreparedGeneration:
        spec: GenerationSpec = selection.spec  # type: ignore[assignment]
        if selection.subjects:
            raise EvalkitError(f"task {spec.name} ({spec.path}) has no subjects; drop the ':{selection.subjects[0]}'")
        if config.num_fewshot:
            raise EvalkitError(f"task {spec.name} is zero-shot (generation); drop --num-fewshot")
        if config.split:
            raise EvalkitError(f"task {spec.name} reads the fixed slice its spec names ({spec.path}); drop --split")
        data = load_samples(spec, config.limit)
        return PreparedGeneration(spec, data, config.max_new_tokens or spec.max_new_tokens)

    def run(self, prepared: PreparedGeneration, backend, config: RunConfig, output: RunOutput) -> dict:
        spec, samples = prepared.spec, prepared.data.samples
        chat = backend.chat_available and not config.no_chat_template
        if config.reference_format == "llamafactory" and backend.tokenizer is None:
            raise EvalkitError("--reference-format llamafactory renders the template's end of turn: with --backend "
                               "openai pass --tokenizer MODEL")
        generations, timing = backend.generate([spec.instruction + s.input for s in samples], chat=chat,
                                               max_new_tokens=prepared.max_new_tokens, stop=tuple(spec.stop),
                                               config=config, label=spec.name)
        rows, per_sample = [], []
        for sample, generation in zip(samples, generations):
            reference = scoring_reference(sample.reference, backend.tokenizer, chat, config.reference_format)
            scores = sample_scores(generation.text, reference)
            per_sample.append(scores)
            rows.append({
                "task": spec.name, "index": sample.index, "input_sha256": sha256_text(sample.input),
                "prompt_sha256": sha256_text(generation.prompt), "prompt_tokens": generation.prompt_tokens,
                "truncated": generation.truncated, "new_tokens": generation.new_tokens, "finish": generation.finish,
                "prediction": generation.text, "reference": sample.reference, **scores,
            })
        samples_file = output.write_samples(spec.name, rows)
        tokenize = spec.sacrebleu_tokenize or sacrebleu_tokenizer(spec.language)
        sacrebleu = corpus_sacrebleu([g.text for g in generations], [s.reference for s in samples], tokenize)
        return {
            "type": "generation",
            "spec": str(spec.path), "spec_sha256": spec.spec_hash(), "language": spec.language,
            "data": {"source": prepared.data.source, "sha256": prepared.data.data_sha256,
                     "revision": prepared.data.revision, "samples_sha256": prepared.data.samples_sha256(),
                     "indices": _ranges([s.index for s in samples])},
            "chat_template": chat, "instruction": spec.instruction, "stop": list(spec.stop),
            "max_new_tokens": prepared.max_new_tokens, "decoding": "greedy",
            "prompt_sha256": sha256_text("\n".join(r["prompt_sha256"] for r in rows)),
            "n_truncated": sum(r["truncated"] for r in rows),
            "finish": {k: sum(r["finish"] == k for r in rows) for k in ("eos", "stop", "length")},
            **summarize_scores(per_sample),
            "sacrebleu": sacrebleu["score"], "sacrebleu_signature": sacrebleu["signature"],
            "sacrebleu_detail": {"brevity_penalty": sacrebleu["brevity_penalty"], "precisions": sacrebleu["precisions"]},
            "metric_definition": "llamafactory ComputeSimilarity: per-sample jieba words -> rouge_chinese F; "
                                 "nltk sentence_bleu on characters, smoothing method3; x100, round 4, mean",
            "timing": timing, "samples_file": samples_file.name,
        }

    def table(self, name: str, result: dict) -> list[list]:
        def fmt(value):
            return f"{value:.2f}" if value is not None else "-"

        rows = [[name, LABELS[key], result["n"], fmt(result[key]), fmt(result.get(f"{key}_stderr"))] for key in METRICS]
        rows.append([name, f"sacreBLEU (corpus, tok:{_tokenizer_of(result)})", result["n"], fmt(result["sacrebleu"]), "-"])
        return rows


def _tokenizer_of(result: dict) -> str:
    for part in result.get("sacrebleu_signature", "").split("|"):
        if part.startswith("tok:"):
            return part[4:]
    return "?"


def _ranges(indices: list[int]) -> list[list[int]]:
    """Row numbers as [first, last] runs: compact for a contiguous slice, exact for any list."""
    runs: list[list[int]] = []
    for i in indices:
        if runs and i == runs[-1][1] + 1:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    return runs
