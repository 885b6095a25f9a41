"""BLEU-4 / ROUGE as LLaMA-Factory computes them, checked against values worked out by hand.

Expected numbers are derived here from first principles (n-gram counts written out in comments,
or counted by the small independent helpers below), never copied from a run of the code.
"""

from __future__ import annotations

import math
from collections import Counter

import pytest

from evalkit.metrics.text import corpus_sacrebleu, sacrebleu_tokenizer, sample_scores, summarize_scores


def f1(p: float, r: float) -> float:
    """rouge_chinese's F: 2PR/(P+R+1e-8), x100, 4 decimals."""
    return round(100 * 2 * p * r / (p + r + 1e-8), 4)


def char_ngrams(text: str, n: int) -> Counter:
    return Counter(text[i:i + n] for i in range(len(text) - n + 1))


def independent_bleu4(prediction: str, reference: str) -> float:
    """Sentence BLEU-4 on characters: clipped n-gram precisions, geometric mean, brevity penalty.

    Zero precisions follow NIST smoothing (nltk method3): the k-th zero becomes 1 / (2^k * total).
    """
    precisions, k = [], 0
    for n in range(1, 5):
        hyp, ref = char_ngrams(prediction, n), char_ngrams(reference, n)
        total = max(sum(hyp.values()), 1)
        matches = sum(min(c, ref[g]) for g, c in hyp.items())
        if n == 1 and matches == 0:
            return 0.0
        if matches == 0:
            k += 1
            precisions.append(1 / (2 ** k * total))
        else:
            precisions.append(matches / total)
    c, r = len(prediction), len(reference)
    bp = 1.0 if c > r else math.exp(1 - r / c)
    return round(100 * bp * math.exp(sum(math.log(p) for p in precisions) / 4), 4)


def test_chinese_pair_by_hand():
    import jieba

    # jieba words: 我 / 喜欢 / 吃 / 苹果  vs  我 / 喜欢 / 吃 / 香蕉 (checked, the rest depends on it)
    assert list(jieba.cut("我喜欢吃苹果")) == ["我", "喜欢", "吃", "苹果"]
    assert list(jieba.cut("我喜欢吃香蕉")) == ["我", "喜欢", "吃", "香蕉"]
    scores = sample_scores("我喜欢吃苹果", "我喜欢吃香蕉")
    # unigrams: 3 of 4 shared each way; bigrams (我 喜欢)(喜欢 吃) of 3; LCS 我 喜欢 吃 = 3 of 4
    assert scores["rouge-1"] == f1(3 / 4, 3 / 4) == 75.0
    assert scores["rouge-2"] == f1(2 / 3, 2 / 3) == 66.6667
    assert scores["rouge-l"] == f1(3 / 4, 3 / 4)
    # characters: 1-grams 4/6, 2-grams 3/5 (我喜 喜欢 欢吃), 3-grams 2/4, 4-grams 1/3 (我喜欢吃); equal lengths, BP = 1
    assert scores["bleu-4"] == round(100 * (4 / 6 * 3 / 5 * 2 / 4 * 1 / 3) ** 0.25, 4) == 50.8133


def test_zero_higher_order_matches_use_method3_smoothing():
    # 我喜欢苹果 vs 我爱吃苹果: 1-grams 3/5 (我 苹 果), 2-grams 1/4 (苹果), 3-grams 0/3, 4-grams 0/2
    # method3: first zero -> 1/(2*3), second zero -> 1/(4*2)
    scores = sample_scores("我喜欢苹果", "我爱吃苹果")
    assert scores["bleu-4"] == round(100 * (3 / 5 * 1 / 4 * 1 / 6 * 1 / 8) ** 0.25, 4)
    assert scores["bleu-4"] == independent_bleu4("我喜欢苹果", "我爱吃苹果")


def test_brevity_penalty():
    # every n-gram of 我喜欢吃 is in the reference: precisions 1, BP = exp(1 - 6/4)
    assert sample_scores("我喜欢吃", "我喜欢吃苹果")["bleu-4"] == round(100 * math.exp(1 - 6 / 4), 4)


def test_english_pair_by_hand():
    scores = sample_scores("the cat sat on the mat", "the cat is on the mat")
    # ROUGE counts distinct n-grams (rouge_chinese's exclusive sets): {the cat sat on mat} vs {the cat is on mat}: 4/5
    assert scores["rouge-1"] == f1(4 / 5, 4 / 5)
    # bigrams: the-cat, on-the, the-mat shared; 5 distinct each
    assert scores["rouge-2"] == f1(3 / 5, 3 / 5) == 60.0
    # LCS over the 6 words: the cat on the mat = 5
    assert scores["rouge-l"] == f1(5 / 6, 5 / 6) == 83.3333
    # BLEU-4 on characters, spaces included (not words)
    assert scores["bleu-4"] == independent_bleu4("the cat sat on the mat", "the cat is on the mat")
    assert scores["bleu-4"] != pytest.approx(0.0)


@pytest.mark.parametrize("prediction", ["", "   \n "])
def test_empty_prediction_scores_zero_rouge(prediction):
    scores = sample_scores(prediction, "the cat is on the mat")
    assert scores["rouge-1"] == scores["rouge-2"] == scores["rouge-l"] == 0.0
    assert isinstance(scores["bleu-4"], float)
    if prediction == "":
        assert scores["bleu-4"] == 0.0


def test_summary_is_mean_with_stderr():
    per_sample = [{"bleu-4": 10.0, "rouge-1": 20.0, "rouge-2": 0.0, "rouge-l": 30.0},
                  {"bleu-4": 30.0, "rouge-1": 40.0, "rouge-2": 0.0, "rouge-l": 50.0}]
    block = summarize_scores(per_sample)
    assert block["n"] == 2 and block["bleu-4"] == 20.0 and block["rouge-l"] == 40.0
    # sample stdev of (10, 30) is sqrt(200); stderr = sqrt(200)/sqrt(2) = 10
    assert block["bleu-4_stderr"] == pytest.approx(10.0)
    assert block["rouge-2_stderr"] == 0.0


def test_sacrebleu_pools_counts_over_the_corpus():
    """Corpus BLEU sums n-gram matches over all samples before the geometric mean: not a mean of sentence BLEUs."""
    predictions = ["我喜欢吃苹果", "今天天气很好我们去公园散步吧"]
    references = ["我喜欢吃香蕉", "今天天气很好我们去公园散步吧"]
    result = corpus_sacrebleu(predictions, references, tokenize="zh")
    assert "tok:zh" in result["signature"] and "nrefs:1" in result["signature"]
    # sacrebleu's zh tokenizer splits every CJK character, so its n-grams are character n-grams
    precisions = []
    for n in range(1, 5):
        matches = total = 0
        for p, r in zip(predictions, references):
            hyp, ref = char_ngrams(p, n), char_ngrams(r, n)
            matches += sum(min(c, ref[g]) for g, c in hyp.items())
            total += sum(hyp.values())
        precisions.append(matches / total)
    expected = 100 * math.exp(sum(math.log(p) for p in precisions) / 4)  # equal total lengths: BP = 1
    assert result["score"] == pytest.approx(expected, abs=1e-9)
    mean_sentence = sum(sample_scores(p, r)["bleu-4"] for p, r in zip(predictions, references)) / 2
    assert abs(result["score"] - mean_sentence) > 1.0


def test_sacrebleu_tokenizer_by_language():
    assert sacrebleu_tokenizer("zh") == "zh" and sacrebleu_tokenizer("en") == "13a"
    assert "tok:13a" in corpus_sacrebleu(["a b c d"], ["a b c d"])["signature"]
    assert corpus_sacrebleu(["the cat sat on the mat"], ["the cat sat on the mat"])["score"] == pytest.approx(100.0)
