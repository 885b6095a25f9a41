"""The vLLM engine flags of `evalkit run` (no vLLM needed): they reach the vllm backend's options (VLLMOptions), and without
--backend vllm they stop the run with one line."""

from __future__ import annotations

import argparse

import pytest

from evalkit.cli import main
from evalkit.commands import run


def parse(*argv: str):
    parser = argparse.ArgumentParser()
    run.add_parser(parser.add_subparsers())
    return parser.parse_args(["run", "--model", "m", "--tasks", "cmmlu", *argv])


def test_engine_flags_reach_the_backend_options():
    args = parse("--backend", "vllm", "--tensor-parallel-size", "2", "--max-model-len", "4096",
                 "--gpu-memory-utilization", "0.8")
    assert run.backend_options(args).engine_settings() == {"tensor_parallel_size": 2, "gpu_memory_utilization": 0.8,
                                                           "max_model_len": 4096}
    assert run.backend_options(parse("--backend", "vllm")).engine_settings() == {}


@pytest.mark.parametrize("flag", ["--tensor-parallel-size", "--data-parallel-size", "--max-model-len"])
def test_engine_flag_without_vllm_backend_is_one_line(capsys, flag):
    assert main(["run", "--model", "smollm2-135m-instruct", "--tasks", "cmmlu:agronomy", flag, "2", "--no-store"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"evalkit: error: {flag} is an option of --backend vllm; drop it or add --backend vllm"]
