"""Greedy generation in batches: left padding, EOS and stop strings, the model's chat template.

Batches are formed from prompts of similar length (fewer pad tokens) and left-padded so every row's
last prompt token sits at the same column; ``generate`` derives position ids from the attention mask,
so a padded row sees the same positions as it would alone. Outputs at batch size 1 and N are
compared on real data in tests/test_generation_batch.py.
"""

from __future__ import annotations

import time

import torch
from tqdm.auto import tqdm

from evalkit.backends.outputs import Generation, clean_generation, generation_timing
from evalkit.errors import EvalkitError
from evalkit.models.loader import LoadedModel
from evalkit.backends.hf.batching import auto_batch_size, length_sorted_batches, padded
from evalkit.backends.hf.kv_cache import CACHE_KWARG, in_place_cache

MAX_AUTO_GENERATION_BATCH = 16


def render_prompt(tokenizer, text: str, chat: bool) -> str:
    """The prompt text: the model's chat template around one user turn, or the text as is."""
    if not chat:
        return text
    return tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True)


def has_chat_template(tokenizer) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def tokenize_prompts(lm: LoadedModel, prompts: list[str], chat: bool, max_new_tokens: int, truncation: str,
                     label: str) -> tuple[list[list[int]], list[bool]]:
    # A chat template already writes BOS where the model wants it; plain text gets the tokenizer's specials.
    ids = lm.tokenizer(prompts, add_special_tokens=not chat)["input_ids"]
    room = lm.context_length - max_new_tokens
    if room < 1:
        raise EvalkitError(f"--max-new-tokens {max_new_tokens} leaves no room for a prompt in the model's context "
                           f"of {lm.context_length} tokens; lower --max-new-tokens")
    too_long = [i for i, s in enumerate(ids) if len(s) > room]
    if too_long and truncation != "left":
        first = too_long[0]
        raise EvalkitError(f"{len(too_long)} of {len(ids)} prompts of {label} do not fit the model's context of "
                           f"{lm.context_length} tokens with {max_new_tokens} new tokens (first: sample {first}, "
                           f"{len(ids[first])} tokens); lower --max-new-tokens or pass --truncation left")
    flags = [False] * len(ids)
    for i in too_long:
        ids[i], flags[i] = ids[i][-room:], True
    return ids, flags


def stop_token_ids(lm: LoadedModel) -> list[int]:
    """EOS of the tokenizer and of the model's generation config (chat models often end turns with their own token)."""
    found = []
    for source in (lm.tokenizer.eos_token_id, getattr(getattr(lm.model, "generation_config", None), "eos_token_id", None)):
        for value in source if isinstance(source, (list, tuple)) else [source]:
            if value is not None and value not in found:
                found.append(int(value))
    return found


def left_padded(sequences: list[list[int]], pad_id: int, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Left padding: generation appends at the right end of every row."""
    return padded(sequences, pad_id, device, left=True)


def generate(lm: LoadedModel, sequences: list[list[int]], max_new_tokens: int, stop: tuple[str, ...] = (),
             batch_size: int | str = 1, label: str = "", progress: bool = True,
             truncated: list[bool] | None = None, memo=None) -> tuple[list[Generation], dict]:
    """Greedy continuations of token-id prompts, in input order, and timing figures.

    ``memo`` (a request_cache.BatchMemo over ``sequences``): cached batches are read back, the others
    generated and saved batch by batch.
    """
    if not sequences:
        return [], {"generate_s": 0.0, "new_tokens": 0, "tokens_per_s": None, "batch_size": 0}
    lengths = [len(s) for s in sequences]
    if batch_size == "auto":
        size = min(MAX_AUTO_GENERATION_BATCH, auto_batch_size(lm.model, max(lengths) + max_new_tokens, lm.device))
    else:
        size = int(batch_size)
    eos = stop_token_ids(lm)
    results: list[Generation | None] = [None] * len(sequences)
    bar = tqdm(total=len(sequences), desc=label or "generating", unit="sample", disable=not progress, dynamic_ncols=True)
    pending = list(length_sorted_batches(lengths, size))
    started = time.perf_counter()
    while pending:
        batch = pending.pop(0)
        hit = memo.cached(batch) if memo is not None else None
        try:
            rows = hit if hit is not None else _generate_batch(lm, [sequences[i] for i in batch], max_new_tokens, stop, eos)
        except torch.cuda.OutOfMemoryError:
            if len(batch) == 1:
                raise EvalkitError("out of GPU memory at batch size 1; lower --max-new-tokens, use a smaller model "
                                   "or --device cpu") from None
            torch.cuda.empty_cache()
            half = len(batch) // 2
            pending[:0] = [batch[:half], batch[half:]]
            continue
        if memo is not None and hit is None:
            memo.save(batch, rows)
            bar.set_postfix(memo.postfix(), refresh=False)
        for i, (text, tokens, finish) in zip(batch, rows):
            results[i] = Generation(text, lengths[i], len(tokens), finish, bool(truncated and truncated[i]), tokens)
        bar.update(len(batch))
    bar.close()
    return results, generation_timing(time.perf_counter() - started, results, batch_size=size)  # type: ignore[arg-type]


@torch.inference_mode()
def _generate_batch(lm: LoadedModel, sequences: list[list[int]], max_new_tokens: int, stop: tuple[str, ...],
                    eos: list[int]) -> list[tuple[str, list[int], str]]:
    tokenizer = lm.tokenizer
    ids, mask = left_padded(sequences, tokenizer.pad_token_id, lm.device)
    extra = {"stop_strings": list(stop), "tokenizer": tokenizer} if stop else {}
    extra[CACHE_KWARG] = in_place_cache(lm.model.config, ids.shape[1] + max_new_tokens)
    output = lm.model.generate(
        input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens, do_sample=False, num_beams=1,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=eos or None, **extra,
    )
    rows = []
    for new in output[:, ids.shape[1]:].tolist():
        count, finish = len(new), "length"
        for position, token in enumerate(new):
            if token in eos:  # finished rows are filled with pad (which may equal EOS) after this
                count, finish = position + 1, "eos"
                break
        text, finish = clean_generation(tokenizer.decode(new[:count], skip_special_tokens=True), stop, finish)
        if finish == "stop":
            count = _tokens_through_stop(tokenizer, new[:count], stop)
        rows.append((text, new[:count], finish))
    return rows


def _tokens_through_stop(tokenizer, tokens: list[int], stop: tuple[str, ...]) -> int:
    """How many tokens were generated up to the one that completed a stop string (the rest is padding)."""
    for count in range(1, len(tokens) + 1):
        text = tokenizer.decode(tokens[:count], skip_special_tokens=True)
        if any(s in text for s in stop):
            return count
    return len(tokens)
