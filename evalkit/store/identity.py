"""Model identity as the store sees it: a key from the weights' content, and a short label."""

from __future__ import annotations

import hashlib
from pathlib import Path


def model_key(identity: dict) -> str:
    """Same weights -> same key, wherever the files live (paths are left out when a hash exists)."""
    kind = identity.get("kind")
    digest = identity.get("adapter_sha256") or identity.get("weights_sha256")
    if digest:
        # A checkpoint is its trained weight files: one key from `evalkit train` (which records the base as
        # it trained it, and any adapter type as plain weights) and from `evalkit run` (which records the
        # base as it loaded it). The base stays in the run's base_model_key.
        parts = ["weights", digest]
    else:
        parts = [kind, identity.get("source") or identity.get("alias"), identity.get("revision")]
    return hashlib.sha256("|".join(str(p) for p in parts).encode()).hexdigest()[:20]


def model_label(name: str, identity: dict) -> str:
    """A short human name: the alias, else the checkpoint's directory (or file) name, else the hub id.
    Pages show the full identity (``describe``) beside it."""
    if identity.get("alias"):
        return identity["alias"]
    if identity.get("kind") in ("local", "gguf", "peft_adapter", "evalkit_adapter") and identity.get("source"):
        return Path(identity["source"]).name
    return identity.get("source") or name


def describe(identity: dict) -> str:
    """The full identity in one line, for tooltips and details rows: kind, where it came from, hashes, base."""
    identity = identity or {}
    parts = [str(identity.get("kind") or "model")]
    for key in ("alias", "source", "revision", "peft_type", "adapter_type"):
        if identity.get(key):
            parts.append(f"{key} {identity[key]}")
    for key in ("weights_sha256", "adapter_sha256"):
        if identity.get(key):
            parts.append(f"{key.split('_')[0]} sha256 {str(identity[key])[:12]}")
    text = ", ".join(parts)
    base = identity.get("base")
    return f"{text}; base: {describe(base)}" if isinstance(base, dict) and base else text
