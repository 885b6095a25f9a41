"""Requests: what the model is asked. Built from a task's questions and a prompt style.

A multiple-choice request keeps the few-shot ``prefix`` (identical for every question of a
subject) apart from the ``question`` text, so a backend can compute the prefix once.
"""

from __future__ import annotations

from dataclasses import dataclass

from evalkit.errors import EvalkitError
from evalkit.tasks.mc_data import LETTERS, Question
from evalkit.tasks.spec import MultipleChoiceSpec, PromptStyle

CHAT_SENTINEL = "\u0000EVALKIT_QUESTION\u0000"


@dataclass(frozen=True)
class MultipleChoiceRequest:
    task: str
    subject: str
    index: int
    prefix: str  # header + exemplars: shared by every request of the subject
    question: str  # this question's text, appended to ``prefix``
    gold: str
    chat: bool = False  # prompt already carries the chat template's special tokens
    labels: tuple[str, ...] = LETTERS  # this question's options: the first len(labels) of the spec's targets

    @property
    def prompt(self) -> str:
        return self.prefix + self.question


def render_options(style: PromptStyle, question: Question) -> str:
    """The ``{options}`` placeholder: one ``style.option`` line ("A. text") per option of the question."""
    return "\n".join(style.option.format(label=label, text=text) for label, text in zip(question.labels, question.choices))


def render_example(style: PromptStyle, question: Question, with_answer: bool) -> str:
    text = style.example.format(**question.fields(), options=render_options(style, question))
    if with_answer:
        text += style.target.format(answer=question.answer) + style.separator
    return text


def build_requests(spec: MultipleChoiceSpec, style_name: str, subject: str, questions: list[Question],
                   exemplars: list[Question], tokenizer=None, chat: bool = False) -> list[MultipleChoiceRequest]:
    if style_name not in spec.prompt_styles:
        raise EvalkitError(f"{spec.path}: no prompt style {style_name!r}; available: {', '.join(spec.prompt_styles)}")
    style = spec.prompt_styles[style_name]
    header = style.header.format(subject=spec.subjects[subject].name)
    if chat:
        return [_chat_request(spec, style, header, subject, q, exemplars, tokenizer) for q in questions]
    prefix = header + "".join(render_example(style, e, True) for e in exemplars)
    return [MultipleChoiceRequest(spec.name, subject, q.index, prefix, render_example(style, q, False), q.answer,
                                  labels=q.labels) for q in questions]


def _chat_request(spec, style, header, subject, question, exemplars, tokenizer) -> MultipleChoiceRequest:
    """LLaMA-Factory's chat layout: exemplars as user/assistant turns, header on the first turn."""
    if tokenizer is None or not getattr(tokenizer, "chat_template", None):
        raise EvalkitError("--apply-chat-template: no chat template to render with (the model's tokenizer has none; "
                          "with --backend openai pass --tokenizer MODEL); drop the flag or name a tokenizer")

    def render(final_text: str) -> str:
        messages = []
        for e in exemplars:
            messages.append({"role": "user", "content": render_example(style, e, False)})
            messages.append({"role": "assistant", "content": style.target.format(answer=e.answer).strip()})
        messages.append({"role": "user", "content": final_text})
        messages[0]["content"] = header + messages[0]["content"]
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    full = render(render_example(style, question, False))
    # The shared prefix is whatever the rendering has in common with a placeholder question.
    probe = render(CHAT_SENTINEL)
    cut = probe.index(CHAT_SENTINEL)
    while not full.startswith(probe[:cut]):
        cut -= 1
    return MultipleChoiceRequest(spec.name, subject, question.index, full[:cut], full[cut:], question.answer, chat=True,
                                 labels=question.labels)


def choice_targets(spec: MultipleChoiceSpec, style_name: str) -> list[str]:
    """The continuation whose first token is scored for each of the spec's labels ("A" or " A"), in label order.

    A question with fewer options is scored over the first ``len(request.labels)`` of them only."""
    style = spec.prompt_styles[style_name]
    return [style.target.format(answer=label) for label in spec.option_labels]


@dataclass(frozen=True)
class ClozeRequest:
    """A question scored as cloze: each option's text, after ``delimiter``, as a continuation of the prompt."""

    task: str
    subject: str
    index: int
    prefix: str  # header + exemplars: shared by every request of the subject
    question: str  # this question's text, appended to ``prefix``
    gold: str | None  # the answer's label; None in a split without answers
    choices: tuple[str, ...]  # the option texts, in label order
    labels: tuple[str, ...] = LETTERS
    delimiter: str = " "  # the spec's target_delimiter, put before each option's text

    @property
    def prompt(self) -> str:
        return self.prefix + self.question

    @property
    def continuations(self) -> tuple[str, ...]:
        return tuple(self.delimiter + choice for choice in self.choices)


def build_cloze_requests(spec: MultipleChoiceSpec, style_name: str, subject: str, questions: list[Question],
                         exemplars: list[Question]) -> list[ClozeRequest]:
    """lm-evaluation-harness's multiple_choice layout: header, then per exemplar its example, its answer (the
    style's target with ``{answer}`` = the answer's text; by default target_delimiter + text) and the separator,
    then the question's example. The options, each after target_delimiter, are the scored continuations."""
    style = spec.prompt_styles[style_name]
    header = style.header.format(subject=spec.subjects[subject].name)
    shots = "".join(render_example(style, e, False) + style.target.format(answer=e.choices[e.labels.index(e.answer)])
                    + style.separator for e in exemplars)
    return [ClozeRequest(spec.name, subject, q.index, header + shots, render_example(style, q, False), q.answer,
                         q.choices, q.labels, spec.target_delimiter) for q in questions]
