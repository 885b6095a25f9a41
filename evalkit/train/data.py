"""Training data: read alpaca / sharegpt / plain-text / pairwise records and tokenise them.

SFT samples go through the model's chat template and keep labels only on the assistant tokens
(prompt tokens are -100), so the loss is on the answers. Plain text (stage ``pt``) is concatenated
and cut into ``cutoff_len`` blocks. Pairwise records become TRL's conversational
prompt/chosen/rejected format, tokenised by DPOTrainer itself.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass, field
from pathlib import Path

from evalkit.cache import sha256_file
from evalkit.errors import EvalkitError
from evalkit.models.source import HUB_ID
from evalkit.resources import packaged_path
from evalkit.train.recipe import Recipe

ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
         "system": "system", "observation": "user", "function_call": "assistant"}
LOCAL_SUFFIXES = (".json", ".jsonl", ".txt")  # a name ending so is a missing file, not a hub id
VALIDATION_SEED = 1234  # fixed: the validation split never moves when the training seed changes


@dataclass
class TrainData:
    train: list[dict]
    validation: list[dict]
    info: dict = field(default_factory=dict)  # path, sha256, range, format, sizes (for the manifest)


def resolve_dataset_path(name: str) -> Path | None:
    """A local file relative to the working directory or, failing that, one of evalkit's own
    (``tasks/data/sft/alpaca_zh_demo.json``: shipped in the package, found from any directory)."""
    for candidate in (Path(name).expanduser(), packaged_path(name)):
        if candidate is not None and candidate.is_file():
            return candidate.resolve()
    return None


def read_records(recipe: Recipe) -> tuple[list, dict]:
    path = resolve_dataset_path(recipe.dataset)
    if path is None:
        if HUB_ID.match(recipe.dataset) and Path(recipe.dataset).suffix not in LOCAL_SUFFIXES:
            return _read_hub(recipe.dataset)
        raise EvalkitError(f"dataset {recipe.dataset} does not exist; pass a local .json/.jsonl/.txt file or a hub dataset id")
    info = {"dataset": str(path), "sha256": sha256_file(path)}
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".txt":
        return [{"text": line} for line in text.splitlines() if line.strip()], info
    if path.suffix == ".jsonl":
        records = []
        for number, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise EvalkitError(f"{path}: line {number} is not valid JSON ({exc.msg}); fix or remove it") from None
        return records, info
    try:
        records = json.loads(text)
    except json.JSONDecodeError as exc:
        raise EvalkitError(f"{path}: not valid JSON ({exc}); training data is a JSON list of records or JSONL") from None
    if not isinstance(records, list):
        raise EvalkitError(f"{path}: expected a JSON list of records")
    return records, info


def _read_hub(name: str) -> tuple[list, dict]:
    import datasets

    try:
        dataset = datasets.load_dataset(name, split="train")
    except Exception as exc:
        raise EvalkitError(f"dataset {name!r}: not a local file and not loadable from the hub "
                           f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
    return [dict(r) for r in dataset], {"dataset": name, "hub_fingerprint": dataset._fingerprint}


def rename_columns(records: list, columns: dict[str, str], source: str) -> list:
    """Records with ``columns``' targets (instruction, output, ...) read from the dataset's own keys."""
    renamed = []
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            raise EvalkitError(f"{source}: record {index} is not an object")
        missing = [key for key in columns.values() if key not in record]
        if missing:
            raise EvalkitError(f"{source}: record {index} has no {', '.join(missing)} key (named in dataset_columns)")
        renamed.append({**record, **{target: record[key] for target, key in columns.items()}})
    return renamed


def detect_format(records: list, recipe: Recipe, source: str) -> str:
    if recipe.dataset_format != "auto":
        return recipe.dataset_format
    first = records[0] if records and isinstance(records[0], dict) else {}
    if "chosen" in first and "rejected" in first:
        return "pairwise"
    if "conversations" in first or "messages" in first:
        return "sharegpt"
    if "instruction" in first:
        return "alpaca"
    if "text" in first:
        return "text"
    raise EvalkitError(f"{source}: cannot tell the format from record 0 (keys: {', '.join(first) or 'none'}); "
                       "set dataset_format: alpaca (instruction/input/output), sharegpt (conversations), text or pairwise")


def _require(record, keys: tuple[str, ...], index: int, source: str, fmt: str) -> None:
    if not isinstance(record, dict):
        raise EvalkitError(f"{source}: record {index} is not an object; every {fmt} record is a JSON object")
    missing = [k for k in keys if k not in record]
    if missing:
        raise EvalkitError(f"{source}: record {index} has no {', '.join(missing)} column; "
                           f"{fmt} records need {', '.join(keys)} (or set dataset_format)")


def alpaca_messages(record: dict, system: str | None = None) -> list[dict]:
    """instruction + input as the user turn (joined by a newline, as LLaMA-Factory does), output as the answer."""
    messages = []
    if record.get("system") or system:
        messages.append({"role": "system", "content": record.get("system") or system})
    for old_prompt, old_answer in record.get("history") or []:
        messages += [{"role": "user", "content": old_prompt}, {"role": "assistant", "content": old_answer}]
    prompt = record["instruction"] + ("\n" + record["input"] if record.get("input") else "")
    messages.append({"role": "user", "content": prompt})
    if "output" in record:
        messages.append({"role": "assistant", "content": record["output"]})
    return messages


def sharegpt_messages(turns: list, index: int, source: str) -> list[dict]:
    messages = []
    for turn in turns:
        if not isinstance(turn, dict):
            raise EvalkitError(f"{source}: record {index} has a turn that is not an object")
        role = turn.get("from", turn.get("role"))
        content = turn.get("value", turn.get("content"))
        if role not in ROLES or content is None:
            raise EvalkitError(f"{source}: record {index} has a turn with from={role!r}; "
                               f"sharegpt turns need from ({', '.join(ROLES)}) and value")
        messages.append({"role": ROLES[role], "content": content})
    return messages


def record_messages(record, fmt: str, index: int, source: str, system: str | None) -> list[dict]:
    if fmt == "alpaca":
        _require(record, ("instruction", "output"), index, source, "alpaca")
        return alpaca_messages(record, system)
    key = "messages" if isinstance(record, dict) and "messages" in record else "conversations"
    _require(record, (key,), index, source, "sharegpt")
    return sharegpt_messages(record[key], index, source)


def tokenize_conversation(messages: list[dict], tokenizer, cutoff_len: int, truncation: str = "llamafactory") -> dict | None:
    """input_ids with labels on assistant turns only, at most ``cutoff_len`` tokens.

    The chat template is rendered for each growing prefix of the conversation; the text an
    assistant message adds (its content and end-of-turn token) is labelled, everything else
    (system, user turns, the generation prompt) is -100. Too long: see ``truncate_turns``.
    """
    turns: list[tuple[list[int], list[int]]] = []  # (prompt ids, answer ids) per assistant turn
    prompt: list[int] = []
    previous = ""
    for k in range(1, len(messages) + 1):
        next_is_assistant = k < len(messages) and messages[k]["role"] == "assistant"
        text = tokenizer.apply_chat_template(messages[:k], tokenize=False, add_generation_prompt=next_is_assistant)
        if not text.startswith(previous):
            raise EvalkitError("the chat template does not render conversations incrementally; use a model with a standard template")
        piece = tokenizer(text[len(previous):], add_special_tokens=False)["input_ids"]
        if messages[k - 1]["role"] == "assistant":
            turns.append((prompt, piece))
            prompt = []
        else:
            prompt = prompt + piece
        previous = text
    if prompt:
        turns.append((prompt, []))  # a conversation ending on a user turn: nothing to learn from its end
    ids, labels = truncate_turns(turns, cutoff_len, truncation)
    if all(label == -100 for label in labels):
        return None  # answer cut off entirely (or no assistant turn): nothing to learn from
    return {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": labels}


def truncate_turns(turns: list[tuple[list[int], list[int]]], cutoff_len: int, truncation: str) -> tuple[list[int], list[int]]:
    """Join (prompt, answer) turns into ids and labels of at most ``cutoff_len`` tokens.

    ``llamafactory`` (default): LLaMA-Factory's SupervisedDatasetProcessor, so both tools train on the
    same tokens: turns are taken in order while budget is left, and each turn is cut by ``infer_seqlen``
    (a short answer is kept whole and the prompt's end cut; else a short prompt is kept and the answer
    cut; else both are cut in proportion to their lengths). A long prompt can lose its end, including
    the ``<|im_start|>assistant`` header. ``keep_prompt`` (evalkit's former rule): the conversation is
    cut after ``cutoff_len`` tokens, so a single-turn prompt stays whole and the answer loses its end
    (an answer cut away entirely drops the example).
    """
    ids: list[int] = []
    labels: list[int] = []
    if truncation == "keep_prompt":
        for prompt, answer in turns:
            ids += prompt + answer
            labels += [-100] * len(prompt) + answer
        return ids[:cutoff_len], labels[:cutoff_len]
    for prompt, answer in turns:
        if len(ids) >= cutoff_len:
            break
        prompt_len, answer_len = infer_seqlen(len(prompt), len(answer), cutoff_len - len(ids))
        ids += prompt[:prompt_len] + answer[:answer_len]
        labels += [-100] * prompt_len + answer[:answer_len]
    return ids, labels


def infer_seqlen(source_len: int, target_len: int, cutoff_len: int) -> tuple[int, int]:
    """LLaMA-Factory's rule (src/llamafactory/data/processor/processor_utils.py), line for line."""
    if target_len * 2 < cutoff_len:  # truncate source
        max_target_len = cutoff_len
    elif source_len * 2 < cutoff_len:  # truncate target
        max_target_len = cutoff_len - source_len
    else:  # truncate both
        max_target_len = int(cutoff_len * (target_len / (source_len + target_len)))
    new_target_len = min(max_target_len, target_len)
    new_source_len = min(max(cutoff_len - new_target_len, 0), source_len)
    return new_source_len, new_target_len


def text_blocks(texts: list[str], tokenizer, block: int) -> list[dict]:
    """Concatenate documents (each ending with EOS) and cut into equal blocks (continued pre-training)."""
    stream: list[int] = []
    for text in texts:
        stream += tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    usable = len(stream) // block * block
    return [{"input_ids": stream[i:i + block], "attention_mask": [1] * block, "labels": stream[i:i + block]}
            for i in range(0, usable, block)]


def pairwise_example(record, index: int, source: str, system: str | None) -> dict:
    """TRL's conversational preference format: prompt messages + one chosen and one rejected answer."""
    if isinstance(record, dict) and "conversations" in record:
        _require(record, ("conversations", "chosen", "rejected"), index, source, "pairwise sharegpt")
        prompt = sharegpt_messages(record["conversations"], index, source)
        chosen, rejected = (sharegpt_messages([record[k]], index, source)[0]["content"] for k in ("chosen", "rejected"))
    else:
        _require(record, ("instruction", "chosen", "rejected"), index, source, "pairwise alpaca")
        prompt = alpaca_messages({k: v for k, v in record.items() if k != "output"}, system)
        chosen, rejected = record["chosen"], record["rejected"]
    if not isinstance(chosen, str) or not isinstance(rejected, str):
        raise EvalkitError(f"{source}: record {index} chosen/rejected must be text or a {{from, value}} turn")
    return {"prompt": prompt, "chosen": [{"role": "assistant", "content": chosen}],
            "rejected": [{"role": "assistant", "content": rejected}]}


def split_validation(items: list, val_size: float) -> tuple[list, list, list[int]]:
    """A fixed split: the same records are held out for a given dataset range, whatever the seed."""
    count = int(val_size) if val_size >= 1 else int(round(len(items) * val_size))
    if count <= 0:
        return items, [], []
    if count >= len(items):
        raise EvalkitError(f"val_size={val_size} leaves no training records (only {len(items)} available)")
    held = sorted(random.Random(VALIDATION_SEED).sample(range(len(items)), count))
    held_set = set(held)
    return [x for i, x in enumerate(items) if i not in held_set], [items[i] for i in held], held


def load_training_data(recipe: Recipe, tokenizer) -> TrainData:
    records, info = read_records(recipe)
    source = info["dataset"]
    start, end = recipe.dataset_range or (0, len(records))
    records = records[start:end]
    if recipe.max_samples is not None:
        records = records[: recipe.max_samples]
    if not records:
        raise EvalkitError(f"{source}: no records in range {recipe.dataset_range}; check dataset_range")
    if recipe.dataset_columns:
        records = rename_columns(records, recipe.dataset_columns, source)
    fmt = detect_format(records, recipe, source)
    wanted = {"sft": ("alpaca", "sharegpt"), "pt": ("text",), "dpo": ("pairwise",)}[recipe.stage]
    if fmt not in wanted:
        raise EvalkitError(f"{source}: stage {recipe.stage} needs {' or '.join(wanted)} data, this file is {fmt}")
    train_records, val_records, held = split_validation(records, recipe.val_size)
    info.update(format=fmt, range=[start, start + len(records)], validation_indices_sha256=hashlib.sha256(
        json.dumps(held).encode()).hexdigest(), validation_records=len(held))

    def build(subset: list, offset_indices: list[int]) -> list[dict]:
        examples = []
        for index, record in zip(offset_indices, subset):
            if fmt == "pairwise":
                examples.append(pairwise_example(record, index, source, recipe.system))
            else:
                example = tokenize_conversation(record_messages(record, fmt, index, source, recipe.system),
                                                tokenizer, recipe.cutoff_len, recipe.truncation)
                if example is not None:
                    examples.append(example)
        return examples

    held_set = set(held)
    train_idx = [start + i for i in range(len(records)) if i not in held_set]
    val_idx = [start + i for i in held]
    if fmt == "text":
        for index, record in zip(range(start, start + len(records)), records):
            _require(record, ("text",), index, source, "text")
        train = text_blocks([r["text"] for r in train_records], tokenizer, recipe.cutoff_len)
        validation = text_blocks([r["text"] for r in val_records], tokenizer, recipe.cutoff_len)
    else:
        train, validation = build(train_records, train_idx), build(val_records, val_idx)
    if not train:
        raise EvalkitError(f"{source}: no usable training samples (answers cut off by cutoff_len={recipe.cutoff_len}?)")
    info.update(train_samples=len(train), validation_samples=len(validation))
    return TrainData(train, validation, info)
