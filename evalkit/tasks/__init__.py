from evalkit.tasks.registry import TaskSelection, available_tasks, resolve_tasks
from evalkit.tasks.spec import MultipleChoiceSpec, TaskSpec, load_spec

__all__ = ["MultipleChoiceSpec", "TaskSelection", "TaskSpec", "available_tasks", "load_spec", "resolve_tasks"]
