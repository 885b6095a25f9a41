"""`evalkit serve` with the real model, driven by the official `openai` SDK and by lm-evaluation-harness's
own request shapes (issue 25 points 7, 14, 15; issue 29 point 7): models.retrieve, content-part chat,
streamed usage, token-id prompts, OpenAI's logprobs=0 shape, half characters never served, the key
read from a file (never in argv), one access-log line per request."""

from __future__ import annotations

import json
import time

import httpx
import openai
import psutil
import pytest

from tests.conftest import SMOLLM2
from tests.test_api_backend import serving

KEY = "sdk-test-key-from-file"
POEM = [{"role": "user", "content": "用中文写一首关于春天的诗"}]  # SmolLM2 writes Chinese in 2-token characters


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    key_file = tmp_path_factory.mktemp("key") / "api-key"
    key_file.write_text(KEY + "\n")
    log: list[str] = []
    with serving(SMOLLM2, "--api-key-file", str(key_file), "--max-tokens-limit", "64", log=log) as url:
        yield url, log


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server[0], api_key=KEY, max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    from evalkit.models.embedded import resolve_embedded

    return AutoTokenizer.from_pretrained(str(resolve_embedded(SMOLLM2)[0]))


def test_models_retrieve(client):
    model = client.models.retrieve(SMOLLM2)
    assert model.id == SMOLLM2 and model.object == "model"
    with pytest.raises(openai.NotFoundError) as caught:
        client.models.retrieve("no-such-model")
    assert caught.value.body["code"] == "model_not_found" and "no-such-model" in caught.value.body["message"]


def test_key_from_file_is_required_and_not_in_argv(server):
    url, _ = server
    assert httpx.get(f"{url}/models", timeout=10).status_code == 401
    assert httpx.get(f"{url}/models", headers={"Authorization": f"Bearer {KEY}"}, timeout=10).status_code == 200
    servers = [p for p in psutil.process_iter(["cmdline"]) if "serve" in (p.info["cmdline"] or [])
               and "--api-key-file" in (p.info["cmdline"] or [])]
    assert servers and all(KEY not in " ".join(p.info["cmdline"]) for p in servers)


def test_content_parts_chat_equals_string_content(client):
    parts = [{"type": "text", "text": "What is the capital"}, {"type": "text", "text": " of France?"}]
    asked = {"model": SMOLLM2, "temperature": 0, "max_tokens": 12}
    by_parts = client.chat.completions.create(messages=[{"role": "user", "content": parts}], **asked)
    by_string = client.chat.completions.create(
        messages=[{"role": "user", "content": "What is the capital of France?"}], **asked)
    assert by_parts.choices[0].message.content == by_string.choices[0].message.content
    assert by_parts.choices[0].message.content
    assert by_parts.system_fingerprint and by_parts.system_fingerprint == by_string.system_fingerprint
    image = {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(messages=[{"role": "user", "content": [parts[0], image]}], **asked)
    assert "image_url" in caught.value.body["message"] and caught.value.body["param"] == "messages.0.content.1"


def streamable(client, kind: str):
    """(create, text of a chunk, text of a whole answer) for chat or legacy completions."""
    asked = {"model": SMOLLM2, "temperature": 0, "max_tokens": 10}
    if kind == "chat":
        return (lambda **extra: client.chat.completions.create(messages=POEM, **asked, **extra),
                lambda chunk: chunk.choices[0].delta.content or "", lambda whole: whole.choices[0].message.content)
    return (lambda **extra: client.completions.create(prompt="The capital of France is", **asked, **extra),
            lambda chunk: chunk.choices[0].text, lambda whole: whole.choices[0].text)


@pytest.mark.parametrize("kind", ["chat", "completions"])
def test_stream_include_usage_ends_with_usage_chunk(client, kind):
    create, text, whole_text = streamable(client, kind)
    whole = create()
    chunks = list(create(stream=True, stream_options={"include_usage": True}))
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None
    assert last.usage.model_dump() == whole.usage.model_dump()  # the same prompt and completion tokens
    assert all(chunk.usage is None for chunk in chunks[:-1])
    assert "".join(text(chunk) for chunk in chunks[:-1]) == whole_text(whole)
    plain = list(create(stream=True))  # without stream_options: no usage chunk, as OpenAI
    assert plain[-1].choices and all(chunk.usage is None for chunk in plain)


def test_token_id_prompts_give_the_text_prompts_logprobs(server, tokenizer):
    """lm-eval 0.4.13 local-completions' loglikelihood payload (its _create_payload, default model_args)."""
    url, _ = server
    texts = ["Question: What is 2 + 2?\nAnswer: 4", "春天来了，花开了。"]
    ids = [tokenizer(text)["input_ids"] for text in texts]
    auth = {"Authorization": f"Bearer {KEY}"}
    payload = {"model": SMOLLM2, "temperature": 0, "max_tokens": 1, "logprobs": 1, "seed": 1234, "echo": True}
    by_ids = httpx.post(f"{url}/completions", json={**payload, "prompt": ids}, headers=auth, timeout=120)
    by_text = httpx.post(f"{url}/completions", json={**payload, "prompt": texts}, headers=auth, timeout=120)
    assert by_ids.status_code == 200, by_ids.text
    for choice_ids, choice_text, prompt in zip(by_ids.json()["choices"], by_text.json()["choices"], ids):
        logprobs = choice_ids["logprobs"]
        assert logprobs["token_logprobs"] == choice_text["logprobs"]["token_logprobs"]
        assert len(logprobs["token_logprobs"]) == len(prompt) + 1  # echo: prompt, then the one generated token
        assert logprobs["token_logprobs"][0] is None and all(isinstance(t, dict) for t in logprobs["top_logprobs"][1:])
    single = httpx.post(f"{url}/completions", json={**payload, "prompt": ids[0]}, headers=auth, timeout=120)
    assert single.json()["choices"][0]["logprobs"]["token_logprobs"] == by_ids.json()["choices"][0]["logprobs"]["token_logprobs"]
    outside = httpx.post(f"{url}/completions", json={**payload, "prompt": [[1, 2, len(tokenizer) + 5]]}, headers=auth,
                         timeout=30)
    assert outside.status_code == 400 and outside.json()["error"]["param"] == "prompt"


def test_logprobs_zero_has_openais_shape(client):
    response = client.completions.create(model=SMOLLM2, prompt="The capital of France is", max_tokens=3,
                                         temperature=0, logprobs=0)
    logprobs = response.choices[0].logprobs
    assert logprobs.top_logprobs is None  # OpenAI: the chosen tokens' log-probabilities only
    assert len(logprobs.tokens) == len(logprobs.token_logprobs) == len(logprobs.text_offset) == 3
    assert all(value <= 0 for value in logprobs.token_logprobs)
    assert logprobs.text_offset[0] == len("The capital of France is")  # offsets count from the prompt's start


def test_answer_cut_inside_a_character_ends_without_u_fffd(client, tokenizer):
    """SmolLM2 writes 春 as two tokens: max_tokens=1 stops half-way through it."""
    prompt = tokenizer.apply_chat_template(POEM, tokenize=False, add_generation_prompt=True)
    first = client.completions.create(model=SMOLLM2, prompt=prompt, max_tokens=1, temperature=0, logprobs=0,
                                      extra_body={"add_special_tokens": False})
    assert first.choices[0].logprobs.tokens == ["\ufffd"]  # the one token is half a character...
    assert first.choices[0].text == ""  # ...and is not served as U+FFFD
    whole = client.chat.completions.create(model=SMOLLM2, messages=POEM, temperature=0, max_tokens=8)
    assert whole.choices[0].message.content.startswith("春")
    for max_tokens in (1, 3):
        cut = client.chat.completions.create(model=SMOLLM2, messages=POEM, temperature=0, max_tokens=max_tokens)
        text = cut.choices[0].message.content
        assert "\ufffd" not in text and whole.choices[0].message.content.startswith(text)
        assert cut.choices[0].finish_reason == "length"
        streamed = list(client.chat.completions.create(model=SMOLLM2, messages=POEM, temperature=0,
                                                       max_tokens=max_tokens, stream=True))
        assert "".join(c.choices[0].delta.content or "" for c in streamed) == text


def test_one_access_log_line_per_request_without_the_key(server):
    url, log = server
    marker = f"/v1/models/log-marker-{time.time_ns()}"
    httpx.get(url.removesuffix("/v1") + marker, headers={"Authorization": f"Bearer {KEY}"}, timeout=10)
    answered = httpx.post(f"{url}/completions", headers={"Authorization": f"Bearer {KEY}"}, timeout=60,
                          json={"model": SMOLLM2, "prompt": "Hello there", "max_tokens": 2, "temperature": 0}).json()
    deadline = time.time() + 10
    while time.time() < deadline and not any("POST /v1/completions 200" in line for line in log[-5:]):
        time.sleep(0.1)
    mine = [line for line in log if marker in line]
    assert len(mine) == 1 and " 404 " in mine[0] and "req-" in mine[0]
    completion = [line for line in log if "POST /v1/completions 200" in line][-1]
    usage = answered["usage"]
    assert f"prompt_tokens={usage['prompt_tokens']} completion_tokens={usage['completion_tokens']}" in completion
    assert "ms req-" in completion
    assert not any(KEY in line for line in log)
    assert not any("Traceback" in line for line in log)


def test_unsupported_fields_sent_through_the_sdk_are_named(client):
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=SMOLLM2, messages=POEM, max_tokens=2,
                                       response_format={"type": "json_object"})
    assert caught.value.body["param"] == "response_format" and "response_format" in caught.value.body["message"]
    answered = client.chat.completions.create(model=SMOLLM2, messages=POEM, max_tokens=2, temperature=0,
                                              presence_penalty=0, frequency_penalty=0, n=1, seed=1234,
                                              stop=["\n\n"], user="someone")  # the "off" values are accepted
    assert answered.choices[0].message.content is not None
    assert json.loads(answered.model_dump_json())["usage"]["completion_tokens"] >= 1
