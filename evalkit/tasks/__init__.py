import csv

from evalkit.tasks.registry import TaskSelection, available_tasks, resolve_tasks
from evalkit.tasks.loading import load_spec
from evalkit.tasks.spec import MultipleChoiceSpec, TaskSpec

# Task data (mc_data.py, generation_data.py) may hold long passages: csv's default 128 KiB per field
# rejects them with a misleading quoting error. 2**31 - 1 is the largest limit every platform takes.
csv.field_size_limit(2**31 - 1)

__all__ = ["MultipleChoiceSpec", "TaskSelection", "TaskSpec", "available_tasks", "load_spec", "resolve_tasks"]
