"""Write one lm-eval task file per MMLU subject for the cloze comparison (run with evalkit's venv):
``mmlu_cloze_evalkit_<subject>`` includes lm-eval's own ``mmlu/continuation/mmlu_<subject>.yaml`` (its
prompt, description, choices and metrics, as installed in lm-eval's venv) and replaces only its data
with evalkit's vendored CSVs (utils_mmlu.py). Generated before each use, never committed (.gitignore).
benchmarks/cloze_vs_lmeval.py and tests/test_cloze_vs_lmeval.py call ``write``.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
PREFIX = "mmlu_cloze_evalkit_"


def lmeval_continuation_dir(lmeval_python: str) -> Path:
    """lm-eval's mmlu_continuation task folder inside its venv."""
    code = "import lm_eval.tasks, pathlib; print(pathlib.Path(lm_eval.tasks.__file__).parent / 'mmlu' / 'continuation')"
    return Path(subprocess.run([lmeval_python, "-c", code], check=True, capture_output=True, text=True).stdout.strip())


def write(lmeval_python: str, subjects: list[str]) -> list[str]:
    """The task names, one per subject, written next to this file."""
    source = lmeval_continuation_dir(lmeval_python)
    for old in HERE.glob(f"{PREFIX}*.yaml"):
        old.unlink()
    names = []
    for subject in subjects:
        config = {"include": str(source / f"mmlu_{subject}.yaml"), "task": f"{PREFIX}{subject}",
                  "tag": [], "dataset_path": None, "dataset_name": None, "dataset_kwargs": {"subject": subject},
                  "metric_list": [{"metric": m, "aggregation": "mean", "higher_is_better": True}
                                  for m in ("acc", "acc_norm")]}
        text = yaml.safe_dump(config, sort_keys=False)
        # lm-eval's loader resolves !function against this file's folder (utils_mmlu.py)
        text += "custom_dataset: !function utils_mmlu.load_subject\n"
        (HERE / f"{PREFIX}{subject}.yaml").write_text(text, encoding="utf-8")
        names.append(f"{PREFIX}{subject}")
    return names
