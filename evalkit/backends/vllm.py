"""``--backend vllm``: vLLM's engine in process (``vllm.LLM``), the same three questions as ``hf``.

* Multiple choice: one engine step per question, ``max_tokens=1`` with ``allowed_token_ids`` = the four
  letter tokens and the engine's ``logprobs_mode="processed_logprobs"``: the returned log-probabilities
  are then exactly the four letters, renormalised over them, which is evalkit's softmax over the four
  letter logits. Prefix caching is on, so each subject's few-shot prefix is computed once.
* Generation: greedy, the model's EOS and the task's stop strings, the chat template rendered by
  evalkit (scoring/generation.py ``render_prompt``) and decoded/cleaned by the same rule as ``hf``.
* Perplexity: ``prompt_logprobs`` over the same sliding windows as profile/perplexity.py, a few
  windows per engine call, so no whole-document prompt ever asks for log-probabilities (vLLM 5907).

Prompts go in as token ids tokenised exactly as the ``hf`` backend does, so both see the same tokens.
PEFT LoRA adapter directories run through ``LoRARequest`` on their base (no merge). Engine settings
(--tensor-parallel-size, --data-parallel-size, --gpu-memory-utilization, --max-model-len, and any other
``vllm.LLM`` keyword via ``BackendOptions.extra``) pass through and are recorded by ``describe()``.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

from tqdm.auto import tqdm

from evalkit.backends.base import BackendOptions, clean_generation
from evalkit.backends.request_cache import BatchMemo
from evalkit.errors import EvalkitError
from evalkit.models.loader import LoadedModel

CHUNK = 64  # requests per engine call: the request cache saves after each, and the bar moves
PERPLEXITY_WINDOWS_PER_CALL = 8  # bounds the prompt log-probabilities held at once


def _model_source(spec: str) -> tuple[Path | str, dict, Path | None, dict | None]:
    """(weights for vLLM, identity record, LoRA adapter dir or None, its adapter_config) of ``--model``.

    The identity record matches the ``hf`` backend's (models/loader.py) so results name the same model.
    """
    from evalkit.models.embedded import EMBEDDED, dequantised_dir, resolve_embedded
    from evalkit.models.loader import HUB_ID, adapter_config, weights_hash

    if spec in EMBEDDED:  # GGUF aliases: vLLM reads the dequantised transformers directory
        directory, identity = resolve_embedded(spec)
        return directory, identity, None, None
    path = Path(spec).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        directory, digest = dequantised_dir(path.resolve())
        return directory, {"kind": "gguf", "source": str(path.resolve()), "weights_sha256": digest}, None, None
    if path.is_dir() and (path / "adapter_config.json").is_file():
        config, base_spec = adapter_config(path, "adapter_config.json", ())
        if config.get("peft_type") != "LORA":
            raise EvalkitError(f"{path / 'adapter_config.json'}: peft_type {config.get('peft_type')!r}; vLLM runs "
                               "LoRA adapters only: use --backend hf, or merge the adapter into its base")
        base, base_identity, nested, _ = _model_source(base_spec)
        if nested is not None:
            raise EvalkitError(f"{path / 'adapter_config.json'}: its base is itself an adapter; vLLM applies one "
                               "LoRA on a plain model: merge the base adapter first or use --backend hf")
        identity = {"kind": "peft_adapter", "source": str(path.resolve()), "adapter_sha256": weights_hash(path),
                    "peft_type": config.get("peft_type"), "base": base_identity}
        return base, identity, path.resolve(), config
    if path.is_dir() and (path / "evalkit_adapter_config.json").is_file():
        raise EvalkitError(f"{path}: an evalkit bottleneck adapter, which vLLM cannot run; use --backend hf")
    if path.is_dir() and (path / "config.json").is_file():
        return path.resolve(), {"kind": "local", "source": str(path.resolve()), "weights_sha256": weights_hash(path)}, None, None
    if path.exists() or not HUB_ID.match(spec):
        raise EvalkitError(f"model {spec!r}: not an embedded model, a transformers directory, a .gguf file, a LoRA "
                           "adapter directory or a hub id; point --model at one of these")
    return spec, {"kind": "hub", "source": spec, "revision": None}, None, None


def _dtype_name(dtype: str, device: str) -> str:
    from evalkit.models.loader import pick_dtype

    return str(pick_dtype(dtype, device)).replace("torch.", "")


class VLLMBackend:
    name = "vllm"
    task_types = ("multiple_choice", "generation", "perplexity")
    request_cache = None  # set by evalkit run (backends/request_cache.py); None: compute everything

    def __init__(self, llm, lm: LoadedModel, engine_settings: dict, lora=None, generation_eos=None):
        self.llm = llm
        self.lm = lm  # model=None: the tokenizer, identity and context shared with evalkit's prompt code
        self.engine_settings = engine_settings
        self.lora = lora
        self.generation_eos = generation_eos  # the generation config's EOS (chat models end turns with their own)

    @classmethod
    def load(cls, model: str, options: BackendOptions) -> "VLLMBackend":
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
        weights, identity, adapter, adapter_cfg = _model_source(model)
        dtype = _dtype_name(options.dtype, device)
        settings = {"dtype": dtype, "enable_prefix_caching": True, "logprobs_mode": "processed_logprobs",
                    "generation_config": "vllm", "seed": 0, "trust_remote_code": options.trust_remote_code}
        if adapter is not None:
            settings.update(enable_lora=True, max_lora_rank=_lora_rank(int(adapter_cfg.get("r") or 8)), max_loras=1)
        settings.update({k: v for k, v in options.extra.items() if v is not None})
        try:
            llm = vllm.LLM(model=str(weights), **settings)
        except EvalkitError:
            raise
        except Exception as exc:  # engine start-up errors are long; the first line names the cause
            first = (str(exc).strip().splitlines() or [""])[0]
            raise EvalkitError(f"vLLM could not start {model} ({type(exc).__name__}: {first}); check the engine "
                               "settings (--max-model-len, --gpu-memory-utilization) or use --backend hf") from None
        tokenizer_dir = adapter if adapter is not None and (adapter / "tokenizer_config.json").is_file() else weights
        tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir), trust_remote_code=options.trust_remote_code)
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
        return cls(llm, lm, {"version": vllm.__version__, **settings}, lora, generation_eos)

    # -- what the results record ---------------------------------------------------------------------------
    @property
    def tokenizer(self):
        return self.lm.tokenizer

    @property
    def chat_available(self) -> bool:
        from evalkit.scoring.generation import has_chat_template

        return has_chat_template(self.lm.tokenizer)

    def model_record(self, name: str) -> dict:
        lm = self.lm
        return {"name": name, **lm.identity, "dtype": lm.dtype, "device": lm.device, "context_length": lm.context_length}

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

    def _memo(self, kind: str, payloads: list[dict]) -> BatchMemo | None:
        if self.request_cache is None:
            return None
        return BatchMemo(self.request_cache, kind, [self.request_cache.key(kind, p) for p in payloads])

    def _run(self, prompts: list[list[int]], params) -> list:
        from vllm.inputs import TokensPrompt

        return self.llm.generate([TokensPrompt(prompt_token_ids=ids) for ids in prompts], params, use_tqdm=False,
                                 lora_request=self.lora)

    @staticmethod
    def _chunks(count: int, memo, compute, label: str, unit: str, progress: bool) -> list:
        """Run ``compute(indices) -> values`` chunk by chunk in input order, through the request cache."""
        results: list = [None] * count
        bar = tqdm(total=count, desc=label, unit=unit, disable=not progress, dynamic_ncols=True)
        for start in range(0, count, CHUNK):
            batch = list(range(start, min(start + CHUNK, count)))
            values = memo.cached(batch) if memo is not None else None
            if values is None:
                values = compute(batch)
                if memo is not None:
                    memo.save(batch, values)
                    bar.set_postfix(memo.postfix(), refresh=False)
            for i, value in zip(batch, values):
                results[i] = value
            bar.update(len(batch))
        bar.close()
        return results

    # -- multiple choice -----------------------------------------------------------------------------------
    def score_choices(self, requests, targets, config, label):
        from vllm import SamplingParams

        from evalkit.scoring.multiple_choice import ChoiceScore, choice_token_ids, tokenize_prompts
        from evalkit.tasks.mc_data import LETTERS

        if not requests:
            return []
        letter_ids = choice_token_ids(self.lm.tokenizer, targets)
        # one token is generated after the prompt, so a prompt may fill the context less one
        shim = LoadedModel(None, self.lm.tokenizer, self.lm.identity, self.lm.device, self.lm.dtype,
                           self.lm.context_length - 1)
        sequences, truncated = tokenize_prompts(shim, requests, config.truncation, label)
        params = SamplingParams(max_tokens=1, temperature=0.0, logprobs=len(letter_ids), allowed_token_ids=letter_ids)
        common = {"targets": targets, "truncation": config.truncation, "context": shim.context_length}
        memo = self._memo("multiple_choice", [{"prompt_ids": ids, **common} for ids in sequences])

        def compute(batch: list[int]) -> list[list[float]]:
            rows = []
            for output in self._run([sequences[i] for i in batch], params):
                logprobs = output.outputs[0].logprobs[0]
                missing = [t for t, i in zip(targets, letter_ids) if i not in logprobs]
                if missing:  # cannot happen with allowed_token_ids; a silent guess would be worse than a stop
                    raise EvalkitError(f"vLLM returned no log-probability for the letters {missing}; "
                                       "this vLLM version does not honour allowed_token_ids: use --backend hf")
                values = [logprobs[i].logprob for i in letter_ids]
                peak = max(values)  # float64 softmax over the four (already renormalised by vLLM, to fp32)
                weights = [math.exp(v - peak) for v in values]
                rows.append([w / sum(weights) for w in weights])
            return rows

        probabilities = self._chunks(len(requests), memo, compute, label or "scoring", "q", config.progress)
        return [ChoiceScore(r, p, LETTERS[max(range(4), key=p.__getitem__)], len(s), t)
                for r, p, s, t in zip(requests, probabilities, sequences, truncated)]

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

        from evalkit.scoring.generation import Generation, render_prompt, tokenize_prompts

        prompts = [render_prompt(self.lm.tokenizer, text, chat) for text in texts]
        sequences, truncated = tokenize_prompts(self.lm, prompts, chat, max_new_tokens, config.truncation, label)
        eos = self._eos_ids()
        # The stop string stays in the output so clean_generation cuts it exactly as for hf.
        params = SamplingParams(max_tokens=max_new_tokens, temperature=0.0, stop=list(stop) or None,
                                stop_token_ids=eos, include_stop_str_in_output=True, skip_special_tokens=True)
        memo = self._memo("generation", [{"prompt_ids": ids, "max_new_tokens": max_new_tokens, "stop": list(stop),
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
        total = sum(g.new_tokens for g in generations)
        return generations, {"generate_s": round(seconds, 3), "new_tokens": total,
                             "tokens_per_s": round(total / seconds, 2) if seconds > 0 else None,
                             "max_num_seqs": self.engine_settings.get("max_num_seqs")}

    # -- perplexity ----------------------------------------------------------------------------------------
    def loglikelihood_rolling(self, documents, window, stride, config):
        """The hf backend's numbers (profile/perplexity.py), the windows' log-probabilities from vLLM."""
        from vllm import SamplingParams

        from evalkit.profile.perplexity import window_ranges

        window = min(window, self.lm.context_length - 1)  # the engine generates one token after each window
        stride = min(stride, window)
        params = SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0)
        rows, per_doc, total_nll, total_predicted = [], [], 0.0, 0
        for i, doc in enumerate(tqdm(documents, desc="perplexity", unit="doc", disable=not config.progress)):
            ids = self.lm.tokenizer(doc.text)["input_ids"]
            if len(ids) < 2:
                raise EvalkitError(f"{doc.source}: document at row {doc.index + 1} has fewer than 2 tokens; it cannot be scored")
            windows = list(window_ranges(len(ids), window, stride))
            sums = []
            for start in range(0, len(windows), PERPLEXITY_WINDOWS_PER_CALL):
                part = windows[start:start + PERPLEXITY_WINDOWS_PER_CALL]
                for (begin, end, first), output in zip(part, self._run([ids[b:e] for b, e, _ in part], params)):
                    # prompt_logprobs[j] is the log-probability of token begin + j given the tokens before it
                    kept = [output.prompt_logprobs[j][ids[begin + j]].logprob for j in range(first - begin, end - begin)]
                    sums.append((-math.fsum(kept), len(kept), end - begin))
            nll, predicted = math.fsum(s for s, _, _ in sums), sum(n for _, n, _ in sums)
            total_nll += nll
            total_predicted += predicted
            first_ppl = math.exp(sums[0][0] / sums[0][1])
            per_doc.append(first_ppl)
            rows.append({"index": i, "source": doc.source, "source_index": doc.index, "chars": len(doc.text),
                         "document_tokens": len(ids), "prompt_tokens": sum(c for _, _, c in sums),
                         "predicted_tokens": predicted, "nll_sum": nll, "perplexity": math.exp(nll / predicted),
                         "first_window_perplexity": first_ppl})
        summary = {"window": window, "stride": stride, "documents": len(documents), "predicted_tokens": total_predicted,
                   "nll_sum": total_nll, "perplexity": math.exp(total_nll / total_predicted),
                   "perplexity_llamafactory": sum(per_doc) / len(per_doc)}
        return summary, rows


def _lora_rank(rank: int) -> int:
    """vLLM accepts a fixed set of max_lora_rank values; the smallest one that holds the adapter's rank."""
    for allowed in (1, 8, 16, 32, 64, 128, 256, 320, 512):
        if rank <= allowed:
            return allowed
    raise EvalkitError(f"LoRA rank {rank} is above vLLM's largest (512); use --backend hf")
