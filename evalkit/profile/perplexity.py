"""Perplexity of a model on a fixed text set named by a ``type: perplexity`` task spec.

Two numbers, because both are in use and they differ:

* ``perplexity``: corpus level, exp(total NLL / total predicted tokens), each document scored
  with a sliding window (Hugging Face's strided-perplexity recipe): windows of ``window`` tokens
  moving ``stride`` tokens at a time, each token predicted once, with up to ``window - stride``
  tokens of context carried over.
* ``perplexity_llamafactory``: LLaMA-Factory's ``cal_ppl.py`` figure, the mean over documents of
  exp(mean NLL), each document cut to one window (its ``cutoff_len``).

The spec and its documents: evalkit/tasks/perplexity_spec.py.
"""

from __future__ import annotations

import math

from evalkit.errors import EvalkitError
from evalkit.tasks.perplexity_spec import Document


def window_ranges(length: int, window: int, stride: int):
    """Yield (begin, end, first_predicted) per window; tokens [first_predicted, end) are scored in it."""
    previous_end = 0
    for begin in range(0, length, stride):
        end = min(begin + window, length)
        yield begin, end, max(previous_end, begin + 1)  # the document's first token has no context
        previous_end = end
        if end == length:
            break


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


def perplexity(lm, documents: list[Document], window: int, stride: int, progress: bool = False) -> tuple[dict, list[dict]]:
    """Corpus-level and LLaMA-Factory perplexity of ``lm`` on ``documents``; also per-document rows."""
    window = min(window, lm.context_length)
    stride = min(stride, window)
    rows, per_doc = [], []
    total_nll, total_predicted = 0.0, 0
    iterator = documents
    if progress:
        from tqdm import tqdm

        iterator = tqdm(documents, desc="perplexity", unit="doc")
    for i, doc in enumerate(iterator):
        ids = lm.tokenizer(doc.text)["input_ids"]
        if len(ids) < 2:
            raise EvalkitError(f"{doc.source}: document at row {doc.index + 1} has fewer than 2 tokens; it cannot be scored")
        scores = document_nll(lm.model, ids, window, stride, lm.device)
        total_nll += scores["nll_sum"]
        total_predicted += scores["predicted_tokens"]
        first_ppl = math.exp(scores["first_window_nll_sum"] / scores["first_window_tokens"])
        per_doc.append(first_ppl)
        rows.append({"index": i, "source": doc.source, "source_index": doc.index, "chars": len(doc.text),
                     "document_tokens": len(ids), "prompt_tokens": scores["computed_tokens"],
                     "predicted_tokens": scores["predicted_tokens"], "nll_sum": scores["nll_sum"],
                     "perplexity": math.exp(scores["nll_sum"] / scores["predicted_tokens"]),
                     "first_window_perplexity": first_ppl})
    summary = {
        "window": window, "stride": stride, "documents": len(documents),
        "predicted_tokens": total_predicted, "nll_sum": total_nll,
        "perplexity": math.exp(total_nll / total_predicted),
        "perplexity_llamafactory": sum(per_doc) / len(per_doc),
    }
    return summary, rows
