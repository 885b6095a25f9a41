"""Turn whatever the user passed to ``--model`` into a ready model, tokenizer and identity record.

What the spec names (embedded alias, transformers directory, ``.gguf`` file, PEFT or evalkit adapter on
its base, hub id) is decided by models/source.py; this module loads it with transformers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evalkit.errors import EvalkitError
from evalkit.models.weights_check import check_checkpoint, check_safetensors
from evalkit.models.source import (  # noqa: F401 - HUB_ID .. weights_hash: re-exported, callers import them from here
    ADAPTER_CONFIGS, EMBEDDED, HUB_ID, WEIGHT_SUFFIXES, ModelSource, check_hub_model, is_hub_id, resolve_model,
    weights_hash,
)


@dataclass
class LoadedModel:
    model: Any  # a transformers PreTrainedModel (or a peft PeftModel wrapping one)
    tokenizer: Any
    identity: dict  # what produced the numbers: kind, source, weight hashes, adapter, base
    device: str
    dtype: str
    context_length: int = field(default=2048)
    linear_kernel: str = "torch"  # "evalkit-panels" / "onednn-packed": fp32 CPU linears on packed weights (models/packed_linear.py)

    @property
    def name(self) -> str:
        return self.identity.get("alias") or self.identity.get("source") or "model"


def pick_device(device: str = "auto") -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def pick_dtype(dtype: str, device: str):
    """fp32 on CPU (bf16 matmul is ~500x slower on this kind of CPU), bf16 on CUDA."""
    import torch

    if dtype == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    try:
        return {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
                "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}[dtype]
    except KeyError:
        raise EvalkitError(f"unknown --dtype {dtype!r}; use auto, float32, bfloat16 or float16") from None


def quiet_transformers() -> None:
    """evalkit shows its own progress; transformers' per-load bars and notices would bury errors."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    silence_deprecations()


def silence_deprecations() -> None:
    """transformers warns that its own code (PEFT loading, the Trainer) calls a deprecated method, on every
    run: nothing the user can act on. Matched by its exact text."""
    import warnings

    warnings.filterwarnings("ignore", message=r".*`is_gradient_checkpointing` is deprecated", category=FutureWarning)


def quiet_bitsandbytes() -> None:
    """bitsandbytes' CPU backend logs a failed optional import of the `kernels` package (a faster 4-bit kernel)
    when it is imported, on AVX512-BF16 CPUs: set its logger's level before peft or transformers import it."""
    import logging

    logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)


def load_model(spec: str, *, device: str = "auto", dtype: str = "auto", trust_remote_code: bool = False) -> LoadedModel:
    from evalkit.models.packed_linear import pack_linear_layers

    quiet_transformers()
    device = pick_device(device)
    torch_dtype = pick_dtype(dtype, device)
    model, tokenizer, identity = _load(spec, torch_dtype, trust_remote_code)
    model.to(device)
    model.eval()
    kernel = pack_linear_layers(model)  # fp32 CPU linears only; elsewhere the default kernel
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    config = model.config
    context = getattr(config, "max_position_embeddings", None) or getattr(tokenizer, "model_max_length", 2048)
    return LoadedModel(model, tokenizer, identity, device, str(torch_dtype).replace("torch.", ""), int(context),
                       kernel)


def _load(spec: str, torch_dtype, trust_remote_code: bool):
    source = resolve_model(spec)  # validates the whole adapter chain before any weights load
    model, tokenizer, revision = _load_source(source, torch_dtype, trust_remote_code)
    return model, tokenizer, source.identity(revision)


def _load_source(source: ModelSource, torch_dtype, trust_remote_code: bool):
    """(model, tokenizer, hub revision or None): the base first, then each adapter on top of it."""
    if source.kind == "hub":
        return _load_hub(source.spec, torch_dtype, trust_remote_code)
    if source.base is None:
        return (*_from_directory(source.weights_dir, torch_dtype, trust_remote_code), None)
    model, tokenizer, revision = _load_source(source.base, torch_dtype, trust_remote_code)
    path = source.path
    check_safetensors(path)
    if source.kind == "peft_adapter":
        from peft import PeftModel

        try:
            model = PeftModel.from_pretrained(model, str(path))
        except Exception as exc:
            base_spec = source.config["base_model_name_or_path"]
            raise EvalkitError(f"{path}: cannot apply this adapter to {base_spec} "
                               f"({type(exc).__name__}: {_first_line(exc)})") from None
    else:  # bottleneck adapters from ``evalkit train`` (method adapter, which PEFT lacks)
        from evalkit.train.methods.adapter import load_into

        load_into(model, path)
    if source.tokenizer_dir == path:  # trainers may save a tokenizer with new special tokens
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(path))
    return model, tokenizer, revision


def _from_directory(directory: Path, torch_dtype, trust_remote_code: bool):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    check_checkpoint(Path(directory))  # config vs weights, before transformers allocates from the config
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(directory), trust_remote_code=trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(str(directory), dtype=torch_dtype, trust_remote_code=trust_remote_code)
    except EvalkitError:
        raise
    except Exception as exc:
        raise EvalkitError(f"{directory}: cannot load this checkpoint ({type(exc).__name__}: {_first_line(exc)})") from None
    return model, tokenizer


def _load_hub(spec: str, torch_dtype, trust_remote_code: bool):
    check_hub_model(spec)  # before transformers' first request, which would retry for about a minute
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(spec, trust_remote_code=trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(spec, dtype=torch_dtype, trust_remote_code=trust_remote_code)
    except Exception as exc:
        raise EvalkitError(
            f"model {spec!r}: not a local path and not loadable from the Hugging Face hub "
            f"({type(exc).__name__}: {_first_line(exc)}); check the id, your network, or pass a local directory"
        ) from None
    return model, tokenizer, getattr(model.config, "_commit_hash", None)


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""


def load_tokenizer(spec: str):
    """The tokenizer of anything --model accepts (weights are not loaded): for API backends' prompt rendering."""
    from transformers import AutoTokenizer

    quiet_transformers()
    path = Path(spec).expanduser()
    try:
        source = str(resolve_model(spec).tokenizer_dir)
    except EvalkitError:
        if spec in EMBEDDED or path.is_file() or any((path / name).is_file() for name in ADAPTER_CONFIGS.values()):
            raise  # a model that is broken: the resolver's line names the file
        source = str(path) if path.exists() else spec  # tokenizer files alone, or a bare hub name: transformers decides
    try:
        return AutoTokenizer.from_pretrained(source)
    except Exception as exc:
        raise EvalkitError(f"--tokenizer {spec}: cannot load a tokenizer ({type(exc).__name__}: {_first_line(exc)}); "
                           "name an embedded alias or a directory with tokenizer files") from None
