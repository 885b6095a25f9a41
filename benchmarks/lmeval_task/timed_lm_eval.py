"""``lm_eval`` with a stopwatch around the model's loglikelihood phase (run in lm-eval's venv).

Exactly the ``lm_eval`` command line (same arguments, same code path); the only addition is a
wrapper that times ``HFLM.loglikelihood`` (tokenisation + forward passes, what evalkit's scoring
time covers too) and writes the seconds and request count to $LMEVAL_TIMING_FILE as JSON.
"""

from __future__ import annotations

import json
import os
import sys
import time

from lm_eval.__main__ import cli_evaluate
from lm_eval.models.huggingface import HFLM

_loglikelihood = HFLM.loglikelihood


def timed_loglikelihood(self, requests, disable_tqdm: bool = False):
    started = time.perf_counter()
    result = _loglikelihood(self, requests, disable_tqdm)
    seconds = time.perf_counter() - started
    with open(os.environ["LMEVAL_TIMING_FILE"], "a", encoding="utf-8") as handle:
        handle.write(json.dumps({"seconds": seconds, "requests": len(requests)}) + "\n")
    return result


HFLM.loglikelihood = timed_loglikelihood

if __name__ == "__main__":
    sys.argv[0] = "lm_eval"
    sys.exit(cli_evaluate())
