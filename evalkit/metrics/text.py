"""Text-similarity metrics for generation tasks.

``sample_scores`` reproduces LLaMA-Factory's ``ComputeSimilarity`` (src/llamafactory/train/sft/metric.py)
step for step, so numbers are comparable with its ``predict`` output:

- ROUGE-1/2/L: both texts are cut into words with ``jieba.cut``; if either side has no word after
  whitespace splitting, every ROUGE is 0; otherwise ``rouge_chinese.Rouge().get_scores`` on the
  space-joined words gives F-scores.
- BLEU-4: ``nltk`` ``sentence_bleu([list(reference)], list(prediction), smoothing=method3)`` on
  characters (not words), uniform 4-gram weights.
- Each score is multiplied by 100 and rounded to 4 decimals per sample; the task score is the mean.

What differs is the reference (``scoring_reference``). ``plain`` (the default) scores against the
reference text as written in the data. LLaMA-Factory's ``predict`` scores against the *decoded label*:
the answer plus the template's end of turn (ChatML ``<|im_end|>\n``), tokenised and decoded with special
tokens skipped, so for ChatML templates its reference ends with ``"\n"`` and BLEU-4 is a little lower
(ROUGE is unchanged: jieba's "\n" word is whitespace). ``llamafactory`` rebuilds that label to
reproduce its numbers exactly.

``corpus_sacrebleu`` is a second, differently defined number: sacrebleu's corpus BLEU (n-gram
counts pooled over all samples, one brevity penalty, its own tokenizer), as lm-evaluation-harness
reports it. ``corpus_chrf`` is sacrebleu's chrF the same way (character n-gram F-score, beta 2, n-gram
statistics pooled over the corpus): chrF2 with char_order 6 and word_order 0, or chrF++ (word_order 2), as
lm-eval's ``chrf`` and ``chrf++`` metrics; ``sentence_chrf`` is the same score for one sample.
"""

from __future__ import annotations

import logging

from evalkit.metrics.accuracy import mean_stderr

METRICS = ("bleu-4", "rouge-1", "rouge-2", "rouge-l")
REFERENCE_FORMATS = ("plain", "llamafactory")
CHRF_WORD_ORDER = {"chrf": 0, "chrf++": 2}  # sacrebleu's CHRF defaults otherwise: char_order 6, beta 2


def _jieba():
    import jieba

    jieba.setLogLevel(logging.WARNING)  # it prints "Building prefix dict..." to stderr on first use
    return jieba


def sample_scores(prediction: str, reference: str) -> dict[str, float]:
    """BLEU-4 and ROUGE-1/2/L (0-100, 4 decimals) of one prediction against one reference."""
    from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu
    from rouge_chinese import Rouge

    jieba = _jieba()
    hypothesis = list(jieba.cut(prediction))
    reference_words = list(jieba.cut(reference))
    if not " ".join(hypothesis).split() or not " ".join(reference_words).split():
        rouge = {"rouge-1": {"f": 0.0}, "rouge-2": {"f": 0.0}, "rouge-l": {"f": 0.0}}
    else:
        rouge = Rouge().get_scores(" ".join(hypothesis), " ".join(reference_words))[0]
    scores = {key: round(value["f"] * 100, 4) for key, value in rouge.items()}
    bleu = sentence_bleu([list(reference)], list(prediction), smoothing_function=SmoothingFunction().method3)
    scores["bleu-4"] = round(float(bleu) * 100, 4)  # nltk returns int 0 when no character matches
    return {key: scores[key] for key in METRICS}


def template_suffix(tokenizer) -> str:
    """What the chat template writes after an assistant answer (ChatML: ``"<|im_end|>\n"``)."""
    marker = "EVALKIT-ANSWER-END"
    text = tokenizer.apply_chat_template([{"role": "user", "content": "q"}, {"role": "assistant", "content": marker}],
                                         tokenize=False)
    return text[text.rindex(marker) + len(marker):]


def llamafactory_reference(reference: str, tokenizer, chat: bool) -> str:
    """LLaMA-Factory's decoded label (UnsupervisedDatasetProcessor labels -> ComputeSimilarity's
    ``batch_decode(labels, skip_special_tokens=True)``): answer + template suffix, round-tripped through
    the tokenizer. Plain prompts (no chat template) add no suffix."""
    ids = tokenizer(reference + (template_suffix(tokenizer) if chat else ""), add_special_tokens=False)["input_ids"]
    return tokenizer.decode(ids, skip_special_tokens=True)


def scoring_reference(reference: str, tokenizer, chat: bool, reference_format: str = "plain") -> str:
    """The text BLEU/ROUGE compare a prediction with: the data's reference (``plain``) or LLaMA-Factory's
    decoded label (``llamafactory``)."""
    if reference_format == "llamafactory":
        return llamafactory_reference(reference, tokenizer, chat)
    return reference


def summarize_scores(per_sample: list[dict[str, float]]) -> dict:
    """Mean of each metric over samples, with the standard error of that mean."""
    block: dict = {"n": len(per_sample)}
    for key in METRICS:
        values = [s[key] for s in per_sample]
        block[key] = sum(values) / len(values) if values else None
        block[f"{key}_stderr"] = mean_stderr(values)
    return block


def sacrebleu_tokenizer(language: str) -> str:
    """sacrebleu's 'zh' tokenizer splits CJK characters; '13a' (its default) suits English."""
    return "zh" if language.lower().startswith("zh") else "13a"


def corpus_sacrebleu(predictions: list[str], references: list[str], tokenize: str = "13a") -> dict:
    """sacrebleu corpus BLEU (0-100) with its reproducibility signature."""
    from sacrebleu.metrics import BLEU

    metric = BLEU(tokenize=tokenize)
    result = metric.corpus_score(predictions, [references])
    return {"score": result.score, "signature": str(metric.get_signature()),
            "brevity_penalty": result.bp, "precisions": list(result.precisions)}


def _chrf(metric: str):
    from sacrebleu.metrics import CHRF

    return CHRF(word_order=CHRF_WORD_ORDER[metric])


def corpus_chrf(predictions: list[str], references: list[str], metric: str = "chrf") -> dict:
    """sacrebleu corpus chrF / chrF++ (0-100) with its reproducibility signature."""
    scorer = _chrf(metric)
    return {"score": scorer.corpus_score(predictions, [references]).score, "signature": str(scorer.get_signature())}


def sentence_chrf(prediction: str, reference: str, metric: str = "chrf") -> float:
    """One sample's chrF (0-100, 4 decimals), for the samples file: not averaged into the corpus score."""
    return round(_chrf(metric).sentence_score(prediction, [reference]).score, 4)
