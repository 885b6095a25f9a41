"""Where evalkit keeps derived files (dequantised models) between runs."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import platformdirs

from evalkit.errors import EvalkitError


def cache_dir() -> Path:
    """User cache directory; ``EVALKIT_CACHE_DIR`` overrides it (CI, tests, shared team caches)."""
    root = os.environ.get("EVALKIT_CACHE_DIR") or platformdirs.user_cache_dir("evalkit")
    path = Path(root).expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # e.g. a read-only shared cache that does not exist yet
        raise EvalkitError(f"{path}: cannot create the evalkit cache directory ({exc.strerror or exc}); "
                           "set EVALKIT_CACHE_DIR to a writable directory") from None
    return path


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
