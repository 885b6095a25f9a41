"""Perplexity rows in process: each document's summed NLL over the sliding windows of
evaluators/perplexity.py ``window_ranges``, computed with the model's forward pass."""

from __future__ import annotations

import math

from evalkit.evaluators.perplexity import perplexity_summary, too_short, window_ranges
from evalkit.tasks.perplexity_spec import Document


def document_nll(model, ids: list[int], window: int, stride: int, device: str) -> dict:
    """Summed NLL (nats) over every predicted token of one document, and over its first window."""
    import torch
    import torch.nn.functional as F

    total, predicted, computed = 0.0, 0, 0
    first = None
    with torch.inference_mode():
        for begin, end, first_predicted in window_ranges(len(ids), window, stride):
            inputs = torch.tensor([ids[begin:end]], device=device)
            logits = model(input_ids=inputs).logits[0, :-1].float()
            nll = F.cross_entropy(logits, inputs[0, 1:], reduction="none").double()
            # position j of ``nll`` predicts token begin + j + 1
            kept = nll[first_predicted - begin - 1:]
            total += float(kept.sum())
            predicted += kept.numel()
            computed += end - begin
            if first is None:
                first = (float(kept.sum()), kept.numel())
    return {"nll_sum": total, "predicted_tokens": predicted, "computed_tokens": computed,
            "first_window_nll_sum": first[0], "first_window_tokens": first[1]}


def rolling_window(lm, window: int, stride: int) -> tuple[int, int]:
    window = min(window, lm.context_length)
    return window, min(stride, window)


def perplexity_rows(lm, documents: list[Document], window: int, stride: int, progress: bool = False) -> list[dict]:
    """One row per document of ``lm``'s NLL over its windows (``window`` <= the model's context)."""
    rows = []
    iterator = documents
    if progress:
        from tqdm import tqdm

        iterator = tqdm(documents, desc="perplexity", unit="doc")
    for i, doc in enumerate(iterator):
        ids = lm.tokenizer(doc.text)["input_ids"]
        if len(ids) < 2:
            raise too_short(doc)
        scores = document_nll(lm.model, ids, window, stride, lm.device)
        first_ppl = math.exp(scores["first_window_nll_sum"] / scores["first_window_tokens"])
        rows.append({"index": i, "source": doc.source, "source_index": doc.index, "chars": len(doc.text),
                     "document_tokens": len(ids), "prompt_tokens": scores["computed_tokens"],
                     "predicted_tokens": scores["predicted_tokens"], "nll_sum": scores["nll_sum"],
                     "perplexity": math.exp(scores["nll_sum"] / scores["predicted_tokens"]),
                     "first_window_perplexity": first_ppl})
    return rows


def perplexity(lm, documents: list[Document], window: int, stride: int, progress: bool = False) -> tuple[dict, list[dict]]:
    """Corpus-level and LLaMA-Factory perplexity of ``lm`` on ``documents``; also the per-document rows."""
    window, stride = rolling_window(lm, window, stride)
    rows = perplexity_rows(lm, documents, window, stride, progress)
    return perplexity_summary(rows, window, stride), rows
