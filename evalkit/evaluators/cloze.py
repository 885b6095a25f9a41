"""Multiple choice scored as cloze (``scoring: cloze`` in a spec): each option's text is a continuation of the
prompt, and the option with the highest summed log-likelihood is the answer.

Two accuracies, as lm-evaluation-harness reports them: ``acc`` (the highest log-likelihood: the headline
score, which reports, the gate and the store use) and ``acc_norm`` (log-likelihood over the option text's
length in characters, which removes the bias towards short options). Each sample keeps both predictions and
the options' log-likelihoods, so either can be recomputed or compared with lm-eval's own samples.
"""

from __future__ import annotations

from evalkit.evaluators.multiple_choice import _no_accuracy, result_header, sample_row
from evalkit.metrics.accuracy import summarize
from evalkit.requests import build_cloze_requests
from evalkit.tasks.mc_data import is_unlabeled


def run_cloze(prepared, backend, config, output) -> dict:
    spec = prepared.spec
    requests = []
    for subject in prepared.subjects:
        requests += build_cloze_requests(spec, config.prompt_style, subject.key, subject.questions, subject.exemplars)
    scores = backend.score_cloze(requests, config, spec.name)
    labeled = not is_unlabeled(spec, prepared.split)
    ids = {(s.key, q.index): q.id for s in prepared.subjects for q in s.questions}
    correct = {s.key: [] for s in prepared.subjects}
    correct_norm = {s.key: [] for s in prepared.subjects}
    predictions: dict[str, dict[str, str]] = {s.key: {} for s in prepared.subjects}
    rows = []
    for score in scores:
        request = score.request
        ident = ids[(request.subject, request.index)]
        predictions[request.subject][ident] = score.prediction
        row = {
            **sample_row(spec, score, ident),
            "loglikelihoods": dict(zip(request.labels, score.loglikelihoods)),
            "greedy": dict(zip(request.labels, score.greedy)),
            "prediction": score.prediction, "prediction_norm": score.prediction_norm,
        }
        if labeled:
            right, right_norm = score.prediction == request.gold, score.prediction_norm == request.gold
            correct[request.subject].append(right)
            correct_norm[request.subject].append(right_norm)
            row.update(gold=request.gold, correct=right, correct_norm=right_norm)
        rows.append(row)
    samples = output.write_samples(spec.name, rows)
    result = {"type": "multiple_choice", "scoring": "cloze", "target_delimiter": spec.target_delimiter,
              **result_header(prepared, config, rows, samples.name)}  # n_unparsed 0: cloze always predicts
    if not labeled:
        file = output.write_predictions(spec.name, prepared.split, predictions)
        return {**result, "predictions_file": file.name, **_no_accuracy(spec, predictions)}
    categories = {k: v.categories for k, v in spec.subjects.items()}
    summary = summarize(correct, categories, spec.categories)
    normed = summarize(correct_norm, categories, spec.categories)
    for key, block in summary["subjects"].items():
        block["name"] = spec.subjects[key].name
    # acc_norm beside acc in every block: the same shape, so nothing that reads acc changes
    for place in ("subjects", "categories"):
        for key, block in summary[place].items():
            _add_norm(block, normed[place][key])
    _add_norm(summary["micro"], normed["micro"])
    _add_norm(summary["macro"], normed["macro"])
    return {**result, **summary}


def _add_norm(block: dict, normed: dict) -> None:
    block["acc_norm"], block["acc_norm_stderr"] = normed["acc"], normed["acc_stderr"]
    if "correct" in normed:
        block["correct_norm"] = normed["correct"]


def norm_rows(name: str, result: dict) -> list[list]:
    """The terminal table's acc_norm lines (micro and macro) for a cloze result."""
    def fmt(block):
        acc, err = block.get("acc_norm"), block.get("acc_norm_stderr")
        return f"{100 * acc:.2f}" if acc is not None else "-", f"{100 * err:.2f}" if err is not None else "-"

    return [[name, "acc_norm (micro)", result["micro"]["n"], *fmt(result["micro"])],
            [name, "acc_norm (macro)", result["micro"]["n"], *fmt(result["macro"])]]
