"""Multiple-choice benchmarks (MMLU, CMMLU, C-Eval): letter scoring, per subject and category."""

from __future__ import annotations

from dataclasses import dataclass

from evalkit.cache import sha256_file, sha256_text
from evalkit.errors import EvalkitError
from evalkit.evaluators.base import RunConfig, register
from evalkit.metrics.accuracy import summarize
from evalkit.requests import build_requests, choice_targets
from evalkit.results import RunOutput
from evalkit.tasks.mc_data import Question, load_split, split_file
from evalkit.tasks.registry import TaskSelection
from evalkit.tasks.spec import MultipleChoiceSpec


@dataclass
class PreparedSubject:
    key: str
    questions: list[Question]
    exemplars: list[Question]


@dataclass
class PreparedTask:
    spec: MultipleChoiceSpec
    subjects: list[PreparedSubject]
    data_files: dict[str, str]  # file -> sha256


@register("multiple_choice")
class MultipleChoiceEvaluator:
    def prepare(self, selection: TaskSelection, config: RunConfig) -> PreparedTask:
        spec: MultipleChoiceSpec = selection.spec  # type: ignore[assignment]
        if config.prompt_style not in spec.prompt_styles:
            raise EvalkitError(f"{spec.path}: no prompt style {config.prompt_style!r}; available: {', '.join(spec.prompt_styles)}")
        keys = selection.subjects or list(spec.subjects)
        subjects, files = [], {}
        for key in keys:
            questions = load_split(spec, key, spec.eval_split)
            if config.limit is not None:
                questions = questions[: config.limit]
            exemplars: list[Question] = []
            if config.num_fewshot:
                pool = load_split(spec, key, spec.fewshot_split)
                if len(pool) < config.num_fewshot:
                    raise EvalkitError(f"{split_file(spec, key, spec.fewshot_split)}: {len(pool)} exemplars, "
                                       f"fewer than --num-fewshot {config.num_fewshot}; lower --num-fewshot")
                exemplars = pool[: config.num_fewshot]  # first k in file order: one shared prefix per subject
            subjects.append(PreparedSubject(key, questions, exemplars))
            for split in {spec.eval_split, spec.fewshot_split} if config.num_fewshot else {spec.eval_split}:
                path = split_file(spec, key, split)
                if path.is_file():
                    files[str(path.relative_to(spec.root))] = sha256_file(path)
        return PreparedTask(spec, subjects, files)

    def run(self, prepared: PreparedTask, backend, config: RunConfig, output: RunOutput) -> dict:
        spec = prepared.spec
        requests = []
        for subject in prepared.subjects:
            requests += build_requests(spec, config.prompt_style, subject.key, subject.questions, subject.exemplars,
                                       backend.tokenizer, chat=config.apply_chat_template)
        scores = backend.score_choices(requests, choice_targets(spec, config.prompt_style), config, spec.name)
        correct: dict[str, list[bool]] = {s.key: [] for s in prepared.subjects}
        rows = []
        for score in scores:
            request = score.request
            correct[request.subject].append(score.correct)
            rows.append({
                "task": spec.name, "subject": request.subject, "index": request.index,
                "prompt_sha256": sha256_text(request.prompt), "prompt_tokens": score.prompt_tokens,
                "truncated": score.truncated,
                "probabilities": dict(zip("ABCD", score.probabilities)) if score.probabilities else None,
                "prediction": score.prediction, "gold": request.gold, "correct": score.correct,
            })
        samples = output.write_samples(spec.name, rows)
        summary = summarize(correct, {k: v.categories for k, v in spec.subjects.items()}, spec.categories)
        for key, block in summary["subjects"].items():
            block["name"] = spec.subjects[key].name
        return {
            "type": "multiple_choice",
            "spec": str(spec.path), "spec_sha256": spec.spec_hash(), "split": spec.eval_split,
            "fewshot_split": spec.fewshot_split, "num_fewshot": config.num_fewshot,
            "prompt_style": config.prompt_style,
            "prompt_sha256": sha256_text("\n".join(r["prompt_sha256"] for r in rows)),
            "data_files": prepared.data_files, "n_truncated": sum(r["truncated"] for r in rows),
            "n_unparsed": sum(r["prediction"] is None for r in rows),  # --mc-mode generate: no letter found
            "samples_file": samples.name, **summary,
        }

    def table(self, name: str, result: dict) -> list[list]:
        def fmt(block):
            acc = block["acc"]
            err = block.get("acc_stderr")
            return f"{100 * acc:.2f}" if acc is not None else "-", f"{100 * err:.2f}" if err is not None else "-"

        rows = []
        if len(result["subjects"]) <= 12:
            for key, block in result["subjects"].items():
                rows.append([name, f"  {key}", block["n"], *fmt(block)])
        for category, block in result["categories"].items():
            rows.append([name, f"[{category}]", block["n"], *fmt(block)])
        rows.append([name, "Average (micro)", result["micro"]["n"], *fmt(result["micro"])])
        rows.append([name, f"Average (macro, {result['macro']['groups']} subjects)", result["micro"]["n"], *fmt(result["macro"])])
        return rows
