"""Cloze requests as token ids, split into context and continuation exactly as lm-evaluation-harness 0.4.13
splits them (``lm_eval/api/model.py`` ``_encode_pair`` and ``loglikelihood``, ``models/huggingface.py``
``tok_encode``), so a log-likelihood here is the one lm-eval computes for the same model.

The rules, in lm-eval's order:

* trailing whitespace of the context moves to the front of the continuation ("Answer: " + "Paris" is
  scored as "Answer:" + " Paris"), since BPE vocabularies attach a space to the word after it;
* the continuation's tokens are those of ``encode(context + continuation)`` after the first
  ``len(encode(context))``: the whole string is tokenised once, so merges across the boundary are the
  tokenizer's own, and the context tokens are the same for every option of a question;
* special tokens: the tokenizer's default (a BOS where it adds one), except that a string already starting
  with the BOS text gets none; chat-rendered prompts carry their own;
* an empty context is the prefix token (BOS, else EOS), unless the continuation starts with it.

No torch here: the hf, vLLM and openai backends share it.
"""

from __future__ import annotations

from evalkit.errors import EvalkitError


def prefix_token_id(tokenizer) -> int:
    """lm-eval's ``prefix_token_id``: BOS where the tokenizer has one, else EOS."""
    return tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id


def _special(tokenizer, text: str, chat: bool) -> bool:
    if chat:
        return False
    prefix = tokenizer.decode([prefix_token_id(tokenizer)])  # lm-eval's has_bos_prefix check, on this text
    return not (prefix and text.startswith(prefix))


def encode_request(tokenizer, request) -> tuple[list[int], list[list[int]]]:
    """(context ids, one continuation id list per option) of a ``ClozeRequest``."""
    context, chat = request.prompt, getattr(request, "chat", False)
    if context == "":
        pairs = []
        for continuation in request.continuations:
            ids = tokenizer.encode(continuation, add_special_tokens=False)
            prefix = prefix_token_id(tokenizer)
            pairs.append(([prefix], ids) if not ids or ids[0] != prefix else (ids[:1], ids[1:]))
        contexts = {tuple(c) for c, _ in pairs}
        if len(contexts) != 1:  # only when some options start with BOS and others not: no shared context
            raise EvalkitError(f"{_where(request)}: an empty prompt whose options start with different special "
                               "tokens cannot share a context; give the question a prompt")
        return pairs[0][0], [_checked(request, i, ids) for i, (_, ids) in enumerate(pairs)]
    stripped = context.rstrip()
    moved = context[len(stripped):]  # lm-eval: trailing whitespace belongs to the continuation
    if not stripped:
        raise EvalkitError(f"{_where(request)}: the prompt is only whitespace; give the question a prompt")
    special = _special(tokenizer, stripped, chat)
    texts = [stripped] + [stripped + moved + c for c in request.continuations]
    encoded = tokenizer(texts, add_special_tokens=special)["input_ids"]
    context_ids = encoded[0]
    return context_ids, [_checked(request, i, whole[len(context_ids):]) for i, whole in enumerate(encoded[1:])]


def _checked(request, option: int, ids: list[int]) -> list[int]:
    if not ids:
        raise EvalkitError(f"{_where(request)}: option {request.labels[option]} ({request.choices[option]!r}) has no "
                           "tokens after the prompt; fix the row (an empty option) or the spec's target_delimiter")
    return list(ids)


def _where(request) -> str:
    return f"{request.task} {request.subject} #{request.index}"


def fit_to_context(context_ids: list[int], continuations: list[list[int]], limit: int) -> tuple[list[list[int]], bool]:
    """Each option's model input (context + continuation, last token dropped) cut to its last ``limit`` tokens,
    as lm-eval's ``(context_enc + continuation_enc)[-(max_length + 1):][:-1]``; and whether any was cut."""
    rows, cut = [], False
    for ids in continuations:
        whole = context_ids + ids
        if len(whole) - 1 > limit:
            whole, cut = whole[-(limit + 1):], True
        rows.append(whole[:-1])
    return rows, cut
