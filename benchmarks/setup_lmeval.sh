#!/usr/bin/env bash
# Create benchmarks/.venv-lmeval: lm-evaluation-harness in its own virtualenv, for the comparison in
# benchmarks/mc_throughput.py (its dependencies must not mix with evalkit's). Safe to run again.
#   bash benchmarks/setup_lmeval.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=benchmarks/.venv-lmeval
LM_EVAL_VERSION=0.4.13
TORCH_VERSION=2.13.0
# The same transformers as evalkit's venv, so both run the same model code.
TRANSFORMERS_VERSION=$(.venv/bin/python -c 'import transformers; print(transformers.__version__)' 2>/dev/null || echo 5.23.0)

source benchmarks/cpu_venv.sh
make_cpu_venv "$VENV" "$TORCH_VERSION"
"$VENV/bin/python" -m pip install -q "lm_eval[api]==${LM_EVAL_VERSION}" "transformers==${TRANSFORMERS_VERSION}" "torch==${TORCH_VERSION}" accelerate
"$VENV/bin/python" -c "import lm_eval, torch, transformers; print('lm_eval', lm_eval.__version__, 'torch', torch.__version__, 'transformers', transformers.__version__)"
