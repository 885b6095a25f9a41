"""The response bodies of ``evalkit serve``: a completion choice with OpenAI's legacy ``logprobs`` object,
and streamed chunks as server-sent events (with OpenAI's final ``usage`` chunk when asked for)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

from fastapi.responses import StreamingResponse

from evalkit.backends.outputs import drop_partial_character
from evalkit.serve.engine import ServedModel
from evalkit.serve.errors import error_log, internal_error_body
from evalkit.serve.schemas import CompletionRequest


def usage(prompt_tokens: int, completion_tokens: int) -> dict:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def complete(served: ServedModel, ids: list[int], max_tokens: int, stop: list[str], body: CompletionRequest,
             bias: dict[int, float] | None) -> dict:
    """One prompt's choice: the continuation and, if asked, log-probabilities (prompt ones too with echo)."""
    next_row = echoed = None
    if max_tokens == 0:
        tokens, text, finish = [], "", "length"
    elif max_tokens == 1 and body.temperature == 0:  # one forward pass serves both the token and its logprobs
        # with echo (lm-eval's loglikelihood requests) the same pass gives the prompt's rows too: kept for below
        echoed = served.logprobs(ids, bias, echo=True) if body.echo and body.logprobs is not None else None
        next_row = echoed[-1:] if echoed is not None else served.logprobs(ids, bias, echo=False)
        token = int(next_row[-1].argmax())
        tokens, finish = [token], ("stop" if token in served.eos else "length")
        text = "" if finish == "stop" else drop_partial_character(served.lm.tokenizer.decode(tokens, skip_special_tokens=True), finish)
    else:
        result = served.generate(ids, max_tokens, stop, body.temperature, body.top_p, body.seed, bias)
        tokens, text, finish = result.tokens, result.text, result.finish
    prompt_text = served.lm.tokenizer.decode(ids) if body.echo else ""
    logprobs = None
    if body.logprobs is not None:
        positions = list(range(1 if body.echo else len(ids), len(ids) + len(tokens)))
        if next_row is not None and not body.echo:  # row j predicts position first + j
            rows, first = next_row, len(ids)
        elif next_row is not None and echoed is not None:  # row j of the prompt's pass predicts position j + 1
            rows, first = echoed, 1
        else:
            rows, first = served.logprobs(ids + tokens[:-1] if tokens else ids, bias, echo=True), 1
        sequence = ids + tokens
        # OpenAI's shape: logprobs=0 gives the chosen tokens' log-probabilities and top_logprobs null
        logprobs = {"tokens": [], "token_logprobs": [], "top_logprobs": [] if body.logprobs else None, "text_offset": []}
        if body.echo:  # the first prompt token has no context
            logprobs["tokens"].append(served.token_text(sequence[0]))
            logprobs["token_logprobs"].append(None)
            if body.logprobs:
                logprobs["top_logprobs"].append(None)
        for position in positions:
            row = rows[position - first]
            token = sequence[position]
            logprobs["tokens"].append(served.token_text(token))
            logprobs["token_logprobs"].append(float(row[token]))
            if body.logprobs:
                logprobs["top_logprobs"].append(top(served, row, body.logprobs))
        # offsets into prompt + completion, as OpenAI counts them (without echo the first is the prompt's length)
        offset = 0 if body.echo else len(served.lm.tokenizer.decode(ids))
        for piece in logprobs["tokens"]:
            logprobs["text_offset"].append(offset)
            offset += len(piece)
    return {"choice": {"text": prompt_text + text, "logprobs": logprobs, "finish_reason": finish},
            "generated": len(tokens)}


def top(served: ServedModel, row, k: int) -> dict[str, float]:
    values, indices = row.topk(k)
    best: dict[str, float] = {}
    for value, index in zip(values.tolist(), indices.tolist()):
        best.setdefault(served.token_text(index), value)  # two tokens can read the same: keep the likelier
    return best


def deltas(stream, model: str, kind: str, fingerprint: str, prompt_tokens: int, state: dict,
           include_usage: bool) -> Iterator[dict]:
    """Chunks of a streamed answer; ``state["usage"]`` is filled in as tokens arrive (for the access log)."""
    chat = kind.startswith("chat")
    ident = f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}"
    created = int(time.time())
    sent, generated = "", 0
    state["usage"] = usage(prompt_tokens, 0)

    def chunk(piece: str | None, finish: str | None, first: bool = False) -> dict:
        if chat:
            delta: dict[str, Any] = {"role": "assistant", "content": ""} if first else ({"content": piece} if piece else {})
            choice = {"index": 0, "delta": delta, "finish_reason": finish}
        else:
            choice = {"index": 0, "text": piece or "", "logprobs": None, "finish_reason": finish}
        body = {"id": ident, "object": kind, "created": created, "model": model, "system_fingerprint": fingerprint,
                "choices": [choice]}
        return {**body, "usage": None} if include_usage else body

    if chat:
        yield chunk(None, None, first=True)
    finish = "length"
    for part in stream:
        generated = len(part.tokens)
        state["usage"] = usage(prompt_tokens, generated)
        if len(part.text) > len(sent):
            yield chunk(part.text[len(sent):], None)
            sent = part.text
        finish = part.finish
    yield chunk(None, finish)
    if include_usage:  # OpenAI's last chunk: no choices, the whole request's usage
        yield {"id": ident, "object": kind, "created": created, "model": model, "system_fingerprint": fingerprint,
               "choices": [], "usage": usage(prompt_tokens, generated)}


def sse(events: Iterator[dict], request_id: str) -> StreamingResponse:
    def lines():
        try:
            for event in events:
                yield f"data: {json.dumps(event, ensure_ascii=False)}\n\n"
        except Exception:  # noqa: BLE001 - headers are sent: report in-band, as OpenAI does
            error_log.exception("request %s failed while streaming", request_id)
            yield f"data: {json.dumps(internal_error_body(request_id))}\n\n"
        yield "data: [DONE]\n\n"

    return StreamingResponse(lines(), media_type="text/event-stream")
