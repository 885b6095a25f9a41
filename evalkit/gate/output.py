"""The verdict three ways: a table on stdout, a Markdown summary (CI step summary, PR comment), a JSON file."""

from __future__ import annotations

import json
import math
from pathlib import Path

from tabulate import tabulate

from evalkit.errors import EvalkitError
from evalkit.report.significance import format_p

HEADERS = ["task", "group", "n", "baseline", "candidate", "delta", "p (Holm)", "threshold", "status"]


def _number(value, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}"


def _cells(row: dict) -> list[str]:
    group = row["group"] if row["level"] in ("overall", "profile") else f"{row['level']}: {row.get('name') or row['group']}"
    p = row.get("p_adjusted")
    stat = format_p(p) if p is not None else (row.get("test") or "-") if row["check"] != "paired" else "-"
    delta = row["delta"]
    return [row["task"], group, str(row["n"] or "-"), _number(row["base"]), _number(row["candidate"]),
            "-" if delta is None else f"{delta:+.2f}", stat, row["threshold"], row["status"]]


def failing_line(row: dict) -> str:
    """One line naming what failed: task/subject, both scores, the delta, p and the threshold."""
    where = row["task"] if row["level"] in ("overall", "profile") else f"{row['task']}/{row.get('name') or row['group']}"
    p = row.get("p_adjusted")
    parts = [f"{where} {row['metric']}: baseline {_number(row['base'])} -> candidate {_number(row['candidate'])}"]
    if row["delta"] is not None:
        parts.append(f"delta {row['delta']:+.2f}")
    parts.append(f"p={format_p(p)} (Holm)" if p is not None else (row.get("test") or ""))
    parts.append(f"threshold {row['threshold']}")
    return ", ".join(p for p in parts if p)


def shown_rows(verdict: dict) -> list[dict]:
    """Overall rows, floors, profile figures, and any category/subject row that is not "no detectable difference"."""
    return [r for r in verdict["rows"] if r["level"] in ("overall", "profile") or r["status"] not in ("no detectable difference", "not tested")]


def table(verdict: dict) -> str:
    head = (f"baseline: {verdict['baseline']['label']} ({verdict['baseline']['ref']})\n"
            f"candidate: {verdict['candidate']['label']} ({verdict['candidate']['ref']})\n")
    body = tabulate([_cells(r) for r in shown_rows(verdict)], headers=HEADERS, tablefmt="simple", disable_numparse=True)
    tail = [f"REGRESSION: {failing_line(r)}" for r in verdict["failing"]]
    tail += [f"warning: {failing_line(r)}" for r in verdict["warnings"]]
    tail.append(f"verdict: {verdict['verdict']} (exit {verdict['exit_code']})")
    return head + body + "\n" + "\n".join(tail)


def markdown(verdict: dict, title: str = "evalkit gate") -> str:
    icon = "❌ regression" if verdict["exit_code"] else "✅ no regression"
    lines = [f"## {title}: {icon}", "",
             f"Baseline **{verdict['baseline']['label']}** (`{verdict['baseline']['ref']}`), "
             f"candidate **{verdict['candidate']['label']}** (`{verdict['candidate']['ref']}`).", ""]
    if verdict["failing"]:
        lines += ["**Failing:**", ""] + [f"- {failing_line(r)}" for r in verdict["failing"]] + [""]
    if verdict["warnings"]:
        lines += ["**Warnings:**", ""] + [f"- {failing_line(r)}" for r in verdict["warnings"]] + [""]
    lines.append(tabulate([_cells(r) for r in shown_rows(verdict)], headers=HEADERS, tablefmt="github", disable_numparse=True))
    return "\n".join(lines) + "\n"


def write(path: str | Path | None, text: str) -> None:
    if not path:
        return
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise EvalkitError(f"{path}: cannot write ({exc.strerror}); choose another path") from None


def to_json(verdict: dict) -> str:
    return json.dumps(verdict, indent=2, ensure_ascii=False, default=str) + "\n"
