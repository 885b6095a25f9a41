"""Is the Hugging Face hub reachable? Asked once per process, so that an offline machine fails in a
second with one line instead of huggingface_hub's five retries with back-off (about a minute).

When the hub cannot be reached, huggingface_hub's own offline mode is switched on for the rest of the
process (the flag ``HF_HUB_OFFLINE=1`` sets at start-up): models and datasets already in the local
cache still load, anything else fails at once without a network call.
"""

from __future__ import annotations

import os
import sys
from functools import lru_cache

PROBE_TIMEOUT_S = 1.5  # one request; a firewall that drops packets costs at most this


@lru_cache(maxsize=1)
def hub_offline() -> bool:
    """True when HF_HUB_OFFLINE is set or one request to the hub endpoint fails (then offline mode is turned on)."""
    from huggingface_hub import constants
    from huggingface_hub.utils import get_session

    if constants.is_offline_mode():
        return True
    try:
        # huggingface_hub's shared client, without its retrying wrapper (http_backoff)
        get_session().head(constants.ENDPOINT, timeout=PROBE_TIMEOUT_S)
    except Exception:  # noqa: BLE001 - DNS, refused, timeout, proxy, TLS: all mean "cannot reach the hub"
        go_offline()
        return True
    return False


def go_offline() -> None:
    """huggingface_hub, transformers and datasets read these flags when they make a request."""
    from huggingface_hub import constants

    constants.HF_HUB_OFFLINE = True  # read by huggingface_hub.is_offline_mode() (transformers uses it too)
    os.environ["HF_HUB_OFFLINE"] = "1"  # read by datasets when imported later, and by child processes
    config = sys.modules.get("datasets.config")  # already imported: it keeps its own copy (importing it costs seconds)
    if config is not None:
        config.HF_HUB_OFFLINE = True


def cache_dir() -> str:
    from huggingface_hub import constants

    return constants.HF_HUB_CACHE
