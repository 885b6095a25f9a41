"""One LoRA training step (forward, backward, AdamW) on fixed random tokens, timed, in whatever virtualenv runs
it: compares library stacks (evalkit's transformers/PEFT vs LLaMA-Factory's) without either tool around them.
SmolLM2-135M fp32 (a model directory, e.g. evalkit's dequantised cache), LoRA r16 on every linear layer,
batch 4 x 192, one thread, 6 steps; prints each step's seconds and the median of steps 2-6. A measurement,
not a test.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/train_step_stack.py ~/.cache/evalkit/models/SmolLM2-*/
    OMP_NUM_THREADS=1 .venv-llamafactory/bin/python benchmarks/train_step_stack.py ~/.cache/evalkit/models/SmolLM2-*/
"""

from __future__ import annotations

import argparse
import statistics
import time

LINEAR_LAYERS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir")
    parser.add_argument("--steps", type=int, default=6)
    args = parser.parse_args()

    import peft
    import torch
    import transformers
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(1)
    model = AutoModelForCausalLM.from_pretrained(args.model_dir, dtype=torch.float32)
    print("attn", model.config._attn_implementation, "transformers", transformers.__version__, "peft", peft.__version__)
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules=LINEAR_LAYERS,
                                             task_type="CAUSAL_LM"))
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    ids = torch.randint(0, model.config.vocab_size, (4, 192), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    seconds = []
    for _ in range(args.steps):
        started = time.perf_counter()
        loss = model(input_ids=ids, attention_mask=mask, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        seconds.append(time.perf_counter() - started)
    print("loss", loss.item(), "step s", [round(s, 2) for s in seconds],
          "median 2..N", statistics.median(seconds[1:]))


if __name__ == "__main__":
    main()
