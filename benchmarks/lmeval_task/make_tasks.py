"""Write one lm-eval task file per CMMLU subject (run with evalkit's venv). `benchmarks/mc_throughput.py` calls
this before each lm-eval run, so the 67 generated files are never committed (.gitignore) and never stale.

The header of each subject (lm-eval's ``description``) comes from evalkit's own spec, so both
tools use the same prompt text:

    .venv/bin/python benchmarks/lmeval_task/make_tasks.py
"""

from __future__ import annotations

from pathlib import Path

import yaml

from evalkit.tasks import resolve_tasks

HERE = Path(__file__).resolve().parent


def main() -> int:
    spec = resolve_tasks("cmmlu")[0].spec
    header = spec.prompt_styles["llamafactory"].header
    for old in HERE.glob("cmmlu_evalkit_*.yaml"):
        old.unlink()
    for key, subject in spec.subjects.items():
        config = {"task": f"cmmlu_evalkit_{key}", "include": "_template_yaml",
                  "dataset_kwargs": {"subject": key}, "description": header.format(subject=subject.name)}
        text = yaml.safe_dump(config, allow_unicode=True, sort_keys=False, default_style='"')
        (HERE / f"cmmlu_evalkit_{key}.yaml").write_text(text, encoding="utf-8")
    return len(spec.subjects)


if __name__ == "__main__":
    print(f"wrote {main()} task files to {HERE}")
