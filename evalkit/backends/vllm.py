"""``--backend vllm``: vLLM's engine in process (``vllm.LLM``), the same three questions as ``hf``.

* Multiple choice: one engine step per question, ``max_tokens=1`` with ``allowed_token_ids`` = the
  question's own label tokens (A-D for the shipped specs) and the engine's ``logprobs_mode="processed_logprobs"``:
  the returned log-probabilities are then exactly those labels, renormalised over them, which is evalkit's
  softmax over their logits. Prefix caching is on, so each subject's few-shot prefix is computed once.
* Cloze (``scoring: cloze``): each option's continuation scored from ``prompt_logprobs`` (vllm_cloze.py).
* Generation: greedy, the model's EOS and the task's stop strings, the chat template rendered by
  evalkit (backends/hf/generation.py ``render_prompt``) and decoded/cleaned by the same rule as ``hf``.
* Perplexity: ``prompt_logprobs`` over the same sliding windows as profile/perplexity.py, a few
  windows per engine call, so no whole-document prompt ever asks for log-probabilities (vLLM 5907).

Prompts go in as token ids tokenised exactly as the ``hf`` backend does, so both see the same tokens.
PEFT LoRA adapter directories run through ``LoRARequest`` on their base (no merge). Engine settings
(--tensor-parallel-size, --data-parallel-size, --gpu-memory-utilization, --max-model-len, and any other
``vllm.LLM`` keyword via ``--backend-arg engine_args=...``, see ``VLLMOptions``) pass through and are recorded by ``describe()``.
"""

from __future__ import annotations

import math
import os
import time
from typing import Any

from pydantic import Field
from tqdm.auto import tqdm

from evalkit.backends.base import BackendOptions, CacheOpener, InProcessBackend
from evalkit.backends.outputs import (ChoiceScore, Generation, best_letter, choice_token_ids, clean_generation,
                                      generation_timing, letter_probabilities, option_count, options_key)
from evalkit.errors import EvalkitError
from evalkit.models.loader import LoadedModel

CHUNK = 64  # requests per engine call: the request cache saves after each, and the bar moves
PERPLEXITY_WINDOWS_PER_CALL = 8  # bounds the prompt log-probabilities held at once


def _dtype_name(dtype: str, device: str) -> str:
    from evalkit.models.loader import pick_dtype

    return str(pick_dtype(dtype, device)).replace("torch.", "")


def choice_sampling(letter_ids: list[int], counts: list[int]) -> dict[int, dict]:
    """``SamplingParams`` keywords per option count: one token, chosen among (and log-probabilities for)
    the first ``count`` label tokens only, so a 3-option question is renormalised over its 3 labels."""
    return {count: {"max_tokens": 1, "temperature": 0.0, "logprobs": count, "allowed_token_ids": letter_ids[:count]}
            for count in sorted(set(counts))}


def _engine_flag(flag: str) -> dict:
    return {"flag": flag, "metavar": "N"}


class VLLMOptions(BackendOptions):
    """vLLM engine arguments evalkit passes to ``vllm.LLM``; any other one goes in ``engine_args``."""

    tensor_parallel_size: int | None = Field(None, ge=1, description="GPUs per model replica (vLLM's engine argument)",
                                             json_schema_extra=_engine_flag("--tensor-parallel-size"))
    data_parallel_size: int | None = Field(None, ge=1, description="model replicas (vLLM's engine argument)",
                                           json_schema_extra=_engine_flag("--data-parallel-size"))
    gpu_memory_utilization: float | None = Field(None, gt=0, le=1, description="fraction of GPU memory the engine may "
                                                 "take (vLLM's engine argument)",
                                                 json_schema_extra=_engine_flag("--gpu-memory-utilization"))
    max_model_len: int | None = Field(None, ge=1, description="context length the engine allocates for (vLLM's engine "
                                      "argument)", json_schema_extra=_engine_flag("--max-model-len"))
    max_num_seqs: int | None = Field(None, ge=1, description="sequences the engine batches at once")
    enforce_eager: bool | None = Field(None, description="no CUDA graphs / compilation")
    engine_args: dict[str, Any] = Field(default_factory=dict, description="any other vllm.LLM keyword (checked "
                                        "against vllm.EngineArgs when the engine starts)")

    def engine_settings(self) -> dict:
        declared = {k: v for k, v in self.model_dump(exclude={"engine_args", *BackendOptions.model_fields}).items()
                    if v is not None}
        return {**declared, **self.engine_args}


class VLLMBackend(InProcessBackend):
    name = "vllm"
    task_types = ("multiple_choice", "generation", "perplexity")
    Options = VLLMOptions

    def __init__(self, llm, lm: LoadedModel, engine_settings: dict, lora=None, generation_eos=None, *,
                 request_cache: CacheOpener | None = None):
        super().__init__(request_cache=request_cache)
        self.llm = llm
        self.lm = lm  # model=None: the tokenizer, identity and context shared with evalkit's prompt code
        self.engine_settings = engine_settings
        self.lora = lora
        self.generation_eos = generation_eos  # the generation config's EOS (chat models end turns with their own)

    @classmethod
    def check_model(cls, model: str) -> None:
        from evalkit.models.loader import check_hub_model

        check_hub_model(model)

    @classmethod
    def load(cls, model: str, options: VLLMOptions, *, request_cache: CacheOpener | None = None) -> "VLLMBackend":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
        if options.device not in ("auto", device) and not options.device.startswith(device):
            raise EvalkitError(f"--device {options.device}: this vLLM build runs on {device}; drop --device")
        if device == "cpu":  # vLLM's CPU build: in-process engine, a small KV cache unless the user set one
            os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
        import vllm
        from transformers import AutoTokenizer, GenerationConfig

        from evalkit.models.loader import quiet_transformers

        quiet_transformers()
        from evalkit.models.source import resolve_model

        source = resolve_model(model).check_vllm()  # a bottleneck, non-LoRA or stacked adapter stops here
        weights, identity = source.weights_dir, source.identity()  # identity: the hf backend's, so runs match
        adapter = source.path if source.kind == "peft_adapter" else None
        dtype = _dtype_name(options.dtype, device)
        settings = {"dtype": dtype, "enable_prefix_caching": True, "logprobs_mode": "processed_logprobs",
                    "generation_config": "vllm", "seed": 0, "trust_remote_code": options.trust_remote_code}
        if adapter is not None:
            settings.update(enable_lora=True, max_lora_rank=source.max_lora_rank, max_loras=1)
        settings.update(_checked_engine_args(options.engine_settings(), vllm))
        try:
            llm = vllm.LLM(model=str(weights), **settings)
        except EvalkitError:
            raise
        except Exception as exc:  # engine start-up errors are long; the first line names the cause
            first = (str(exc).strip().splitlines() or [""])[0]
            raise EvalkitError(f"vLLM could not start {model} ({type(exc).__name__}: {first}); check the engine "
                               "settings (--max-model-len, --gpu-memory-utilization) or use --backend hf") from None
        tokenizer = AutoTokenizer.from_pretrained(str(source.tokenizer_dir), trust_remote_code=options.trust_remote_code)
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        context = int(llm.llm_engine.model_config.max_model_len)
        lm = LoadedModel(None, tokenizer, identity, device, dtype, context)
        try:  # the model's own end-of-turn tokens, as the hf backend stops on them
            generation_eos = GenerationConfig.from_pretrained(str(weights)).eos_token_id
        except Exception:  # no generation_config.json: the tokenizer's EOS only
            generation_eos = None
        lora = None
        if adapter is not None:
            from vllm.lora.request import LoRARequest

            lora = LoRARequest("evalkit-adapter", 1, str(adapter))
        return cls(llm, lm, {"version": vllm.__version__, **settings}, lora, generation_eos, request_cache=request_cache)

    # -- what the results record ---------------------------------------------------------------------------
    def describe(self) -> dict:
        from importlib import metadata

        settings = dict(self.engine_settings)
        return {"name": self.name, "vllm": settings.pop("version"), "torch": metadata.version("torch"),
                "transformers": metadata.version("transformers"), "engine": settings,
                "lora": self.lora.lora_path if self.lora is not None else None}

    def cache_namespace(self) -> dict:
        from evalkit.store.identity import model_key

        return {"model": model_key(self.lm.identity), "backend": self.name, "dtype": self.lm.dtype,
                "device": self.lm.device}

    def rolling_window(self, window: int, stride: int) -> tuple[int, int]:
        window = min(window, self.lm.context_length - 1)  # the engine generates one token after each window
        return window, min(stride, window)

    def _run(self, prompts: list[list[int]], params) -> list:
        from vllm.inputs import TokensPrompt

        return self.llm.generate([TokensPrompt(prompt_token_ids=ids) for ids in prompts], params, use_tqdm=False,
                                 lora_request=self.lora)

    @staticmethod
    def _chunks(count: int, memo, compute, label: str, unit: str, progress: bool) -> list:
        """Run ``compute(indices) -> values`` chunk by chunk in input order, through the request cache."""
        from evalkit.backends.request_cache import through_memo

        bar = tqdm(total=count, desc=label, unit=unit, disable=not progress, dynamic_ncols=True)
        chunks = (list(range(start, min(start + CHUNK, count))) for start in range(0, count, CHUNK))
        results = through_memo(memo, count, chunks, compute, bar)
        bar.close()
        return results

    # -- multiple choice -----------------------------------------------------------------------------------
    def score_choices(self, requests, targets, config, label):
        from vllm import SamplingParams

        from evalkit.backends.hf.multiple_choice import tokenize_prompts

        if not requests:
            return []
        letter_ids = choice_token_ids(self.lm.tokenizer, targets)
        counts = [option_count(r, targets) for r in requests]
        # one token is generated after the prompt, so a prompt may fill the context less one
        shim = LoadedModel(None, self.lm.tokenizer, self.lm.identity, self.lm.device, self.lm.dtype,
                           self.lm.context_length - 1)
        sequences, truncated = tokenize_prompts(shim, requests, config.truncation, label)
        params = {count: SamplingParams(**kwargs) for count, kwargs in choice_sampling(letter_ids, counts).items()}
        common = {"targets": targets, "truncation": config.truncation, "context": shim.context_length}
        memo = self.memo("multiple_choice", [{"prompt_ids": ids, **common, **options_key(r, targets)}
                                             for ids, r in zip(sequences, requests)])

        def compute(batch: list[int]) -> list[list[float]]:
            rows = []
            # one SamplingParams for the batch, as before labels varied; one per prompt where option counts differ
            wanted = params[counts[batch[0]]] if len(params) == 1 else [params[counts[i]] for i in batch]
            for i, output in zip(batch, self._run([sequences[i] for i in batch], wanted)):
                own = letter_ids[:counts[i]]
                logprobs = output.outputs[0].logprobs[0]
                missing = [t for t, token in zip(targets, own) if token not in logprobs]
                if missing:  # cannot happen with allowed_token_ids; a silent guess would be worse than a stop
                    raise EvalkitError(f"vLLM returned no log-probability for the letters {missing}; "
                                       "this vLLM version does not honour allowed_token_ids: use --backend hf")
                # float64 softmax over the question's labels (already renormalised by vLLM, to fp32)
                rows.append(letter_probabilities([logprobs[token].logprob for token in own]))
            return rows

        probabilities = self._chunks(len(requests), memo, compute, label or "scoring", "q", config.progress)
        return [ChoiceScore(r, p, best_letter(p, r.labels), len(s), t)
                for r, p, s, t in zip(requests, probabilities, sequences, truncated)]

    def score_cloze(self, requests, config, label):
        from evalkit.backends.vllm_cloze import score_cloze

        return score_cloze(self, requests, config, label)

    # -- generation ----------------------------------------------------------------------------------------
    def _eos_ids(self) -> list[int]:
        found = []
        for source in (self.lm.tokenizer.eos_token_id, self.generation_eos):
            for value in source if isinstance(source, (list, tuple)) else [source]:
                if value is not None and int(value) not in found:
                    found.append(int(value))
        return found

    def generate(self, texts, *, chat, max_new_tokens, stop, config, label):
        from vllm import SamplingParams

        from evalkit.backends.hf.generation import render_prompt, tokenize_prompts

        prompts = [render_prompt(self.lm.tokenizer, text, chat) for text in texts]
        sequences, truncated = tokenize_prompts(self.lm, prompts, chat, max_new_tokens, config.truncation, label)
        eos = self._eos_ids()
        # The stop string stays in the output so clean_generation cuts it exactly as for hf.
        params = SamplingParams(max_tokens=max_new_tokens, temperature=0.0, stop=list(stop) or None,
                                stop_token_ids=eos, include_stop_str_in_output=True, skip_special_tokens=True)
        memo = self.memo("generation", [{"prompt_ids": ids, "max_new_tokens": max_new_tokens, "stop": list(stop),
                                          "decoding": "greedy"} for ids in sequences])

        def compute(batch: list[int]) -> list:
            rows = []
            for output in self._run([sequences[i] for i in batch], params):
                completion = output.outputs[0]
                tokens = list(completion.token_ids)
                finish = "eos" if tokens and tokens[-1] in eos else "length" if completion.finish_reason == "length" else "eos"
                # evalkit's decoding rule (not vLLM's incremental detokeniser), so texts compare exactly with hf
                text, finish = clean_generation(self.lm.tokenizer.decode(tokens, skip_special_tokens=True), stop, finish)
                rows.append((text, tokens, finish))
            return rows

        started = time.perf_counter()
        rows = self._chunks(len(sequences), memo, compute, label or "generating", "sample", config.progress)
        seconds = time.perf_counter() - started
        generations = [Generation(text, len(seq), len(tokens), finish, flag, list(tokens), prompt)
                       for (text, tokens, finish), seq, flag, prompt in zip(rows, sequences, truncated, prompts)]
        return generations, generation_timing(seconds, generations, max_num_seqs=self.engine_settings.get("max_num_seqs"))

    # -- perplexity ----------------------------------------------------------------------------------------
    def loglikelihood_rolling(self, documents, window, stride, config):
        """The hf backend's rows (evaluators/perplexity.py windows), the windows' log-probabilities from vLLM."""
        from vllm import SamplingParams

        from evalkit.evaluators.perplexity import too_short, window_ranges

        params = SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0)
        rows = []
        for i, doc in enumerate(tqdm(documents, desc="perplexity", unit="doc", disable=not config.progress)):
            ids = self.lm.tokenizer(doc.text)["input_ids"]
            if len(ids) < 2:
                raise too_short(doc)
            windows = list(window_ranges(len(ids), window, stride))
            sums = []
            for start in range(0, len(windows), PERPLEXITY_WINDOWS_PER_CALL):
                part = windows[start:start + PERPLEXITY_WINDOWS_PER_CALL]
                for (begin, end, first), output in zip(part, self._run([ids[b:e] for b, e, _ in part], params)):
                    # prompt_logprobs[j] is the log-probability of token begin + j given the tokens before it
                    kept = [output.prompt_logprobs[j][ids[begin + j]].logprob for j in range(first - begin, end - begin)]
                    sums.append((-math.fsum(kept), len(kept), end - begin))
            nll, predicted = math.fsum(s for s, _, _ in sums), sum(n for _, n, _ in sums)
            first_ppl = math.exp(sums[0][0] / sums[0][1])
            rows.append({"index": i, "source": doc.source, "source_index": doc.index, "chars": len(doc.text),
                         "document_tokens": len(ids), "prompt_tokens": sum(c for _, _, c in sums),
                         "predicted_tokens": predicted, "nll_sum": nll, "perplexity": math.exp(nll / predicted),
                         "first_window_perplexity": first_ppl})
        return rows


def _checked_engine_args(settings: dict, vllm) -> dict:
    """Engine arguments, each a field of ``vllm.EngineArgs`` (a typo is one line, not an engine traceback)."""
    import dataclasses

    known = {f.name for f in dataclasses.fields(vllm.EngineArgs)} if dataclasses.is_dataclass(vllm.EngineArgs) else None
    unknown = sorted(k for k in settings if known is not None and k not in known)
    if unknown:
        raise EvalkitError(f"--backend-arg engine_args: {unknown[0]!r} is not a vLLM engine argument "
                           f"(vllm.EngineArgs, vLLM {vllm.__version__}); check its spelling")
    return settings

