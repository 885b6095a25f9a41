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
import json
import threading
from pathlib import Path

from fastapi import FastAPI, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles

from evalkit.board import arena_pages, auth, chat, jobs, views
from evalkit.board.web import check_csrf, page, require
from evalkit.errors import EvalkitError

HEARTBEAT_S = 10.0


def create_app(store: str, log_dir: Path, site_dir: Path, *, workers: int = 1, devices: list[str] | None = None,
               root_path: str = "", require_auth: bool = False) -> FastAPI:
    """``require_auth``: every request needs a board token (any bind but loopback); else the local user operates.
    ``workers``: jobs run at once (0: none, `evalkit jobs work` runs them); ``devices``: one worker per CUDA device."""
    stop = threading.Event()

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        # the queue's workers live as long as the server; jobs outlive both (own sessions)
        pinned = devices or [None] * workers
        if pinned:
            jobs.reconcile(store)
        for device in pinned:
            threading.Thread(target=jobs.work, args=(store, log_dir), daemon=True,
                             kwargs={"stop": stop, "device": device, "reconciled": True}).start()
        yield
        stop.set()

    app = FastAPI(title="evalkit board", docs_url=None, redoc_url=None, openapi_url=None, root_path=root_path,
                  lifespan=lifespan)
    app.state.store = store

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
        from evalkit.board.progress import earlier_curves

        job = _job(job_id)
        if job.argv[:1] != ["train"]:
            return page(request, "board_job.html.j2", page_title="job {id}", title_args={"id": job_id}, job=job, training=False)
        return page(request, "board_job.html.j2", page_title="job {id}", title_args={"id": job_id}, job=job, training=True,
                    earlier=earlier_curves(job, jobs.list_jobs(store)), charts=True,
                    plotly_src=f"{request.scope.get('root_path', '')}/assets/plotly.js")

    @app.get("/assets/plotly.js")
    def plotly_asset():
        """plotly.js from the installed plotly package, served by the board itself (no CDN: it works offline)."""
        from fastapi.responses import Response

        from evalkit.report.charts import plotly_js

        return Response(str(plotly_js()), media_type="text/javascript", headers={"Cache-Control": "max-age=86400"})

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
        """The log's lines after ``offset`` (ids: byte offsets), progress bars parsed, and for a training job its
        loss points. Loss events carry no id (the log offset stays the resume point): each connection sends
        the whole curve again, and the page keys points by step, so a reconnect duplicates nothing."""
        from evalkit.board.progress import parse_progress, read_curve, training_output_dir

        quiet, curve_at = 0.0, 0
        curve_file = training_output_dir(jobs.get_job(job_id, store).argv)
        curve_file = curve_file / "trainer_log.jsonl" if curve_file else None
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
                bar = parse_progress(text)
                if bar is not None:
                    yield f"id: {offset}\nevent: progress\ndata: {json.dumps({**bar, 'text': text.strip()})}\n\n"
                elif text.strip():
                    yield f"id: {offset}\nevent: log\ndata: {text}\n\n"
            points = []
            if curve_file is not None:
                points, curve_at = read_curve(curve_file, curve_at)
                if points:
                    yield f"event: loss\ndata: {json.dumps(points)}\n\n"
            if not complete and not points:
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

    @app.get("/leaderboard/")
    def leaderboard(request: Request):
        """The leaderboard site as `evalkit leaderboard` writes it, rebuilt from the store on each visit."""
        from evalkit.report import build_leaderboard

        try:
            index, _ = build_leaderboard(None, site_dir, store, force=True)
        except EvalkitError as exc:  # an empty store: say so in a page, not a 500
            return page(request, "board_message.html.j2", page_title="leaderboard", message=str(exc))
        return HTMLResponse(index.read_text(encoding="utf-8"))

    for router in (arena_pages.router, views.router, chat.router):
        app.include_router(router)
    site_dir.mkdir(parents=True, exist_ok=True)
    app.mount("/leaderboard", StaticFiles(directory=site_dir, html=True), name="leaderboard")  # model pages
    return app
