"""Write one lm-eval task file per CMMLU subject (run with evalkit's venv). `benchmarks/mc_throughput.py` calls
this before each lm-eval run, so the 67 generated files are never committed (.gitignore) and never stale.

The header of each subject (lm-eval's ``description``) comes from evalkit's own spec, so both
tools use the same prompt text:

    .venv/bin/python benchmarks/lmeval_task/make_tasks.py

``--jinja`` writes hook-free files instead (``cmmlu_jinja_<subject>.yaml``: no ``!function``, nothing to import):
the vendored CSVs read by ``datasets``' csv builder with every cell kept as text, and doc_to_text /
doc_to_target as Jinja2 templates equal to utils.py's functions. Both lm-eval and ``evalkit run --tasks`` read
them (tests/test_lmeval_tasks.py):

    .venv/bin/python benchmarks/lmeval_task/make_tasks.py --jinja --out /tmp/cmmlu-jinja --num-fewshot 5
"""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml

from evalkit.tasks import resolve_tasks

HERE = Path(__file__).resolve().parent
# utils.doc_to_text and utils.doc_to_target as templates; Answer is stripped as utils.read_split strips it
DOC_TO_TEXT = "{{Question}}\nA. {{A}}\nB. {{B}}\nC. {{C}}\nD. {{D}}\n答案："
DOC_TO_TARGET = "{{ 'ABCD'.index(Answer.strip()) }}"


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


def jinja_tasks(out: Path, num_fewshot: int = 0, subjects: list[str] | None = None) -> list[Path]:
    """One hook-free lm-eval task file per subject (all, or ``subjects``) in ``out``."""
    spec = resolve_tasks("cmmlu")[0].spec
    header = spec.prompt_styles["llamafactory"].header
    data = (spec.root / spec.data["dir"]).resolve()
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for key in subjects or list(spec.subjects):
        config = {
            "task": f"cmmlu_jinja_{key}", "dataset_path": "csv",
            # pandas would read "None" or "NA" as NaN; datasets 5.2's csv builder takes no dtype, and its numeric
            # inference leaves every vendored CMMLU cell's text as written (tests/test_lmeval_tasks.py)
            "dataset_kwargs": {"data_files": {split: str(data / split / f"{key}.csv") for split in ("dev", "test")},
                               "keep_default_na": False},
            "test_split": "test", "fewshot_split": "dev", "fewshot_config": {"sampler": "first_n"},
            "num_fewshot": num_fewshot, "output_type": "multiple_choice",
            "description": header.format(subject=spec.subjects[key].name),
            "doc_to_text": DOC_TO_TEXT, "doc_to_choice": ["A", "B", "C", "D"], "doc_to_target": DOC_TO_TARGET,
            "target_delimiter": "", "fewshot_delimiter": "\n\n",
            "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}],
            "metadata": {"version": 1.0},
        }
        path = out / f"cmmlu_jinja_{key}.yaml"
        path.write_text(yaml.safe_dump(config, allow_unicode=True, sort_keys=False), encoding="utf-8")
        written.append(path)
    return written


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jinja", action="store_true", help="hook-free files (Jinja2 templates, csv data_files)")
    parser.add_argument("--out", type=Path, default=HERE, help="--jinja: the folder to write to")
    parser.add_argument("--num-fewshot", type=int, default=0, help="--jinja: the files' num_fewshot")
    parser.add_argument("--subjects", default=None, help="--jinja: comma-separated subjects (default: all)")
    args = parser.parse_args()
    if args.jinja:
        files = jinja_tasks(args.out, args.num_fewshot, args.subjects.split(",") if args.subjects else None)
        print(f"wrote {len(files)} task files to {args.out}")
    else:
        print(f"wrote {main()} task files to {HERE}")
