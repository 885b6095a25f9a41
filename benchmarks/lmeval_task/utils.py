"""lm-evaluation-harness helpers for the cmmlu_evalkit_<subject> tasks (run in lm-eval's own venv).

The rows are read with the csv module the way evalkit's reader does (evalkit/tasks/mc_data.py):
``datasets``' csv builder goes through pandas, which infers types (an option "0.50" would become
0.5) and turns "NA"/"None" into NaN, so the prompt text could differ from evalkit's. evalkit itself
is not importable here (different venv), hence this small reader.
"""

from __future__ import annotations

import csv
from pathlib import Path

import datasets

CMMLU = Path(__file__).resolve().parents[2] / "tasks" / "data" / "cmmlu"
FIELDS = ("Question", "A", "B", "C", "D", "Answer")


def read_split(subject: str, split: str) -> list[dict]:
    path = CMMLU / split / f"{subject}.csv"
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle, strict=True)
        header = next(reader)
        positions = [header.index(f) for f in FIELDS]
        rows = []
        for row in reader:
            if not row or all(not cell.strip() for cell in row):
                continue
            record = {f: row[i] for f, i in zip(FIELDS, positions)}
            record["Answer"] = record["Answer"].strip()
            rows.append(record)
    return rows


def load_subject(subject: str, **_metadata) -> datasets.DatasetDict:
    """lm-eval calls ``custom_dataset(**metadata, **dataset_kwargs)``; the subject comes from dataset_kwargs."""
    return datasets.DatasetDict({split: datasets.Dataset.from_list(read_split(subject, split)) for split in ("dev", "test")})


def doc_to_text(doc: dict) -> str:
    # evalkit's llamafactory example format: "{question}\nA. {A}\nB. {B}\nC. {C}\nD. {D}\n答案："
    return f"{doc['Question']}\nA. {doc['A']}\nB. {doc['B']}\nC. {doc['C']}\nD. {doc['D']}\n答案："


def doc_to_target(doc: dict) -> int:
    return "ABCD".index(doc["Answer"])
