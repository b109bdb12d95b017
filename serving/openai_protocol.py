"""The OpenAI-compatible wire format: request bodies to our requests, results to responses.

Pure functions and pydantic models, with no web framework and no Ray, so they are tested alone.
"""

from __future__ import annotations

import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt

from serving.llm import ModelInfo
from serving.types import ChatMessage, LLMError, LLMRequest, LLMResult, new_request_id


class ProtocolError(LLMError):
    """A request body that this server cannot honour."""


class _Body(BaseModel):
    # Clients send fields we do not use (user, logprobs=False, ...): accept and ignore them.
    model_config = ConfigDict(extra="allow")


class JsonSchemaSpec(_Body):
    name: str = "answer"
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    strict: bool | None = None


class ResponseFormat(_Body):
    type: Literal["text", "json_object", "json_schema"] = "text"
    json_schema: JsonSchemaSpec | None = None


class ChatBody(_Body):
    model: str
    messages: list[dict[str, Any]]
    response_format: ResponseFormat | None = None
    max_tokens: StrictInt | None = None
    max_completion_tokens: StrictInt | None = None
    temperature: float | None = None
    top_p: float | None = None
    seed: StrictInt | None = None
    stop: str | list[str] | None = None
    n: StrictInt = 1
    stream: bool = False


class CompletionBody(_Body):
    model: str
    prompt: str | list[str]
    response_format: ResponseFormat | None = None
    max_tokens: StrictInt | None = 16
    temperature: float | None = None
    top_p: float | None = None
    seed: StrictInt | None = None
    stop: str | list[str] | None = None
    n: StrictInt = 1
    stream: bool = False
    echo: bool = False


MAX_STOP_STRINGS = 16  # vLLM takes any number; OpenAI, 4
MAX_PROMPTS = 64  # prompts in one completions body (each is a row of the batch)


def _stop(stop: str | list[str] | None) -> tuple[str, ...]:
    if stop is None:
        return ()
    stops = (stop,) if isinstance(stop, str) else tuple(stop)
    if len(stops) > MAX_STOP_STRINGS:
        raise ProtocolError(
            f"stop has {len(stops)} strings; at most {MAX_STOP_STRINGS} are accepted", param="stop"
        )
    return stops


def _common(body: ChatBody | CompletionBody) -> None:
    if body.stream:
        raise ProtocolError("stream=true is not supported by this server", param="stream")
    if body.n != 1:
        raise ProtocolError("only n=1 is supported", param="n")


def _message_text(message: dict[str, Any], index: int) -> ChatMessage:
    role = message.get("role")
    if role == "developer":
        role = "system"
    if role not in ("system", "user", "assistant"):
        raise ProtocolError(f"messages[{index}].role {role!r} is not supported", param="messages")
    content = message.get("content")
    if isinstance(content, list):  # content parts: text ones only
        parts_ok = all(
            isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)
            for p in content
        )
        if not parts_ok:
            raise ProtocolError(
                f'messages[{index}].content parts must be {{"type": "text", "text": ...}}'
                " objects (this server reads text only)",
                param="messages",
            )
        content = "".join(p["text"] for p in content)
    if not isinstance(content, str):
        raise ProtocolError(f"messages[{index}].content must be text", param="messages")
    return ChatMessage(role=role, content=content)


def schema_of(response_format: ResponseFormat | None) -> dict[str, Any] | None:
    """The JSON schema a ``response_format`` asks for, if any."""
    if response_format is None or response_format.type == "text":
        return None
    if response_format.type == "json_object":
        return {"type": "object"}
    if response_format.json_schema is None or response_format.json_schema.schema_ is None:
        raise ProtocolError(
            "response_format.json_schema.schema is required for type json_schema",
            param="response_format",
        )
    return response_format.json_schema.schema_


CHAT_MAX_TOKENS = 256  # a chat body's max_tokens when it gives none


def chat_max_tokens_given(body: ChatBody) -> bool:
    """Whether a chat body sets its max_tokens (or max_completion_tokens): then it must fit the
    context; without, the answer may take what the context leaves (as vLLM's server)."""
    return body.max_completion_tokens is not None or body.max_tokens is not None


def chat_request(
    body: ChatBody, adapter: str | None, default_max_tokens: int = CHAT_MAX_TOKENS
) -> LLMRequest:
    """Our request for an OpenAI chat completion body (``default_max_tokens`` when it sets
    none)."""
    _common(body)
    if not body.messages:
        raise ProtocolError("messages must not be empty", param="messages")
    messages = tuple(_message_text(m, i) for i, m in enumerate(body.messages))
    max_tokens = next(
        (n for n in (body.max_completion_tokens, body.max_tokens) if n is not None),
        default_max_tokens,
    )  # a 0 given is refused as such, not read as "unset"
    return LLMRequest(
        messages=messages,
        json_schema=schema_of(body.response_format),
        adapter=adapter,
        max_tokens=max_tokens,
        temperature=1.0 if body.temperature is None else body.temperature,
        top_p=1.0 if body.top_p is None else body.top_p,
        seed=body.seed,
        stop=_stop(body.stop),
        purpose="http.chat",
    )


def completion_requests(body: CompletionBody, adapter: str | None) -> list[LLMRequest]:
    """Our requests (one per prompt) for an OpenAI completion body."""
    _common(body)
    if body.echo:
        raise ProtocolError("echo=true is not supported", param="echo")
    prompts = [body.prompt] if isinstance(body.prompt, str) else list(body.prompt)
    if not prompts:
        raise ProtocolError("prompt must not be empty", param="prompt")
    if len(prompts) > MAX_PROMPTS:
        raise ProtocolError(
            f"prompt has {len(prompts)} prompts; at most {MAX_PROMPTS} are accepted in one body",
            param="prompt",
        )
    return [
        LLMRequest(
            prompt=p,
            json_schema=schema_of(body.response_format),
            adapter=adapter,
            max_tokens=16 if body.max_tokens is None else body.max_tokens,
            temperature=1.0 if body.temperature is None else body.temperature,
            top_p=1.0 if body.top_p is None else body.top_p,
            seed=body.seed,
            stop=_stop(body.stop),
            purpose="http.completion",
        )
        for p in prompts
    ]


def _usage(results: list[LLMResult]) -> dict[str, Any]:
    prompt = sum(r.prompt_tokens for r in results)
    completion = sum(r.completion_tokens for r in results)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": sum(r.cached_tokens for r in results)},
    }


def chat_response(result: LLMResult, model: str) -> dict[str, Any]:
    """The OpenAI chat completion object for one result."""
    return {
        "id": f"chatcmpl-{result.request_id}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": result.text},
                "finish_reason": result.finish_reason,
                "logprobs": None,
            }
        ],
        "usage": _usage([result]),
    }


def completion_response(results: list[LLMResult], model: str) -> dict[str, Any]:
    """The OpenAI text completion object for results (one choice each)."""
    return {
        "id": f"cmpl-{results[0].request_id if results else new_request_id()}",
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {"index": i, "text": r.text, "finish_reason": r.finish_reason, "logprobs": None}
            for i, r in enumerate(results)
        ],
        "usage": _usage(results),
    }


def models_response(info: ModelInfo) -> dict[str, Any]:
    """The OpenAI model list: the base model first, then every adapter."""
    created = int(time.time())
    data = [{"id": info.base_model, "object": "model", "created": created, "owned_by": "simulacra"}]
    data += [
        {
            "id": name,
            "object": "model",
            "created": created,
            "owned_by": "simulacra",
            "parent": info.base_model,
        }
        for name in info.adapters
    ]
    return {"object": "list", "data": data}


def error_body(
    message: str, error_type: str, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    """An OpenAI-style error body."""
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}


def failed_result_error(results: list[LLMResult]) -> LLMResult | None:
    """The first failed result, if any (an engine failure is answered with HTTP 500)."""
    return next((r for r in results if not r.ok), None)
