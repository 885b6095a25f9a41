"""``--backend openai`` for specs with ``scoring: cloze``: each option's log-likelihood from the server's echoed
prompt log-probabilities, as lm-evaluation-harness's ``local-completions`` computes loglikelihood.

One completions request per question, one prompt per option (its context + continuation), with
``echo=True, logprobs=1, max_tokens=1``: what lm-eval 0.4.13 sends (``openai_completions.py``; vLLM refuses
``max_tokens=0``). The answer's ``token_logprobs`` cover the prompt's tokens and then the one generated
token; an option's log-likelihood is the sum over its continuation's tokens, greedy when each was the top
token (lm-eval's ``is_greedy``).

With ``--tokenizer`` the prompts go as token ids split exactly as lm-eval's (``cloze_tokens.py``, as
local-completions with its default ``tokenized_requests``), so the numbers are the hf backend's. Without one
they go as text, and the continuation starts at the first echoed token whose ``text_offset`` is the
context's length; a token across that boundary stops the run with one line (pass --tokenizer).
"""

from __future__ import annotations

import math

from evalkit.backends.cloze_tokens import encode_request
from evalkit.backends.outputs import ClozeScore
from evalkit.errors import EvalkitError


def cloze_work(backend):
    """The coroutine ``(client, request) -> ClozeScore`` that ``OpenAIBackend._run`` schedules per question."""
    tokenizer, url = backend.tokenizer, backend.options.base_url

    async def score(client, request) -> ClozeScore:
        if tokenizer is not None:
            context, continuations = encode_request(tokenizer, request)
            prompts = [context + ids for ids in continuations]
            spans = [(len(context), len(ids)) for ids in continuations]
        else:
            context = request.prompt.rstrip()  # lm-eval: the prompt's trailing whitespace opens the continuation
            moved = request.prompt[len(context):]
            prompts = [context + moved + text for text in request.continuations]
        response = await client.completions.create(model=backend.model, prompt=prompts, max_tokens=1, temperature=0,
                                                   logprobs=1, echo=True)
        choices = sorted(response.choices, key=lambda choice: choice.index)
        if len(choices) != len(prompts):
            raise EvalkitError(f"{url}: {len(choices)} answers to {len(prompts)} prompts for {_where(request)}; this "
                               "server does not take a list of prompts")
        loglikelihoods, greedy = [], []
        for number, choice in enumerate(choices):
            logprobs = choice.logprobs
            if logprobs is None or not logprobs.token_logprobs:
                raise EvalkitError(f"{url}: the server returned no prompt log-probabilities (echo) for {_where(request)}; "
                                   "scoring: cloze needs a server that echoes them (evalkit serve, vLLM)")
            echoed = len(logprobs.token_logprobs) - 1  # the last one is the generated token's
            if tokenizer is not None:
                start, length = spans[number]
                if echoed != start + length:
                    raise EvalkitError(f"{url}: {echoed} prompt tokens echoed for {_where(request)} option "
                                       f"{request.labels[number]}, {start + length} sent; the server re-tokenised "
                                       "the prompt")
            else:
                # offsets count the decoded prompt, which may open with a BOS the text did not have
                decoded = "".join(logprobs.tokens[:echoed])
                shift = len(decoded) - len(prompts[number]) if decoded.endswith(prompts[number]) else 0
                start = _boundary(logprobs.text_offset[:echoed], shift + len(context), url, request)
            values = logprobs.token_logprobs[start:echoed]
            if not values or any(v is None for v in values):
                raise EvalkitError(f"{url}: no log-probabilities for the continuation of {_where(request)} option "
                                   f"{request.labels[number]}; the server cannot score cloze")
            loglikelihoods.append(math.fsum(values))
            tops = (logprobs.top_logprobs or [None] * echoed)[start:echoed]
            greedy.append(all(top and value >= max(top.values()) for value, top in zip(values, tops)))
        prompt_tokens = response.usage.prompt_tokens // len(prompts) if response.usage else 0
        return ClozeScore(request, loglikelihoods, greedy, prompt_tokens, False)

    return score


def _boundary(offsets: list[int], context_chars: int, url: str, request) -> int:
    """The first echoed token of the continuation: the one starting at the context's end."""
    for position, offset in enumerate(offsets):
        if offset == context_chars:
            return position
        if offset > context_chars:
            break
    raise EvalkitError(f"{url}: a token of {_where(request)} spans the end of its prompt and the start of an option, so "
                       "the option's log-likelihood cannot be read from text; pass --tokenizer MODEL (token-id prompts)")


def _where(request) -> str:
    return f"{request.task} {request.subject} #{request.index}"
