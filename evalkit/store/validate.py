"""Schemas of the files ``evalkit import`` reads, checked with pydantic before anything is written.

Only the fields that the store, ``evalkit runs``, reports and leaderboards read are constrained
(extra fields pass through untouched), so a file written by an older or newer evalkit still imports,
while a wrong type (``acc: "high"``, a string peak RSS) is refused with the field's path instead
of crashing every later command that reads the store.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import (
    AllowInfNan,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Strict,
    Tag,
    ValidationError,
    model_validator,
)

# JSON numbers (int or float) only: "0.5" and true are refused, and so are NaN and Infinity (Python's
# json module reads them), which would print as "acc inf" and break every comparison downstream.
Number = Annotated[float, Strict(), AllowInfNan(False)]
Fraction = Annotated[float, Strict(), AllowInfNan(False), Field(ge=0, le=1)]  # accuracies are stored as 0..1
Count = Annotated[int, Strict(), Field(ge=0)]
MAX_DEPTH = 64  # evalkit writes at most ~6 levels; deeper is hostile or not ours


class Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class Memory(Open):
    peak_rss_mb: Number | None = None
    cuda_max_allocated_mb: Number | None = None
    cuda_max_reserved_mb: Number | None = None


class Throughput(Open):
    tokens: Number | None = None
    seconds: Number | None = None
    tokens_per_s: Number | None = None


class Profile(Open):
    wall_s: Number | None = None
    model_load_s: Number | None = None
    memory: Memory = Memory()
    throughput: dict[str, Throughput] = {}
    hardware: dict[str, Any] = {}
    perplexity: Number | None = None
    perplexity_llamafactory: Number | None = None


class Accuracy(Open):
    acc: Fraction
    n: Count
    acc_stderr: Number | None = None


class MacroAccuracy(Open):
    acc: Fraction
    groups: Count | None = None
    acc_stderr: Number | None = None


class MultipleChoiceResult(Open):
    type: Literal["multiple_choice"]
    micro: Accuracy
    macro: MacroAccuracy
    subjects: dict[str, Accuracy] = {}
    categories: dict[str, Accuracy] = {}
    samples_file: str | None = None


class PerplexityResult(Open):
    type: Literal["perplexity"]
    perplexity: Number | None = None
    perplexity_llamafactory: Number | None = None
    predicted_tokens: Count | None = None
    documents: Count | None = None
    samples_file: str | None = None


class OtherResult(Open):
    """Generation and future task types: the store reads their numeric fields and n."""

    type: str
    n: Count | None = None
    num_samples: Count | None = None
    exact_match: Fraction | None = None
    samples_file: str | None = None

    @model_validator(mode="after")
    def finite_scores(self):
        """The store records every numeric field of these blocks as a score: each must be a real number."""
        for key, value in (self.model_extra or {}).items():
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"{key} is {value}: a score must be a finite number")
        return self


def _task_type(block: Any) -> str:
    kind = block.get("type") if isinstance(block, dict) else getattr(block, "type", None)
    return kind if kind in ("multiple_choice", "perplexity") else "other"


TaskBlock = Annotated[Annotated[MultipleChoiceResult, Tag("multiple_choice")] | Annotated[PerplexityResult, Tag("perplexity")] | Annotated[OtherResult, Tag("other")], Discriminator(_task_type)]


class Model(Open):
    name: str
    kind: str | None = None


class ResultsFile(Open):
    """``results_*.json`` (evalkit run) and ``profile_*.json`` (evalkit profile)."""

    model: Model
    tasks: dict[str, TaskBlock]
    created_at: str = ""
    evalkit_version: str = ""
    config: dict[str, Any] = {}
    profile: Profile = Profile()
    command: list[str] = []


class TrainManifest(Open):
    """``train_manifest.json`` (evalkit train)."""

    final_loss: Number | None = None
    global_step: Count | None = None
    steps: Count | None = None
    base_model: dict[str, Any] | str | None = None
    command: list[str] = []
    profile: Profile | None = None


def nesting_depth(data: Any) -> int:
    """How deeply lists/objects nest, without recursion (a 100,000-deep file must not overflow the stack)."""
    deepest, stack = 0, [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, (dict, list)):
            deepest = max(deepest, depth)
            if depth <= MAX_DEPTH:
                stack.extend((v, depth + 1) for v in (value.values() if isinstance(value, dict) else value))
    return deepest


def _check(schema: type[BaseModel], data: Any) -> None:
    if nesting_depth(data) > MAX_DEPTH:
        raise ValueError(f"nested more than {MAX_DEPTH} levels deep; not an evalkit file")
    try:
        schema.model_validate(data)
    except ValidationError as exc:
        raise ValueError(describe(exc)) from None


def describe(exc: ValidationError) -> str:
    """The first problem as ``field.path: message`` (one line; the count says if there are more)."""
    errors = exc.errors()
    first = errors[0]
    where = ".".join(str(p) for p in first["loc"]) or "the file"
    more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
    return f"{where}: {first['msg']}{more}"


def check_results(data: Any) -> None:
    """Raise ValueError naming the first bad field of a results/profile file."""
    _check(ResultsFile, data)


def check_manifest(data: Any) -> None:
    _check(TrainManifest, data)


def check_profile(data: Any) -> None:
    _check(Profile, data)
