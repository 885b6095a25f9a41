from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Protocol

from evalkit.results import RunOutput
from evalkit.tasks.registry import TaskSelection


@dataclass
class RunConfig:
    num_fewshot: int = 0
    fewshot_given: bool = False  # --num-fewshot was passed: generation specs with a fewshot source then obey it, 0 too
    limit: int | None = None
    batch_size: int | str = 1
    prompt_style: str = "llamafactory"
    apply_chat_template: bool = False
    truncation: str = "error"  # or "left"
    seed: int = 1234
    progress: bool = True
    full_prompt: bool = False  # multiple choice: compute every prompt whole (no prefix reuse)
    max_new_tokens: int | None = None  # generation: None = the task spec's max_new_tokens
    no_chat_template: bool = False  # generation: plain prompts even when the model has a chat template
    use_cache: bool = True  # read and write the request cache (resume after a kill; --no-cache turns it off)
    threads: int | None = None  # torch CPU threads used (--threads; recorded, results do not depend on it)
    threads_seen: dict | None = None  # --threads auto: the cores and how idle they were when it chose
    split: str | None = None  # multiple choice: score this split instead of the spec's eval_split
    reference_format: str = "plain"  # generation: plain | llamafactory (see evalkit.metrics.text)

    def record(self) -> dict:
        return asdict(self)


class TaskEvaluator(Protocol):
    def prepare(self, selection: TaskSelection, config: RunConfig) -> Any: ...

    def run(self, prepared: Any, backend: Any, config: RunConfig, output: RunOutput) -> dict: ...

    def table(self, name: str, result: dict) -> list[list]: ...


EVALUATORS: dict[str, TaskEvaluator] = {}


def register(task_type: str):
    def wrap(cls):
        EVALUATORS[task_type] = cls()
        return cls

    return wrap
