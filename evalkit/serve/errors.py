"""``evalkit serve``'s error answers and request plumbing: every error is OpenAI-shaped JSON
(``{"error": {"message", "type", "param", "code"}}``), whatever raised it (a bad field, an unknown
route, a wrong method, a body over the limit, a bug), and every request gets one access-log line.

Unexpected exceptions are logged here with the request's id and answered 500 with that id, never a
traceback: the id is what a user quotes to find the server-side traceback.
"""

from __future__ import annotations

import json
import logging
import time
import uuid

from fastapi import FastAPI, HTTPException
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

access_log = logging.getLogger("evalkit.serve.access")
error_log = logging.getLogger("evalkit.serve")


class ApiError(Exception):
    def __init__(self, status: int, message: str, code: str, param: str | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.param = status, message, code, param


class BodyTooLarge(HTTPException):
    def __init__(self, received: int, limit: int):
        super().__init__(413, f"request body is over the server's limit of {limit} bytes (stopped reading at {received})")


def error_response(status: int, message: str, code: str, param: str | None = None,
                   headers: dict | None = None) -> JSONResponse:
    kind = {401: "authentication_error", 404: "not_found_error", 413: "invalid_request_error"}.get(
        status, "invalid_request_error" if status < 500 else "server_error")
    return JSONResponse(status_code=status, headers=headers,
                        content={"error": {"message": message, "type": kind, "param": param, "code": code}})


def internal_error_body(request_id: str) -> dict:
    return {"error": {"message": f"internal server error (request id {request_id}); the server's log has the details",
                      "type": "server_error", "param": None, "code": "internal_error"}}


class BoundedBody:
    """ASGI middleware: the body's bytes are counted as they arrive, so a chunked body (no Content-Length)
    stops at the limit instead of being read whole; the endpoint's body read raises ``BodyTooLarge``
    (an HTTPException, which FastAPI's body parsing passes on) and the app answers 413 JSON."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or []).get(b"content-length", b"")
        if length.isdigit() and int(length) > self.limit:
            response = error_response(413, f"request body of {int(length)} bytes is over the server's limit of "
                                           f"{self.limit}", "request_too_large")
            return await response(scope, receive, send)
        received = 0

        async def bounded():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise BodyTooLarge(received, self.limit)
            return message

        await self.app(scope, bounded, send)


class RequestLog:
    """ASGI middleware, outermost: a request id (``x-request-id`` header), one access-log line per request
    (method, path, status, tokens, milliseconds, id; never a header, so never the key) and the 500 JSON
    answer for anything the app did not handle. Endpoints put their token counts in ``request.state.usage``."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        request_id = f"req-{uuid.uuid4().hex[:20]}"
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        started, status, responded = time.perf_counter(), 500, False

        async def send_with_id(message):
            nonlocal status, responded
            if message["type"] == "http.response.start":
                status, responded = message["status"], True
                message = {**message, "headers": [*message.get("headers", []), (b"x-request-id", request_id.encode())]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:  # noqa: BLE001 - the server answers and keeps serving; the traceback goes to the log
            error_log.exception("request %s (%s %s) failed", request_id, scope.get("method"), scope.get("path"))
            if not responded:
                body = json.dumps(internal_error_body(request_id)).encode()
                await send({"type": "http.response.start", "status": 500,
                            "headers": [(b"content-type", b"application/json"), (b"x-request-id", request_id.encode()),
                                        (b"content-length", str(len(body)).encode())]})
                await send({"type": "http.response.body", "body": body})
            status = 500
        finally:
            usage = state.get("usage") or {}
            access_log.info("%s %s %d prompt_tokens=%s completion_tokens=%s %.0fms %s", scope.get("method"),
                            scope.get("path"), status, usage.get("prompt_tokens", "-"),
                            usage.get("completion_tokens", "-"), (time.perf_counter() - started) * 1000, request_id)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_, exc: ApiError):
        return error_response(exc.status, exc.message, exc.code, exc.param)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        if first.get("type") == "json_invalid":
            return error_response(400, "malformed JSON body", "invalid_json", "body")
        where = ".".join(str(p) for p in first.get("loc", ())[1:] if not _union_member(p)) or "body"
        message = str(first.get("msg", "malformed body")).removeprefix("Value error, ")
        if where == "body":
            message += " (send a JSON object, with Content-Type: application/json)"
        return error_response(400, f"invalid request: {where}: {message}", "invalid_request", where)

    @app.exception_handler(BodyTooLarge)
    async def body_too_large(_, exc: BodyTooLarge):
        return error_response(413, exc.detail, "request_too_large")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request, exc: StarletteHTTPException):  # routing's 404 and 405, in the same shape
        if exc.status_code == 404:
            message, code = f"no such endpoint: {request.method} {request.url.path}", "not_found"
        elif exc.status_code == 405:
            allowed = {k.lower(): v for k, v in (exc.headers or {}).items()}.get("allow", "")
            message, code = f"{request.method} is not allowed on {request.url.path} (use {allowed})", "method_not_allowed"
        elif exc.status_code == 400:  # FastAPI could not parse the body (not UTF-8, nested too deep)
            return error_response(400, f"could not read the body as JSON ({exc.detail}): send UTF-8 JSON nested at "
                                       "most a few hundred levels", "invalid_json", "body")
        else:
            message, code = str(exc.detail), "http_error"
        return error_response(exc.status_code, message, code, headers=exc.headers)


def _union_member(part) -> bool:
    """pydantic names the union member that failed in an error's location ("list[int]"): not a field."""
    return isinstance(part, str) and (any(c in part for c in "[]-") or part in {"str", "int", "float", "bool", "list"})
