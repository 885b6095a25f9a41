"""Exact match for generation tasks with one right answer (GSM8K): extract, normalise, compare.

A spec's ``scoring`` block chooses every step; each sample comes out right or wrong (``correct``), so two
models are compared with McNemar's exact test like multiple-choice accuracy. The steps, in order:

1. **extract** the answer from the generation: rules tried in order, the first rule that matches gives
   the answer. A rule is a ``regex`` and ``select`` (``first`` or ``last`` match); the answer is the
   match's ``group`` when given, else its first non-empty group, else the whole match (lm-evaluation-
   harness' ``regex`` filter with ``group_select`` 0 / -1). No rule matching gives ``fallback`` (null: the
   sample is wrong, as lm-eval's ``[invalid]``). No rules: the whole generation. ``reference_extract``
   does the same to the reference (GSM8K: the number after ``####``); a reference it cannot read is an error.
2. **ignore_regexes**: every match of each is deleted from both sides (lm-eval's ``regexes_to_ignore``).
3. **normalise** (applied in this order whatever the list order): ``case`` (lower-case), ``punctuation``
   (drop ASCII punctuation, lm-eval's ``ignore_punctuation``), ``articles`` (drop the words a/an/the),
   ``numbers`` (drop digits, lm-eval's ``ignore_numbers``), ``whitespace`` (collapse runs, strip ends).
   ``squad`` is SQuAD's normalisation: case, punctuation, articles, whitespace.
4. **match**: ``text`` compares the normalised strings; ``numeric`` first reads both sides as numbers
   (``parse_number``: "$1,000.00." is 1000) and compares their values, so "1,000" == "1000", "3.0" == "3"
   and "$5" == "5"; a side that is not a number falls back to the normalised-text comparison.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path

from evalkit.errors import EvalkitError
from evalkit.metrics.accuracy import mean_stderr

NORMALISATIONS = ("case", "punctuation", "articles", "numbers", "whitespace")
PRESETS = {"squad": ("case", "punctuation", "articles", "whitespace")}
MATCHES = ("text", "numeric")
SELECTS = ("first", "last")
SCORING_METRICS = ("bleu_rouge", "exact_match", "chrf", "chrf++")  # chrf: BLEU/ROUGE plus corpus chrF (text.py)
_ARTICLES = re.compile(r"\b(a|an|the)\b", re.IGNORECASE)
_PUNCTUATION = str.maketrans("", "", string.punctuation)
_DIGITS = str.maketrans("", "", string.digits)
_NUMBER = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)")


@dataclass(frozen=True)
class ExtractRule:
    regex: re.Pattern
    select: str = "first"
    group: int | None = None

    def apply(self, text: str) -> str | None:
        matches = list(self.regex.finditer(text))
        if not matches:
            return None
        match = matches[0] if self.select == "first" else matches[-1]
        if self.group is not None:
            value = match.group(self.group)
        elif self.regex.groups:
            value = next((g for g in match.groups() if g), None)
        else:
            value = match.group(0)
        return None if value is None else value.strip()


@dataclass(frozen=True)
class ExactMatchScoring:
    extract: tuple[ExtractRule, ...] = ()
    fallback: str | None = None
    reference_extract: tuple[ExtractRule, ...] = ()
    ignore_regexes: tuple[re.Pattern, ...] = ()
    normalise: tuple[str, ...] = ()
    match: str = "text"

    @classmethod
    def from_dict(cls, raw: dict, path: Path) -> ExactMatchScoring:
        where = f"{path}: scoring"
        fallback = raw.get("fallback")
        if fallback is not None and not isinstance(fallback, str):
            raise EvalkitError(f"{where}.fallback must be a string or null (null: no match counts as wrong)")
        steps = _normalisations(raw.get("normalise", []), where)
        match = raw.get("match", "text")
        if match not in MATCHES:
            raise EvalkitError(f"{where}.match {match!r} is not one of {', '.join(MATCHES)}")
        ignore = raw.get("ignore_regexes") or []
        if not isinstance(ignore, list) or not all(isinstance(p, str) and p for p in ignore):
            raise EvalkitError(f"{where}.ignore_regexes must be a list of non-empty regular expressions")
        return cls(_rules(raw.get("extract"), f"{where}.extract"), fallback,
                   _rules(raw.get("reference_extract"), f"{where}.reference_extract"),
                   tuple(_compile(p, f"{where}.ignore_regexes") for p in ignore), steps, match)

    def describe(self) -> dict:
        """The choices as plain data, for the results file."""
        def rules(items):
            return [{"regex": r.regex.pattern, "select": r.select, "group": r.group} for r in items]

        return {"extract": rules(self.extract), "fallback": self.fallback,
                "reference_extract": rules(self.reference_extract),
                "ignore_regexes": [p.pattern for p in self.ignore_regexes], "normalise": list(self.normalise),
                "match": self.match}


def _rules(value, where: str) -> tuple[ExtractRule, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise EvalkitError(f"{where} must be a list of rules like {{regex: '#### (\\-?[0-9.,]+)', select: first}}")
    rules = []
    for number, item in enumerate(value):
        at = f"{where}[{number}]"
        if not isinstance(item, dict) or not isinstance(item.get("regex"), str) or not item["regex"]:
            raise EvalkitError(f"{at} needs a 'regex' (a non-empty regular expression)")
        select = item.get("select", "first")
        if select not in SELECTS:
            raise EvalkitError(f"{at}.select {select!r} is not one of {', '.join(SELECTS)}")
        pattern = _compile(item["regex"], f"{at}.regex")
        group = item.get("group")
        if group is not None and (isinstance(group, bool) or not isinstance(group, int) or not 0 <= group <= pattern.groups):
            raise EvalkitError(f"{at}.group {group!r}: the regex has {pattern.groups} group(s); use 0..{pattern.groups}")
        rules.append(ExtractRule(pattern, select, group))
    return tuple(rules)


def _compile(pattern: str, where: str) -> re.Pattern:
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise EvalkitError(f"{where} {pattern!r} is not a valid regular expression ({exc}); fix it") from None


def _normalisations(value, where: str) -> tuple[str, ...]:
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise EvalkitError(f"{where}.normalise must be a list of {', '.join(NORMALISATIONS)} (or 'squad')")
    chosen: set[str] = set()
    for name in names:
        if name not in NORMALISATIONS and name not in PRESETS:
            raise EvalkitError(f"{where}.normalise {name!r} is not one of {', '.join(NORMALISATIONS)}, squad")
        chosen.update(PRESETS.get(name, (name,)))
    return tuple(n for n in NORMALISATIONS if n in chosen)


def extract(text: str, rules: tuple[ExtractRule, ...], fallback: str | None = None) -> tuple[str | None, int | None]:
    """(answer, index of the rule that gave it); (fallback, None) when no rule matches."""
    if not rules:
        return text, None
    for number, rule in enumerate(rules):
        answer = rule.apply(text)
        if answer is not None:
            return answer, number
    return fallback, None


def normalise_text(text: str, steps: tuple[str, ...] = (), ignore_regexes: tuple[re.Pattern, ...] = ()) -> str:
    for pattern in ignore_regexes:
        text = pattern.sub("", text)
    if "case" in steps:
        text = text.lower()
    if "punctuation" in steps:
        text = text.translate(_PUNCTUATION)
    if "articles" in steps:
        text = _ARTICLES.sub(" ", text)
    if "numbers" in steps:
        text = text.translate(_DIGITS)
    if "whitespace" in steps:
        text = " ".join(text.split())
    return text


def parse_number(text: str) -> Decimal | None:
    """The number a short answer states, or None: "$1,000" -> 1000, "3.0" -> 3, "-7." -> -7, "(12)" -> 12.

    Thousands commas and dollar signs are dropped, then punctuation at either end (a sign or a leading
    decimal point of the number itself is kept)."""
    text = text.replace(",", "").replace("$", "").strip()
    text = text.rstrip(string.punctuation + string.whitespace)
    while text and text[0] in string.punctuation + string.whitespace and not _NUMBER.match(text):
        text = text[1:]
    if not _NUMBER.fullmatch(text):
        return None
    try:
        return Decimal(text)
    except InvalidOperation:
        return None


def answers_equal(answer: str, gold: str, scoring: ExactMatchScoring) -> bool:
    answer = normalise_text(answer, (), scoring.ignore_regexes)
    gold = normalise_text(gold, (), scoring.ignore_regexes)
    if scoring.match == "numeric":
        a, b = parse_number(answer), parse_number(gold)
        if a is not None and b is not None:
            return a == b
    return normalise_text(answer, scoring.normalise) == normalise_text(gold, scoring.normalise)


def reference_answer(reference: str, scoring: ExactMatchScoring, where: str) -> str:
    gold, _ = extract(reference, scoring.reference_extract)
    if gold is None:
        raise EvalkitError(f"{where}: scoring.reference_extract finds no answer in the reference "
                           f"{reference[-60:]!r}; fix the row or the rule")
    return gold


def score_sample(prediction: str, gold: str, scoring: ExactMatchScoring) -> dict:
    """The per-sample fields: the extracted answer, the rule that found it and whether it is right."""
    answer, rule = extract(prediction, scoring.extract, scoring.fallback)
    correct = answer is not None and answers_equal(answer, gold, scoring)
    return {"answer": answer, "gold": gold, "extracted_by": rule, "correct": correct}


def summarize_exact_match(correct: list[bool]) -> dict:
    """Share right, with the standard error of that mean (lm-eval's exact_match_stderr)."""
    values = [1.0 if c else 0.0 for c in correct]
    n = len(values)
    return {"n": n, "correct": int(sum(values)), "exact_match": sum(values) / n if n else None,
            "exact_match_stderr": mean_stderr(values)}
