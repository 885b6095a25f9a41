"""Data-parallel evaluation: ``accelerate launch --num_processes N -m evalkit run ...`` (or ``torchrun``).

Every process loads the model and prepares the same requests; ``DataParallel`` wraps the backend so each
backend call computes only this rank's share and returns everyone's answers, gathered with
``torch.distributed`` (gloo on CPU, NCCL-free: answers are small Python objects). Multiple-choice
requests are shared out by whole subjects, so each rank keeps the few-shot prefix reuse of its
subjects and every subject is batched exactly as in a single process: the scores do not depend on the
number of processes (tests/test_distributed.py compares 2 processes with 1). Rank 0 writes the one
results file and records the run; the other ranks write into a scratch directory that is removed.
Nothing here schedules work by itself: the launcher starts the processes, torch.distributed moves data.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections import OrderedDict


def world() -> tuple[int, int]:
    """(rank, world size) as set by accelerate launch / torchrun; (0, 1) for a plain run."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def enabled() -> bool:
    return world()[1] > 1


def init() -> None:
    import torch.distributed as dist

    if enabled() and not dist.is_initialized():
        dist.init_process_group("gloo")  # the launcher's MASTER_ADDR/PORT, RANK and WORLD_SIZE


def rank_output(output_dir: str, record: bool) -> tuple[str, bool]:
    """Where this rank writes: rank 0 the real directory (and records the run), the others a scratch one."""
    if not enabled() or world()[0] == 0:
        return output_dir, record
    scratch = tempfile.mkdtemp(prefix=f"evalkit-rank{world()[0]}-")
    atexit.register(shutil.rmtree, scratch, True)
    return scratch, False


def rank_device(device: str) -> str:
    """On a multi-GPU machine each process takes its own GPU (LOCAL_RANK) unless --device names one."""
    import torch

    if enabled() and device in ("auto", "cuda") and torch.cuda.is_available():
        return f"cuda:{os.environ.get('LOCAL_RANK', 0)}"
    return device


def wrap(engine):
    return DataParallel(engine) if enabled() else engine


def balanced_shares(sizes: list[int], ranks: int) -> list[int]:
    """The rank of each group: largest groups first, each to the least loaded rank (deterministic)."""
    load, owner = [0] * ranks, [0] * len(sizes)
    for group in sorted(range(len(sizes)), key=lambda g: (-sizes[g], g)):
        rank = min(range(ranks), key=lambda r: (load[r], r))
        owner[group], load[rank] = rank, load[rank] + sizes[group]
    return owner


def _gather(mine: list[tuple[int, object]], count: int) -> list:
    """Everyone's (index, answer) pairs, put back in input order."""
    import torch.distributed as dist

    parts: list = [None] * world()[1]
    dist.all_gather_object(parts, mine)
    answers: list = [None] * count
    for part in parts:
        for index, answer in part:
            answers[index] = answer
    return answers


def _my_subjects(requests) -> list[int]:
    """This rank's requests: whole subjects, balanced by size, so each keeps its prefix reuse."""
    groups: OrderedDict = OrderedDict()
    for i, r in enumerate(requests):
        groups.setdefault((r.task, r.subject), []).append(i)
    members = list(groups.values())
    owner = balanced_shares([len(m) for m in members], world()[1])
    return [i for g, m in enumerate(members) if owner[g] == world()[0] for i in m]


class DataParallel:
    """A backend computing this rank's share of each call and returning all ranks' answers."""

    def __init__(self, inner):
        self.inner = inner

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def describe(self) -> dict:
        return {**self.inner.describe(), "data_parallel": {"world_size": world()[1], "shard": "subject"}}

    def score_choices(self, requests, targets, config, label):
        mine = _my_subjects(requests)
        scores = self.inner.score_choices([requests[i] for i in mine], targets, config, label) if mine else []
        return _gather(list(zip(mine, scores)), len(requests))

    def score_cloze(self, requests, config, label):
        mine = _my_subjects(requests)
        scores = self.inner.score_cloze([requests[i] for i in mine], config, label) if mine else []
        return _gather(list(zip(mine, scores)), len(requests))

    def generate(self, texts, *, chat, max_new_tokens, stop, config, label):
        rank, size = world()
        mine = list(range(rank, len(texts), size))
        generations, timing = ([], {}) if not mine else self.inner.generate(
            [texts[i] for i in mine], chat=chat, max_new_tokens=max_new_tokens, stop=stop, config=config, label=label)
        answers = _gather(list(zip(mine, generations)), len(texts))
        timings = [t for t in _gather([(rank, timing)], size) if t]
        seconds = max((t.get("generate_s") or 0.0) for t in timings) if timings else 0.0
        total = sum(g.new_tokens for g in answers)
        return answers, {"generate_s": seconds, "new_tokens": total,
                         "tokens_per_s": round(total / seconds, 2) if seconds else None,
                         "processes": size, "per_process": timings}

    def loglikelihood_rolling(self, documents, window, stride, config):
        rank, size = world()
        mine = list(range(rank, len(documents), size))
        rows = [] if not mine else self.inner.loglikelihood_rolling([documents[i] for i in mine], window, stride, config)
        for i, row in zip(mine, rows):
            row["index"] = i
        return _gather(list(zip(mine, rows)), len(documents))
