"""Accepted runs: the nightly job tags the runs whose gate passed; the next night gates against them."""

from __future__ import annotations

import json

from sqlalchemy import select

from evalkit.store.engine import open_store
from evalkit.store.query import list_runs, matches_model
from evalkit.store.schema import Run, RunTag

ACCEPTED = "accepted"


def mark_accepted(run_ids: list[int], suite: str, night: str = "", store: str | None = None) -> None:
    """Tag ``run_ids`` accepted for ``suite`` (tagging twice is a no-op)."""
    factory, _ = open_store(store)
    with factory.begin() as session:
        for run_id in run_ids:
            known = session.scalar(select(RunTag.id).where(RunTag.run_id == run_id, RunTag.tag == ACCEPTED,
                                                           RunTag.suite == suite))
            if known is None:
                session.add(RunTag(run_id=run_id, tag=ACCEPTED, suite=suite, night=night))


def accepted_runs(model: str, suite: str | None = None, store: str | None = None) -> list[Run]:
    """Evaluation runs of ``model`` tagged accepted (for ``suite`` when given), oldest first."""
    factory, _ = open_store(store)
    query = select(RunTag.run_id).where(RunTag.tag == ACCEPTED)
    if suite:
        query = query.where(RunTag.suite == suite)
    with factory() as session:
        ids = set(session.scalars(query))
    runs = [r for r in list_runs(store, kind="evaluation") if r.id in ids and matches_model(r, model)]
    return sorted(runs, key=lambda r: r.id)


def run_nights(store: str | None = None) -> dict[int, str]:
    """run id -> the night it was accepted on (for leaderboard/verdict captions)."""
    factory, _ = open_store(store)
    with factory() as session:
        return {tag.run_id: tag.night for tag in session.scalars(select(RunTag).where(RunTag.tag == ACCEPTED))}


def record_night(suite: str, night: str, model: str, verdict: dict, store: str | None = None) -> None:
    """Store one model's verdict of a night (a rerun of the same night replaces it)."""
    from sqlalchemy import delete

    from evalkit.store.schema import NightlyVerdict

    factory, _ = open_store(store)
    with factory.begin() as session:
        session.execute(delete(NightlyVerdict).where(NightlyVerdict.suite == suite, NightlyVerdict.night == night,
                                                     NightlyVerdict.model == model))
        session.add(NightlyVerdict(suite=suite, night=night, model=model, verdict=str(verdict.get("verdict", "")),
                                   exit_code=int(verdict.get("exit_code", 0)),
                                   candidate_runs=list((verdict.get("candidate") or {}).get("runs") or []),
                                   baseline_runs=list((verdict.get("baseline") or {}).get("runs") or []),
                                   failing=json.loads(json.dumps(verdict.get("failing") or [], default=str))))


def nights(store: str | None = None) -> list:
    """Every stored nightly verdict, newest night first."""
    from evalkit.store.schema import NightlyVerdict

    factory, _ = open_store(store)
    with factory() as session:
        return list(session.scalars(select(NightlyVerdict).order_by(NightlyVerdict.night.desc(), NightlyVerdict.suite,
                                                                    NightlyVerdict.model)))
