"""``--backend openai``: any OpenAI-compatible server (evalkit serve, vLLM, llama.cpp, LLaMA-Factory's api).

Multiple choice (``--mc-mode logprobs``, the default) asks the completions endpoint for one token
with the top log-probabilities at the next position and takes the softmax over the question's own
labels' log-probabilities (A-D for the shipped specs): log-softmax differs from the logits by one
constant, so this equals the hf backend's softmax over those label logits. With ``--tokenizer`` the
question's labels also get an equal ``logit_bias`` (a shared shift leaves their softmax unchanged),
which puts them in the top log-probabilities whatever the server's cut-off. A server that returns no
log-probabilities, or not all of the labels, stops the run with one line: never a silent guess
(lm-eval users were bitten by API backends scoring at chance). ``--mc-mode generate`` parses a label
from a short greedy answer instead; the rule is outputs.parse_rule and unparsed answers are counted.

Generation uses chat completions (the server applies the model's chat template) or completions
with ``--no-chat-template``. Requests run concurrently (asyncio, the official ``openai`` client,
which retries 429/5xx/timeouts with exponential backoff); the key comes from an environment variable.
Specs with ``scoring: cloze`` read each option's log-likelihood from echoed prompt log-probabilities
(openai_cloze.py).
"""

from __future__ import annotations

import asyncio
import json
import os
import time

from typing import Literal

from pydantic import Field, model_validator
from tqdm.auto import tqdm

from evalkit.backends.base import Backend, BackendOptions, CacheOpener
from evalkit.backends.outputs import (PARSE_RULE, ChoiceScore, ClozeScore, Generation, best_letter,  # noqa: F401
                                      choice_token_ids, clean_generation, generation_timing, letter_probabilities,
                                      option_count, options_key, parse_rule)
from evalkit.errors import EvalkitError

GENERATE_MC_TOKENS = 8


def _flag(flag: str, metavar: str = "N") -> dict:
    return {"flag": flag, "metavar": metavar}


class OpenAIOptions(BackendOptions):
    base_url: str | None = Field(None, description="the server's API root, e.g. http://127.0.0.1:8000/v1 (--model is "
                                 "the served name)", json_schema_extra=_flag("--base-url", "URL"))
    api_key_env: str = Field("OPENAI_API_KEY", description="environment variable holding the API key (the key is "
                             "never written anywhere)", json_schema_extra=_flag("--api-key-env", "VAR"))
    concurrency: int = Field(8, ge=1, description="requests in flight", json_schema_extra=_flag("--concurrency"))
    max_retries: int = Field(5, ge=0, description="retries on 429, 5xx and timeouts, with exponential backoff",
                             json_schema_extra=_flag("--max-retries"))
    timeout: float = Field(600.0, gt=0, description="seconds per request", json_schema_extra=_flag("--request-timeout", "S"))
    mc_mode: Literal["logprobs", "generate"] = Field(
        "logprobs", description="multiple choice from the letters' log-probabilities (exact; default) or by generating "
        "and parsing a letter (for servers without log-probabilities)", json_schema_extra=_flag("--mc-mode"))
    top_logprobs: int = Field(20, ge=1, description="log-probabilities asked per position (OpenAI allows up to 20)",
                              json_schema_extra=_flag("--top-logprobs"))
    tokenizer: str | None = Field(None, description="a local tokenizer (alias or directory) for --apply-chat-template "
                                  "and to bias the letters into the server's top log-probabilities",
                                  json_schema_extra=_flag("--tokenizer", "MODEL"))

    @model_validator(mode="after")
    def _needs_server(self):
        if not self.base_url:
            raise ValueError("--backend openai needs --base-url (e.g. http://127.0.0.1:8000/v1, as `evalkit serve` prints)")
        if not self.base_url.startswith(("http://", "https://")):
            raise ValueError(f"--base-url {self.base_url}: use an http:// or https:// URL, e.g. http://127.0.0.1:8000/v1")
        return self


class OpenAIBackend(Backend):
    name = "openai"
    task_types = ("multiple_choice", "generation")
    Options = OpenAIOptions

    def __init__(self, model: str, options: OpenAIOptions, served: dict, tokenizer=None, *,
                 request_cache: CacheOpener | None = None):
        super().__init__(request_cache=request_cache)
        self.model, self.options, self.served, self._tokenizer = model, options, served, tokenizer

    @classmethod
    def load(cls, model: str, options: OpenAIOptions, *, request_cache: CacheOpener | None = None) -> "OpenAIBackend":
        served = asyncio.run(_check_server(model, options))
        tokenizer = None
        if options.tokenizer:
            from evalkit.models.loader import load_tokenizer

            tokenizer = load_tokenizer(options.tokenizer)
        return cls(model, options, served, tokenizer, request_cache=request_cache)

    @property
    def tokenizer(self):
        return self._tokenizer

    @property
    def chat_available(self) -> bool:
        return True  # the server applies its model's template; --no-chat-template sends plain completions

    def model_record(self, name: str) -> dict:
        # evalkit serve reports what it serves (weight hashes): the run then keys to the same model as an hf run.
        identity = self.served.get("evalkit_identity") or {"kind": "openai_api", "source": f"{self.options.base_url}#{name}"}
        return {"name": name, **identity, "dtype": None, "device": None,
                "context_length": self.served.get("max_model_len")}

    def cache_namespace(self) -> dict:
        from evalkit.store.identity import model_key

        return {"model": model_key(self.model_record(self.model)), "backend": self.name,
                "base_url": self.options.base_url, "served_model": self.model, "mc_mode": self.options.mc_mode,
                "letter_bias": self._tokenizer is not None}

    def describe(self) -> dict:
        from importlib import metadata

        return {"name": self.name, "base_url": self.options.base_url, "served_model": self.model,
                "owned_by": self.served.get("owned_by"), "mc_mode": self.options.mc_mode,
                "top_logprobs": self.options.top_logprobs, "letter_bias": self._tokenizer is not None,
                "tokenizer": self.options.tokenizer, "concurrency": self.options.concurrency,
                "openai_client": metadata.version("openai")}

    # -- multiple choice --------------------------------------------------------------------------------
    def score_choices(self, requests, targets, config, label):
        if config.truncation == "left":
            raise EvalkitError("--truncation left needs the model's tokenizer in process; use --backend hf")
        keys = [{"prompt": r.prompt, "chat": r.chat, "targets": targets, **options_key(r, targets)} for r in requests]
        if self.options.mc_mode == "generate":
            return self._run(label, requests, lambda client, r: self._choice_by_text(client, r), config.progress,
                             "multiple_choice", keys)
        ids, names = None, list(targets)  # the labels as the server names their tokens ("A", or " A")
        if self._tokenizer is not None:
            ids = choice_token_ids(self._tokenizer, targets)
            names = [self._tokenizer.decode([i]) for i in ids]

        def score(client, request):
            count = option_count(request, targets)  # only the question's own labels: biased in, and scored
            bias = {str(i): 100 for i in ids[:count]} if ids is not None else None
            return self._choice_by_logprobs(client, request, names[:count], bias)

        return self._run(label, requests, score, config.progress, "multiple_choice", keys)

    async def _choice_by_logprobs(self, client, request, names, bias) -> ChoiceScore:
        response = await client.completions.create(
            model=self.model, prompt=request.prompt, max_tokens=1, temperature=0, logprobs=self.options.top_logprobs,
            **({"logit_bias": bias} if bias else {}), **_special_tokens(request.chat))
        choice = response.choices[0]
        top = (choice.logprobs.top_logprobs or [None])[0] if choice.logprobs else None
        if not top:
            raise EvalkitError(f"{self.options.base_url}: the server returned no log-probabilities for {request.task} "
                               f"{request.subject} #{request.index}; this server cannot score multiple choice by "
                               "log-probabilities: use --mc-mode generate (parses a letter from the answer)")
        missing = [name for name in names if name not in top]
        if missing:
            raise EvalkitError(f"{self.options.base_url}: the letters {missing} are not among the top "
                               f"{len(top)} log-probabilities for {request.subject} #{request.index}; pass --tokenizer "
                               f"MODEL so evalkit can bias the {len(names)} letters into them (logit_bias), or raise "
                               "--top-logprobs")
        probabilities = letter_probabilities([top[name] for name in names])
        prediction = best_letter(probabilities, request.labels)
        return ChoiceScore(request, probabilities, prediction, response.usage.prompt_tokens if response.usage else 0, False)

    async def _choice_by_text(self, client, request) -> ChoiceScore:
        response = await client.completions.create(model=self.model, prompt=request.prompt, max_tokens=GENERATE_MC_TOKENS,
                                                   temperature=0, **_special_tokens(request.chat))
        match = parse_rule(request.labels).match(response.choices[0].text or "")  # no match: counted as n_unparsed, scored wrong
        return ChoiceScore(request, None, match.group(1) if match else None,
                           response.usage.prompt_tokens if response.usage else 0, False)

    def score_cloze(self, requests, config, label):
        from evalkit.backends.openai_cloze import cloze_work

        if config.truncation == "left":
            raise EvalkitError("--truncation left needs the model's tokenizer in process; use --backend hf")
        if self.options.mc_mode == "generate":
            raise EvalkitError(f"--mc-mode generate cannot score {label} (scoring: cloze needs the options' "
                               "log-probabilities); drop --mc-mode generate")
        keys = [{"prompt": r.prompt, "continuations": list(r.continuations), "token_ids": self._tokenizer is not None}
                for r in requests]
        return self._run(label, requests, cloze_work(self), config.progress, "cloze", keys)

    # -- generation ---------------------------------------------------------------------------------------
    def generate(self, texts, *, chat, max_new_tokens, stop, config, label):
        if config.truncation == "left":
            raise EvalkitError("--truncation left needs the model's tokenizer in process; use --backend hf")
        if len(stop) > 4:
            raise EvalkitError(f"task {label} has {len(stop)} stop strings; the OpenAI API takes at most 4")
        started = time.perf_counter()

        async def one(client, text):
            if chat:
                messages = [{"role": "user", "content": text}]
                response = await client.chat.completions.create(model=self.model, messages=messages, temperature=0,
                                                                 max_tokens=max_new_tokens, stop=list(stop) or None)
                raw, prompt = response.choices[0].message.content or "", json.dumps(messages, ensure_ascii=False)
            else:
                response = await client.completions.create(model=self.model, prompt=text, temperature=0,
                                                           max_tokens=max_new_tokens, stop=list(stop) or None)
                raw, prompt = response.choices[0].text or "", text
            reason = response.choices[0].finish_reason
            cleaned, finish = clean_generation(raw, stop, "length" if reason == "length" else "eos")
            usage = response.usage
            return Generation(cleaned, usage.prompt_tokens if usage else 0, usage.completion_tokens if usage else 0,
                              finish, False, [], prompt)

        keys = [{"text": t, "chat": chat, "max_new_tokens": max_new_tokens, "stop": list(stop), "decoding": "greedy"}
                for t in texts]
        generations = self._run(label, texts, one, config.progress, "generation", keys)
        return generations, generation_timing(time.perf_counter() - started, generations,
                                              concurrency=self.options.concurrency)

    # -- plumbing -----------------------------------------------------------------------------------------
    def _run(self, label, items, work, progress, kind, payloads):
        return asyncio.run(self._gather(label, items, work, progress, self.memo(kind, payloads)))

    async def _gather(self, label, items, work, progress, memo):
        import openai

        semaphore = asyncio.Semaphore(self.options.concurrency)
        bar = tqdm(total=len(items), desc=label or "requests", unit="req", disable=not progress, dynamic_ncols=True)
        async with _client(self.options) as client:
            async def guarded(index, item):
                hit = memo.cached([index]) if memo is not None else None
                if hit is not None:
                    result = _restore(item, hit[0])
                else:
                    async with semaphore:
                        result = await work(client, item)
                    if memo is not None:  # saved as it arrives: a kill loses only the requests in flight
                        memo.save([index], [_saved(result)])
                        bar.set_postfix(memo.postfix(), refresh=False)
                bar.update(1)
                return result

            tasks = [asyncio.ensure_future(guarded(i, item)) for i, item in enumerate(items)]
            try:
                return await asyncio.gather(*tasks)
            except openai.APIError as exc:
                raise _api_error(exc, self.options, self.model) from None
            finally:
                for task in tasks:
                    task.cancel()
                bar.close()


def _saved(result) -> dict:
    if isinstance(result, ClozeScore):
        return {"loglikelihoods": result.loglikelihoods, "greedy": result.greedy, "prompt_tokens": result.prompt_tokens}
    if isinstance(result, ChoiceScore):
        return {"probabilities": result.probabilities, "prediction": result.prediction, "prompt_tokens": result.prompt_tokens}
    return {"text": result.text, "prompt_tokens": result.prompt_tokens, "new_tokens": result.new_tokens,
            "finish": result.finish, "prompt": result.prompt}


def _restore(item, saved: dict):
    if "loglikelihoods" in saved:
        return ClozeScore(item, saved["loglikelihoods"], saved["greedy"], saved["prompt_tokens"], False)
    if "probabilities" in saved:
        return ChoiceScore(item, saved["probabilities"], saved["prediction"], saved["prompt_tokens"], False)
    return Generation(saved["text"], saved["prompt_tokens"], saved["new_tokens"], saved["finish"], False, [], saved["prompt"])


def _special_tokens(chat: bool) -> dict:
    # A chat-rendered prompt carries its own special tokens; vLLM and evalkit serve honour this extension.
    return {"extra_body": {"add_special_tokens": False}} if chat else {}


def _client(options: OpenAIOptions):
    import openai

    key = os.environ.get(options.api_key_env) or "EMPTY"  # local servers without auth accept any key
    return openai.AsyncOpenAI(base_url=options.base_url, api_key=key, timeout=options.timeout,
                              max_retries=options.max_retries)


async def _check_server(model: str, options: OpenAIOptions) -> dict:
    """The served model's entry from /v1/models (fails fast with one line if the server or model is wrong)."""
    import openai

    async with _client(options) as client:
        try:
            page = await client.models.list()
        except openai.APIError as exc:
            raise _api_error(exc, options, model) from None
    entries = {entry.id: entry.model_dump() for entry in page.data}
    if model not in entries:
        raise EvalkitError(f"{options.base_url}: the server does not serve {model!r}; it serves "
                           f"{', '.join(entries) or 'nothing'}: pass one of these as --model")
    return entries[model]


def _api_error(exc, options: OpenAIOptions, model: str) -> EvalkitError:
    import openai

    url = options.base_url
    if isinstance(exc, openai.AuthenticationError):
        return EvalkitError(f"{url}: 401 unauthorised: put the server's API key in ${options.api_key_env} "
                            "(or name another variable with --api-key-env)")
    if isinstance(exc, openai.NotFoundError):
        return EvalkitError(f"{url}: 404 for model {model!r} ({_message(exc)}); check --base-url (it ends in /v1) and --model")
    if isinstance(exc, openai.APITimeoutError):
        return EvalkitError(f"{url}: no answer within {options.timeout:g} s after {options.max_retries} retries; "
                            "raise --request-timeout or lower --concurrency")
    if isinstance(exc, openai.APIConnectionError):
        return EvalkitError(f"{url}: cannot connect ({exc.__cause__ or exc}); is the server running at this address?")
    if isinstance(exc, openai.APIStatusError):
        return EvalkitError(f"{url}: the server answered {exc.status_code}: {_message(exc)}")
    return EvalkitError(f"{url}: {type(exc).__name__}: {exc}")


def _message(exc) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        body = body.get("error", body)
        if isinstance(body, dict) and body.get("message"):
            return str(body["message"])
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
