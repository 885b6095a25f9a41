"""One LoRA training step (forward, backward, AdamW) on fixed random tokens, timed, in whatever virtualenv runs
it: compares library stacks (evalkit's transformers/PEFT vs LLaMA-Factory's) without either tool around them.
SmolLM2-135M fp32 (a model directory, e.g. evalkit's dequantised cache), LoRA r16 on every linear layer,
batch 4 x 192, one thread, 6 steps; prints each step's seconds and the median of steps 2-6.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/train_step_stack.py ~/.cache/evalkit/models/SmolLM2-*/
    OMP_NUM_THREADS=1 .venv-llamafactory/bin/python benchmarks/train_step_stack.py ~/.cache/evalkit/models/SmolLM2-*/
"""
import sys, time, torch, transformers, peft
torch.set_num_threads(1)
from transformers import AutoModelForCausalLM
from peft import LoraConfig, get_peft_model
path = sys.argv[1]
model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
print("attn", model.config._attn_implementation, "transformers", transformers.__version__, "peft", peft.__version__)
model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0,
        target_modules=["q_proj","k_proj","v_proj","o_proj","gate_proj","up_proj","down_proj"], task_type="CAUSAL_LM"))
model.train()
opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
g = torch.Generator().manual_seed(0)
ids = torch.randint(0, 49152, (4, 192), generator=g)
mask = torch.ones_like(ids)
times = []
for step in range(6):
    t = time.perf_counter()
    out = model(input_ids=ids, attention_mask=mask, labels=ids)
    out.loss.backward(); opt.step(); opt.zero_grad()
    times.append(time.perf_counter() - t)
print("loss", float(out.loss), "step s", [round(x, 2) for x in times], "median 2..6", sorted(times[1:])[2])
