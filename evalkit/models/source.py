"""What ``--model`` names, decided once for every consumer (the hf loader, vLLM, ``evalkit serve``, training).

``resolve_model(spec)`` returns a ``ModelSource``: an embedded alias, a ``.gguf`` file, a local transformers
directory, a PEFT adapter or an evalkit bottleneck adapter (each on a nested base source), or a hub id.
Resolving only reads small JSON files, so it can run before anything loads; the slow parts are lazy:
dequantising an embedded/GGUF model happens when ``weights_dir`` is first asked for, hashing weights when
``identity()`` is. No torch or transformers import here.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from evalkit.cache import sha256_file
from evalkit.errors import EvalkitError
from evalkit.models.embedded import EMBEDDED, dequantised_dir, resolve_embedded

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
WEIGHT_SUFFIXES = (".safetensors", ".bin")
ADAPTER_CONFIGS = {"peft_adapter": "adapter_config.json", "evalkit_adapter": "evalkit_adapter_config.json"}
VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)  # the max_lora_rank values vLLM accepts

# Each embedded alias: the hub model its GGUF was quantised from, and the GGUF's file name. An adapter trained
# on an embedded model names that hub id as its base (any PEFT user can load it there); evalkit maps the id
# back to the embedded model, offline, when the adapter's train_manifest.json says it was trained on it.
EMBEDDED_ORIGINS = {
    "smollm2-135m-instruct": ("HuggingFaceTB/SmolLM2-135M-Instruct", "SmolLM2-135M-Instruct.Q4_1.gguf"),
    "gemma3-270m": ("google/gemma-3-270m", "gemma-3-270m-q4_k_m.gguf"),
}
TRAIN_MANIFEST = "train_manifest.json"


def embedded_hub_id(alias: str) -> str | None:
    return EMBEDDED_ORIGINS[alias][0] if alias in EMBEDDED_ORIGINS else None


@dataclass(frozen=True, eq=False)
class ModelSource:
    spec: str  # what the user wrote
    kind: str  # embedded, gguf, local, peft_adapter, evalkit_adapter or hub
    path: Path | None = None  # resolved file or directory; None for embedded aliases and hub ids
    config: dict | None = None  # an adapter's config file, as read
    base: ModelSource | None = None  # an adapter's base model

    @cached_property
    def _dequantised(self) -> tuple[Path, dict]:
        """(transformers directory, identity) of an embedded alias or GGUF file: dequantises on a cold cache."""
        if self.kind == "embedded":
            return resolve_embedded(self.spec)
        directory, digest = dequantised_dir(self.path)
        return directory, {"kind": "gguf", "source": str(self.path), "weights_sha256": digest}

    @property
    def weights_dir(self) -> Path | str:
        """Where transformers or vLLM load the (base) weights from: a directory, or the hub id itself."""
        if self.base is not None:
            return self.base.weights_dir
        if self.kind in ("embedded", "gguf"):
            return self._dequantised[0]
        return self.path if self.kind == "local" else self.spec

    @property
    def tokenizer_dir(self) -> Path | str:
        """An adapter's own tokenizer (trainers may add special tokens) if it saved one, else its base's."""
        if self.base is not None:
            return self.path if (self.path / "tokenizer_config.json").is_file() else self.base.tokenizer_dir
        return self.weights_dir

    def identity(self, revision: str | None = None) -> dict:
        """The record results carry for this model; ``revision``: a hub model's commit, known once loaded."""
        if self.kind == "embedded":
            return dict(self._dequantised[1])
        if self.kind == "gguf":
            # the file's hash: no need to dequantise (slow) for it, nor to hash twice if already dequantised
            done = "_dequantised" in self.__dict__
            digest = self._dequantised[1]["weights_sha256"] if done else sha256_file(self.path)
            return {"kind": "gguf", "source": str(self.path), "weights_sha256": digest}
        if self.kind == "local":
            return _dequantised_identity(self.path) or {
                "kind": "local", "source": str(self.path), "weights_sha256": weights_hash(self.path)}
        if self.kind == "hub":
            return {"kind": "hub", "source": self.spec, "revision": revision}
        record = {"kind": self.kind, "source": str(self.path), "adapter_sha256": weights_hash(self.path)}
        if self.kind == "peft_adapter":
            record["peft_type"] = self.config.get("peft_type")
        else:
            record["adapter_type"] = self.config.get("type")
        return {**record, "base": self.base.identity(revision)}

    @property
    def lora_rank(self) -> int | None:
        """A PEFT adapter's rank ``r`` (8 when unset, PEFT's default); None for anything else."""
        return int(self.config.get("r") or 8) if self.kind == "peft_adapter" else None

    @property
    def max_lora_rank(self) -> int | None:
        return vllm_max_lora_rank(self.lora_rank) if self.kind == "peft_adapter" else None

    def check_vllm(self) -> ModelSource:
        """vLLM runs plain models and one LoRA on a plain model: anything else stops here, before the engine."""
        if self.kind == "evalkit_adapter":
            raise EvalkitError(f"{self.path}: an evalkit bottleneck adapter, which vLLM cannot run; use --backend hf")
        if self.kind == "peft_adapter":
            file = self.path / ADAPTER_CONFIGS[self.kind]
            if self.config.get("peft_type") != "LORA":
                raise EvalkitError(f"{file}: peft_type {self.config.get('peft_type')!r}; vLLM runs "
                                   "LoRA adapters only: use --backend hf, or merge the adapter into its base")
            self.base.check_vllm()
            if self.base.base is not None:
                raise EvalkitError(f"{file}: its base is itself an adapter; vLLM applies one "
                                   "LoRA on a plain model: merge the base adapter first or use --backend hf")
            self.max_lora_rank  # noqa: B018 - a rank above vLLM's largest fails now, not at engine start
        return self


def resolve_model(spec: str, _adapters: tuple[Path, ...] = ()) -> ModelSource:
    """``_adapters``: the adapter directories whose base this is (an adapter chain must end in a model)."""
    if spec in EMBEDDED:
        return ModelSource(spec, "embedded")
    path = Path(spec).expanduser()
    if path.exists():
        if path.is_file() and path.suffix == ".gguf":
            return ModelSource(spec, "gguf", path.resolve())
        for kind, name in ADAPTER_CONFIGS.items():
            if path.is_dir() and (path / name).is_file():
                config, base_spec = _adapter_config(path, name, _adapters)
                base_spec = trained_on_embedded(path, base_spec) or base_spec
                base = resolve_model(base_spec, (*_adapters, path.resolve()))
                return ModelSource(spec, kind, path.resolve(), config, base)
        if path.is_dir() and (path / "config.json").is_file():
            return ModelSource(spec, "local", path.resolve())
        raise EvalkitError(
            f"{path}: not a model (expected config.json, adapter_config.json or a .gguf file); "
            "point --model at a transformers checkpoint directory, a PEFT adapter or a GGUF file"
        )
    if is_hub_id(spec):
        return ModelSource(spec, "hub")
    known = ", ".join(EMBEDDED)
    raise EvalkitError(
        f"model {spec!r} does not exist: not a local path, an embedded model ({known}) or a hub id (org/name)"
    )


def _adapter_config(path: Path, name: str, adapters: tuple[Path, ...]) -> tuple[dict, str]:
    """(config, base model) of an adapter directory, checked before its base is resolved."""
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
    if name == ADAPTER_CONFIGS["evalkit_adapter"] and not isinstance(config.get("adapter_size"), int):
        raise EvalkitError(f"{file}: no integer adapter_size; re-train or re-export the adapter")
    return config, base_spec


def trained_on_embedded(adapter_dir: Path, base_spec: str) -> str | None:
    """The embedded alias an adapter names by its hub id, when ``evalkit train`` trained it on that embedded
    model (its train_manifest.json says so); None otherwise (a hub id then means the hub model)."""
    alias = next((a for a, (hub_id, _) in EMBEDDED_ORIGINS.items() if hub_id == base_spec), None)
    if alias is None or alias not in EMBEDDED:
        return None
    try:
        base = json.loads((adapter_dir / TRAIN_MANIFEST).read_text(encoding="utf-8")).get("base_model") or {}
    except (OSError, ValueError, AttributeError):
        return None
    return alias if isinstance(base, dict) and base.get("kind") == "embedded" and base.get("alias") == alias else None


def vllm_max_lora_rank(rank: int) -> int:
    """vLLM accepts a fixed set of max_lora_rank values; the smallest one that holds the adapter's rank."""
    for allowed in VLLM_LORA_RANKS:
        if rank <= allowed:
            return allowed
    raise EvalkitError(f"LoRA rank {rank} is above vLLM's largest (512); use --backend hf")


def _dequantised_identity(directory: Path) -> dict | None:
    """evalkit's dequantised copy of a GGUF (what adapters trained before bases were named by hub id name as
    their base) is that GGUF: same weights hash as when the adapter was trained, not a hash of the copy; an
    embedded model's GGUF is named by its alias, never by its path inside the installed package."""
    try:
        record = json.loads((directory / "evalkit_source.json").read_text(encoding="utf-8"))
        gguf, digest = str(record["gguf"]), str(record["gguf_sha256"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    alias = next((a for a, (_, name) in EMBEDDED_ORIGINS.items() if name == Path(gguf).name and a in EMBEDDED), None)
    if alias is not None:
        return {"kind": "gguf", "alias": alias, "package": EMBEDDED[alias].package, "weights_sha256": digest}
    return {"kind": "gguf", "source": gguf, "weights_sha256": digest}


def weights_hash(directory: Path) -> str:
    """SHA-256 over the weight files (name and content), so a retrained checkpoint never collides."""
    import hashlib

    digest = hashlib.sha256()
    files = sorted(p for p in directory.iterdir() if p.suffix in WEIGHT_SUFFIXES)
    for file in files:
        digest.update(file.name.encode())
        digest.update(sha256_file(file).encode())
    return digest.hexdigest()


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
