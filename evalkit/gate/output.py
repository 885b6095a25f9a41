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
    """One table row. The p column holds Holm-adjusted p-values only: a profiler row's relative change
    goes with its delta (in the figure's own units), a floor's lower bound with its threshold."""
    group = row["group"] if row["level"] in ("overall", "profile") else f"{row['level']}: {row.get('name') or row['group']}"
    p = row.get("p_adjusted")
    delta = "-" if row["delta"] is None else f"{row['delta']:+.2f}"
    if row.get("change") is not None:
        delta += f" ({row['change']:+.1%})"
    threshold = row["threshold"] + (f"; {row['test']}" if row["check"] == "floor" else "")
    return [row["task"], group, str(row["n"] or "-"), _number(row["base"]), _number(row["candidate"]),
            delta, format_p(p) if p is not None else "—", threshold, row["status"]]


def verdict_line(verdict: dict) -> str:
    """"verdict: pass (exit 0)", with "on a partial run" and what was left out when a task was cut."""
    line = f"verdict: {verdict['verdict']} (exit {verdict['exit_code']})"
    partial = verdict.get("partial") or {}
    if partial:
        line += " on a PARTIAL run: " + "; ".join(f"{task} {text}" for task, text in partial.items())
    return line


def detectable_lines(verdict: dict) -> list[str]:
    """Per task: the smallest drop its paired test would have caught at this n (power 0.8)."""
    lines = []
    for task, d in (verdict.get("detectable") or {}).items():
        what = f"a drop of {d['drop']:.1f} points or more" if d["drop"] is not None else "no drop up to 100 points"
        lines.append(f"{task}: at n={d['n']} the {d['test']} test detects {what} "
                     f"(power {d['power']:g}, two-sided alpha {d['alpha']:.3g})")
    return lines


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
    tail += [f"detectable: {line}" for line in detectable_lines(verdict)]
    tail.append(verdict_line(verdict))
    return head + body + "\n" + "\n".join(tail)


def markdown(verdict: dict, title: str = "evalkit gate") -> str:
    icon = "❌ regression" if verdict["exit_code"] else "✅ no regression"
    if verdict.get("partial"):
        icon += " (partial run)"
    lines = [f"## {title}: {icon}", "",
             (f"Baseline **{verdict['baseline']['label']}** (`{verdict['baseline']['ref']}`), "
              f"candidate **{verdict['candidate']['label']}** (`{verdict['candidate']['ref']}`)."), ""]
    if verdict["failing"]:
        lines += ["**Failing:**", ""] + [f"- {failing_line(r)}" for r in verdict["failing"]] + [""]
    if verdict["warnings"]:
        lines += ["**Warnings:**", ""] + [f"- {failing_line(r)}" for r in verdict["warnings"]] + [""]
    if verdict.get("partial"):
        lines += ["**Partial run** (part of a task left out): " + "; ".join(f"{t} {x}" for t, x in verdict["partial"].items()), ""]
    detectable = detectable_lines(verdict)
    if detectable:
        lines += ["**Smallest detectable drops:**", ""] + [f"- {line}" for line in detectable] + [""]
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
