"""Cloze scoring in process: per option, the summed log-likelihood of its text as a continuation of the prompt.

lm-evaluation-harness computes every option's context + continuation whole (four passes over the same
question for MMLU, the LM head at every position). Here each token is computed once, exactly:

* a subject's long shared prefix (few-shot exemplars): one KV cache per subject (``prefix_cache``);
* on CPU (plain decoders), many questions in one pass, each packed as a tree: its context once, its options
  branching from it (tree_attention.py); elsewhere (CUDA, other attention kinds) each question's context
  extends the subject's cache once and its options run packed or batched on top of that (``_reused``);
* the LM head only at the rows that predict a continuation token.

The token split is lm-eval's (``evalkit/backends/cloze_tokens.py``). The full path (``--full-prompt``, left-
truncated prompts, models without prefix reuse) computes each option whole, as lm-eval does: the reference.
"""

from __future__ import annotations

from collections import OrderedDict
from contextlib import contextmanager

import torch
from tqdm.auto import tqdm

from evalkit.backends.cloze_tokens import encode_request, fit_to_context
from evalkit.backends.hf.batching import HalvingOnOom, auto_batch_size, logits_only_at, right_padded
from evalkit.backends.hf.kv_cache import CACHE_KWARG
from evalkit.backends.hf.prefix_cache import batch_view, common_prefix_length, prefix_cache, supports_prefix_reuse
from evalkit.backends.hf.shared_prefix_attention import (PackedSuffixes, shared_prefix_attention,
                                                         supports_shared_prefix_attention)
from evalkit.backends.hf.tree_attention import QuestionPack, packed_questions
from evalkit.backends.outputs import ClozeScore
from evalkit.errors import EvalkitError


# A subject prefix shorter than this (a 0-shot header) is recomputed inside each question instead: its own
# pass would read every weight once more (~0.2 s for SmolLM2-135M on 2 cores), more than the tokens cost.
SUBJECT_PREFIX_TOKENS = 64


def score_cloze(lm, requests, batch_size: int | str = 1, truncation: str = "error", label: str = "",
                progress: bool = True, reuse_prefix: bool = True, memo=None) -> list[ClozeScore]:
    """One ``ClozeScore`` per request, in input order. ``batch_size``: questions per packed pass on CPU (auto: up
    to PACKED_TOKENS tokens), option rows per pass on the full path. It changes no number on the packed and
    ``_reused`` paths, where every attention call and every linear row covers one question alone; the full
    path pads rows, which moves fp32 rounding (~1e-6). ``memo``: a request_cache.BatchMemo with one key per
    request; cached ones are read back, the rest saved as their batch completes."""
    if not requests:
        return []
    encoded = [encode_request(lm.tokenizer, r) for r in requests]
    fitted = [fit_to_context(ctx, conts, lm.context_length) for ctx, conts in encoded]
    truncated = [cut for _, cut in fitted]
    if any(truncated) and truncation != "left":
        first = truncated.index(True)
        raise EvalkitError(f"{sum(truncated)} of {len(requests)} questions of {label} do not fit the model's context "
                           f"of {lm.context_length} tokens with their options (first: {requests[first].subject} "
                           f"#{requests[first].index}); lower --num-fewshot, or pass --truncation left")
    results: list[ClozeScore | None] = [None] * len(requests)
    bar = tqdm(total=len(requests), desc=label or "scoring", unit="q", disable=not progress, dynamic_ncols=True)

    def record(i: int, value: dict) -> None:
        results[i] = ClozeScore(requests[i], value["loglikelihoods"], value["greedy"], len(encoded[i][0]), truncated[i])
        bar.update(1)

    reuse = reuse_prefix and supports_prefix_reuse(lm.model)
    full = [i for i in range(len(requests)) if not reuse or truncated[i] or len(encoded[i][0]) < 2]
    subjects: OrderedDict = OrderedDict()
    for i in sorted(set(range(len(requests))) - set(full)):
        r = requests[i]
        subjects.setdefault((r.task, r.subject, getattr(r, "chat", False), r.prefix), []).append(i)

    def whole(batch: list[int]) -> list[dict]:
        return _whole_batch(lm, [fitted[i][0] for i in batch], [encoded[i][1] for i in batch])

    for batch, values in HalvingOnOom().run(_question_batches(full, fitted, batch_size, lm), _memoised(memo, whole)):
        for i, value in zip(batch, values):
            record(i, value)
    # (shared prefix tokens, questions): a subject with a long shared prefix (few-shot) computes it once; the
    # rest go together, so questions of different subjects share passes. All its questions, cached or not, decide
    # a subject's prefix: a resumed run computes the same numbers.
    groups, unshared = [], []
    for members in subjects.values():
        shared = common_prefix_length([encoded[i][0][:-1] for i in members]) if len(members) > 1 else 0
        if shared >= SUBJECT_PREFIX_TOKENS:
            groups.append((shared, members))
        else:
            unshared += members
    for shared, members in groups + ([(0, unshared)] if unshared else []):
        todo = [i for i in members if memo is None or not memo.has([i])]
        for i in (i for i in members if i not in todo):
            record(i, memo.cached([i])[0])
        if not todo:
            continue
        longest = max(len(encoded[i][0]) + sum(map(len, encoded[i][1])) for i in todo)
        try:
            if supports_shared_prefix_attention(lm.model, longest, lm.device):  # CPU: questions packed as trees
                subject = prefix_cache(lm.model, encoded[members[0]][0][:shared], lm.device) if shared else None
                batches = _packed_batches(todo, encoded, shared, batch_size)
                compute = _memoised(memo, lambda b: _packed(lm, subject, shared, [encoded[i] for i in b]))
                for batch in batches:
                    for i, value in zip(batch, compute(batch)):
                        record(i, value)
                del subject
                continue
            for i, value in _reused(lm, [encoded[i] for i in todo], shared):
                i = todo[i]
                if memo is not None:
                    memo.save([i], [value])
                record(i, value)
        except torch.cuda.OutOfMemoryError:
            raise EvalkitError(f"out of GPU memory scoring {label} as cloze; lower --batch-size or use a smaller "
                               "model") from None
    bar.close()
    return results  # type: ignore[return-value]


def _memoised(memo, forward):
    def run(batch):
        hit = memo.cached(batch) if memo is not None else None
        if hit is not None:
            return hit
        values = forward(batch)
        if memo is not None:
            memo.save(batch, values)
        return values

    return run


def _question_batches(indices, fitted, batch_size, lm) -> list[list[int]]:
    """Whole questions, longest first, until a batch holds ``batch_size`` option rows (at least one question)."""
    if not indices:
        return []
    longest = {i: max(len(row) for row in fitted[i][0]) for i in indices}
    size = auto_batch_size(lm.model, max(longest.values()), lm.device) if batch_size == "auto" else int(batch_size)
    batches, batch, rows = [], [], 0
    for i in sorted(indices, key=lambda i: (-longest[i], i)):
        if batch and rows + len(fitted[i][0]) > size:
            batches.append(batch)
            batch, rows = [], 0
        batch.append(i)
        rows += len(fitted[i][0])
    return batches + [batch]


PACKED_TOKENS = 1024  # --batch-size auto: questions packed into one pass up to this many tokens


def _packed_batches(indices: list[int], encoded, shared: int, batch_size) -> list[list[int]]:
    """Consecutive questions, ``batch_size`` per pass (auto: up to PACKED_TOKENS tokens, at least one)."""
    if batch_size != "auto":
        size = int(batch_size)
        return [indices[s:s + size] for s in range(0, len(indices), size)]
    batches, batch, tokens = [], [], 0
    for i in indices:
        ctx, conts = encoded[i]
        size = len(ctx) - shared + sum(len(ids) - 1 for ids in conts)
        if batch and tokens + size > PACKED_TOKENS:
            batches.append(batch)
            batch, tokens = [], 0
        batch.append(i)
        tokens += size
    return batches + [batch]


@torch.inference_mode()
def _packed(lm, cache, shared: int, questions: list[tuple[list[int], list[list[int]]]]) -> list[dict]:
    """Questions packed in one pass over the subject's ``cache`` (``shared`` tokens; None: no prefix), each as a
    tree (tree_attention.py); the head only at the rows that predict a continuation token."""
    contexts = [ctx[shared:] for ctx, _ in questions]
    options = [[ids[:-1] for ids in continuations] for _, continuations in questions]
    pack = QuestionPack.of([len(c) for c in contexts], [[len(o) for o in opts] for opts in options], shared, lm.device)
    ids = [token for context, opts in zip(contexts, options) for token in context + [t for o in opts for t in o]]
    with packed_questions(lm.model), logits_only_at(lm.model, pack.heads, packed=True):
        logits = lm.model(input_ids=torch.tensor([ids], dtype=torch.long, device=lm.device),
                          position_ids=pack.positions, use_cache=False, shared_prefix=cache,
                          question_pack=pack).logits[:, 0, :]
    rows = [row for opts in pack.options for rows in opts for row in rows]
    targets = [token for _, continuations in questions for ids in continuations for token in ids]
    scores = _summed(logits[torch.tensor(rows, device=logits.device)], targets,
                     [len(ids) for _, continuations in questions for ids in continuations])
    values, start = [], 0
    for _, continuations in questions:
        part = scores[start:start + len(continuations)]
        start += len(continuations)
        values.append({"loglikelihoods": [ll for ll, _ in part], "greedy": [g for _, g in part]})
    return values


def _reused(lm, questions: list[tuple[list[int], list[list[int]]]], shared: int):
    """(position in ``questions``, value) per question of one subject: the subject's ``shared`` first tokens
    once, each question's context once, its options packed on top."""
    contexts = [ctx[:-1] for ctx, _ in questions]  # the context's last token opens every option's suffix
    subject = prefix_cache(lm.model, contexts[0][:shared], lm.device) if shared else None
    for position, (ctx, continuations) in enumerate(questions):
        own = contexts[position]
        cache = _extended(lm, subject, shared, own[shared:]) if subject is not None else prefix_cache(lm.model, own, lm.device)
        # all options in one pass: a question's 2-26 short continuations are small, and a fixed packing keeps
        # every number independent of --batch-size
        scores = _suffix_scores(lm, cache, len(own), [[ctx[-1], *ids[:-1]] for ids in continuations], continuations)
        yield position, {"loglikelihoods": [ll for ll, _ in scores], "greedy": [g for _, g in scores]}
        del cache


@torch.inference_mode()
def _extended(lm, cache, start: int, ids: list[int]):
    """``cache`` (``start`` tokens, batch 1, left unchanged) with ``ids`` appended: a question's own context."""
    device = lm.device
    inputs = torch.tensor([ids], dtype=torch.long, device=device)
    positions = torch.arange(start, start + len(ids), device=device).unsqueeze(0)
    mask = torch.ones((1, start + len(ids)), dtype=torch.long, device=device)
    with logits_only_at(lm.model, torch.tensor([len(ids) - 1]), columns=torch.tensor([0])):  # only the cache is used
        out = lm.model(input_ids=inputs, attention_mask=mask, position_ids=positions, use_cache=True,
                       **{CACHE_KWARG: batch_view(cache, 1)})
    return out.past_key_values


@torch.inference_mode()
def _suffix_scores(lm, cache, prefix_length: int, suffixes: list[list[int]], targets: list[list[int]]):
    """(summed log-likelihood, greedy) of each suffix's ``targets`` over the shared ``cache``."""
    model, device = lm.model, lm.device
    lengths = [len(s) for s in suffixes]
    if supports_shared_prefix_attention(model, prefix_length + max(lengths), device):
        packed = PackedSuffixes.of(lengths, device)
        ids = torch.tensor([[token for s in suffixes for token in s]], dtype=torch.long, device=device)
        with shared_prefix_attention(model):
            logits = model(input_ids=ids, position_ids=packed.positions(prefix_length), use_cache=False,
                           shared_prefix=cache, packed_suffixes=packed).logits[0]
        return _summed(logits, [t for ts in targets for t in ts], lengths)
    ids, suffix_mask = right_padded(suffixes, lm.tokenizer.pad_token_id, device)
    rows, width = ids.shape
    positions = (torch.arange(width, device=device) + prefix_length).unsqueeze(0).expand(rows, -1)
    mask = torch.cat([torch.ones((rows, prefix_length), dtype=suffix_mask.dtype, device=device), suffix_mask], dim=1)
    row_index = [r for r, n in enumerate(lengths) for _ in range(n)]
    column_index = [c for n in lengths for c in range(n)]
    with head_only_at(model, row_index, column_index):
        logits = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True,
                       **{CACHE_KWARG: batch_view(cache, rows)}).logits[0]
    return _summed(logits, [t for ts in targets for t in ts], lengths)


@torch.inference_mode()
def _whole_batch(lm, questions: list[list[list[int]]], targets: list[list[list[int]]]) -> list[dict]:
    """The reference: every option's input whole, right-padded, the head at its continuation's positions."""
    rows = [row for q in questions for row in q]
    wanted = [t for ts in targets for t in ts]
    ids, mask = right_padded(rows, lm.tokenizer.pad_token_id, lm.device)
    row_index = [r for r, t in enumerate(wanted) for _ in t]
    column_index = [c for row, t in zip(rows, wanted) for c in range(len(row) - len(t), len(row))]
    with head_only_at(lm.model, row_index, column_index):
        logits = lm.model(input_ids=ids, attention_mask=mask, use_cache=False).logits[0]
    scores = _summed(logits, [token for t in wanted for token in t], [len(t) for t in wanted])
    values, start = [], 0
    for q in questions:
        part = scores[start:start + len(q)]
        start += len(q)
        values.append({"loglikelihoods": [ll for ll, _ in part], "greedy": [g for _, g in part]})
    return values


def _summed(logits: torch.Tensor, tokens: list[int], lengths: list[int]) -> list[tuple[float, bool]]:
    """Per span of ``lengths`` rows of ``logits`` (one row per predicted token): the summed log-probability of
    ``tokens`` (fp32 log-softmax as lm-eval's, summed in float64) and whether each token was the argmax."""
    logprobs = torch.log_softmax(logits.float(), dim=-1)
    target = torch.tensor(tokens, dtype=torch.long, device=logits.device)
    chosen = logprobs.gather(1, target.unsqueeze(1)).squeeze(1).double().cpu()
    greedy = (logprobs.argmax(dim=-1) == target).cpu()
    out, start = [], 0
    for n in lengths:
        out.append((float(chosen[start:start + n].sum()), bool(greedy[start:start + n].all())))
        start += n
    return out


@contextmanager
def head_only_at(model, rows: list[int], columns: list[int]):
    """The LM head only at (row, column) pairs of the hidden states, as one (1, pairs) sequence: the full
    vocabulary projection at every position would cost more than the decoder for short continuations."""
    head = model.get_output_embeddings()

    def pick(_module, args):
        hidden = args[0]
        r = torch.tensor(rows, device=hidden.device)
        c = torch.tensor(columns, device=hidden.device)
        return (hidden[r, c].unsqueeze(0), *args[1:])

    handle = head.register_forward_pre_hook(pick)
    try:
        yield
    finally:
        handle.remove()
