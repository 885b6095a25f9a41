"""Multiple-choice benchmarks (MMLU, CMMLU, C-Eval, or any spec with 2-26 options): label scoring, per subject
and category; specs with ``scoring: cloze`` are scored by evaluators/cloze.py."""

from __future__ import annotations

from dataclasses import dataclass

from evalkit.cache import sha256_file, sha256_text
from evalkit.errors import EvalkitError
from evalkit.evaluators.base import RunConfig, register
from evalkit.metrics.accuracy import summarize
from evalkit.requests import build_requests, choice_targets
from evalkit.results import RunOutput
from evalkit.tasks.mc_data import Question, is_unlabeled, load_split, split_file
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
    split: str  # the split scored: --split, else the spec's eval_split


@register("multiple_choice")
class MultipleChoiceEvaluator:
    def prepare(self, selection: TaskSelection, config: RunConfig) -> PreparedTask:
        spec: MultipleChoiceSpec = selection.spec  # type: ignore[assignment]
        if config.prompt_style not in spec.prompt_styles:
            raise EvalkitError(f"{spec.path}: no prompt style {config.prompt_style!r}; available: {', '.join(spec.prompt_styles)}")
        if spec.scoring == "cloze" and config.apply_chat_template:
            raise EvalkitError(f"{spec.path}: scoring: cloze scores plain prompts (as lm-evaluation-harness without "
                               "a chat template); drop --apply-chat-template for this task")
        split = config.split or spec.eval_split
        if split not in spec.splits:
            raise EvalkitError(f"--split {split}: task {spec.name} has splits {', '.join(spec.splits)} ({spec.path})")
        if split == spec.fewshot_split and config.num_fewshot:
            raise EvalkitError(f"--split {split} is the few-shot split of {spec.name}: its exemplars would be scored "
                               "questions; use --num-fewshot 0 or another split")
        keys = selection.subjects or list(spec.subjects)
        subjects, files = [], {}
        for key in keys:
            questions = load_split(spec, key, split)
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
            for used in {split, spec.fewshot_split} if config.num_fewshot else {split}:
                path = split_file(spec, key, used)
                if path.is_file():
                    # an absolute data.dir may lie outside the spec's folder: record that file by its full path
                    key_path = path.relative_to(spec.root) if path.is_relative_to(spec.root) else path
                    files[str(key_path)] = sha256_file(path)
        return PreparedTask(spec, subjects, files, split)

    def run(self, prepared: PreparedTask, backend, config: RunConfig, output: RunOutput) -> dict:
        spec = prepared.spec
        if spec.scoring == "cloze":
            from evalkit.evaluators.cloze import run_cloze

            return run_cloze(prepared, backend, config, output)
        requests = []
        for subject in prepared.subjects:
            requests += build_requests(spec, config.prompt_style, subject.key, subject.questions, subject.exemplars,
                                       backend.tokenizer, chat=config.apply_chat_template)
        scores = backend.score_choices(requests, choice_targets(spec, config.prompt_style), config, spec.name)
        labeled = not is_unlabeled(spec, prepared.split)
        ids = {(s.key, q.index): q.id for s in prepared.subjects for q in s.questions}
        correct: dict[str, list[bool]] = {s.key: [] for s in prepared.subjects}
        predictions: dict[str, dict[str, str]] = {s.key: {} for s in prepared.subjects}
        rows = []
        for score in scores:
            request = score.request
            ident = ids[(request.subject, request.index)]
            predictions[request.subject][ident] = score.prediction
            row = {
                **sample_row(spec, score, ident),
                "probabilities": dict(zip(request.labels, score.probabilities)) if score.probabilities else None,
                "prediction": score.prediction,
            }
            if labeled:
                correct[request.subject].append(score.correct)
                row.update(gold=request.gold, correct=score.correct)
            rows.append(row)
        samples = output.write_samples(spec.name, rows)
        result = {"type": "multiple_choice", **result_header(prepared, config, rows, samples.name)}
        if not labeled:  # answers not public: the leaderboard's submission file, and no accuracy
            file = output.write_predictions(spec.name, prepared.split, predictions)
            return {**result, "predictions_file": file.name, **_no_accuracy(spec, predictions)}
        summary = summarize(correct, {k: v.categories for k, v in spec.subjects.items()}, spec.categories)
        for key, block in summary["subjects"].items():
            block["name"] = spec.subjects[key].name
        return {**result, **summary}

    def table(self, name: str, result: dict) -> list[list]:
        if result.get("predictions_file"):
            return [[name, f"{result['split']} predictions (no answers: no score): {result['predictions_file']}",
                     result["micro"]["n"], "-", "-"]]

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
        groups = result["macro"]["groups"]
        label = f"Average (macro, {groups} subject{'s' if groups != 1 else ''})"
        rows.append([name, label, result["micro"]["n"], *fmt(result["macro"])])
        if result.get("scoring") == "cloze":
            from evalkit.evaluators.cloze import norm_rows

            rows += norm_rows(name, result)
        return rows


def _no_accuracy(spec: MultipleChoiceSpec, predictions: dict[str, dict[str, str]]) -> dict:
    """Counts in the shape of ``summarize`` with every accuracy None, so the results store and the
    leaderboards record the run without a score."""
    n = sum(len(v) for v in predictions.values())
    return {
        "subjects": {k: {"n": len(v), "correct": None, "acc": None, "acc_stderr": None, "name": spec.subjects[k].name}
                     for k, v in predictions.items()},
        "categories": {},
        "micro": {"n": n, "correct": None, "acc": None, "acc_stderr": None},
        "macro": {"groups": len(predictions), "acc": None, "acc_stderr": None},
    }


def sample_row(spec, score, ident: str) -> dict:
    """The fields every multiple-choice sample row starts with (letter and cloze scoring alike)."""
    request = score.request
    return {"task": spec.name, "subject": request.subject, "index": request.index, "id": ident,
            "prompt_sha256": sha256_text(request.prompt), "prompt_tokens": score.prompt_tokens,
            "truncated": score.truncated}


def result_header(prepared: PreparedTask, config: RunConfig, rows: list[dict], samples_name: str) -> dict:
    """What a multiple-choice task's results block records of its run, after its ``type`` (and scoring)."""
    spec = prepared.spec
    return {"spec": str(spec.path), "spec_sha256": spec.spec_hash(), "split": prepared.split,
            "fewshot_split": spec.fewshot_split, "num_fewshot": config.num_fewshot, "prompt_style": config.prompt_style,
            "prompt_sha256": sha256_text("\n".join(r["prompt_sha256"] for r in rows)),
            "data_files": prepared.data_files, "n_truncated": sum(r["truncated"] for r in rows),
            "n_unparsed": sum(r["prediction"] is None for r in rows),  # --mc-mode generate: no letter found
            "samples_file": samples_name}
