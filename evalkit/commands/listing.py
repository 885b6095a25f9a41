"""``evalkit tasks [NAME]`` and ``evalkit models``: what can be evaluated here."""

from __future__ import annotations

INCLUDE_HELP = ("a directory of task spec .yaml files, searched before the built-in tasks (repeatable; "
                "$EVALKIT_INCLUDE_PATH adds more, os.pathsep-separated): DIR/mytask.yaml is --tasks mytask")


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("tasks", help="list tasks, or the subjects of one task")
    p.add_argument("name", nargs="?")
    p.add_argument("--include-path", action="append", default=[], metavar="DIR", help=INCLUDE_HELP)
    p.set_defaults(func=list_tasks)
    m = subparsers.add_parser("models", help="list the embedded models")
    m.set_defaults(func=list_models)


def list_tasks(args) -> int:
    from evalkit.tasks.registry import available_tasks, resolve_tasks, set_include_paths

    set_include_paths(args.include_path)
    if args.name:
        spec = resolve_tasks(args.name)[0].spec
        for key, subject in getattr(spec, "subjects", {}).items():
            print(f"{key}\t{subject.name}\t{', '.join(subject.categories)}")
        return 0
    for name, path in available_tasks().items():
        print(f"{name}\t{path}")
    return 0


def list_models(args) -> int:
    from evalkit.models.embedded import EMBEDDED

    for alias, model in EMBEDDED.items():
        print(f"{alias}\t{model.description}")
    return 0
