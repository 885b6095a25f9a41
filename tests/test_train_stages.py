"""Trainer stages and data handling on the tiny model: pt and dpo train, the loss is on answer
tokens only, packing changes no loss, the validation split is fixed, TensorBoard gets the loss
curve, and ``evalkit export --merge`` writes full weights equal to base + adapter."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evalkit.train.data import load_training_data, split_validation, tokenize_conversation
from evalkit.train.recipe import recipe_from_dict
from tests.helpers import run_cli
from tests.test_train_methods import cmmlu_probabilities, train


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tiny_model_dir))


def test_labels_cover_the_answer_tokens_only(tokenizer):
    messages = [{"role": "user", "content": "把这句话翻译成英文：你好"}, {"role": "assistant", "content": "Hello"},
                {"role": "user", "content": "再说一次"}, {"role": "assistant", "content": "Hello again"}]
    example = tokenize_conversation(messages, tokenizer, cutoff_len=512)
    ids, labels = example["input_ids"], example["labels"]
    full = tokenizer(tokenizer.apply_chat_template(messages, tokenize=False), add_special_tokens=False)["input_ids"]
    assert ids == full  # the pieces join up to exactly the rendered conversation
    labelled = [i for i, label in enumerate(labels) if label != -100]
    assert all(labels[i] == ids[i] for i in labelled)
    # the labelled runs are exactly the two answers, each with its end-of-turn marker
    runs, current = [], [labelled[0]]
    for i in labelled[1:]:
        if i == current[-1] + 1:
            current.append(i)
        else:
            runs.append(current)
            current = [i]
    runs.append(current)
    texts = [tokenizer.decode([ids[i] for i in run]) for run in runs]
    assert texts == ["Hello<|im_end|>\n", "Hello again<|im_end|>\n"]
    prompt_text = tokenizer.decode([ids[i] for i, label in enumerate(labels) if label == -100])
    assert "你好" in prompt_text and "再说一次" in prompt_text and "Hello" not in prompt_text


def test_validation_split_is_fixed_whatever_the_seed(tokenizer):
    def data(seed: int):
        recipe = recipe_from_dict({"model": "unused", "dataset": "tasks/data/sft/alpaca_en_demo.json",
                                   "dataset_range": [0, 60], "val_size": 6, "seed": seed, "cutoff_len": 2048})
        return load_training_data(recipe, tokenizer)

    first, second = data(1), data(99)
    assert [e["input_ids"] for e in first.validation] == [e["input_ids"] for e in second.validation]
    assert len(first.validation) == 6 and len(first.train) == 54
    assert first.info["validation_indices_sha256"] == second.info["validation_indices_sha256"]
    train_ids = {tuple(e["input_ids"]) for e in first.train}
    assert not any(tuple(e["input_ids"]) in train_ids for e in first.validation)
    _, held_small, indices = split_validation(list(range(900)), 0.1)
    assert len(held_small) == 90 and indices == split_validation(list(range(900)), 90)[2]


def test_packing_gives_the_same_logits_as_padding(tiny_model_dir, tokenizer):
    """Padding-free packing must not let samples attend to each other: same logits as a padded batch."""
    import torch
    from transformers import AutoModelForCausalLM, DataCollatorForSeq2Seq, DataCollatorWithFlattening

    recipe = recipe_from_dict({"model": "unused", "dataset": "tasks/data/sft/alpaca_en_demo.json",
                               "dataset_range": [0, 4], "cutoff_len": 512})
    examples = load_training_data(recipe, tokenizer).train
    assert len({len(e["input_ids"]) for e in examples}) > 1  # different lengths: padding really happens
    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), dtype=torch.float32).eval()
    padded = DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100)(examples)
    packed = DataCollatorWithFlattening()(examples)
    assert packed["input_ids"].shape[0] == 1 and "attention_mask" not in packed
    starts = (packed["position_ids"][0] == 0).nonzero().flatten().tolist()
    assert len(starts) == len(examples)
    # use_cache=False as in training (the runner sets it): transformers only reads packed
    # position_ids as sequence boundaries when no KV cache is built.
    with torch.no_grad():
        padded_logits = model(input_ids=padded["input_ids"], attention_mask=padded["attention_mask"], use_cache=False).logits
        packed_logits = model(input_ids=packed["input_ids"], position_ids=packed["position_ids"], use_cache=False).logits
    for row, start in enumerate(starts):
        length = len(examples[row]["input_ids"])
        torch.testing.assert_close(packed_logits[0, start:start + length], padded_logits[row, :length],
                                   rtol=1e-4, atol=1e-4)


def test_packing_trains(tiny_model_dir, tmp_path):
    _, manifest = train(tmp_path, tiny_model_dir, packing=True, max_steps=3)
    curve = [p["loss"] for p in manifest["loss_curve"]]
    assert manifest["global_step"] == 3 and curve[-1] < curve[0]
    assert manifest["recipe"]["packing"] is True


def test_pt_stage_trains_on_plain_text(tiny_model_dir, tmp_path):
    # 2 C4 documents cut into 64-token blocks, all in one batch: every step sees the same batch.
    output, manifest = train(tmp_path, tiny_model_dir, stage="pt", dataset="tasks/data/sft/c4_demo.jsonl",
                             dataset_range=None, max_samples=2, cutoff_len=64, per_device_train_batch_size=64,
                             max_steps=4)
    curve = [p["loss"] for p in manifest["loss_curve"]]
    assert manifest["stage"] == "pt" and manifest["data"]["format"] == "text"
    assert manifest["global_step"] == 4 and curve[-1] < curve[0], curve
    assert (output / "adapter_config.json").is_file()


def test_pt_blocks_are_labelled_on_every_token(tokenizer):
    recipe = recipe_from_dict({"model": "unused", "stage": "pt", "dataset": "tasks/data/sft/wiki_demo.txt",
                               "max_samples": 2, "cutoff_len": 32})
    blocks = load_training_data(recipe, tokenizer).train
    assert blocks and all(len(b["input_ids"]) == 32 and b["labels"] == b["input_ids"] for b in blocks)


def test_dpo_stage_trains_on_pairwise_data(tiny_model_dir, tmp_path):
    output, manifest = train(tmp_path, tiny_model_dir, stage="dpo", dataset="tasks/data/sft/dpo_en_demo.json",
                             dataset_range=None, max_steps=3, cutoff_len=96)
    curve = [p["loss"] for p in manifest["loss_curve"]]
    assert manifest["stage"] == "dpo" and manifest["data"]["format"] == "pairwise"
    assert curve[0] == pytest.approx(0.6931, abs=1e-3)  # log 2: policy == reference at the start
    assert curve[-1] < curve[0], curve
    assert (output / "adapter_config.json").is_file()


def test_tensorboard_gets_the_loss_curve(tiny_model_dir, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    output, manifest = train(tmp_path, tiny_model_dir, max_steps=3, report_to="tensorboard")
    (events,) = output.glob("runs/*/events.out.tfevents.*")
    accumulator = EventAccumulator(str(events.parent))
    accumulator.Reload()
    logged = [(e.step, e.value) for e in accumulator.Scalars("train/loss")]
    expected = [(p["step"], p["loss"]) for p in manifest["loss_curve"]]
    assert [s for s, _ in logged] == [s for s, _ in expected]
    assert [v for _, v in logged] == pytest.approx([v for _, v in expected], rel=1e-5)


def test_export_merge_writes_full_weights_equal_to_base_plus_adapter(tiny_model_dir, tmp_path, capsys):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    adapter_dir, _ = train(tmp_path / "train", tiny_model_dir, max_steps=2)
    merged_dir = tmp_path / "merged"
    code, out, err = run_cli(capsys, "export", "--merge", str(adapter_dir), "--output", str(merged_dir))
    assert code == 0, err
    assert (merged_dir / "config.json").is_file() and not (merged_dir / "adapter_config.json").exists()
    assert json.loads((merged_dir / "train_manifest.json").read_text())["export"]["merged_from"] == str(adapter_dir.resolve())

    ids = torch.tensor([[1, 345, 2345, 77, 9000, 12]])
    base = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), dtype=torch.float32)
    with torch.no_grad():
        base_logits = base(ids).logits
        adapted = PeftModel.from_pretrained(base, str(adapter_dir)).eval()(ids).logits
        merged = AutoModelForCausalLM.from_pretrained(str(merged_dir), dtype=torch.float32).eval()(ids).logits
    assert not torch.allclose(adapted, base_logits)  # the adapter changed something
    torch.testing.assert_close(merged, adapted, rtol=1e-4, atol=1e-4)
    merged_run, adapter_run = cmmlu_probabilities(merged_dir, tmp_path / "run"), cmmlu_probabilities(adapter_dir, tmp_path / "run2")
    assert [p for row in merged_run for p in row] == pytest.approx([p for row in adapter_run for p in row], abs=1e-4)

    # never writes over an existing export
    before = sorted(p.name for p in merged_dir.iterdir())
    code, _, err = run_cli(capsys, "export", "--merge", str(adapter_dir), "--output", str(merged_dir))
    assert code == 2 and err.strip().startswith("evalkit: error:") and "already exists" in err
    assert sorted(p.name for p in merged_dir.iterdir()) == before


def test_export_refuses_checkpoints_that_cannot_merge(tiny_model_dir, tmp_path, capsys):
    full_dir, _ = train(tmp_path / "full", tiny_model_dir, method="full", max_steps=1, learning_rate=1e-3)
    code, _, err = run_cli(capsys, "export", "--merge", str(full_dir), "--output", str(tmp_path / "x"))
    assert code == 2 and "already full weights" in err and len(err.strip().splitlines()) == 1
    assert not Path(tmp_path / "x").exists()
