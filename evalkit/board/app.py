"""The board's web server: server-rendered pages over the results store, jobs launched from a form.

Pages reuse the report templates (autoescaped Jinja2, the same CSS and table script, nothing fetched from
outside: it works offline). Job pages stream their log by server-sent events whose ids are byte offsets in
the log, so a reconnect resumes where it stopped and a reload replays the log once, without duplicates.
Every state-changing request carries a CSRF token (a cookie matched by a form field) and must come from
this server's own origin.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import secrets
import threading
from pathlib import Path

from fastapi import FastAPI, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles

from evalkit.board import auth, jobs
from evalkit.errors import EvalkitError
from evalkit.report.render import render

CSRF_COOKIE = "evalkit_csrf"
HEARTBEAT_S = 10.0


def create_app(store: str, log_dir: Path, site_dir: Path, *, workers: bool = True, root_path: str = "",
               require_auth: bool = False) -> FastAPI:
    """``require_auth``: every request needs a board token (any bind but loopback); else the local user operates."""
    stop = threading.Event()

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        if workers:  # the queue's worker lives as long as the server; jobs outlive both (own sessions)
            threading.Thread(target=jobs.work, args=(store, log_dir), kwargs={"stop": stop}, daemon=True).start()
        yield
        stop.set()

    app = FastAPI(title="evalkit board", docs_url=None, redoc_url=None, openapi_url=None, root_path=root_path,
                  lifespan=lifespan)

    @app.middleware("http")
    async def authenticate(request: Request, call_next):
        if not require_auth:
            request.state.user, request.state.role = "local", "operator"
            return await call_next(request)
        if request.url.path.rstrip("/").endswith("/login"):
            return await call_next(request)
        header = request.headers.get("authorization", "")
        token = header[7:] if header.lower().startswith("bearer ") else request.cookies.get(auth.TOKEN_COOKIE)
        user = auth.lookup(token, store)
        if user is None:
            return HTMLResponse(f'<p>401: a board token is needed. <a href="{root_path}/login">Log in</a>.</p>', 401)
        request.state.user, request.state.role = user.user, user.role
        return await call_next(request)

    def require(request: Request, role: str) -> None:
        if not auth.allows(request.state.role, role):
            raise HTTPException(403, f"{request.state.user} is a {request.state.role}; this needs a {role} token")

    @app.get("/login")
    def login_page(request: Request):
        return page(request, "board_login.html.j2", page_title="log in")

    @app.post("/login")
    def login(request: Request, token: str = Form(""), csrf: str = Form("")):
        check_csrf(request, csrf)
        if auth.lookup(token, store) is None:
            raise HTTPException(401, "unknown token")
        response = RedirectResponse("runs", status_code=303)
        response.set_cookie(auth.TOKEN_COOKIE, token, httponly=True, samesite="strict")
        return response

    def page(request: Request, template: str, **context) -> HTMLResponse:
        token = request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(24)
        html = render(template, store=store, root=request.scope.get("root_path", ""), csrf=token, **context)
        response = HTMLResponse(html)
        response.set_cookie(CSRF_COOKIE, token, httponly=True, samesite="strict")
        return response

    def check_csrf(request: Request, token: str) -> None:
        cookie = request.cookies.get(CSRF_COOKIE, "")
        origin = request.headers.get("origin")
        if not cookie or not hmac.compare_digest(cookie, token):
            raise HTTPException(403, "missing or wrong CSRF token: reload the page and submit the form again")
        if origin is not None and origin.split("://", 1)[-1] != request.headers.get("host"):
            raise HTTPException(403, f"cross-site request from {origin} refused")

    @app.get("/")
    def home():
        return RedirectResponse("runs")

    @app.get("/runs")
    def runs(request: Request, model: str | None = None, task: str | None = None):
        from evalkit.store.frames import runs_with_scores

        frame = runs_with_scores(store, model=model or None, task=task or None)
        rows = []
        for row in frame.head(500).to_dict(orient="records"):
            score, metric = row["score"], row["metric"]
            row["score_text"] = "-" if score != score or score is None else (
                f"{metric} {100 * score:.2f}" if metric in ("acc", "exact_match") else f"{metric} {score:.2f}")
            row["n"] = None if row["n"] != row["n"] else int(row["n"])
            row["rss"] = "-" if row["peak_rss_mb"] != row["peak_rss_mb"] else f"{row['peak_rss_mb']:.0f}"
            rows.append(row)
        return page(request, "board_runs.html.j2", page_title="runs", rows=rows, model=model, task=task)

    @app.get("/jobs")
    def job_list(request: Request):
        from evalkit.backends import BACKENDS

        from evalkit.resources import resource_dir

        recipes = sorted(f"trainers/{p.name}" for p in resource_dir("trainers").glob("*.yaml"))
        suites = sorted(f"suites/{p.name}" for p in resource_dir("suites").glob("*.yaml"))
        return page(request, "board_jobs.html.j2", page_title="jobs", jobs=jobs.list_jobs(store), backends=list(BACKENDS),
                    recipes=recipes, suites=suites)

    @app.post("/jobs")
    def launch(request: Request, csrf: str = Form(""), model: str = Form(...), tasks: str = Form(...),
               num_fewshot: str = Form(""), limit: str = Form(""), backend: str = Form("hf")):
        check_csrf(request, csrf)
        require(request, "operator")
        argv = ["run", "--model", model, "--tasks", tasks]
        argv += ["--num-fewshot", num_fewshot] if num_fewshot.strip() else []
        argv += ["--limit", limit] if limit.strip() else []
        argv += ["--backend", backend] if backend != "hf" else []
        try:
            job_id = jobs.submit(argv, store, user=request.state.user)
        except EvalkitError as exc:
            raise HTTPException(400, str(exc)) from None
        return RedirectResponse(f"jobs/{job_id}", status_code=303)

    @app.post("/jobs/train")
    def launch_training(request: Request, csrf: str = Form(""), recipe: str = Form(...), overrides: str = Form("")):
        """`evalkit train RECIPE key=value ...`: one override per line (or space-separated, shell-quoted)."""
        import shlex

        check_csrf(request, csrf)
        require(request, "operator")
        try:
            extra = shlex.split(overrides)
        except ValueError as exc:
            raise HTTPException(400, f"overrides: {exc}") from None
        return _queue(request, ["train", recipe, *extra])

    @app.post("/jobs/nightly")
    def launch_nightly(request: Request, csrf: str = Form(""), suite: str = Form(...)):
        check_csrf(request, csrf)
        require(request, "operator")
        return _queue(request, ["nightly", suite])

    def _queue(request: Request, argv: list[str]):
        try:
            job_id = jobs.submit(argv, store, user=request.state.user)
        except EvalkitError as exc:
            raise HTTPException(400, str(exc)) from None
        return RedirectResponse(f"{job_id}", status_code=303)

    @app.get("/jobs/{job_id}")
    def job_page(request: Request, job_id: int):
        return page(request, "board_job.html.j2", page_title=f"job {job_id}", job=_job(job_id))

    @app.post("/jobs/{job_id}/cancel")
    def cancel(request: Request, job_id: int, csrf: str = Form("")):
        check_csrf(request, csrf)
        require(request, "operator")
        try:
            jobs.cancel(job_id, store)
        except EvalkitError as exc:
            raise HTTPException(409, str(exc)) from None
        return RedirectResponse(f"../{job_id}", status_code=303)

    @app.get("/jobs/{job_id}/events")
    async def events(request: Request, job_id: int):
        _job(job_id)
        start = int(request.headers.get("last-event-id") or 0)
        return StreamingResponse(_log_events(job_id, max(0, start)), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    async def _log_events(job_id: int, offset: int):
        quiet = 0.0
        while True:
            job = jobs.get_job(job_id, store)
            chunk = b""
            if job.log_path and Path(job.log_path).is_file():
                with open(job.log_path, "rb") as handle:
                    handle.seek(offset)
                    chunk = handle.read(1 << 20)
            # whole lines only (the rest comes with its end); a line ended by "\r" is a progress bar's update
            complete = chunk[: max(chunk.rfind(b"\n"), chunk.rfind(b"\r")) + 1]
            for line in complete.splitlines(keepends=True):
                offset += len(line)
                text = line.decode("utf-8", errors="replace").rstrip("\r\n")
                kind = "progress" if line.endswith(b"\r") else "log"
                if text.strip():
                    yield f"id: {offset}\nevent: {kind}\ndata: {text}\n\n"
            if not complete:
                if job.state in jobs.FINISHED:
                    yield f"event: state\ndata: {job.state}\n\n"
                    return
                quiet += 0.25
                if quiet >= HEARTBEAT_S:
                    quiet = 0.0
                    yield ": heartbeat\n\n"
                await asyncio.sleep(0.25)
            else:
                quiet = 0.0
                yield f"event: state\ndata: {job.state}\n\n"

    def _job(job_id: int):
        try:
            return jobs.get_job(job_id, store)
        except EvalkitError as exc:
            raise HTTPException(404, str(exc)) from None

    @app.get("/arena")
    def arena_page(request: Request, a: int | None = None, b: int | None = None):
        from evalkit.board import arena

        if a is None or b is None:
            from evalkit.store.frames import runs_with_scores

            frame = runs_with_scores(store)
            choices = frame[frame.metric.isin(["rouge-l", "bleu-4"])].to_dict(orient="records")
            return page(request, "board_arena.html.j2", page_title="blind arena", choices=choices)
        try:
            trial = arena.next_trial(store, a, b, request.state.user)
            task = arena.pairs(store, a, b)[0]
        except EvalkitError as exc:
            raise HTTPException(400, str(exc)) from None
        return page(request, "board_arena.html.j2", page_title="blind arena", trial=trial, a=a, b=b, task=task)

    @app.post("/arena/vote")
    def arena_vote(request: Request, csrf: str = Form(""), trial: int = Form(...), verdict: str = Form(...),
                   a: int = Form(...), b: int = Form(...)):
        from evalkit.board import arena

        check_csrf(request, csrf)
        require(request, "voter")
        try:
            revealed = arena.vote(store, trial, verdict, request.state.user)
        except EvalkitError as exc:
            raise HTTPException(409, str(exc)) from None
        return page(request, "board_reveal.html.j2", page_title="revealed", revealed=revealed, a=a, b=b)

    @app.get("/rankings")
    def rankings_page(request: Request, task: str = "alpaca_zh"):
        from evalkit.board import arena

        return page(request, "board_rankings.html.j2", page_title=f"rankings: {task}", task=task,
                    result=arena.rankings(store, task))

    @app.get("/leaderboard/")
    def leaderboard():
        """The leaderboard site as `evalkit leaderboard` writes it, rebuilt from the store on each visit."""
        from evalkit.report import build_leaderboard

        index, _ = build_leaderboard(None, site_dir, store, force=True)
        return HTMLResponse(index.read_text(encoding="utf-8"))

    site_dir.mkdir(parents=True, exist_ok=True)
    app.mount("/leaderboard", StaticFiles(directory=site_dir, html=True), name="leaderboard")  # model pages
    return app
