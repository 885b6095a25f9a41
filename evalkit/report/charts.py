"""Plotly charts as HTML fragments. plotly.js itself is inlined once per page (``plotly_js``), so
the pages open offline; Plotly writes labels as JSON with "<" escaped, so names stay text."""

from __future__ import annotations

from markupsafe import Markup

CONFIG = {"displaylogo": False, "responsive": True}


def plotly_js() -> Markup:
    from plotly.offline import get_plotlyjs

    return Markup(get_plotlyjs())


def _fragment(fig) -> Markup:
    fig.update_layout(template="plotly_white", height=360, margin={"l": 50, "r": 20, "t": 50, "b": 80},
                      legend={"orientation": "h", "y": -0.25})
    return Markup(fig.to_html(full_html=False, include_plotlyjs=False, config=CONFIG))


def category_bars(section: dict, base_label: str, candidate_label: str) -> Markup | None:
    """Accuracy per category for both models (%), with Wilson 95% intervals."""
    import plotly.graph_objects as go

    chart = section.get("chart") or {}
    if not chart.get("groups"):
        return None
    fig = go.Figure()
    for label, values in ((base_label, chart["base"]), (candidate_label, chart["candidate"])):
        fig.add_bar(name=label, x=chart["groups"], y=[v for v, _ in values],
                    customdata=[ci or [None, None] for _, ci in values],
                    hovertemplate="%{y:.1f}% (95% CI %{customdata[0]:.1f} .. %{customdata[1]:.1f})",
                    error_y={"type": "data", "symmetric": False, "visible": True,
                             "array": [ci[1] - v if ci else 0 for v, ci in values],
                             "arrayminus": [v - ci[0] if ci else 0 for v, ci in values]})
    fig.update_layout(barmode="group", title=f"{section['task']}: accuracy per category (%, Wilson 95% CI)",
                      yaxis={"title": "accuracy (%)", "rangemode": "tozero"})
    return _fragment(fig)


def metric_bars(section: dict, base_label: str, candidate_label: str) -> Markup | None:
    """BLEU/ROUGE of both models; the candidate's bars carry the bootstrap 95% CI of its difference."""
    import plotly.graph_objects as go

    chart = section.get("chart") or {}
    if not chart.get("metrics"):
        return None
    fig = go.Figure()
    fig.add_bar(name=base_label, x=chart["metrics"], y=chart["base"])
    fig.add_bar(name=candidate_label, x=chart["metrics"], y=chart["candidate"],
                customdata=[ci or [None, None] for ci in chart["delta_ci"]],
                hovertemplate="%{y:.2f} (difference 95% CI %{customdata[0]:.2f} .. %{customdata[1]:.2f})")
    fig.update_layout(barmode="group", title=f"{section['task']}: BLEU-4 / ROUGE (0-100)",
                      yaxis={"title": "BLEU-4 / ROUGE (0-100)", "rangemode": "tozero"})
    return _fragment(fig)


def history_lines(history: list[dict], columns: list[dict]) -> Markup | None:
    """One line per leaderboard column over a model's runs (x: run time)."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for column in columns:
        points = [(h["created_at"], h["scores"].get(column["key"])) for h in history if h["scores"].get(column["key"]) is not None]
        if points:
            fig.add_scatter(name=column["label"], x=[p[0] for p in points], y=[p[1] for p in points], mode="lines+markers")
    if not fig.data:
        return None
    fig.update_layout(title="scores across runs", yaxis={"title": "score"})
    return _fragment(fig)
