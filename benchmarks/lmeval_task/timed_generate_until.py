"""lm-evaluation-harness's ``HFLM.generate_until`` on given prompts, timed (run in lm-eval's venv).

Reads {"contexts": [...], "max_gen_toks": N, "batch_size": B, "pretrained": dir} from argv[1] and writes
{"seconds", "texts", "new_tokens"} to argv[2]. The requests are what a ``generate_until`` task with
``until: []`` (lm-eval then stops at EOS only), ``do_sample: false`` and ``max_gen_toks: N`` sends; the
contexts are already chat-templated, as ``--apply_chat_template`` would render them. ``new_tokens``
counts, per row, the tokens ``generate`` produced up to and including the first EOS (the rest is
padding), read off ``HFLM._model_generate``'s output without changing it.
"""

from __future__ import annotations

import json
import sys
import time

import torch
from lm_eval.api.instance import Instance
from lm_eval.models.huggingface import HFLM

config = json.loads(open(sys.argv[1], encoding="utf-8").read())
lm = HFLM(pretrained=config["pretrained"], dtype="float32", device="cpu", batch_size=config["batch_size"])
eos = set(lm.model.generation_config.eos_token_id if isinstance(lm.model.generation_config.eos_token_id, list)
          else [lm.model.generation_config.eos_token_id])
counted: list[int] = []
_generate = lm._model_generate


def counting_generate(context, max_length, stop, **kwargs):
    output = _generate(context, max_length, stop, **kwargs)
    for row in output[:, context.shape[1]:].tolist():
        end = next((i + 1 for i, token in enumerate(row) if token in eos), len(row))
        counted.append(end)
    return output


lm._model_generate = counting_generate
gen_kwargs = {"until": [], "do_sample": False, "max_gen_toks": config["max_gen_toks"]}
requests = [Instance("generate_until", {}, (context, dict(gen_kwargs)), i) for i, context in enumerate(config["contexts"])]
warm_up = Instance("generate_until", {}, (config["contexts"][0], {**gen_kwargs, "max_gen_toks": 4}), 0)
lm.generate_until([warm_up], disable_tqdm=True)  # as the evalkit side gets one
counted.clear()
started = time.perf_counter()
with torch.inference_mode():
    texts = lm.generate_until(requests, disable_tqdm=True)
seconds = time.perf_counter() - started
json.dump({"seconds": seconds, "texts": texts, "new_tokens": sum(counted)}, open(sys.argv[2], "w", encoding="utf-8"))
