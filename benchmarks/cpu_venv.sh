# Sourced by the benchmarks' setup scripts: make_cpu_venv VENV TORCH_VERSION creates the virtualenv VENV
# (if missing) with torch installed first as the CPU build: the machine's local wheel when there is one,
# else PyTorch's CPU index (a bare `pip install torch` pulls the multi-GB CUDA build).
make_cpu_venv() {
    local venv=$1 torch_version=$2 wheel
    [ -x "$venv/bin/python" ] || "${PYTHON:-python3}" -m venv "$venv"
    "$venv/bin/python" -m pip install -q --upgrade pip
    wheel=$(ls /opt/wheels/torch-"${torch_version}"+cpu-*.whl 2>/dev/null | head -n 1 || true)
    if [ -n "$wheel" ]; then
        "$venv/bin/python" -m pip install -q "$wheel"
    else
        "$venv/bin/python" -m pip install -q "torch==${torch_version}" --index-url https://download.pytorch.org/whl/cpu
    fi
}
