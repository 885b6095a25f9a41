"""The request bodies ``evalkit serve`` accepts, every number and string bounded before any work starts.

A field the server does not implement is refused by name (400) unless it holds its "off" value, so a
client never gets an answer that silently ignored what it asked for; an unknown field is refused too,
as OpenAI refuses one.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from evalkit.serve.errors import ApiError

MAX_LOGPROBS = 20
MAX_STOPS = 4  # OpenAI's limit
MAX_STOP_CHARS = 64  # transformers' stop-string tables grow with the longest stop string (vocab x length)
INT64 = 2**63
BIAS = Annotated[float, Field(ge=-100, le=100)]
LogitBias = dict[Annotated[str, Field(pattern=r"^\s*\d{1,10}\s*$")], BIAS] | None

# Fields of OpenAI's API this server does not implement, with the values that ask for nothing (accepted).
NOT_IMPLEMENTED: dict[str, tuple] = {
    "presence_penalty": (None, 0), "frequency_penalty": (None, 0), "repetition_penalty": (None, 1),
    "best_of": (None, 1), "suffix": (None, ""), "response_format": (None, {"type": "text"}),
    "tools": (None, []), "tool_choice": (None, "none"), "parallel_tool_calls": (None, True, False),
    "functions": (None, []), "function_call": (None, "none"), "top_logprobs": (None, 0),
    "audio": (None,), "modalities": (None, ["text"]), "prediction": (None,), "reasoning_effort": (None,),
    "web_search_options": (None,), "store": (None, False), "metadata": (None, {}), "top_k": (None, -1, 0),
    "min_p": (None, 0), "service_tier": (None, "auto", "default"), "guided_json": (None,), "guided_regex": (None,),
}
IGNORED = {"user"}  # an end-user identifier for the provider's abuse monitoring: nothing to do here


class Request(BaseModel):
    model_config = ConfigDict(extra="allow", allow_inf_nan=False)
    model: str = Field(max_length=1024)
    temperature: float = Field(1.0, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    n: int = Field(1, ge=1, le=128)
    stream: bool = False
    stop: str | list[str] | None = None
    logit_bias: LogitBias = Field(None, max_length=1024)
    seed: int | None = Field(None, ge=-INT64, lt=INT64)  # int64, as vLLM takes it
    stream_options: StreamOptions | None = None

    @field_validator("stop")
    @classmethod
    def bounded_stops(cls, stop):
        stops = [stop] if isinstance(stop, str) else stop or []
        if len(stops) > MAX_STOPS or any(not 0 < len(s) <= MAX_STOP_CHARS for s in stops):
            raise ValueError(f"at most {MAX_STOPS} stop strings of 1..{MAX_STOP_CHARS} characters each "
                             f"(got {len(stops)}, the longest {max(map(len, stops), default=0)} characters)")
        return stop

    def refuse_unimplemented(self) -> None:
        for field, value in (self.model_extra or {}).items():
            if field in IGNORED:
                continue
            if field not in NOT_IMPLEMENTED:
                raise ApiError(400, f"unrecognized request field {field!r}; evalkit serve does not take it",
                               "unsupported_field", field)
            if value not in NOT_IMPLEMENTED[field]:
                off = " or ".join("null" if v is None else repr(v) for v in NOT_IMPLEMENTED[field])
                raise ApiError(400, f"{field!r} is not supported by evalkit serve (only {off} is accepted); "
                                    f"remove it from the request", "unsupported_field", field)
        if self.stream_options is not None and not self.stream:
            raise ApiError(400, "stream_options is only allowed with stream: true", "invalid_request", "stream_options")


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    include_usage: bool = False


class CompletionRequest(Request):
    prompt: str | list[str] | list[int] | list[list[int]]
    max_tokens: int | None = Field(16, ge=0, lt=2**31)
    logprobs: int | None = Field(None, ge=0, le=MAX_LOGPROBS)
    echo: bool = False
    add_special_tokens: bool = True  # as vLLM: False for prompts that already carry a chat template's tokens

    @field_validator("prompt", mode="before")
    @classmethod
    def prompt_shape(cls, prompt):
        def token_ids(value) -> bool:
            return isinstance(value, list) and bool(value) and all(type(t) is int and 0 <= t < 2**31 for t in value)

        if isinstance(prompt, str) or (isinstance(prompt, list) and prompt and all(isinstance(p, str) for p in prompt)):
            return prompt
        if token_ids(prompt) or (isinstance(prompt, list) and prompt and all(token_ids(p) for p in prompt)):
            return prompt
        raise ValueError("give a string, a list of strings, a list of token ids or a list of token-id lists "
                         "(none empty; ids are non-negative integers)")

    def prompts(self) -> list[str | list[int]]:
        """The prompts, one per choice: a string, or one prompt's token ids."""
        prompt = self.prompt
        if isinstance(prompt, str):
            return [prompt]
        return list(prompt) if isinstance(prompt[0], (str, list)) else [list(prompt)]


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str = Field(max_length=64)
    text: str | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: str | list[ContentPart]

    def text(self, index: int) -> str:
        if isinstance(self.content, str):
            return self.content
        for number, part in enumerate(self.content):
            if part.type == "text" and part.text is None:
                raise ApiError(400, f"messages[{index}].content[{number}]: a text part needs its 'text'",
                               "invalid_request", f"messages.{index}.content.{number}")
            if part.type != "text":
                raise ApiError(400, f"messages[{index}].content[{number}]: content part type {part.type!r} is not "
                                    "supported; this server takes text parts only", "unsupported_content",
                               f"messages.{index}.content.{number}")
        return "".join(part.text for part in self.content)


class ChatRequest(Request):
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1, lt=2**31)
    max_completion_tokens: int | None = Field(None, ge=1, lt=2**31)
    logprobs: bool = False


Request.model_rebuild()
CompletionRequest.model_rebuild()
ChatRequest.model_rebuild()


def stop_list(stop: Any) -> list[str]:
    return [stop] if isinstance(stop, str) else list(stop or [])
