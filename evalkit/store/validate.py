"""Schemas of the files ``evalkit import`` reads, checked with pydantic before anything is written.

Only the fields that the store, ``evalkit runs``, reports and leaderboards read are constrained
(extra fields pass through untouched), so a file written by an older or newer evalkit still imports,
while a wrong type (``acc: "high"``, a string peak RSS) is refused with the field's path instead
of crashing every later command that reads the store.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Discriminator, StrictFloat, StrictInt, Tag, ValidationError

Number = StrictFloat  # JSON numbers (int or float) only: "0.5" and true are refused


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
    acc: Number
    n: StrictInt
    acc_stderr: Number | None = None


class MacroAccuracy(Open):
    acc: Number
    groups: StrictInt | None = None
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
    predicted_tokens: StrictInt | None = None
    documents: StrictInt | None = None
    samples_file: str | None = None


class OtherResult(Open):
    """Generation and future task types: the store reads their numeric fields and n."""

    type: str
    n: StrictInt | None = None
    num_samples: StrictInt | None = None
    samples_file: str | None = None


def _task_type(block: Any) -> str:
    kind = block.get("type") if isinstance(block, dict) else getattr(block, "type", None)
    return kind if kind in ("multiple_choice", "perplexity") else "other"


TaskBlock = Annotated[Union[Annotated[MultipleChoiceResult, Tag("multiple_choice")],
                            Annotated[PerplexityResult, Tag("perplexity")],
                            Annotated[OtherResult, Tag("other")]], Discriminator(_task_type)]


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
    global_step: StrictInt | None = None
    steps: StrictInt | None = None
    base_model: dict[str, Any] | str | None = None
    command: list[str] = []
    profile: Profile | None = None


def _check(schema: type[BaseModel], data: Any) -> None:
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
