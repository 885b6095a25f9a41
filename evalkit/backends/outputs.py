"""What every backend returns, and the rules they share: no torch, no backend library.

Like lighteval's ``model_output.py``: the result types and the few rules that make backends agree
(how a generation is cut and cleaned, how letter log-probabilities become probabilities, what a
timing record holds) live here once, so ``openai`` builds results without importing the hf engine.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

from evalkit.errors import EvalkitError

if TYPE_CHECKING:
    from evalkit.requests import ClozeRequest, MultipleChoiceRequest


@dataclass
class ChoiceScore:
    """One multiple-choice question: the probabilities over its own answer labels and the label chosen."""

    request: MultipleChoiceRequest
    probabilities: list[float] | None  # softmax over request.labels; None where the backend parsed a letter from text
    prediction: str | None  # None: no letter could be parsed (counted as unparsed, scored wrong)
    prompt_tokens: int
    truncated: bool  # the prompt lost its first tokens to fit the context (--truncation left)

    @property
    def correct(self) -> bool:
        return self.prediction == self.request.gold


@dataclass
class ClozeScore:
    """One question scored as cloze: per option, the summed log-likelihood of its continuation (nats)."""

    request: ClozeRequest
    loglikelihoods: list[float]  # one per option, in label order
    greedy: list[bool]  # per option: every continuation token was the argmax (lm-eval's is_greedy)
    prompt_tokens: int
    truncated: bool  # the prompt lost its first tokens to fit the context (--truncation left)

    @property
    def prediction(self) -> str:
        """acc: the option with the highest log-likelihood (the first on a tie, as numpy's argmax)."""
        return best_letter(self.loglikelihoods, self.request.labels)

    @property
    def prediction_norm(self) -> str:
        """acc_norm as lm-evaluation-harness defines it: log-likelihood over the option text's length in
        characters (the choice itself, without the delimiter)."""
        return best_letter([ll / max(len(c), 1) for ll, c in zip(self.loglikelihoods, self.request.choices)],
                           self.request.labels)


@dataclass
class Generation:
    """One greedy continuation, cleaned by ``clean_generation``."""

    text: str  # decoded continuation, cut at the first stop string, surrounding whitespace removed
    prompt_tokens: int
    new_tokens: int  # tokens generated, up to and including EOS
    finish: str  # "eos", "stop" (a stop string) or "length" (max_new_tokens reached)
    truncated: bool  # the prompt lost its first tokens to fit the context (--truncation left)
    tokens: list[int]  # the generated ids (up to EOS / the stop string), for exact comparisons; [] over an API
    prompt: str = ""  # what was sent: the rendered prompt (or, for chat APIs, the messages as JSON)


def clean_generation(text: str, stop: tuple[str, ...], finish: str) -> tuple[str, str]:
    """The text evalkit scores: cut at the first stop string, a half-decoded last character dropped, stripped.

    Every backend applies this one rule so their texts compare exactly. A continuation cut at
    ``max_new_tokens`` can end inside a multi-byte character, which decodes to U+FFFD.
    """
    cut = min((text.find(s) for s in stop if s in text), default=-1)
    if cut >= 0:
        text, finish = text[:cut], "stop"
    return drop_partial_character(text, finish).strip(), finish


def drop_partial_character(text: str, finish: str) -> str:
    """A continuation cut at the token limit ("length") loses its half-decoded last character (U+FFFD).

    ``evalkit serve`` applies this alone: a server leaves the surrounding whitespace to its client.
    """
    return text.rstrip("\ufffd") if finish == "length" else text


def letter_probabilities(logprobs: Sequence[float]) -> list[float]:
    """Softmax in float64 over the letters' log-probabilities (or logits: a shared shift cancels)."""
    peak = max(logprobs)
    weights = [math.exp(value - peak) for value in logprobs]
    total = sum(weights)
    return [weight / total for weight in weights]


def best_letter(probabilities: Sequence[float], letters: Sequence[str]) -> str:
    """The letter with the highest probability; the first one on a tie (as argmax)."""
    return letters[max(range(len(probabilities)), key=probabilities.__getitem__)]


# --mc-mode generate: the first letter A-D of the answer, alone or followed by ".", ")" or a non-letter.
PARSE_RULE = re.compile(r"^\W*([ABCD])(?![A-Za-z])")


@functools.lru_cache(maxsize=64)
def parse_rule(labels: tuple[str, ...]) -> re.Pattern:
    """PARSE_RULE for a question's own labels: the first label of the answer, not run on into a letter
    (nor a digit, for digit labels: "12" is not "1")."""
    if labels == ("A", "B", "C", "D"):
        return PARSE_RULE
    alternatives = "|".join(re.escape(label) for label in sorted(labels, key=len, reverse=True))
    after = "A-Za-z0-9" if any(c.isdigit() for label in labels for c in label) else "A-Za-z"
    return re.compile(rf"^\W*({alternatives})(?![{after}])")


def option_count(request: MultipleChoiceRequest, targets: Sequence[str]) -> int:
    """How many of ``targets`` (the spec's labels, in order) are this question's options: its first ones."""
    count = len(request.labels)
    if not 2 <= count <= len(targets):
        raise EvalkitError(f"{request.task} {request.subject} #{request.index} has {count} options but the task "
                           f"scores {len(targets)} labels; a backend was handed mismatched targets")
    return count


def options_key(request: MultipleChoiceRequest, targets: Sequence[str]) -> dict:
    """The request-cache key's part for a question with fewer options than ``targets``: {} for a full one,
    so the keys (and cached answers) of full questions stay what they were before labels varied."""
    count = option_count(request, targets)
    return {} if count == len(targets) else {"options": count}


def choice_token_ids(tokenizer, targets: list[str]) -> list[int]:
    """Last token of each letter's encoding, as LLaMA-Factory does (``encode(ch)[-1]``)."""
    ids = [tokenizer.encode(t, add_special_tokens=False)[-1] for t in targets]
    if len(set(ids)) != len(ids):
        raise EvalkitError(f"the tokenizer maps the answer letters {targets} to non-distinct tokens {ids}; "
                           "use another --prompt-style")
    return ids


def generation_timing(seconds: float, generations: Sequence[Generation], **settings) -> dict:
    """The ``timing`` record of one ``generate`` call: seconds, new tokens, their rate, and the batching used."""
    total = sum(g.new_tokens for g in generations)
    return {"generate_s": round(seconds, 3), "new_tokens": total,
            "tokens_per_s": round(total / seconds, 2) if seconds > 0 else None, **settings}
