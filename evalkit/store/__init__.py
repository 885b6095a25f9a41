"""The results store: every evaluation, training and profile run in one SQL database.

    from evalkit.store import record_results, record_training, open_store

SQLite by default (``<user data dir>/evalkit/store.sqlite``, ``EVALKIT_STORE`` or ``--store``
override it); any SQLAlchemy URL (e.g. PostgreSQL) works the same.
"""

from evalkit.store.engine import default_url, normalise_url, open_store
from evalkit.store.identity import model_key, model_label
from evalkit.store.record import (import_directory, record_results, record_results_safely,
                                  record_training)
from evalkit.store.schema import Run, Score, TaskResult

__all__ = ["runs_frame", "scores_frame", "samples_frame", "Run", "Score", "TaskResult", "default_url", "import_directory", "model_key", "model_label",
           "normalise_url", "open_store", "record_results", "record_results_safely", "record_training"]


def __getattr__(name: str):
    """The DataFrame API (evalkit/store/frames.py) imports pandas only when a notebook asks for it."""
    if name in ("runs_frame", "scores_frame", "samples_frame"):
        from evalkit.store import frames

        return getattr(frames, name)
    raise AttributeError(f"module 'evalkit.store' has no attribute {name!r}")
