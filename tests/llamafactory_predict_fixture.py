"""Where tests/test_reference_format.py's expected numbers come from: LLaMA-Factory's own ComputeSimilarity
on ids built the way its ``predict`` builds them (labels from its template's encode_oneturn, predictions
ending in EOS). Not a test; run in LLaMA-Factory's virtualenv (bash benchmarks/setup_llamafactory.sh):

    DISABLE_VERSION_CHECK=1 .venv-llamafactory/bin/python tests/llamafactory_predict_fixture.py \
        ~/.cache/evalkit/models/SmolLM2-135M-Instruct.Q4_1-*/ fixture.json   # [{prediction, reference}, ...]
"""
import json, sys
import numpy as np
from transformers import AutoTokenizer, EvalPrediction
from llamafactory.data import get_template_and_fix_tokenizer
from llamafactory.hparams import DataArguments
from llamafactory.train.sft.metric import ComputeSimilarity
tok = AutoTokenizer.from_pretrained(sys.argv[1])
template = get_template_and_fix_tokenizer(tok, DataArguments(template="smollm2"))
rows = json.load(open(sys.argv[2]))
labels, preds = [], []
for r in rows:
    _, label = template.encode_oneturn(tok, [{"role": "user", "content": "q"}, {"role": "assistant", "content": r["reference"]}])
    labels.append(label)
    preds.append(tok(r["prediction"], add_special_tokens=False)["input_ids"] + [tok.eos_token_id])  # generation ends at eos
width = max(map(len, labels + preds))
pad = lambda seqs: np.array([s + [-100] * (width - len(s)) for s in seqs])
metric = ComputeSimilarity(tokenizer=tok)
metric(EvalPrediction(predictions=pad(preds), label_ids=pad(labels)), compute_result=False)
print(json.dumps({k: v for k, v in metric.score_dict.items()}))
print(json.dumps({k: float(np.mean(v)) for k, v in metric.score_dict.items()}))
print(json.dumps(tok.batch_decode(np.where(pad(labels) != -100, pad(labels), tok.pad_token_id), skip_special_tokens=True), ensure_ascii=False))
