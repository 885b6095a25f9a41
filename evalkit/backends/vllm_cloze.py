"""``--backend vllm`` for specs with ``scoring: cloze``: each option's log-likelihood from vLLM's
``prompt_logprobs`` over its context + continuation, tokenised as the hf backend does (lm-eval's split,
``cloze_tokens.py``). Prefix caching (on in VLLMBackend) computes a question's shared context once; a
question's options go to the engine together, a chunk of questions per call as for letter scoring.
"""

from __future__ import annotations

import math

from evalkit.backends.cloze_tokens import encode_request, fit_to_context
from evalkit.backends.outputs import ClozeScore
from evalkit.errors import EvalkitError


def score_cloze(backend, requests, config, label: str) -> list[ClozeScore]:
    from vllm import SamplingParams

    if not requests:
        return []
    limit = backend.lm.context_length - 1  # the engine generates one token after each prompt
    encoded = [encode_request(backend.lm.tokenizer, r) for r in requests]
    fitted = [fit_to_context(ctx, conts, limit) for ctx, conts in encoded]
    truncated = [cut for _, cut in fitted]
    if any(truncated) and config.truncation != "left":
        first = requests[truncated.index(True)]
        raise EvalkitError(f"{sum(truncated)} of {len(requests)} questions of {label} do not fit the model's context "
                           f"of {limit + 1} tokens with their options (first: {first.subject} #{first.index}); lower "
                           "--num-fewshot, or pass --truncation left")
    # prompt_logprobs=1: each prompt token's own log-probability and its rank (1: the greedy token)
    params = SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=1)
    memo = backend.memo("cloze", [{"prompt": r.prompt, "continuations": list(r.continuations),
                                   "truncation": config.truncation, "context": limit} for r in requests])

    def compute(batch: list[int]) -> list[dict]:
        prompts, owners = [], []
        for i in batch:
            for row, ids in zip(fitted[i][0], encoded[i][1]):
                prompts.append(row + ids[-1:])  # the model input plus the continuation's last token
                owners.append((i, len(ids)))
        outputs = backend._run(prompts, params)
        values = {i: {"loglikelihoods": [], "greedy": []} for i in batch}
        for prompt, (i, length), output in zip(prompts, owners, outputs):
            # prompt_logprobs[j]: token j given the tokens before it (None for the first)
            entries = [output.prompt_logprobs[j][prompt[j]] for j in range(len(prompt) - length, len(prompt))]
            values[i]["loglikelihoods"].append(math.fsum(e.logprob for e in entries))
            values[i]["greedy"].append(all(e.rank == 1 for e in entries))
        return [values[i] for i in batch]

    rows = backend._chunks(len(requests), memo, compute, label or "scoring", "q", config.progress)
    return [ClozeScore(r, row["loglikelihoods"], row["greedy"], len(ctx), cut)
            for r, row, (ctx, _), cut in zip(requests, rows, encoded, truncated)]
