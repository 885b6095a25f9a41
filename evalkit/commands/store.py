"""``evalkit runs``: list the results store; ``evalkit import DIR``: load results written elsewhere."""

from __future__ import annotations

from evalkit.errors import EvalkitError

STORE_HELP = "results store: SQLite path or SQLAlchemy URL (default: $EVALKIT_STORE or the user data dir)"


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("runs", help="list runs in the results store", description=__doc__)
    p.add_argument("--store", default=None, metavar="URL", help=STORE_HELP)
    p.add_argument("--model", default=None, help="only runs of this model (name, label, path or key)")
    p.add_argument("--task", default=None, help="only runs with this task")
    p.add_argument("--kind", choices=["evaluation", "training", "profile"], default=None)
    p.add_argument("--tag", default=None, help="only runs with this tag (e.g. accepted)")
    p.add_argument("--since", default=None, metavar="DATE", help="only runs created on or after DATE (ISO, e.g. 2026-12-01)")
    p.add_argument("--limit", type=int, default=50, help="newest N runs (default 50)")
    p.add_argument("--format", choices=["table", "csv", "json", "parquet"], default="table",
                   help="table (default), or one row per run and task as csv / json (to stdout) or parquet (--output)")
    p.add_argument("--output", default=None, metavar="FILE", help="write the rows here instead of stdout (parquet needs it)")
    p.set_defaults(func=runs)
    i = subparsers.add_parser("import", help="record results_*.json, profile_*.json, train_manifest.json files into the store")
    i.add_argument("directory", help="folder searched recursively")
    i.add_argument("--store", default=None, metavar="URL", help=STORE_HELP)
    i.set_defaults(func=import_runs)


def _score(result) -> str:
    if result.score is None:
        return "-"
    if not isinstance(result.score, (int, float)) or result.score != result.score or abs(result.score) == float("inf"):
        return f"{result.metric} invalid ({result.score!r}; recorded by an older evalkit: re-import the file)"
    value = result.score * 100 if result.metric in ("acc", "exact_match") else result.score
    return f"{result.metric} {value:.2f}"


def runs(args) -> int:
    from tabulate import tabulate

    from evalkit.store import normalise_url
    from evalkit.store.engine import shown
    from evalkit.store.query import list_runs

    if args.limit < 1:
        raise EvalkitError(f"--limit {args.limit}: use a positive number of runs (the newest N are listed)")
    url = normalise_url(args.store)
    if args.format != "table":
        return export_runs(args, url)
    if args.tag or args.since:
        raise EvalkitError("--tag and --since filter the exported rows: use them with --format csv, json or parquet")
    rows = []
    for run in list_runs(url, model=args.model, task=args.task, kind=args.kind, limit=args.limit):
        tasks = "; ".join(f"{t.task}: {_score(t)} (n={t.n})" for t in run.tasks)
        memory = ((run.profile or {}).get("memory") or {}).get("peak_rss_mb")
        rows.append([run.id, run.created_at, run.kind, run.model_label, run.model_key[:10], tasks,
                     f"{memory:.0f}" if isinstance(memory, (int, float)) else "-", run.evalkit_version])
    print(f"store: {shown(url)}")
    if not rows:
        print("no runs recorded yet; `evalkit run` records each run, `evalkit import DIR` loads older results")
        return 0
    print(tabulate(rows, headers=["id", "created (UTC)", "kind", "model", "model key", "tasks", "peak RSS MB", "evalkit"],
                   tablefmt="github", disable_numparse=True))
    return 0


def export_runs(args, url: str) -> int:
    """The rows notebooks read (evalkit.store.frames.runs_with_scores): one per run and task."""
    from evalkit.store.frames import runs_with_scores

    if args.format == "parquet" and not args.output:
        raise EvalkitError("--format parquet writes a binary file: add --output FILE.parquet")
    frame = runs_with_scores(url, model=args.model, task=args.task, kind=args.kind, tag=args.tag, since=args.since)
    newest = frame["id"].drop_duplicates().head(args.limit)
    frame = frame[frame["id"].isin(newest)]
    if args.format == "parquet":
        frame.to_parquet(args.output, index=False)
        print(f"{len(frame)} row(s) written to {args.output}")
        return 0
    text = frame.to_csv(index=False) if args.format == "csv" else frame.to_json(orient="records", indent=1) + "\n"
    if args.output:
        from pathlib import Path

        Path(args.output).write_text(text, encoding="utf-8")
        print(f"{len(frame)} row(s) written to {args.output}")
    else:
        print(text, end="")
    return 0


def import_runs(args) -> int:
    from evalkit.store import import_directory, open_store
    from evalkit.store.engine import shown

    url = open_store(args.store)[1]  # a bad store fails now, before any file is read
    new, known, skipped = import_directory(args.directory, url)
    for line in skipped:
        print(f"skipped: {line}")
    print(f"recorded {len(new)} new run(s) into {shown(url)}: {', '.join(map(str, new)) or '-'}")
    if known:
        print(f"{len(known)} file(s) were already in the store: run(s) {', '.join(map(str, known))}")
    return 0
