"""models/source.py: one resolver for what --model names, shared by the hf loader, --backend vllm, `evalkit serve
--engine vllm` and training. Each kind offline; resolving is cheap (no dequantising, no hashing, no network); the
identity records equal the loader's; a LoRA's rank rounds up to vLLM's sizes the same way for run and serve."""

from __future__ import annotations

import argparse
import json
import socket
from pathlib import Path

import pytest

from evalkit.errors import EvalkitError
from evalkit.models.source import resolve_model, weights_hash
from tests.conftest import SMOLLM2


def lora_adapter(directory: Path, base: Path, r: int) -> Path:
    """A PEFT LoRA adapter of rank ``r`` on the tiny model, its base_model_name_or_path pointing at ``base``."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base)
    get_peft_model(model, LoraConfig(r=r, target_modules=["q_proj", "v_proj"])).save_pretrained(directory)
    config_file = directory / "adapter_config.json"
    config = json.loads(config_file.read_text())
    config["base_model_name_or_path"] = str(base)
    config_file.write_text(json.dumps(config))
    return directory


@pytest.fixture(scope="module")
def adapters(tmp_path_factory, tiny_model_dir) -> dict[int, Path]:
    root = tmp_path_factory.mktemp("loras")
    return {r: lora_adapter(root / f"r{r}", tiny_model_dir, r) for r in (4, 24)}


def fake_adapter(tmp_path: Path, name: str, config, config_name: str = "adapter_config.json",
                 weights: bool = True) -> Path:
    directory = tmp_path / name
    directory.mkdir()
    (directory / config_name).write_text(json.dumps(config) if not isinstance(config, str) else config)
    if weights:
        (directory / "adapter_model.safetensors").write_bytes(b"\0" * 16)
    return directory


def serve_args(model: str, **overrides) -> argparse.Namespace:
    from evalkit.commands import serve

    parser = argparse.ArgumentParser()
    serve.add_parser(parser.add_subparsers())
    args = parser.parse_args(["serve", "--model", model])
    for key, value in overrides.items():
        setattr(args, key, value)
    return args


@pytest.fixture
def fake_vllm(tmp_path, monkeypatch) -> str:
    """`vllm_command` looks for a vllm executable; none is installed here."""
    import shutil

    executable = tmp_path / "bin" / "vllm"
    executable.parent.mkdir()
    executable.write_text("#!/bin/sh\n")
    monkeypatch.setattr(shutil, "which", lambda name: str(executable) if name == "vllm" else None)
    return str(executable)


# --- each kind ------------------------------------------------------------------------------------------------

def test_embedded_alias_resolves_without_dequantising():
    from evalkit.models.embedded import resolve_embedded

    source = resolve_model(SMOLLM2)
    assert (source.kind, source.path, source.base, source.config) == ("embedded", None, None, None)
    assert "_dequantised" not in source.__dict__  # the slow part waits for weights_dir
    directory, identity = resolve_embedded(SMOLLM2)
    assert source.weights_dir == source.tokenizer_dir == directory
    assert source.identity() == identity and identity["kind"] == "embedded"
    assert source.lora_rank is None and source.max_lora_rank is None and source.check_vllm() is source


def test_gguf_file_identity_without_dequantising():
    from evalkit.cache import sha256_file
    from evalkit.models.embedded import EMBEDDED, resolve_embedded

    gguf, _ = EMBEDDED[SMOLLM2].gguf_path()
    source = resolve_model(str(gguf))
    assert source.kind == "gguf" and source.path == gguf.resolve()
    assert source.identity() == {"kind": "gguf", "source": str(gguf.resolve()), "weights_sha256": sha256_file(gguf)}
    assert "_dequantised" not in source.__dict__  # the identity needs the file's hash only
    assert source.weights_dir == resolve_embedded(SMOLLM2)[0]  # the same dequantised cache as the alias


def test_local_directory(tiny_model_dir):
    source = resolve_model(str(tiny_model_dir))
    assert source.kind == "local" and source.path == tiny_model_dir.resolve()
    assert source.weights_dir == source.tokenizer_dir == tiny_model_dir.resolve()
    assert source.identity() == {"kind": "local", "source": str(tiny_model_dir.resolve()),
                                 "weights_sha256": weights_hash(tiny_model_dir)}


def test_dequantised_copy_is_its_gguf():
    """An adapter trained on an embedded model names the dequantised copy as its base: the record is the GGUF's."""
    from evalkit.models.embedded import resolve_embedded

    directory, identity = resolve_embedded(SMOLLM2)
    record = resolve_model(str(directory)).identity()
    assert record["kind"] == "gguf" and record["weights_sha256"] == identity["weights_sha256"]


def test_hub_id_resolves_offline_without_network(monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("resolving a hub id opened a connection")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    source = resolve_model("org/some-model")
    assert (source.kind, source.path, source.weights_dir, source.tokenizer_dir) == (
        "hub", None, "org/some-model", "org/some-model")
    assert source.identity() == {"kind": "hub", "source": "org/some-model", "revision": None}
    assert source.identity("abc123")["revision"] == "abc123"  # known only once loaded


@pytest.mark.parametrize("r, rank", [(4, 8), (24, 32)])
def test_lora_adapter_and_its_vllm_rank(adapters, tiny_model_dir, fake_vllm, r, rank):
    from evalkit.commands.serve import vllm_command

    path = adapters[r]
    source = resolve_model(str(path))
    assert source.kind == "peft_adapter" and source.path == path.resolve() and source.base.kind == "local"
    assert (source.lora_rank, source.max_lora_rank) == (r, rank)
    assert source.weights_dir == tiny_model_dir.resolve()
    assert source.tokenizer_dir == tiny_model_dir.resolve()  # saved without a tokenizer: the base's
    identity = source.identity()
    assert identity == {"kind": "peft_adapter", "source": str(path.resolve()), "adapter_sha256": weights_hash(path),
                        "peft_type": "LORA", "base": resolve_model(str(tiny_model_dir)).identity()}

    assert source.check_vllm() is source  # what --backend vllm loads: source.weights_dir + LoRA source.path

    command = vllm_command(serve_args(str(path), served_model_name="tuned"))
    assert command[:3] == [fake_vllm, "serve", str(tiny_model_dir.resolve())]
    assert command[command.index("--served-model-name") + 1] == "tuned-base"
    assert command[command.index("--lora-modules") + 1] == f"tuned={path.resolve()}"
    assert command[command.index("--max-lora-rank") + 1] == str(rank)


def test_loader_records_the_resolvers_identity(adapters, tiny_model_dir):
    """The hf backend and the vLLM one (which records ``resolve_model(spec).identity()``) key results to the same model."""
    from evalkit.models import load_model

    for spec in (str(tiny_model_dir), str(adapters[4])):
        assert load_model(spec).identity == resolve_model(spec).identity()


def test_adapter_with_its_own_tokenizer(adapters, tmp_path):
    import shutil

    copy = shutil.copytree(adapters[4], tmp_path / "with-tokenizer")
    from transformers import AutoTokenizer

    AutoTokenizer.from_pretrained(str(resolve_model(str(copy)).base.weights_dir)).save_pretrained(copy)
    assert resolve_model(str(copy)).tokenizer_dir == copy.resolve()


def test_plain_model_through_serve(tiny_model_dir, fake_vllm):
    from evalkit.commands.serve import vllm_command

    command = vllm_command(serve_args(str(tiny_model_dir)))
    assert command[2] == str(tiny_model_dir.resolve()) and "--enable-lora" not in command
    assert command[command.index("--served-model-name") + 1] == str(tiny_model_dir)


def test_evalkit_adapter(tmp_path, tiny_model_dir):
    directory = fake_adapter(tmp_path, "bottleneck", {"base_model_name_or_path": str(tiny_model_dir),
                                                      "adapter_size": 8, "type": "houlsby"},
                             config_name="evalkit_adapter_config.json")
    source = resolve_model(str(directory))
    assert source.kind == "evalkit_adapter" and source.base.kind == "local" and source.lora_rank is None
    identity = source.identity()
    assert identity["adapter_type"] == "houlsby" and identity["base"]["kind"] == "local" and "peft_type" not in identity
    with pytest.raises(EvalkitError, match="an evalkit bottleneck adapter, which vLLM cannot run"):
        source.check_vllm()


# --- errors: one line naming the file and the fix ---------------------------------------------------------------

@pytest.mark.parametrize("config, needle", [
    ("{not json", "adapter_config.json: not valid JSON"),
    ([1, 2], "adapter_config.json: expected a JSON object, found a list"),
    ({"peft_type": "LORA"}, "adapter_config.json: no base_model_name_or_path; set it to the base model"),
])
def test_bad_adapter_configs(tmp_path, config, needle):
    directory = fake_adapter(tmp_path, "bad", config)
    with pytest.raises(EvalkitError, match=needle):
        resolve_model(str(directory))


def test_adapter_without_weights(tmp_path, tiny_model_dir):
    directory = fake_adapter(tmp_path, "bare", {"base_model_name_or_path": str(tiny_model_dir)}, weights=False)
    with pytest.raises(EvalkitError, match="adapter without weights"):
        resolve_model(str(directory))


def test_adapter_chains_that_loop(tmp_path):
    loop = fake_adapter(tmp_path, "loop", {"base_model_name_or_path": str(tmp_path / "loop")})
    with pytest.raises(EvalkitError, match="leads back to this adapter"):
        resolve_model(str(loop))
    a = fake_adapter(tmp_path, "a", {"base_model_name_or_path": str(tmp_path / "b")})
    fake_adapter(tmp_path, "b", {"base_model_name_or_path": str(a), "adapter_size": 4},
                 config_name="evalkit_adapter_config.json")
    with pytest.raises(EvalkitError, match="evalkit_adapter_config.json: base_model_name_or_path .* leads back"):
        resolve_model(str(a))


def test_evalkit_adapter_without_size(tmp_path, tiny_model_dir):
    directory = fake_adapter(tmp_path, "sizeless", {"base_model_name_or_path": str(tiny_model_dir)},
                             config_name="evalkit_adapter_config.json")
    with pytest.raises(EvalkitError, match="no integer adapter_size"):
        resolve_model(str(directory))


def test_what_vllm_cannot_run(tmp_path, tiny_model_dir, adapters, fake_vllm):
    from evalkit.commands.serve import vllm_command

    stacked = fake_adapter(tmp_path, "stacked", {"base_model_name_or_path": str(adapters[4]), "peft_type": "LORA"})
    prefix = fake_adapter(tmp_path, "prefix", {"base_model_name_or_path": str(tiny_model_dir),
                                               "peft_type": "PREFIX_TUNING"})
    huge = fake_adapter(tmp_path, "huge", {"base_model_name_or_path": str(tiny_model_dir),
                                           "peft_type": "LORA", "r": 1024})
    assert resolve_model(str(stacked)).base.kind == "peft_adapter"  # the hf loader stacks them
    for directory, needle in ((stacked, "its base is itself an adapter"), (prefix, "vLLM runs LoRA adapters only"),
                              (huge, "LoRA rank 1024 is above vLLM's largest")):
        for call in (lambda: resolve_model(str(directory)).check_vllm(), lambda: vllm_command(serve_args(str(directory)))):
            with pytest.raises(EvalkitError, match=needle):
                call()


def test_not_a_model(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(EvalkitError, match="not a model .expected config.json"):
        resolve_model(str(tmp_path / "empty"))
    for spec in ("./no/such/checkpoint", "no-such-alias"):
        with pytest.raises(EvalkitError, match="does not exist: not a local path, an embedded model"):
            resolve_model(spec)


def test_training_base(tmp_path, tiny_model_dir, adapters):
    from evalkit.train.runner import resolve_base

    expected = (str(tiny_model_dir.resolve()), resolve_model(str(tiny_model_dir)).identity())
    assert resolve_base(str(tiny_model_dir)) == expected
    assert resolve_base("org/some-model") == ("org/some-model", {"kind": "hub", "source": "org/some-model"})
    with pytest.raises(EvalkitError, match="not a transformers checkpoint .no config.json.; train from full weights"):
        resolve_base(str(adapters[4]))


def test_tokenizer_of_an_adapter(adapters, tiny_model_dir, tmp_path):
    """--tokenizer takes anything --model does: an adapter without tokenizer files gives its base's."""
    from evalkit.models.loader import load_tokenizer

    assert len(load_tokenizer(str(adapters[4]))) == len(load_tokenizer(str(tiny_model_dir)))
    broken = fake_adapter(tmp_path, "baseless", {"peft_type": "LORA"})
    with pytest.raises(EvalkitError, match="adapter_config.json: no base_model_name_or_path"):
        load_tokenizer(str(broken))
