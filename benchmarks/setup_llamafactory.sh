#!/usr/bin/env bash
# Create .venv-llamafactory: LLaMA-Factory in its own virtualenv, for benchmarks/train_vs_llamafactory.py
# (its pinned dependencies, e.g. transformers<=5.6, must not mix with evalkit's). Safe to run again.
#   bash benchmarks/setup_llamafactory.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=.venv-llamafactory
LLAMAFACTORY_VERSION=0.9.5
TORCH_VERSION=2.13.0

source benchmarks/cpu_venv.sh
make_cpu_venv "$VENV" "$TORCH_VERSION"
# LLaMA-Factory itself without dependencies, then its requirements minus torch/torchvision/torchaudio
# (their PyPI builds pull CUDA libraries and a different torch); the metric and 4-bit extras for
# `predict` and QLoRA.
"$VENV/bin/python" -m pip install -q --no-deps "llamafactory==${LLAMAFACTORY_VERSION}"
REQUIREMENTS=$("$VENV/bin/python" - <<'PY'
from importlib.metadata import requires
wanted = []
for req in requires("llamafactory") or []:
    name = req.split(";")[0].strip()
    if "extra ==" in req or name.split("<")[0].split(">")[0].split("=")[0].split("!")[0].strip().lower() in {"torch", "torchvision", "torchaudio"}:
        continue
    wanted.append(name)
print("\n".join(wanted))
PY
)
# shellcheck disable=SC2086
echo "$REQUIREMENTS" | tr '\n' '\0' | xargs -0 "$VENV/bin/python" -m pip install -q "torch==${TORCH_VERSION}" \
    jieba nltk rouge-chinese bitsandbytes
# LLaMA-Factory 0.9.5 imports torchaudio at module level (multimodal data plugins) but never uses it for
# text SFT; a stub module keeps the real one (and its CUDA build) out.
SITE=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
if ! "$VENV/bin/python" -c 'import torchaudio' 2>/dev/null; then
    mkdir -p "$SITE/torchaudio"
    printf '"""Stub: LLaMA-Factory imports torchaudio at module level; text training never calls it."""\n__version__ = "0.0.0+stub"\n' \
        > "$SITE/torchaudio/__init__.py"
fi
"$VENV/bin/python" -c "import llamafactory, torch, transformers, peft; print('llamafactory', llamafactory.__version__, 'torch', torch.__version__, 'transformers', transformers.__version__, 'peft', peft.__version__)"
