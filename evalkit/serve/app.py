"""``evalkit serve``'s OpenAI-compatible API (FastAPI): /v1/models, /v1/completions, /v1/chat/completions.

The request and response shapes follow OpenAI's (legacy completions with ``logprobs``/``echo``/
``logit_bias`` and prompts as text or token ids; chat completions with text content parts, streamed
as server-sent events too). Errors are OpenAI-style JSON with the right status code on every path
(``errors.py``); the server keeps serving after any bad request.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid

from fastapi import Depends, FastAPI, Request

from evalkit.serve.engine import PromptTooLong, ServedModel
from evalkit.serve.errors import ApiError, BoundedBody, RequestLog, install_error_handlers
from evalkit.serve.responses import complete, deltas, sse, usage
from evalkit.serve.schemas import ChatRequest, CompletionRequest, stop_list


def system_fingerprint(served: ServedModel) -> str:
    """Stable for one model and one evalkit: the served identity (weight hashes) and the version."""
    from evalkit import __version__

    identity = json.dumps(served.lm.identity, sort_keys=True, default=str)
    return "fp_" + hashlib.sha256(f"{identity}|{__version__}|{served.lm.dtype}".encode()).hexdigest()[:12]


def create_app(served: ServedModel, *, api_key: str | None = None, max_tokens_limit: int = 2048,
               max_request_bytes: int = 4 << 20) -> FastAPI:
    app = FastAPI(title="evalkit serve", version="1")
    created = int(time.time())
    fingerprint = system_fingerprint(served)
    vocab = served.lm.model.config.vocab_size
    install_error_handlers(app)
    app.add_middleware(BoundedBody, limit=max_request_bytes)
    app.add_middleware(RequestLog)  # added last: outermost, so it sees (and logs) every answer

    def authorised(request: Request) -> None:
        if api_key is None:
            return
        header = request.headers.get("authorization", "")
        given = header[7:] if header.lower().startswith("bearer ") else ""
        if not hmac.compare_digest(given.encode(), api_key.encode()):
            raise ApiError(401, "missing or wrong API key (send 'Authorization: Bearer KEY')", "invalid_api_key")

    def model_card() -> dict:
        return {"id": served.name, "object": "model", "created": created, "owned_by": "evalkit",
                "max_model_len": served.context_length, "evalkit_identity": served.lm.identity}

    @app.get("/health")
    def health():
        return {"status": "ok"}

    @app.get("/v1/models", dependencies=[Depends(authorised)])
    def models():
        return {"object": "list", "data": [model_card()]}

    @app.get("/v1/models/{model_id:path}", dependencies=[Depends(authorised)])
    def model(model_id: str):
        if model_id != served.name:
            raise ApiError(404, f"model {model_id!r} does not exist; this server serves {served.name!r}",
                           "model_not_found", "model")
        return model_card()

    def check(body, max_tokens: int) -> None:
        body.refuse_unimplemented()
        if body.model != served.name:
            raise ApiError(404, f"model {body.model!r} does not exist; this server serves {served.name!r}",
                           "model_not_found", "model")
        if body.n != 1:
            raise ApiError(400, "only n=1 is supported", "invalid_request", "n")
        if max_tokens > max_tokens_limit:
            raise ApiError(400, f"max_tokens {max_tokens} is over this server's limit of {max_tokens_limit}",
                           "invalid_request", "max_tokens")

    def biases(raw: dict[str, float] | None) -> dict[int, float] | None:
        if not raw:
            return None
        bias = {int(k): float(v) for k, v in raw.items()}  # keys and values already bounded by the schema
        if any(k >= vocab for k in bias):
            raise ApiError(400, f"logit_bias: token ids in 0..{vocab - 1}, values in -100..100", "invalid_request",
                           "logit_bias")
        return bias

    def encode(prompt, add_special_tokens: bool, room: int) -> list[int]:
        if isinstance(prompt, list) and max(prompt) >= vocab:
            raise ApiError(400, f"prompt: token id {max(prompt)} is outside the vocabulary (0..{vocab - 1})",
                           "invalid_request", "prompt")
        try:
            return served.encode(prompt, add_special_tokens, room)
        except PromptTooLong as exc:
            raise ApiError(400, str(exc), "context_length_exceeded", "prompt") from None

    @app.post("/v1/completions", dependencies=[Depends(authorised)])
    def completions(body: CompletionRequest, request: Request):
        max_tokens = 16 if body.max_tokens is None else body.max_tokens
        check(body, max_tokens)
        if max_tokens == 0 and not body.echo:
            raise ApiError(400, "max_tokens 0 needs echo (prompt log-probabilities only)", "invalid_request", "max_tokens")
        stop = stop_list(body.stop)
        bias = biases(body.logit_bias)
        encoded = [encode(p, body.add_special_tokens, max_tokens) for p in body.prompts()]  # every prompt checked first
        if body.stream:
            if len(encoded) != 1 or body.echo or body.logprobs is not None:
                raise ApiError(400, "streaming takes one prompt, without echo or logprobs", "invalid_request", "stream")
            stream = served.stream(encoded[0], max_tokens, stop, body.temperature, body.top_p, body.seed, bias)
            return sse(deltas(stream, body.model, "text_completion", fingerprint, len(encoded[0]), request.scope["state"],
                              include_usage=bool(body.stream_options and body.stream_options.include_usage)),
                       request.state.request_id)
        choices, prompt_tokens, completion_tokens = [], 0, 0
        for index, ids in enumerate(encoded):
            choice = complete(served, ids, max_tokens, stop, body, bias)
            choices.append({"index": index, **choice["choice"]})
            prompt_tokens += len(ids)
            completion_tokens += choice["generated"]
        request.state.usage = usage(prompt_tokens, completion_tokens)
        return {"id": f"cmpl-{uuid.uuid4().hex}", "object": "text_completion", "created": int(time.time()),
                "model": body.model, "system_fingerprint": fingerprint, "choices": choices, "usage": request.state.usage}

    @app.post("/v1/chat/completions", dependencies=[Depends(authorised)])
    def chat_completions(body: ChatRequest, request: Request):
        max_tokens = body.max_completion_tokens or body.max_tokens or min(max_tokens_limit, 512)
        check(body, max_tokens)
        if body.logprobs:
            raise ApiError(400, "logprobs on chat completions are not supported; use /v1/completions", "invalid_request", "logprobs")
        tokenizer = served.lm.tokenizer
        if not getattr(tokenizer, "chat_template", None):
            raise ApiError(400, f"model {served.name!r} has no chat template; use /v1/completions", "invalid_request", "messages")
        messages = [{"role": m.role, "content": m.text(i)} for i, m in enumerate(body.messages)]
        try:
            text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        except Exception as exc:  # noqa: BLE001 - a template's own error (e.g. roles out of order) is the client's
            raise ApiError(400, f"the chat template rejected these messages: {exc}", "invalid_request", "messages") from None
        ids = encode(text, False, max_tokens)  # the template writes its own special tokens
        stream = served.stream(ids, max_tokens, stop_list(body.stop), body.temperature, body.top_p, body.seed,
                               biases(body.logit_bias))
        if body.stream:
            return sse(deltas(stream, body.model, "chat.completion.chunk", fingerprint, len(ids), request.scope["state"],
                              include_usage=bool(body.stream_options and body.stream_options.include_usage)),
                       request.state.request_id)
        *_, final = stream
        request.state.usage = usage(len(ids), len(final.tokens))
        return {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
                "model": body.model, "system_fingerprint": fingerprint,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": final.text},
                             "finish_reason": final.finish}],
                "usage": request.state.usage}

    return app
