"""What every engine does alike: refusing bad requests, encoding prompts, checking answers."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from serving.adapters import check_request_adapter
from serving.schema import check_request_schema, parse_and_validate
from serving.types import FinishReason, LLMRequest


def check_requests(requests: Sequence[LLMRequest], adapters: Iterable[str] | None) -> None:
    """Raises for the first request that must be refused before any decoding: an adapter not in
    ``adapters`` (not checked when they are not known, None), a schema that is not a JSON
    schema. The one check, made by the service before batching and by each engine."""
    names = None if adapters is None else tuple(adapters)
    for request in requests:
        if names is not None:
            check_request_adapter(request, names)
        check_request_schema(request)


def encode_prompt(tokenizer: Any, request: LLMRequest) -> list[int]:
    """A request's prompt as token ids: chat messages through the model's chat template (the
    template adds the special tokens), a plain prompt with the tokenizer's special tokens; an
    empty prompt is the BOS token (an engine needs one position)."""
    if request.messages is not None:
        messages = [{"role": m.role, "content": m.content} for m in request.messages]
        text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
    else:
        ids = list(tokenizer(request.prompt)["input_ids"])
    if not ids and tokenizer.bos_token_id is not None:
        ids = [tokenizer.bos_token_id]
    return ids


def checked_answer(
    request: LLMRequest, text: str, finish: FinishReason, error: str | None
) -> tuple[Any, FinishReason, str | None]:
    """The parsed answer of a constrained request (validated against its schema), and the
    finish reason and error after that check: a row whose answer does not validate fails."""
    parsed = None
    if error is None and request.json_schema is not None:
        parsed, error = parse_and_validate(text, request.json_schema)
    if error is not None:
        finish = "error"
    return parsed, finish, error
