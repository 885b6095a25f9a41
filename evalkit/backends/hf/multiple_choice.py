"""Letter scoring: one forward pass per question, softmax over its answer-label logits.

This is LLaMA-Factory's method (and lm-evaluation-harness's for single-token continuations):
the logits at the last prompt position, restricted to the tokens of the labels (A, B, C and D for
the shipped specs); a question with fewer options than the spec is scored over its own. By default
each subject's shared few-shot prefix is computed once and only the question suffixes run
(evalkit/backends/hf/prefix_cache.py); ``reuse_prefix=False`` computes every prompt whole.
"""

from __future__ import annotations

import sys

import torch
from tqdm.auto import tqdm

from evalkit.backends.outputs import ChoiceScore, best_letter, choice_token_ids, option_count  # noqa: F401  (re-exported)
from evalkit.errors import EvalkitError
from evalkit.models.loader import LoadedModel
from evalkit.requests import MultipleChoiceRequest
from evalkit.backends.hf.batching import HalvingOnOom, auto_batch_size, length_sorted_batches, logits_only_at, right_padded
from evalkit.backends.hf.prefix_cache import common_prefix_length, prefix_cache, suffix_last_logits, supports_prefix_reuse
from evalkit.backends.hf.shared_prefix_attention import supports_shared_prefix_attention

# Length buckets: a batch closes before its pad tokens exceed 10% of its real tokens. Pads cost
# full compute; a subject's question suffixes vary ~3x in length (unbounded, batch 8 pads ~30%).
# Packed suffixes (shared-prefix attention) have no pads, so their batches are not bounded.
MAX_PADDING = 0.1


def tokenize_prompts(lm: LoadedModel, requests: list[MultipleChoiceRequest], truncation: str, label: str):
    """Token ids of each full prompt, checked (or left-truncated) against the model's context."""
    plain = [r for r in requests if not r.chat]
    chat = [r for r in requests if r.chat]
    encoded: dict[int, list[int]] = {}
    for group, special in ((plain, True), (chat, False)):  # chat templates already carry BOS
        if group:
            ids = lm.tokenizer([r.prompt for r in group], add_special_tokens=special)["input_ids"]
            encoded.update({id(r): x for r, x in zip(group, ids)})
    sequences = [encoded[id(r)] for r in requests]
    limit = lm.context_length
    too_long = [i for i, s in enumerate(sequences) if len(s) > limit]
    if too_long and truncation != "left":
        first = requests[too_long[0]]
        raise EvalkitError(
            f"{len(too_long)} of {len(requests)} prompts of {label} are longer than the model's context of {limit} tokens "
            f"(first: {first.subject} #{first.index}, {len(sequences[too_long[0]])} tokens); lower --num-fewshot, "
            "or pass --truncation left to keep each prompt's last tokens"
        )
    if too_long:
        print(f"evalkit: warning: {len(too_long)} of {len(requests)} prompts of {label} were longer than the context "
              f"({limit} tokens); kept their last {limit} tokens (left truncation)", file=sys.stderr)
    flags = [False] * len(sequences)
    for i in too_long:
        sequences[i] = sequences[i][-limit:]
        flags[i] = True
    return sequences, flags


def score_multiple_choice(lm: LoadedModel, requests: list[MultipleChoiceRequest], targets: list[str],
                          batch_size: int | str = 1, truncation: str = "error", label: str = "",
                          progress: bool = True, reuse_prefix: bool = False, memo=None) -> list[ChoiceScore]:
    """Score every request; with ``reuse_prefix`` each subject's shared prefix is computed once.

    Both paths give the same predictions and probabilities (to fp32 rounding, ~1e-6); the
    full-prompt path (``reuse_prefix=False``, ``evalkit run --full-prompt``) is the reference.
    ``memo`` (a request_cache.BatchMemo over ``requests``): batches already cached are read back,
    the others computed and saved, batch by batch; a subject whose batches are all cached skips its prefix.
    """
    if not requests:
        return []
    letter_ids = torch.tensor(choice_token_ids(lm.tokenizer, targets))
    counts = [option_count(r, targets) for r in requests]
    sequences, truncated = tokenize_prompts(lm, requests, truncation, label)
    lengths = [len(s) for s in sequences]
    groups = prefix_groups(requests, sequences, truncated) if reuse_prefix and supports_prefix_reuse(lm.model) else []
    grouped = {i for _, members in groups for i in members}
    plain = [i for i in range(len(requests)) if i not in grouped]

    results: list[ChoiceScore | None] = [None] * len(requests)
    bar = tqdm(total=len(requests), desc=label or "scoring", unit="q", disable=not progress, dynamic_ncols=True)

    def record(batch: list[int], probs: list[list[float]]) -> None:
        for row, i in enumerate(batch):
            p = probs[row]
            results[i] = ChoiceScore(requests[i], p, best_letter(p, requests[i].labels), lengths[i], truncated[i])
        if memo is not None:
            bar.set_postfix(memo.postfix(), refresh=False)
        bar.update(len(batch))

    def memoised(forward):
        if memo is None:
            return forward

        def run(batch: list[int]) -> list[list[float]]:
            hit = memo.cached(batch)
            if hit is not None:  # float64 lists round-trip exactly through the cache's JSON
                return hit
            probs = forward(batch)
            memo.save(batch, probs)
            return probs

        return run

    if plain:
        size = _batch_size(batch_size, lm, max(lengths[i] for i in plain))
        runner = HalvingOnOom()
        batches = [[plain[j] for j in b] for b in length_sorted_batches([lengths[i] for i in plain], size, MAX_PADDING)]
        forward_plain = memoised(lambda b: _forward_letters(lm, [sequences[i] for i in b], letter_ids,
                                                            [counts[i] for i in b]))
        for batch, probs in runner.run(batches, forward_plain):
            record(batch, probs)
    runner = HalvingOnOom()  # one for all subjects: a size that ran out of memory once is not retried
    for prefix_length, members in groups:
        suffixes = {i: sequences[i][prefix_length:] for i in members}
        size = _batch_size(batch_size, lm, max(len(s) for s in suffixes.values()), cached=prefix_length)
        suffix_lengths = [len(suffixes[i]) for i in members]
        packed = supports_shared_prefix_attention(lm.model, prefix_length + max(suffix_lengths), lm.device)
        bound = None if packed else MAX_PADDING
        batches = [[members[j] for j in b] for b in length_sorted_batches(suffix_lengths, size, bound)]
        if memo is not None and all(memo.has(b) for b in batches):  # nothing left to compute for this prefix
            for batch in batches:
                record(batch, memo.cached(batch))
            continue
        try:
            cache = prefix_cache(lm.model, sequences[members[0]][:prefix_length], lm.device)
        except torch.cuda.OutOfMemoryError:
            raise EvalkitError(f"out of GPU memory computing a {prefix_length}-token prefix of {label}; "
                               "lower --num-fewshot or use a smaller model") from None

        def forward(batch: list[int]) -> list[list[float]]:
            logits = suffix_last_logits(lm.model, cache, prefix_length, [suffixes[i] for i in batch],
                                        lm.tokenizer.pad_token_id, lm.device, columns=letter_ids)
            return _letter_probabilities(logits, [counts[i] for i in batch])

        for batch, probs in runner.run(batches, memoised(forward)):
            record(batch, probs)
        del cache
    bar.close()
    return results  # type: ignore[return-value]


def prefix_groups(requests: list[MultipleChoiceRequest], sequences: list[list[int]],
                  truncated: list[bool]) -> list[tuple[int, list[int]]]:
    """(shared token count, request indices) per subject prefix; single or truncated prompts stay out.

    A left-truncated prompt has lost part of its prefix, so it takes the full-prompt path.
    """
    by_prefix: dict[tuple, list[int]] = {}
    for i, r in enumerate(requests):
        if not truncated[i]:
            by_prefix.setdefault((r.task, r.subject, r.chat, r.prefix), []).append(i)
    groups = []
    for members in by_prefix.values():
        if len(members) < 2:
            continue
        shared = common_prefix_length([sequences[i] for i in members])
        if shared > 0:
            groups.append((shared, members))
    return groups


def _batch_size(batch_size: int | str, lm: LoadedModel, longest: int, cached: int = 0) -> int:
    if batch_size == "auto":
        return auto_batch_size(lm.model, longest, lm.device, cached=cached)
    return int(batch_size)


def _letter_probabilities(letter_logits: torch.Tensor, counts: list[int]) -> list[list[float]]:
    """Per row, the float64 softmax over its first ``counts[row]`` label logits (its own options).

    float64 over a few numbers: cheap, and keeps probabilities comparable to 1e-12. Rows with every
    label (all of MMLU, CMMLU, C-Eval) take the one batched softmax, exactly as before labels varied."""
    logits = letter_logits.double()
    if all(count == logits.shape[-1] for count in counts):
        return torch.softmax(logits, dim=-1).cpu().tolist()
    return [torch.softmax(row[:count], dim=-1).cpu().tolist() for row, count in zip(logits, counts)]


@torch.inference_mode()
def _forward_letters(lm: LoadedModel, sequences: list[list[int]], letter_ids: torch.Tensor,
                     counts: list[int]) -> list[list[float]]:
    ids, mask = right_padded(sequences, lm.tokenizer.pad_token_id, lm.device)
    last = mask.sum(dim=1) - 1
    with logits_only_at(lm.model, last, columns=letter_ids):
        logits = lm.model(input_ids=ids, attention_mask=mask, use_cache=False).logits[:, -1, :]
    return _letter_probabilities(logits, counts)
