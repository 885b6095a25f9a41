"""``evalkit tasks [NAME]`` and ``evalkit models``: what can be evaluated here."""

from __future__ import annotations

INCLUDE_HELP = ("a directory of task spec .yaml files, searched before the built-in tasks (repeatable; "
                "$EVALKIT_INCLUDE_PATH adds more, os.pathsep-separated): DIR/mytask.yaml is --tasks mytask")


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("tasks", help="list tasks, or the subjects of one task; "
                                            "`tasks import-lmeval FILE --out DIR` converts an lm-eval task file")
    p.add_argument("name", nargs="?", help="a task, or import-lmeval")
    p.add_argument("file", nargs="?", help="import-lmeval: the lm-evaluation-harness task .yaml")
    p.add_argument("--out", default=".", metavar="DIR",
                   help="import-lmeval: where the evalkit spec and its data/ go (default: here)")
    p.add_argument("--include-path", action="append", default=[], metavar="DIR", help=INCLUDE_HELP)
    p.set_defaults(func=list_tasks)
    m = subparsers.add_parser("models", help="list the embedded models")
    m.set_defaults(func=list_models)


def list_tasks(args) -> int:
    from evalkit.tasks.registry import available_tasks, resolve_tasks, set_include_paths

    set_include_paths(args.include_path)
    if args.name == "import-lmeval":
        return import_lmeval(args)
    if args.file:
        from evalkit.errors import EvalkitError

        raise EvalkitError(f"evalkit tasks takes one task name; {args.file!r} is extra (or use tasks import-lmeval FILE)")
    if args.name:
        spec = resolve_tasks(args.name)[0].spec
        for key, subject in getattr(spec, "subjects", {}).items():
            print(f"{key}\t{subject.name}\t{', '.join(subject.categories)}")
        return 0
    from tabulate import tabulate

    rows = [task_row(name, path) for name, path in available_tasks().items()]
    print(tabulate(rows, headers=["task", "type", "size", "description", "spec"], tablefmt="plain"))
    return 0


def import_lmeval(args) -> int:
    """Write the evalkit spec (and data) of an lm-eval task file, for a team to keep and edit."""
    from pathlib import Path

    from evalkit.errors import EvalkitError
    from evalkit.tasks.lmeval_import import import_task, is_lmeval_file
    from evalkit.tasks.loading import load_spec

    if not args.file:
        raise EvalkitError("tasks import-lmeval needs the lm-eval task file: evalkit tasks import-lmeval FILE [--out DIR]")
    path = Path(args.file)
    if not path.is_file():
        raise EvalkitError(f"{path} does not exist; name an lm-evaluation-harness task .yaml")
    if not is_lmeval_file(path):
        raise EvalkitError(f"{path}: not an lm-eval task file (it has an evalkit 'type', or none of output_type, "
                           "doc_to_text, dataset_path, include); it is a spec already")
    spec_path, k = import_task(path, Path(args.out))
    spec = load_spec(spec_path)  # what evalkit run will read: checked now
    print(f"wrote {spec_path} ({spec.type}) and its data under {spec_path.parent / 'data' / spec.name}")
    print(f"run: evalkit run --model MODEL --tasks {spec_path}" + (f" --num-fewshot {k}" if k else ""))
    return 0


def task_row(name: str, path) -> list[str]:
    """One line of ``evalkit tasks``: the spec's type, its size, its description (or first comment line)."""
    from evalkit.errors import EvalkitError
    from evalkit.tasks.loading import load_spec

    try:
        spec = load_spec(path)
    except EvalkitError as exc:  # a broken user spec is listed, not fatal for the listing
        return [name, "invalid", "-", str(exc)[:80], str(path)]
    if spec.type == "multiple_choice":
        size = f"{len(spec.subjects)} subjects"
    elif spec.type == "perplexity":
        size = f"{len(spec.raw.get('documents', []))} documents"
    else:
        limit = spec.raw.get("data", {}).get("slice")
        size = "all rows"
        if isinstance(limit, list) and len(limit) == 2:
            size = f"rows {limit[0] or 0}..{'' if limit[1] is None else limit[1]}"
    return [name, spec.type, size, _description(spec), str(path)]


def _description(spec) -> str:
    text = spec.raw.get("description")
    if not isinstance(text, str):
        comments = [line.lstrip("# ").strip() for line in spec.path.read_text(encoding="utf-8").splitlines()[:3]
                    if line.startswith("#")]
        text = comments[0] if comments else ""
    return text if len(text) <= 70 else text[:67] + "..."


def list_models(args) -> int:
    from evalkit.models.embedded import EMBEDDED

    for alias, model in EMBEDDED.items():
        print(f"{alias}\t{model.description}")
    return 0
