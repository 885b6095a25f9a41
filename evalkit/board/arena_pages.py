"""The board's blind arena: a prompt and two stored answers in a random order, keyboard votes, the reveal,
and the rankings the votes give (statistics in evalkit/board/ranking.py, pairing in arena.py)."""

from __future__ import annotations

from fastapi import APIRouter, Form, HTTPException, Request

from evalkit.board.web import check_csrf, page, require
from evalkit.errors import EvalkitError

router = APIRouter()


@router.get("/arena")
def arena_page(request: Request, a: int | None = None, b: int | None = None):
    from evalkit.board import arena

    if a is None or b is None:
        from evalkit.store.frames import runs_with_scores

        frame = runs_with_scores(request.app.state.store)
        choices = frame[frame.metric.isin(["rouge-l", "bleu-4"])].to_dict(orient="records")
        return page(request, "board_arena.html.j2", page_title="blind arena", choices=choices)
    try:
        trial = arena.next_trial(request.app.state.store, a, b, request.state.user)
        task = arena.pairs(request.app.state.store, a, b)[0]
    except EvalkitError as exc:
        raise HTTPException(400, str(exc)) from None
    return page(request, "board_arena.html.j2", page_title="blind arena", trial=trial, a=a, b=b, task=task)


@router.post("/arena/vote")
def arena_vote(request: Request, csrf: str = Form(""), trial: int = Form(...), verdict: str = Form(...),
               a: int = Form(...), b: int = Form(...)):
    from evalkit.board import arena

    check_csrf(request, csrf)
    require(request, "voter")
    try:
        revealed = arena.vote(request.app.state.store, trial, verdict, request.state.user)
    except EvalkitError as exc:
        raise HTTPException(409, str(exc)) from None
    return page(request, "board_reveal.html.j2", page_title="revealed", revealed=revealed, a=a, b=b)


@router.get("/rankings")
def rankings_page(request: Request, task: str = "alpaca_zh"):
    from evalkit.board import arena

    return page(request, "board_rankings.html.j2", page_title="rankings: {task}", title_args={"task": task}, task=task,
                result=arena.rankings(request.app.state.store, task))
