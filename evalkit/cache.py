"""Where evalkit keeps derived files (dequantised models) between runs."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import platformdirs


def cache_dir() -> Path:
    """User cache directory; ``EVALKIT_CACHE_DIR`` overrides it (CI, tests, shared team caches)."""
    root = os.environ.get("EVALKIT_CACHE_DIR") or platformdirs.user_cache_dir("evalkit")
    path = Path(root).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
