"""Every registered backend that can run here keeps the contract of evalkit/backends/base.py.

One test body, parametrised over the registry: hf (a tiny real model), fake (no model), openai (against a
real `evalkit serve` on 127.0.0.1) and vllm (under its marker). A new backend is its module plus one registry
line; adding it to ``CASES`` runs it through the same checks.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from pydantic import ValidationError

from evalkit.backends import BACKENDS, TASK_TYPES, Backend, BackendOptions, backend_class
from evalkit.backends.outputs import ChoiceScore, Generation, best_letter
from evalkit.backends.request_cache import RequestCache
from evalkit.errors import EvalkitError
from evalkit.evaluators.base import RunConfig
from evalkit.evaluators.perplexity import perplexity_summary
from evalkit.requests import build_requests, choice_targets
from evalkit.tasks import resolve_tasks
from evalkit.tasks.mc_data import load_split
from evalkit.tasks.perplexity_spec import load_documents
from tests.conftest import REPO, SMOLLM2

KEY = "contract-key"


@pytest.fixture(scope="module")
def contract_server(varied_model_dir):
    from tests.test_api_backend import serving

    with serving(str(varied_model_dir), "--api-key", KEY, "--max-tokens-limit", "64", name="tiny") as url:
        yield url


def load_hf(request, cache):
    directory = request.getfixturevalue("varied_model_dir")
    return backend_class("hf").load(str(directory), backend_class("hf").Options(), request_cache=cache)


def load_fake(request, cache):
    return backend_class("fake").load("contract-model", backend_class("fake").Options(seed=3), request_cache=cache)


def load_openai(request, cache):
    url = request.getfixturevalue("contract_server")
    request.getfixturevalue("monkeypatch").setenv("OPENAI_API_KEY", KEY)
    tokenizer = str(request.getfixturevalue("varied_model_dir"))  # a random model's letters need the bias
    options = backend_class("openai").Options(base_url=url, tokenizer=tokenizer, concurrency=2)
    return backend_class("openai").load("tiny", options, request_cache=cache)


def load_vllm(request, cache):
    pytest.importorskip("vllm")
    return backend_class("vllm").load(SMOLLM2, backend_class("vllm").Options(dtype="float32", enforce_eager=True),
                                      request_cache=cache)


CASES = [pytest.param("hf", load_hf, id="hf"), pytest.param("fake", load_fake, id="fake"),
         pytest.param("openai", load_openai, id="openai"),
         pytest.param("vllm", load_vllm, id="vllm", marks=pytest.mark.vllm)]


def test_every_registered_backend_is_in_the_contract_test():
    assert {case.values[0] for case in CASES} == set(BACKENDS)


def mc_requests(tokenizer, count: int = 5):
    spec = resolve_tasks("cmmlu:agronomy")[0].spec
    questions = load_split(spec, "agronomy", spec.eval_split)[:count]
    exemplars = load_split(spec, "agronomy", spec.fewshot_split)[:2]
    requests = build_requests(spec, "llamafactory", "agronomy", questions, exemplars, tokenizer, chat=False)
    return requests, choice_targets(spec, "llamafactory")


@pytest.mark.parametrize("name,loader", CASES)
def test_backend_contract(name, loader, request, tmp_path, one_thread):
    cls = backend_class(name)
    assert issubclass(cls, Backend) and cls.name == name and set(cls.task_types) <= set(TASK_TYPES)
    assert issubclass(cls.Options, BackendOptions)
    with pytest.raises(ValidationError):
        cls.Options(no_such_setting=1)  # unknown keys are refused

    opened = []

    def cache(namespace):
        opened.append(namespace)
        return RequestCache(tmp_path / "requests.sqlite", namespace)

    backend = loader(request, cache)
    assert isinstance(backend, cls)
    record, described, namespace = backend.model_record("m"), backend.describe(), backend.cache_namespace()
    assert record["name"] == "m" and record["kind"] and described["name"] == name
    json.dumps([record, described, namespace])  # all of it goes into results files and cache keys
    assert namespace == backend.cache_namespace()

    config = RunConfig(progress=False, batch_size=1)
    if "multiple_choice" in cls.task_types:
        requests, targets = mc_requests(backend.tokenizer)
        scores = backend.score_choices(requests, targets, config, "contract")
        assert [s.request for s in scores] == requests and all(isinstance(s, ChoiceScore) for s in scores)
        for score in scores:
            assert len(score.probabilities) == len(targets) and abs(sum(score.probabilities) - 1) < 1e-6
            assert score.prediction == best_letter(score.probabilities, "ABCD") and score.prompt_tokens > 0
        batched = backend.score_choices(requests, targets, RunConfig(progress=False, batch_size=3), "contract")
        assert [s.prediction for s in batched] == [s.prediction for s in scores]  # batch size changes nothing
        assert max(abs(a - b) for x, y in zip(batched, scores) for a, b in zip(x.probabilities, y.probabilities)) < 1e-5
        assert opened == [namespace]  # the cache was opened once, with the model's namespace
        before = backend.request_cache.counts()
        again = backend.score_choices(requests, targets, config, "contract")
        assert backend.request_cache.counts()["from_cache"] - before["from_cache"] == len(requests)
        assert [s.probabilities for s in again] == [s.probabilities for s in scores]
    else:
        with pytest.raises(EvalkitError):
            backend.score_choices(*mc_requests(backend.tokenizer), config, "contract")

    texts = ["用一句话介绍你自己。", "List three colours.", "1, 2, 3,"]
    if "generation" in cls.task_types:
        generations, timing = backend.generate(texts, chat=False, max_new_tokens=8, stop=("\n\n",), config=config,
                                               label="contract")
        assert len(generations) == 3 and all(isinstance(g, Generation) for g in generations)
        for generation in generations:
            assert isinstance(generation.text, str) and generation.finish in ("eos", "stop", "length")
            assert 0 <= generation.new_tokens <= 8 and "\n\n" not in generation.text
        assert timing["new_tokens"] == sum(g.new_tokens for g in generations) and timing["generate_s"] >= 0
        again, _ = backend.generate(texts, chat=False, max_new_tokens=8, stop=("\n\n",), config=config, label="contract")
        assert [g.text for g in again] == [g.text for g in generations]
    else:
        with pytest.raises(EvalkitError):
            backend.generate(texts, chat=False, max_new_tokens=8, stop=(), config=config, label="contract")

    documents = load_documents(resolve_tasks("perplexity_default")[0].spec)[0][:2]
    if "perplexity" in cls.task_types:
        window, stride = backend.rolling_window(64, 32)
        rows = backend.loglikelihood_rolling(documents, window, stride, config)
        assert [r["source_index"] for r in rows] == [d.index for d in documents]
        for row in rows:
            assert row["predicted_tokens"] == row["document_tokens"] - 1 and row["nll_sum"] > 0
        summary = perplexity_summary(rows, window, stride)
        assert summary["documents"] == 2 and summary["perplexity"] > 1
    else:
        with pytest.raises(EvalkitError):
            backend.loglikelihood_rolling(documents, 64, 32, config)


def test_openai_backend_and_result_types_import_without_torch():
    code = ("import sys; import evalkit.backends.openai_api, evalkit.backends.outputs, evalkit.backends.fake; "
            "from evalkit.backends import backend_class; backend_class('openai'); backend_class('fake'); "
            "from evalkit.cli import build_parser; build_parser(); "
            "assert 'torch' not in sys.modules, 'torch was imported'")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr


def test_commands_never_branch_on_the_backend_name():
    import re

    found = [f"{path.name}:{number}" for path in sorted((REPO / "evalkit" / "commands").glob("*.py"))
             for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
             if re.search(r"backend\s*(==|!=|in)\s*[\"'(\[]", line)]
    assert not found, f"backend-specific branches in commands/: {found}"


def test_backend_arg_reaches_the_backend_and_unknown_keys_are_one_line(capsys, tmp_path):
    from tests.helpers import run_cli

    common = ["run", "--tasks", "cmmlu:agronomy", "--limit", "3", "--no-progress", "--no-store", "--backend", "fake"]
    outputs = {}
    for seed in ("0", "7"):
        code, out, err = run_cli(capsys, *common, "--model", "m", "--backend-arg", f"seed={seed}",
                                 "--output-dir", str(tmp_path / seed))
        assert code == 0, err
        (results,) = (tmp_path / seed).glob("*/results_*.json")
        recorded = json.loads(results.read_text())
        assert recorded["backend"] == {"name": "fake", "seed": int(seed)}
        outputs[seed] = recorded["model"]["weights_sha256"]
    assert outputs["0"] != outputs["7"]  # another seed is another (fake) model
    code, _, err = run_cli(capsys, *common, "--model", "m", "--backend-arg", "temperature=1")
    assert code == 2 and err.strip().splitlines() == [
        "evalkit: error: --backend-arg temperature: not an option of --backend fake; it takes seed"]
    code, _, err = run_cli(capsys, *common, "--model", "m", "--backend-arg", "seed=-1")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "seed" in err
    code, _, err = run_cli(capsys, *common, "--model", "m", "--backend-arg", "seed")
    assert code == 2 and "use key=value" in err
