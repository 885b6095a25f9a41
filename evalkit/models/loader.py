"""Turn whatever the user passed to ``--model`` into a ready model, tokenizer and identity record.

Accepted: an embedded alias, a local transformers directory, a ``.gguf`` file, a PEFT adapter
directory (its base is loaded from ``adapter_config.json`` first), or a Hugging Face hub id.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evalkit.cache import sha256_file
from evalkit.errors import EvalkitError
from evalkit.models.embedded import EMBEDDED, dequantised_dir, resolve_embedded

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
WEIGHT_SUFFIXES = (".safetensors", ".bin")


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


def _load(spec: str, torch_dtype, trust_remote_code: bool, adapters: tuple[Path, ...] = ()):
    """``adapters``: the adapter directories whose base this is (an adapter chain must end in a model)."""
    if spec in EMBEDDED:
        directory, identity = resolve_embedded(spec)
        model, tokenizer = _from_directory(directory, torch_dtype, trust_remote_code)
        return model, tokenizer, identity
    path = Path(spec).expanduser()
    if path.exists():
        if path.is_file() and path.suffix == ".gguf":
            directory, digest = dequantised_dir(path.resolve())
            model, tokenizer = _from_directory(directory, torch_dtype, trust_remote_code)
            return model, tokenizer, {"kind": "gguf", "source": str(path.resolve()), "weights_sha256": digest}
        if path.is_dir() and (path / "adapter_config.json").is_file():
            return _load_adapter(path, torch_dtype, trust_remote_code, adapters)
        if path.is_dir() and (path / "evalkit_adapter_config.json").is_file():
            return _load_evalkit_adapter(path, torch_dtype, trust_remote_code, adapters)
        if path.is_dir() and (path / "config.json").is_file():
            model, tokenizer = _from_directory(path, torch_dtype, trust_remote_code)
            return model, tokenizer, _dequantised_identity(path) or {
                "kind": "local", "source": str(path.resolve()), "weights_sha256": weights_hash(path)}
        raise EvalkitError(
            f"{path}: not a model (expected config.json, adapter_config.json or a .gguf file); "
            "point --model at a transformers checkpoint directory, a PEFT adapter or a GGUF file"
        )
    if is_hub_id(spec):
        return _load_hub(spec, torch_dtype, trust_remote_code)
    known = ", ".join(EMBEDDED)
    raise EvalkitError(
        f"model {spec!r} does not exist: not a local path, an embedded model ({known}) or a hub id (org/name)"
    )


def _dequantised_identity(directory: Path) -> dict | None:
    """evalkit's dequantised copy of a GGUF (what an adapter trained on an embedded model names as its
    base) is that GGUF: same weights hash as when the adapter was trained, not a hash of the copy."""
    try:
        record = json.loads((directory / "evalkit_source.json").read_text(encoding="utf-8"))
        return {"kind": "gguf", "source": str(record["gguf"]), "weights_sha256": str(record["gguf_sha256"])}
    except (OSError, ValueError, KeyError, TypeError):
        return None


def weights_hash(directory: Path) -> str:
    """SHA-256 over the weight files (name and content), so a retrained checkpoint never collides."""
    import hashlib

    digest = hashlib.sha256()
    files = sorted(p for p in directory.iterdir() if p.suffix in WEIGHT_SUFFIXES)
    for file in files:
        digest.update(file.name.encode())
        digest.update(sha256_file(file).encode())
    return digest.hexdigest()


def check_safetensors(directory: Path) -> None:
    """Fail with one line naming the file if a safetensors file is truncated or corrupt."""
    from safetensors import safe_open

    for file in sorted(directory.glob("*.safetensors")):
        try:
            with safe_open(str(file), framework="pt") as handle:
                keys = list(handle.keys())
                if keys:  # reading the last tensor touches the end of the data buffer
                    handle.get_slice(keys[-1])
        except Exception as exc:
            raise EvalkitError(
                f"{file}: corrupt or truncated safetensors file ({exc}); re-download or re-export the checkpoint"
            ) from None


def _from_directory(directory: Path, torch_dtype, trust_remote_code: bool):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    check_safetensors(Path(directory))
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(directory), trust_remote_code=trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(str(directory), dtype=torch_dtype, trust_remote_code=trust_remote_code)
    except EvalkitError:
        raise
    except Exception as exc:
        raise EvalkitError(f"{directory}: cannot load this checkpoint ({type(exc).__name__}: {_first_line(exc)})") from None
    return model, tokenizer


def adapter_config(path: Path, name: str, adapters: tuple[Path, ...]) -> tuple[dict, str]:
    """(config, base model) of an adapter directory, checked before its base is loaded."""
    file = path / name
    try:
        config = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise EvalkitError(f"{file}: not valid JSON ({exc}); re-export the adapter") from None
    if not isinstance(config, dict):
        raise EvalkitError(f"{file}: expected a JSON object, found a {type(config).__name__}; re-export the adapter")
    base_spec = config.get("base_model_name_or_path")
    if not base_spec or not isinstance(base_spec, str):
        raise EvalkitError(f"{file}: no base_model_name_or_path; set it to the base model")
    if not any((path / f"adapter_model{suffix}").is_file() for suffix in WEIGHT_SUFFIXES):
        raise EvalkitError(f"{path}: adapter without weights (no adapter_model.safetensors or adapter_model.bin); "
                           "copy the whole adapter directory or re-export it")
    chain = (*adapters, path.resolve())
    base_path = Path(base_spec).expanduser()
    if base_path.exists() and base_path.resolve() in chain:
        raise EvalkitError(f"{file}: base_model_name_or_path {base_spec!r} leads back to this adapter "
                           "(an adapter cannot be its own base); set it to the base model")
    return config, base_spec


def _load_adapter(path: Path, torch_dtype, trust_remote_code: bool, adapters: tuple[Path, ...] = ()):
    from peft import PeftModel

    config, base_spec = adapter_config(path, "adapter_config.json", adapters)
    base_model, tokenizer, base_identity = _load(base_spec, torch_dtype, trust_remote_code, (*adapters, path.resolve()))
    check_safetensors(path)
    try:
        model = PeftModel.from_pretrained(base_model, str(path))
    except Exception as exc:
        raise EvalkitError(f"{path}: cannot apply this adapter to {base_spec} ({type(exc).__name__}: {_first_line(exc)})") from None
    if (path / "tokenizer_config.json").is_file():  # trainers may save a tokenizer with new special tokens
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(path))
    identity = {
        "kind": "peft_adapter",
        "source": str(path.resolve()),
        "adapter_sha256": weights_hash(path),
        "peft_type": config.get("peft_type"),
        "base": base_identity,
    }
    return model, tokenizer, identity


def _load_evalkit_adapter(path: Path, torch_dtype, trust_remote_code: bool, adapters: tuple[Path, ...] = ()):
    """Bottleneck adapters from ``evalkit train`` (method adapter, which PEFT lacks): see evalkit/train/methods/adapter.py."""
    from evalkit.train.methods.adapter import CONFIG_NAME, load_into

    config, base_spec = adapter_config(path, CONFIG_NAME, adapters)
    if not isinstance(config.get("adapter_size"), int):
        raise EvalkitError(f"{path / CONFIG_NAME}: no integer adapter_size; re-train or re-export the adapter")
    model, tokenizer, base_identity = _load(base_spec, torch_dtype, trust_remote_code, (*adapters, path.resolve()))
    check_safetensors(path)
    load_into(model, path)
    if (path / "tokenizer_config.json").is_file():
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(path))
    identity = {"kind": "evalkit_adapter", "source": str(path.resolve()), "adapter_sha256": weights_hash(path),
                "adapter_type": config.get("type"), "base": base_identity}
    return model, tokenizer, identity


def is_hub_id(spec: str) -> bool:
    return (spec not in EMBEDDED and not Path(spec).expanduser().exists() and bool(HUB_ID.match(spec))
            and not spec.startswith((".", "/", "~")))


def check_hub_model(spec: str) -> None:
    """A hub id that cannot load (hub unreachable and not in the local cache) fails here in about a
    second, with one line and without importing transformers; call it before slow work. Other specs pass."""
    if not is_hub_id(spec):
        return
    from huggingface_hub import try_to_load_from_cache

    from evalkit.hub import cache_dir, hub_offline

    if hub_offline() and not isinstance(try_to_load_from_cache(spec, "config.json"), str):
        raise EvalkitError(f"model {spec!r}: not a local path, and the Hugging Face hub cannot be reached (offline) "
                           f"and it is not in the local cache {cache_dir()}; connect to the network once, "
                           "or pass a local directory")


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
    revision = getattr(model.config, "_commit_hash", None)
    return model, tokenizer, {"kind": "hub", "source": spec, "revision": revision}


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""


def load_tokenizer(spec: str):
    """The tokenizer of anything --model accepts (weights are not loaded): for API backends' prompt rendering."""
    from transformers import AutoTokenizer

    quiet_transformers()
    path = Path(spec).expanduser()
    if spec in EMBEDDED:
        source = str(resolve_embedded(spec)[0])
    elif path.is_file() and path.suffix == ".gguf":
        source = str(dequantised_dir(path.resolve())[0])
    elif path.is_dir() and not (path / "tokenizer_config.json").is_file() and (path / "adapter_config.json").is_file():
        try:
            return load_tokenizer(json.loads((path / "adapter_config.json").read_text(encoding="utf-8"))["base_model_name_or_path"])
        except (json.JSONDecodeError, KeyError, TypeError):
            raise EvalkitError(f"{path / 'adapter_config.json'}: no base_model_name_or_path to take the tokenizer from") from None
    else:
        source = str(path) if path.exists() else spec
    try:
        return AutoTokenizer.from_pretrained(source)
    except Exception as exc:
        raise EvalkitError(f"--tokenizer {spec}: cannot load a tokenizer ({type(exc).__name__}: {_first_line(exc)}); "
                           "name an embedded alias or a directory with tokenizer files") from None
