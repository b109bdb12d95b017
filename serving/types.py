"""The values that cross the LLM interface: requests, results and errors.

They are frozen dataclasses of plain types so that they cross Ray actor and Serve boundaries,
go into msgpack recordings and come back unchanged. Nothing here imports ray, torch or vllm.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, cast

Role = Literal["system", "user", "assistant"]
FinishReason = Literal["stop", "length", "error"]


def new_request_id() -> str:
    """A fresh, unique request id."""
    return uuid.uuid4().hex


@dataclass(frozen=True)
class ChatMessage:
    """One chat turn."""

    role: Role
    content: str


MAX_SEED = 2**63  # seeds are in [0, MAX_SEED): every engine's generator takes them


@dataclass(frozen=True)
class LLMRequest:
    """One generation request.

    Exactly one of ``messages`` (chat, rendered with the model's chat template) or ``prompt``
    (raw text) is set. With ``json_schema`` the answer is constrained to that schema while it is
    decoded and validated against it on return. ``adapter`` names a LoRA adapter (a character);
    ``None`` is the base model.
    """

    messages: tuple[ChatMessage, ...] | None = None
    prompt: str | None = None
    json_schema: dict[str, Any] | None = None
    adapter: str | None = None
    max_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    request_id: str = field(default_factory=new_request_id)
    purpose: str = ""

    def __post_init__(self) -> None:
        """Refuses a request no engine can run (:class:`InvalidRequestError`, naming the
        parameter): checked here, once, so a bad request fails alone, before any batch."""

        def bad(param: str, message: str) -> InvalidRequestError:
            return InvalidRequestError(message, self.request_id, param=param)

        if (self.messages is None) == (self.prompt is None):
            raise bad("messages", "exactly one of 'messages' or 'prompt' must be set")
        if isinstance(self.max_tokens, bool) or self.max_tokens < 1:
            raise bad("max_tokens", f"max_tokens must be an integer >= 1, not {self.max_tokens}")
        if not math.isfinite(self.temperature) or self.temperature < 0:
            raise bad("temperature", f"temperature must be finite and >= 0, not {self.temperature}")
        if not (math.isfinite(self.top_p) and 0 < self.top_p <= 1):
            raise bad("top_p", f"top_p must be in (0, 1], not {self.top_p}")
        if self.seed is not None and not 0 <= self.seed < MAX_SEED:
            raise bad("seed", f"seed must be in [0, 2**63), not {self.seed}")
        texts = [("prompt", self.prompt)] if self.prompt is not None else []
        texts += [(f"messages[{i}].content", m.content) for i, m in enumerate(self.messages or ())]
        texts += [(f"stop[{i}]", s) for i, s in enumerate(self.stop)]
        for where, text in texts:
            try:
                text.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise bad(where, f"{where} is not text: {exc.reason} at {exc.start}") from None

    @classmethod
    def chat(cls, messages: list[tuple[str, str]] | list[ChatMessage], **kwargs: Any) -> LLMRequest:
        """Builds a chat request from ``(role, content)`` pairs or messages."""
        msgs = tuple(
            m if isinstance(m, ChatMessage) else ChatMessage(cast(Role, m[0]), m[1])
            for m in messages
        )
        return cls(messages=msgs, **kwargs)

    def text(self) -> str:
        """The prompt, or the chat messages' contents joined by newlines."""
        if self.prompt is not None:
            return self.prompt
        return "\n".join(m.content for m in self.messages or ())

    def to_dict(self) -> dict[str, Any]:
        """Plain data (msgpack- and JSON-safe)."""
        d = asdict(self)
        d["messages"] = None if self.messages is None else [asdict(m) for m in self.messages]
        d["stop"] = list(self.stop)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LLMRequest:
        """Inverse of :meth:`to_dict`."""
        d = dict(d)
        msgs = d.pop("messages", None)
        messages = None if msgs is None else tuple(ChatMessage(**m) for m in msgs)
        d["stop"] = tuple(d.get("stop") or ())
        return cls(messages=messages, **d)

    def content_key(self) -> tuple[Any, ...]:
        """What the answer depends on: everything but ``request_id`` and ``purpose``."""
        import json

        d = self.to_dict()
        d.pop("request_id")
        d.pop("purpose")
        return (json.dumps(d, sort_keys=True, separators=(",", ":")),)


@dataclass(frozen=True)
class LLMResult:
    """The answer to one request.

    ``parsed`` holds the validated JSON value when the request had a schema. ``finish_reason``
    is ``"error"`` when the request failed, and then ``error`` says why; a failed row never
    hides its siblings' answers. ``engine_s`` is the wall time of the engine call that executed
    this row; ``latency_s`` is from the request's arrival at the engine (queueing included);
    ``batch_size`` is how many rows that engine call executed together.

    ``backend_error`` marks a failed row whose failure is the backend's, not the request's or
    the answer's: the server could not be reached, did not answer in time, answered HTTP 5xx or
    429, or the service's transport failed. Such a row says nothing about the request, and is
    worth sending again once the backend is back (``serving.wrappers.BackendGuardLLM``); a row
    whose answer did not validate, or that the server refused (4xx), is not marked.
    """

    request_id: str
    text: str
    parsed: Any = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: FinishReason = "stop"
    latency_s: float = 0.0
    engine_s: float = 0.0
    batch_size: int = 1
    adapter: str | None = None
    error: str | None = None
    cached_tokens: int = 0
    queue_s: float = 0.0
    queue_length: int = 0
    backend_error: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LLMResult:
        """Inverse of :meth:`to_dict`; a dict written before a field existed (an older
        recording) gets that field's default."""
        return cls(**d)

    @classmethod
    def failure(cls, request: LLMRequest, error: str, **kwargs: Any) -> LLMResult:
        """A result standing for a failed request."""
        return cls(
            request_id=request.request_id,
            text="",
            finish_reason="error",
            adapter=request.adapter,
            error=error,
            **kwargs,
        )


class LLMError(Exception):
    """Base of the errors the LLM service raises for a request it refuses."""

    status_code = 400
    error_type = "invalid_request_error"
    code: str | None = None  # the OpenAI error body's ``code``

    def __init__(self, message: str, request_id: str | None = None, param: str | None = None):
        super().__init__(message if request_id is None else f"request {request_id}: {message}")
        self.message = message
        self.request_id = request_id
        self.param = param

    def __reduce__(self) -> tuple[Any, ...]:  # keeps the fields across Ray's serialisation
        return (type(self), (self.message, self.request_id, self.param))


class UnknownAdapterError(LLMError):
    """The request names an adapter the service does not have."""

    status_code = 404
    error_type = "not_found_error"

    def __init__(
        self,
        name: str,
        available: tuple[str, ...] | list[str] = (),
        request_id: str | None = None,
        param: str | None = "model",
    ):
        self.name = name
        self.available = tuple(available)
        shown = ", ".join(self.available) or "(none)"
        super().__init__(
            f"unknown adapter {name!r}; adapters available: {shown}", request_id, param
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.name, self.available, self.request_id, self.param))


class InvalidRequestError(LLMError, ValueError):
    """A request's parameter that no engine can run with (refused before any batching)."""


class ContextLengthError(InvalidRequestError):
    """A request that does not fit the model's context: its prompt, or, over HTTP, its prompt
    and ``max_tokens`` together (refused as vLLM's OpenAI server does, not cut short)."""

    code = "context_length_exceeded"


class RequestLimitError(InvalidRequestError):
    """A request beyond one of the server's limits (``EngineConfig.max_request_bytes``,
    ``max_tokens_limit``)."""

    code = "request_limit_exceeded"


class InvalidAdapterNameError(LLMError):
    """An adapter name that could be mistaken for a path."""


class InvalidSchemaError(LLMError):
    """A JSON schema that is not a valid schema (refused before any decoding)."""


class ModelNotFoundError(LLMError):
    """A model folder or adapter folder that does not exist."""

    status_code = 404
    error_type = "not_found_error"
