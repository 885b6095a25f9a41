"""``evalkit serve``'s OpenAI-compatible API (FastAPI): /v1/models, /v1/completions, /v1/chat/completions.

The request and response shapes follow OpenAI's (legacy completions with ``logprobs``/``echo``/
``logit_bias``; chat completions, streamed as server-sent events too). Errors are OpenAI-style JSON
with the right status code; the server keeps serving after any bad request.
"""

from __future__ import annotations

import hmac
import json
import time
import uuid
from typing import Any, Iterator, Literal

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from evalkit.serve.engine import PromptTooLong, ServedModel

MAX_LOGPROBS = 20


class ApiError(Exception):
    def __init__(self, status: int, message: str, code: str, param: str | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.param = status, message, code, param


class BodyTooLarge(HTTPException):
    def __init__(self, received: int, limit: int):
        super().__init__(413, f"request body is over the server's limit of {limit} bytes (stopped reading at {received})")


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
            response = _error(413, f"request body of {int(length)} bytes is over the server's limit of {self.limit}",
                              "request_too_large")
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


class CompletionRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    model: str
    prompt: str | list[int] | list[str]
    max_tokens: int | None = Field(16, ge=0)
    temperature: float = Field(1.0, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    n: int = 1
    stream: bool = False
    logprobs: int | None = Field(None, ge=0, le=MAX_LOGPROBS)
    echo: bool = False
    stop: str | list[str] | None = None
    logit_bias: dict[str, float] | None = None
    seed: int | None = None
    add_special_tokens: bool = True  # as vLLM: False for prompts that already carry a chat template's tokens


class ChatMessage(BaseModel):
    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: str


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(1.0, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    n: int = 1
    stream: bool = False
    stop: str | list[str] | None = None
    logit_bias: dict[str, float] | None = None
    seed: int | None = None
    logprobs: bool = False


def create_app(served: ServedModel, *, api_key: str | None = None, max_tokens_limit: int = 2048,
               max_request_bytes: int = 4 << 20) -> FastAPI:
    app = FastAPI(title="evalkit serve", version="1")
    created = int(time.time())

    @app.exception_handler(ApiError)
    async def api_error(_, exc: ApiError):
        return _error(exc.status, exc.message, exc.code, exc.param)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        if first.get("type") == "json_invalid":
            return _error(400, "malformed JSON body", "invalid_json", "body")
        where = ".".join(str(p) for p in first.get("loc", ())[1:]) or "body"
        return _error(400, f"invalid request: {where}: {first.get('msg', 'malformed body')}", "invalid_request", where)

    @app.exception_handler(BodyTooLarge)
    async def body_too_large(_, exc: BodyTooLarge):
        return _error(413, exc.detail, "request_too_large")

    app.add_middleware(BoundedBody, limit=max_request_bytes)

    def authorised(request: Request) -> None:
        if api_key is None:
            return
        header = request.headers.get("authorization", "")
        given = header[7:] if header.lower().startswith("bearer ") else ""
        if not hmac.compare_digest(given.encode(), api_key.encode()):
            raise ApiError(401, "missing or wrong API key (send 'Authorization: Bearer KEY')", "invalid_api_key")

    @app.get("/health")
    def health():
        return {"status": "ok"}

    @app.get("/v1/models", dependencies=[Depends(authorised)])
    def models():
        return {"object": "list", "data": [{"id": served.name, "object": "model", "created": created,
                                            "owned_by": "evalkit", "max_model_len": served.context_length,
                                            "evalkit_identity": served.lm.identity}]}

    def check(model: str, n: int, max_tokens: int) -> None:
        if model != served.name:
            raise ApiError(404, f"model {model!r} does not exist; this server serves {served.name!r}", "model_not_found", "model")
        if n != 1:
            raise ApiError(400, "only n=1 is supported", "invalid_request", "n")
        if max_tokens > max_tokens_limit:
            raise ApiError(400, f"max_tokens {max_tokens} is over this server's limit of {max_tokens_limit}",
                           "invalid_request", "max_tokens")

    def biases(raw: dict[str, float] | None) -> dict[int, float] | None:
        if not raw:
            return None
        try:
            bias = {int(k): float(v) for k, v in raw.items()}
        except ValueError:
            raise ApiError(400, "logit_bias keys must be token ids", "invalid_request", "logit_bias") from None
        vocab = served.lm.model.config.vocab_size
        if any(not 0 <= k < vocab or not -100 <= v <= 100 for k, v in bias.items()):
            raise ApiError(400, f"logit_bias: token ids in 0..{vocab - 1}, values in -100..100", "invalid_request", "logit_bias")
        return bias

    def encode(prompt, add_special_tokens: bool, room: int) -> list[int]:
        try:
            return served.encode(prompt, add_special_tokens, room)
        except PromptTooLong as exc:
            raise ApiError(400, str(exc), "context_length_exceeded", "prompt") from None

    @app.post("/v1/completions", dependencies=[Depends(authorised)])
    def completions(body: CompletionRequest):
        max_tokens = 16 if body.max_tokens is None else body.max_tokens
        check(body.model, body.n, max_tokens)
        if max_tokens == 0 and not body.echo:
            raise ApiError(400, "max_tokens 0 needs echo (prompt log-probabilities only)", "invalid_request", "max_tokens")
        prompts = body.prompt if isinstance(body.prompt, list) and body.prompt and isinstance(body.prompt[0], str) else [body.prompt]
        stop = [body.stop] if isinstance(body.stop, str) else list(body.stop or [])
        bias = biases(body.logit_bias)
        encoded = [encode(p, body.add_special_tokens, max_tokens) for p in prompts]  # every prompt checked first
        if body.stream:
            if len(encoded) != 1 or body.echo or body.logprobs is not None:
                raise ApiError(400, "streaming takes one prompt, without echo or logprobs", "invalid_request", "stream")
            stream = served.stream(encoded[0], max_tokens, stop, body.temperature, body.top_p, body.seed, bias)
            return _sse(_deltas(stream, body.model, "text_completion"))
        choices, prompt_tokens, completion_tokens = [], 0, 0
        for index, ids in enumerate(encoded):
            choice = _complete(served, ids, max_tokens, stop, body, bias)
            choices.append({"index": index, **choice["choice"]})
            prompt_tokens += len(ids)
            completion_tokens += choice["generated"]
        return {"id": f"cmpl-{uuid.uuid4().hex}", "object": "text_completion", "created": int(time.time()),
                "model": body.model, "choices": choices,
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                          "total_tokens": prompt_tokens + completion_tokens}}

    @app.post("/v1/chat/completions", dependencies=[Depends(authorised)])
    def chat_completions(body: ChatRequest):
        max_tokens = body.max_completion_tokens or body.max_tokens or min(max_tokens_limit, 512)
        check(body.model, body.n, max_tokens)
        if body.logprobs:
            raise ApiError(400, "logprobs on chat completions are not supported; use /v1/completions", "invalid_request", "logprobs")
        tokenizer = served.lm.tokenizer
        if not getattr(tokenizer, "chat_template", None):
            raise ApiError(400, f"model {served.name!r} has no chat template; use /v1/completions", "invalid_request", "messages")
        try:
            text = tokenizer.apply_chat_template([m.model_dump() for m in body.messages], tokenize=False,
                                                 add_generation_prompt=True)
        except Exception as exc:  # noqa: BLE001 - a template's own error (e.g. roles out of order) is the client's
            raise ApiError(400, f"the chat template rejected these messages: {exc}", "invalid_request", "messages") from None
        ids = encode(text, False, max_tokens)  # the template writes its own special tokens
        stop = [body.stop] if isinstance(body.stop, str) else list(body.stop or [])
        stream = served.stream(ids, max_tokens, stop, body.temperature, body.top_p, body.seed, biases(body.logit_bias))
        if body.stream:
            return _sse(_deltas(stream, body.model, "chat.completion.chunk"))
        *_, final = stream
        return {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
                "model": body.model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": final.text},
                             "finish_reason": final.finish}],
                "usage": {"prompt_tokens": len(ids), "completion_tokens": len(final.tokens),
                          "total_tokens": len(ids) + len(final.tokens)}}

    return app


def _complete(served: ServedModel, ids: list[int], max_tokens: int, stop: list[str], body: CompletionRequest,
              bias: dict[int, float] | None) -> dict:
    """One prompt's choice: the continuation and, if asked, log-probabilities (prompt ones too with echo)."""
    next_row = None
    if max_tokens == 0:
        tokens, text, finish = [], "", "length"
    elif max_tokens == 1 and body.temperature == 0:  # one forward pass serves both the token and its logprobs
        next_row = served.logprobs(ids, bias, echo=False)
        token = int(next_row[-1].argmax())
        tokens, finish = [token], ("stop" if token in served.eos else "length")
        text = "" if finish == "stop" else served.lm.tokenizer.decode(tokens, skip_special_tokens=True)
    else:
        result = served.generate(ids, max_tokens, stop, body.temperature, body.top_p, body.seed, bias)
        tokens, text, finish = result.tokens, result.text, result.finish
    logprobs = None
    if body.logprobs is not None:
        positions = list(range(1 if body.echo else len(ids), len(ids) + len(tokens)))
        if next_row is not None and not body.echo:  # row j predicts position first + j
            rows, first = next_row, len(ids)
        else:
            rows, first = served.logprobs(ids + tokens[:-1] if tokens else ids, bias, echo=True), 1
        sequence = ids + tokens
        logprobs = {"tokens": [], "token_logprobs": [], "top_logprobs": [], "text_offset": []}
        if body.echo:  # the first prompt token has no context
            logprobs["tokens"].append(served.token_text(sequence[0]))
            logprobs["token_logprobs"].append(None)
            logprobs["top_logprobs"].append(None)
        for position in positions:
            row = rows[position - first]
            token = sequence[position]
            logprobs["tokens"].append(served.token_text(token))
            logprobs["token_logprobs"].append(float(row[token]))
            logprobs["top_logprobs"].append(_top(served, row, body.logprobs) if body.logprobs else {})
        offset = 0
        for piece in logprobs["tokens"]:
            logprobs["text_offset"].append(offset)
            offset += len(piece)
    prompt_text = served.lm.tokenizer.decode(ids) if body.echo else ""
    return {"choice": {"text": prompt_text + text, "logprobs": logprobs, "finish_reason": finish},
            "generated": len(tokens)}


def _top(served: ServedModel, row, k: int) -> dict[str, float]:
    values, indices = row.topk(k)
    top: dict[str, float] = {}
    for value, index in zip(values.tolist(), indices.tolist()):
        top.setdefault(served.token_text(index), value)  # two tokens can read the same: keep the likelier
    return top


def _deltas(stream, model: str, kind: str) -> Iterator[dict]:
    ident = f"{'chatcmpl' if kind.startswith('chat') else 'cmpl'}-{uuid.uuid4().hex}"
    sent = ""

    def chunk(piece: str | None, finish: str | None, first: bool = False) -> dict:
        if kind.startswith("chat"):
            delta: dict[str, Any] = {"role": "assistant", "content": ""} if first else ({"content": piece} if piece else {})
            choice = {"index": 0, "delta": delta, "finish_reason": finish}
        else:
            choice = {"index": 0, "text": piece or "", "logprobs": None, "finish_reason": finish}
        return {"id": ident, "object": kind, "created": int(time.time()), "model": model, "choices": [choice]}

    if kind.startswith("chat"):
        yield chunk(None, None, first=True)
    finish = "length"
    for part in stream:
        if len(part.text) > len(sent):
            yield chunk(part.text[len(sent):], None)
            sent = part.text
        finish = part.finish
    yield chunk(None, finish)


def _sse(events: Iterator[dict]) -> StreamingResponse:
    def lines():
        try:
            for event in events:
                yield f"data: {json.dumps(event, ensure_ascii=False)}\n\n"
        except Exception as exc:  # noqa: BLE001 - headers are sent: report in-band, as OpenAI does
            yield f"data: {json.dumps({'error': {'message': str(exc), 'type': 'server_error'}})}\n\n"
        yield "data: [DONE]\n\n"

    return StreamingResponse(lines(), media_type="text/event-stream")


def _error(status: int, message: str, code: str, param: str | None = None) -> JSONResponse:
    kind = {401: "authentication_error", 404: "not_found_error", 413: "invalid_request_error"}.get(
        status, "invalid_request_error" if status < 500 else "server_error")
    return JSONResponse(status_code=status, content={"error": {"message": message, "type": kind, "param": param, "code": code}})
