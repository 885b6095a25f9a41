"""Model identity as the store sees it: a key from the weights' content, and a short label."""

from __future__ import annotations

import hashlib
from pathlib import Path


def model_key(identity: dict) -> str:
    """Same weights -> same key, wherever the files live (paths are left out when a hash exists)."""
    kind = identity.get("kind")
    if kind == "peft_adapter":
        parts = ["peft", identity.get("adapter_sha256"), model_key(identity.get("base") or {})]
    elif identity.get("weights_sha256"):
        parts = ["weights", identity["weights_sha256"]]
    else:
        parts = [kind, identity.get("source") or identity.get("alias"), identity.get("revision")]
    return hashlib.sha256("|".join(str(p) for p in parts).encode()).hexdigest()[:20]


def model_label(name: str, identity: dict) -> str:
    if identity.get("alias"):
        return identity["alias"]
    if identity.get("kind") == "peft_adapter":
        base = model_label("", identity.get("base") or {}) or "base"
        return f"{Path(identity.get('source') or name).name} (adapter on {base})"
    if identity.get("kind") in ("local", "gguf") and identity.get("source"):
        return Path(identity["source"]).name
    return identity.get("source") or name
