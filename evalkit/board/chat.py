"""The board's playground: chat with any model `--model` accepts, one or two side by side, the reply streamed
as it is generated. Greedy decoding, as evaluation uses, so what a person sees is what the runs scored.

Models load in the board's process on first use (at most ``LOADED_MODELS`` kept; the oldest is dropped),
and each model generates for one conversation at a time (a lock per model: generate is not re-entrant)."""

from __future__ import annotations

import json
import threading
from collections import OrderedDict

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import StreamingResponse

from evalkit.board.web import check_csrf, page, require
from evalkit.errors import EvalkitError

router = APIRouter()
LOADED_MODELS = 2
MAX_NEW_TOKENS = 512
MAX_TURNS, MAX_CHARS = 40, 20_000  # a conversation the page sends back: bounded before any tokenising
MAX_BODY = 200_000  # bytes read of a request body (20,000 characters of CJK text in JSON escapes fit)

_models: OrderedDict = OrderedDict()
_models_lock = threading.Lock()


def loaded(spec: str):
    """(LoadedModel, its generation lock), loading it now if it is not loaded."""
    from evalkit.models.loader import load_model

    with _models_lock:
        if spec in _models:
            _models.move_to_end(spec)
            return _models[spec]
        entry = (load_model(spec), threading.Lock())
        _models[spec] = entry
        while len(_models) > LOADED_MODELS:
            _models.popitem(last=False)
        return entry


def check_messages(messages) -> list[dict]:
    if not isinstance(messages, list) or not messages or len(messages) > MAX_TURNS:
        raise EvalkitError(f"messages: a list of 1 to {MAX_TURNS} turns")
    total = 0
    for turn in messages:
        if not isinstance(turn, dict) or turn.get("role") not in ("user", "assistant") or not isinstance(turn.get("content"), str):
            raise EvalkitError('messages: each turn is {"role": "user" | "assistant", "content": text}')
        total += len(turn["content"])
    if total > MAX_CHARS or messages[-1]["role"] != "user":
        raise EvalkitError(f"messages: at most {MAX_CHARS} characters in all, ending with a user turn")
    return [{"role": t["role"], "content": t["content"]} for t in messages]


def prompt_ids(lm, messages: list[dict]) -> list[int]:
    """The model's chat template around the conversation; a model without one gets the turns as plain text."""
    from evalkit.backends.hf.generation import has_chat_template

    tokenizer = lm.tokenizer
    if has_chat_template(tokenizer):
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    else:
        text = "".join(f"{t['role'].capitalize()}: {t['content']}\n" for t in messages) + "Assistant:"
    return tokenizer(text, add_special_tokens=not has_chat_template(tokenizer))["input_ids"][-lm.context_length // 2:]


def stream_reply(lm, lock: threading.Lock, messages: list[dict], max_new_tokens: int):
    """The reply's text pieces as they are decoded (transformers' TextIteratorStreamer over greedy generate)."""
    import torch
    from transformers import TextIteratorStreamer

    from evalkit.backends.hf.generation import stop_token_ids

    ids = torch.tensor([prompt_ids(lm, messages)], device=lm.device)
    streamer = TextIteratorStreamer(lm.tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=600)
    eos = stop_token_ids(lm)

    def run():
        with lock, torch.inference_mode():
            lm.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                              do_sample=False, num_beams=1, eos_token_id=eos or None, streamer=streamer,
                              pad_token_id=lm.tokenizer.pad_token_id)

    threading.Thread(target=run, daemon=True).start()
    yield from streamer


@router.get("/chat")
def chat_page(request: Request, a: str = "smollm2-135m-instruct", b: str = ""):
    return page(request, "board_chat.html.j2", page_title="playground", a=a, b=b, max_new_tokens=MAX_NEW_TOKENS)


@router.post("/chat/reply")
async def chat_reply(request: Request):
    """JSON ``{csrf, model, messages, max_new_tokens}`` -> the reply as a text stream (one model per request:
    side by side is two requests, so each column streams at its own pace)."""
    try:
        body = json.loads((await request.body())[:MAX_BODY])
    except ValueError:
        raise HTTPException(400, "the body is not JSON") from None
    if not isinstance(body, dict):
        raise HTTPException(400, "the body must be a JSON object")
    check_csrf(request, str(body.get("csrf", "")))
    require(request, "voter")
    model, tokens = body.get("model"), body.get("max_new_tokens", 256)
    if not isinstance(model, str) or not model.strip():
        raise HTTPException(400, "model: a name or path as --model takes it")
    if not isinstance(tokens, int) or not 1 <= tokens <= MAX_NEW_TOKENS:
        raise HTTPException(400, f"max_new_tokens: 1..{MAX_NEW_TOKENS}")
    try:
        messages = check_messages(body.get("messages"))
        lm, lock = loaded(model.strip())
    except EvalkitError as exc:
        raise HTTPException(400, str(exc)) from None
    return StreamingResponse(stream_reply(lm, lock, messages, tokens), media_type="text/plain; charset=utf-8",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
