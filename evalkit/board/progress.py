"""What a job page shows of a running job: its progress (from the progress bar's own line in the log) and,
for training, the loss curves (from ``trainer_log.jsonl``, which ``evalkit train`` writes as it logs)."""

from __future__ import annotations

import json
import re
from pathlib import Path

# tqdm's line: "cmmlu:  45%|####5     | 150/335 [00:32<00:32,  5.62q/s, cached=0]"; the ETA is "?" at first
_BAR = re.compile(r"(?:(?P<label>[^|\r\n]*?):\s*)?\d+%\|[^|]*\|\s*(?P<done>\d+)/(?P<total>\d+)\s*"
                  r"\[(?P<elapsed>[\d:]+)<(?P<eta>[\d:?]+)")


def parse_progress(line: str) -> dict | None:
    """``{label, done, total, elapsed, eta}`` of a progress bar's line, or None for any other line."""
    match = _BAR.search(line)
    if match is None:
        return None
    found = match.groupdict()
    return {"label": (found["label"] or "").strip(), "done": int(found["done"]), "total": int(found["total"]),
            "elapsed": found["elapsed"], "eta": found["eta"]}


def training_output_dir(argv: list[str]) -> Path | None:
    """The checkpoint directory of an `evalkit train RECIPE [key=value ...]` job (relative to the worker's
    folder, as the job resolves it), or None for other jobs and for a recipe that no longer loads."""
    if not argv or argv[0] != "train" or len(argv) < 2:
        return None
    from evalkit.errors import EvalkitError
    from evalkit.train.recipe import load_recipe

    try:
        return Path(load_recipe(argv[1], [a for a in argv[2:] if "=" in a and not a.startswith("-")]).output_dir)
    except (EvalkitError, OSError):
        return None


def read_curve(path: Path, start: int = 0, limit: int = 1 << 20) -> tuple[list[dict], int]:
    """The loss points written after byte ``start`` (whole lines only) and the offset after them."""
    try:
        with open(path, "rb") as handle:
            handle.seek(start)
            chunk = handle.read(limit)
    except OSError:
        return [], start
    complete = chunk[: chunk.rfind(b"\n") + 1]
    points = []
    for line in complete.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue  # a torn line from a killed run: skipped, the rest still plotted
        if isinstance(entry, dict) and isinstance(entry.get("current_steps"), int):
            points.append({key: entry[key] for key in ("current_steps", "total_steps", "loss", "eval_loss")
                           if isinstance(entry.get(key), (int, float))})
    return points, start + len(complete)


def earlier_curves(job, all_jobs, most: int = 5) -> list[dict]:
    """The loss curves of the latest earlier jobs that trained the same recipe, to overlay on this one's."""
    curves = []
    for other in all_jobs:  # newest first
        if other.id >= job.id or other.argv[:2] != job.argv[:2] or other.state != "done":
            continue
        directory = training_output_dir(other.argv)
        points = read_curve(directory / "trainer_log.jsonl")[0] if directory else []
        if points:
            curves.append({"job": other.id, "points": points})
        if len(curves) == most:
            break
    return curves
