"""``build_report``: the base-vs-candidate comparison rendered to one self-contained HTML file
(plotly.js inlined), or, for reports published together (a nightly's per-task reports, a site),
pages that share one ``plotly.min.js`` (``shared_plotly``)."""

from __future__ import annotations

import os
from pathlib import Path

from evalkit.report.charts import category_bars, metric_bars, plotly_js
from evalkit.report.compare import compare
from evalkit.report.render import render, write_new
from evalkit.report.significance import ALPHA, BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED


def report_context(base: str, candidate: str, url: str, tasks: list[str] | None = None,
                   allow_mismatch: bool = False) -> dict:
    """What report.html.j2 renders (also the board's compare page): the comparison, charts drawn."""
    data = compare(base, candidate, url, tasks, allow_mismatch)
    labels = data["base"]["label"], data["candidate"]["label"]
    if labels[0] == labels[1]:  # e.g. two runs of the same model: tell the columns apart
        data["base"]["label"], data["candidate"]["label"] = f"{labels[0]} (base)", f"{labels[1]} (candidate)"
    charts = False
    for section in data["tasks"]:
        draw = category_bars if section["type"] == "multiple_choice" else metric_bars
        section["chart_html"] = draw(section, data["base"]["label"], data["candidate"]["label"]) if section.get("chart") else None
        charts = charts or section["chart_html"] is not None
    return {**data, "notes": data["choice_notes"] + [n for s in data["tasks"] for n in s["notes"]], "store": url,
            "charts": charts, "alpha": ALPHA, "resamples": BOOTSTRAP_RESAMPLES, "seed": BOOTSTRAP_SEED}


def build_report(base: str, candidate: str, output: str | Path, store: str | None = None,
                 tasks: list[str] | None = None, force: bool = False, allow_mismatch: bool = False,
                 shared_plotly: str | Path | None = None) -> tuple[Path, dict]:
    from evalkit.store import normalise_url

    context = report_context(base, candidate, normalise_url(store), tasks, allow_mismatch)
    if context["charts"] and shared_plotly is not None:  # one copy for every page beside it, written once
        script = Path(shared_plotly)
        if not script.is_file():
            write_new(script, str(plotly_js()))
        context["plotly_src"] = Path(os.path.relpath(script.resolve(), Path(output).resolve().parent)).as_posix()
    data = {key: context[key] for key in ("base", "candidate", "tasks", "summary", "choice_notes", "mismatches",
                                          "profile", "profile_unlike")}
    return write_new(Path(output), render("report.html.j2", **context), force), data
