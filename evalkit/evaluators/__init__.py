"""One evaluator per task type. Each loads and checks its data before any model time is spent
(``prepare``), then scores with a loaded model (``run``) and formats its part of the table."""

from evalkit.evaluators.base import EVALUATORS, RunConfig, TaskEvaluator

__all__ = ["EVALUATORS", "RunConfig", "TaskEvaluator"]
