"""The model behind ``evalkit serve``: next-token log-probabilities, prompt log-probabilities, greedy or
sampled continuations (whole or streamed), one request at a time under a lock.

It computes exactly what the hf backend computes (the same tokenisation rules, the same greedy
``generate``), so a run through the served API matches an in-process run. Requests are not batched
together: the server is the deploy-and-check step, not a throughput engine (``--engine vllm`` is).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Iterator

import torch

from evalkit.models.loader import LoadedModel
from evalkit.backends.hf.generation import stop_token_ids
from evalkit.backends.outputs import drop_partial_character


class PromptTooLong(ValueError):
    pass


@dataclass
class Continuation:
    text: str  # raw decoded text, cut before the first stop string (not stripped: the client decides)
    tokens: list[int]
    finish: str  # "stop" (EOS or a stop string) or "length", as the OpenAI API names them


class ServedModel:
    def __init__(self, lm: LoadedModel, name: str):
        self.lm, self.name = lm, name
        self.lock = threading.Lock()
        self.eos = stop_token_ids(lm)

    @property
    def context_length(self) -> int:
        return self.lm.context_length

    def encode(self, prompt: str | list[int], add_special_tokens: bool, room: int) -> list[int]:
        ids = list(prompt) if isinstance(prompt, list) else self.lm.tokenizer(prompt, add_special_tokens=add_special_tokens)["input_ids"]
        if not ids:
            raise PromptTooLong("the prompt is empty")
        if len(ids) + room > self.context_length:
            raise PromptTooLong(f"the prompt has {len(ids)} tokens and {room} new tokens were asked for; the model's "
                                f"context is {self.context_length} tokens")
        if max(ids) >= self.lm.model.config.vocab_size or min(ids) < 0:
            raise PromptTooLong("the prompt has token ids outside the vocabulary")
        return ids

    def token_text(self, token: int) -> str:
        return self.lm.tokenizer.decode([token])

    @torch.inference_mode()
    def logprobs(self, ids: list[int], logit_bias: dict[int, float] | None, echo: bool) -> torch.Tensor:
        """log-softmax rows: the next position's (and, with ``echo``, every prompt position's)."""
        with self.lock:
            inputs = torch.tensor([ids], device=self.lm.device)
            logits = self.lm.model(input_ids=inputs, use_cache=False).logits[0].float()
        if not echo:
            logits = logits[-1:]
        if logit_bias:  # applied before the log-softmax, as a logits processor would be
            bias = torch.zeros(logits.shape[-1], device=logits.device)
            for token, value in logit_bias.items():
                bias[token] = value
            logits = logits + bias
        return torch.log_softmax(logits, dim=-1)

    def generate(self, ids: list[int], max_tokens: int, stop: list[str], temperature: float, top_p: float,
                 seed: int | None, logit_bias: dict[int, float] | None) -> Continuation:
        *_, last = self.stream(ids, max_tokens, stop, temperature, top_p, seed, logit_bias)
        return last

    def stream(self, ids: list[int], max_tokens: int, stop: list[str], temperature: float, top_p: float,
               seed: int | None, logit_bias: dict[int, float] | None) -> Iterator[Continuation]:
        """Yield the continuation so far, after each new token (the last one is final).

        Text that might still become a stop string, or is a half-decoded character, is held back,
        so the streamed text only ever grows and ends equal to the whole answer.
        """
        import queue

        from transformers.generation.streamers import BaseStreamer

        tokens: "queue.Queue[list[int] | None]" = queue.Queue()

        class Collect(BaseStreamer):
            first = True

            def put(self, value):
                if self.first:  # generate() hands the prompt over first
                    self.first = False
                    return
                tokens.put(value.reshape(-1).tolist())

            def end(self):
                tokens.put(None)

        sampling = {"do_sample": True, "temperature": temperature, "top_p": top_p} if temperature > 0 else {"do_sample": False}
        extra = {"stop_strings": stop, "tokenizer": self.lm.tokenizer} if stop else {}
        if logit_bias:
            extra["sequence_bias"] = {(token,): value for token, value in logit_bias.items()}
        failure: list[BaseException] = []

        def work():
            try:
                with self.lock, torch.inference_mode():
                    if seed is not None:
                        torch.manual_seed(seed)
                    inputs = torch.tensor([ids], device=self.lm.device)
                    self.lm.model.generate(input_ids=inputs, attention_mask=torch.ones_like(inputs),
                                           max_new_tokens=max_tokens, num_beams=1, streamer=Collect(),
                                           pad_token_id=self.lm.tokenizer.pad_token_id,
                                           eos_token_id=self.eos or None, **sampling, **extra)
            except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
                failure.append(exc)
                tokens.put(None)

        worker = threading.Thread(target=work, daemon=True)
        worker.start()
        generated: list[int] = []
        finish = "length"
        while (step := tokens.get()) is not None:
            for token in step:
                generated.append(token)  # EOS counts as generated; decoding skips it
                if token in self.eos:
                    finish = "stop"
                    break
            text = self.lm.tokenizer.decode(generated, skip_special_tokens=True)
            cut = min((text.find(s) for s in stop if s in text), default=-1)
            if cut >= 0:
                yield Continuation(text[:cut], generated, "stop")
                worker.join()
                return
            if finish == "stop":
                break
            yield Continuation(_stable(text, stop), generated, "length")
        worker.join()
        if failure:
            raise failure[0]
        text = self.lm.tokenizer.decode(generated, skip_special_tokens=True)
        yield Continuation(drop_partial_character(text, finish), generated, finish)


def _stable(text: str, stop: list[str]) -> str:
    """The part of ``text`` that cannot change: no trailing half character, no possible start of a stop string."""
    text = text.rstrip("\ufffd")
    hold = 0
    for s in stop:
        for k in range(min(len(s) - 1, len(text)), 0, -1):
            if text.endswith(s[:k]):
                hold = max(hold, k)
                break
    return text[: len(text) - hold]
