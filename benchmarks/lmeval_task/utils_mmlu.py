"""lm-evaluation-harness helpers for the mmlu_cloze_evalkit_<subject> tasks (run in lm-eval's own venv).

lm-eval's own mmlu_continuation task files supply the prompt, the choices and the metrics; this only
replaces their data source (the hub's cais/mmlu) with evalkit's vendored MMLU CSVs, read with the csv
module as evalkit reads them (evalkit/tasks/mc_data.py), in the hub's columns: question, choices, answer.
"""

from __future__ import annotations

import csv
from pathlib import Path

import datasets

MMLU = Path(__file__).resolve().parents[2] / "tasks" / "data" / "mmlu"


def read_split(subject: str, split: str) -> list[dict]:
    with open(MMLU / split / f"{subject}_{split}.csv", newline="", encoding="utf-8-sig") as handle:
        rows = []
        for row in csv.reader(handle, strict=True):
            if not row or all(not cell.strip() for cell in row):
                continue
            question, *choices, answer = row
            rows.append({"question": question, "subject": subject, "choices": choices,
                         "answer": "ABCD".index(answer.strip())})
    return rows


def load_subject(subject: str, **_metadata) -> datasets.DatasetDict:
    """lm-eval calls ``custom_dataset(**metadata, **dataset_kwargs)``; the subject comes from dataset_kwargs."""
    return datasets.DatasetDict({split: datasets.Dataset.from_list(read_split(subject, split)) for split in ("dev", "test")})
