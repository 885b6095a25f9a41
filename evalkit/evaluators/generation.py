"""Generation tasks: greedy outputs scored with BLEU-4 and ROUGE (alpaca_zh/en, AdGen, XSum, CNN/DailyMail), or
right/wrong by exact match of an extracted answer (GSM8K: evalkit/metrics/exact_match.py).

Samples come from a fixed slice of the task's data (``--limit`` keeps the first N of it), in file
order, so a base model and its fine-tuned checkpoint are always scored on the same samples; the
results record the data hash, the sample rows and a hash over the samples to check that.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from evalkit.cache import sha256_text
from evalkit.errors import EvalkitError
from evalkit.evaluators.base import RunConfig, register
from evalkit.metrics.exact_match import reference_answer, score_sample, summarize_exact_match
from evalkit.metrics.text import (METRICS, corpus_chrf, corpus_sacrebleu, sacrebleu_tokenizer, sample_scores,
                                  scoring_reference, sentence_chrf, summarize_scores)
from evalkit.results import RunOutput
from evalkit.tasks.generation_data import GenerationSamples, Sample, load_exemplars, load_samples
from evalkit.tasks.generation_spec import GenerationSpec
from evalkit.tasks.registry import TaskSelection

LABELS = {"bleu-4": "BLEU-4", "rouge-1": "ROUGE-1", "rouge-2": "ROUGE-2", "rouge-l": "ROUGE-L"}
CHRF_LABELS = {"chrf": "chrF2", "chrf++": "chrF++"}


@dataclass
class PreparedGeneration:
    spec: GenerationSpec
    data: GenerationSamples
    max_new_tokens: int
    exemplars: list[Sample] = field(default_factory=list)
    fewshot_sha256: str | None = None
    golds: list[str] | None = None  # exact match: each sample's answer, read from its reference


def fewshot_count(spec: GenerationSpec, requested: int | None) -> int:
    """k exemplars: --num-fewshot when given (None: not given), else the spec's ``fewshot.num_fewshot``."""
    if spec.fewshot is None:
        if requested:
            raise EvalkitError(f"task {spec.name} is zero-shot (its spec {spec.path} has no fewshot source); "
                               "drop --num-fewshot")
        return 0
    return spec.fewshot.num_fewshot if requested is None else requested


def build_prompt(spec: GenerationSpec, exemplars: list[Sample], text: str) -> str:
    """instruction, then each exemplar as prompt + target_delimiter + target + separator, then the sample's
    prompt: ``Question: ...\\nAnswer: <worked solution>\\n\\n`` x k, ``Question: ...\\nAnswer:``."""
    shots = "".join(spec.prompt.replace("{input}", e.input) + spec.fewshot.target_delimiter + e.reference
                    + spec.fewshot.separator for e in exemplars)
    return spec.instruction + shots + spec.prompt.replace("{input}", text)


@register("generation")
class GenerationEvaluator:
    def prepare(self, selection: TaskSelection, config: RunConfig) -> PreparedGeneration:
        spec: GenerationSpec = selection.spec  # type: ignore[assignment]
        if selection.subjects:
            raise EvalkitError(f"task {spec.name} ({spec.path}) has no subjects; drop the ':{selection.subjects[0]}'")
        k = fewshot_count(spec, config.num_fewshot if config.fewshot_given else None)
        if config.split:
            raise EvalkitError(f"task {spec.name} reads the fixed slice its spec names ({spec.path}); drop --split")
        data = load_samples(spec, config.limit)
        exemplars, fewshot_sha256 = load_exemplars(spec, k) if spec.fewshot is not None else ([], None)
        golds = None
        if spec.scoring is not None:  # an unreadable reference stops the run before any generation
            golds = [reference_answer(s.reference, spec.scoring, f"{data.source} row {s.index}") for s in data.samples]
        return PreparedGeneration(spec, data, config.max_new_tokens or spec.max_new_tokens, exemplars, fewshot_sha256,
                                  golds)

    def run(self, prepared: PreparedGeneration, backend, config: RunConfig, output: RunOutput) -> dict:
        spec, samples = prepared.spec, prepared.data.samples
        # the spec may turn the template off (few-shot completion prompts); --apply-chat-template turns it back on
        chat = backend.chat_available and not config.no_chat_template and (spec.chat_template or config.apply_chat_template)
        if config.reference_format == "llamafactory" and backend.tokenizer is None:
            raise EvalkitError("--reference-format llamafactory renders the template's end of turn: with --backend "
                               "openai pass --tokenizer MODEL")
        if spec.scoring is not None:
            return self._run_exact_match(prepared, backend, config, output, chat)
        generations, timing = backend.generate([build_prompt(spec, [], s.input) for s in samples], chat=chat,
                                               max_new_tokens=prepared.max_new_tokens, stop=tuple(spec.stop),
                                               config=config, label=spec.name)
        rows, per_sample = [], []
        for sample, generation in zip(samples, generations):
            reference = scoring_reference(sample.reference, backend.tokenizer, chat, config.reference_format)
            scores = sample_scores(generation.text, reference)
            per_sample.append(scores)
            if spec.chrf:
                scores = {**scores, spec.chrf: sentence_chrf(generation.text, reference, spec.chrf)}
            rows.append({
                "task": spec.name, "index": sample.index, "input_sha256": sha256_text(sample.input),
                "prompt_sha256": sha256_text(generation.prompt), "prompt_tokens": generation.prompt_tokens,
                "truncated": generation.truncated, "new_tokens": generation.new_tokens, "finish": generation.finish,
                "prediction": generation.text, "reference": sample.reference, **scores,
            })
        samples_file = output.write_samples(spec.name, rows)
        tokenize = spec.sacrebleu_tokenize or sacrebleu_tokenizer(spec.language)
        sacrebleu = corpus_sacrebleu([g.text for g in generations], [s.reference for s in samples], tokenize)
        chrf = {}
        if spec.chrf:  # over the references the per-sample scores use (plain, or --reference-format llamafactory)
            references = [scoring_reference(s.reference, backend.tokenizer, chat, config.reference_format) for s in samples]
            corpus = corpus_chrf([g.text for g in generations], references, spec.chrf)
            chrf = {"metric": spec.chrf, spec.chrf: corpus["score"], f"{spec.chrf}_signature": corpus["signature"]}
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
            **chrf,
            "metric_definition": "llamafactory ComputeSimilarity: per-sample jieba words -> rouge_chinese F; "
                                 "nltk sentence_bleu on characters, smoothing method3; x100, round 4, mean",
            "timing": timing, "samples_file": samples_file.name,
        }

    def _run_exact_match(self, prepared: PreparedGeneration, backend, config: RunConfig, output: RunOutput,
                         chat: bool) -> dict:
        spec, samples, scoring = prepared.spec, prepared.data.samples, prepared.spec.scoring
        prompts = [build_prompt(spec, prepared.exemplars, s.input) for s in samples]
        generations, timing = backend.generate(prompts, chat=chat, max_new_tokens=prepared.max_new_tokens,
                                               stop=tuple(spec.stop), config=config, label=spec.name)
        rows = []
        for sample, generation, gold in zip(samples, generations, prepared.golds):
            rows.append({
                "task": spec.name, "index": sample.index, "input_sha256": sha256_text(sample.input),
                "prompt_sha256": sha256_text(generation.prompt), "prompt_tokens": generation.prompt_tokens,
                "truncated": generation.truncated, "new_tokens": generation.new_tokens, "finish": generation.finish,
                "prediction": generation.text, "reference": sample.reference,
                **score_sample(generation.text, gold, scoring),
            })
        samples_file = output.write_samples(spec.name, rows)
        rules = len(scoring.extract)
        extracted = {f"rule {i}": sum(r["extracted_by"] == i for r in rows) for i in range(rules)}
        extracted["none" if scoring.fallback is None else "fallback"] = sum(r["extracted_by"] is None for r in rows)
        fewshot = None
        if spec.fewshot is not None:
            fewshot = {"source": str(spec.fewshot.path), "sha256": prepared.fewshot_sha256,
                       "indices": _ranges([e.index for e in prepared.exemplars]), "strip": list(spec.fewshot.strip)}
        return {
            "type": "generation", "metric": "exact_match",
            "spec": str(spec.path), "spec_sha256": spec.spec_hash(), "language": spec.language,
            "data": {"source": prepared.data.source, "sha256": prepared.data.data_sha256,
                     "revision": prepared.data.revision, "samples_sha256": prepared.data.samples_sha256(),
                     "indices": _ranges([s.index for s in samples])},
            "num_fewshot": len(prepared.exemplars), "fewshot": fewshot,
            "chat_template": chat, "instruction": spec.instruction, "prompt": spec.prompt, "stop": list(spec.stop),
            "max_new_tokens": prepared.max_new_tokens, "decoding": "greedy",
            "prompt_sha256": sha256_text("\n".join(r["prompt_sha256"] for r in rows)),
            "n_truncated": sum(r["truncated"] for r in rows),
            "finish": {k: sum(r["finish"] == k for r in rows) for k in ("eos", "stop", "length")},
            **summarize_exact_match([r["correct"] for r in rows]),
            "extracted_by": extracted, "scoring": scoring.describe(),
            "metric_definition": "exact match of the extracted answer (evalkit/metrics/exact_match.py): mean of "
                                 "per-sample right (1) / wrong (0), stderr of that mean",
            "timing": timing, "samples_file": samples_file.name,
        }

    def table(self, name: str, result: dict) -> list[list]:
        if result.get("metric") == "exact_match":
            value, err = result["exact_match"], result.get("exact_match_stderr")
            shots = f", {result['num_fewshot']}-shot" if result.get("num_fewshot") else ""
            return [[name, f"exact_match %{shots}", result["n"], f"{100 * value:.2f}" if value is not None else "-",
                     f"{100 * err:.2f}" if err is not None else "-"]]

        def fmt(value):
            return f"{value:.2f}" if value is not None else "-"

        rows = [[name, LABELS[key], result["n"], fmt(result[key]), fmt(result.get(f"{key}_stderr"))] for key in METRICS]
        rows.append([name, f"sacreBLEU (corpus, tok:{_tokenizer_of(result)})", result["n"], fmt(result["sacrebleu"]), "-"])
        if result.get("metric") in CHRF_LABELS:
            rows.append([name, f"{CHRF_LABELS[result['metric']]} (corpus)", result["n"], fmt(result[result["metric"]]), "-"])
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
