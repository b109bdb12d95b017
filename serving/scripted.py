"""A scripted LLM: canned answers behind the LLM interface, for tests of the logic around it.

Deterministic and model-free. Answers come from a rule function or from a list of rules; a
dict answer is sent as JSON; with a schema the answer is validated as a real engine validates
it, so a canned invalid answer comes back as an error row.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from serving.schema import check_request_schema, parse_and_validate
from serving.types import LLMError, LLMRequest, LLMResult

Answer = str | dict[str, Any] | list[Any] | Exception
"""Text, a JSON value (dumped), or an exception (an error row; an LLMError is raised; a
ConnectionError or TimeoutError is the backend failing: a row marked ``backend_error``)."""
Matcher = Callable[[LLMRequest], bool] | str
"""A predicate, or a string equal to the request's purpose or found in its text."""
Rule = tuple[Matcher, Answer | Callable[[LLMRequest], Answer]]


def request_text(request: LLMRequest) -> str:
    """The prompt, or the chat messages' contents joined by newlines."""
    return request.text()


def _matches(matcher: Matcher, request: LLMRequest) -> bool:
    if isinstance(matcher, str):
        return matcher == request.purpose or matcher in request_text(request)
    return bool(matcher(request))


class ScriptedLLM:
    """Answers requests from rules; records what it was asked.

    Args:
        rules: a function from a request to its answer, or a list of ``(matcher, answer)``
            rules tried in order; an answer may itself be a function of the request.
        default: the answer when no rule matches; ``None`` makes that an error row.

    An :class:`~serving.types.LLMError` answer (or an invalid schema) makes the whole call
    raise, as the service refuses such a request outright; any other exception answer becomes
    an error row, marked ``backend_error`` for a ``ConnectionError`` or ``TimeoutError`` (a
    server that cannot be reached or does not answer, as the engines mark it). Token counts are
    whitespace-separated words.
    """

    def __init__(
        self,
        rules: Callable[[LLMRequest], Answer] | Sequence[Rule],
        default: Answer | None = None,
    ) -> None:
        self._rules = rules
        self._default = default
        self.calls: list[LLMRequest] = []
        self.batch_sizes: list[int] = []

    def answer_for(self, request: LLMRequest) -> Answer:
        """The scripted answer to one request."""
        if callable(self._rules):
            return self._rules(request)
        for matcher, answer in self._rules:
            if _matches(matcher, request):
                return answer(request) if callable(answer) else answer
        if self._default is None:
            return LookupError(
                f"no scripted rule matches request {request.request_id} "
                f"(purpose {request.purpose!r})"
            )
        return self._default

    async def generate(self, requests: Sequence[LLMRequest]) -> list[LLMResult]:
        self.calls.extend(requests)  # every call counts, refused ones included
        self.batch_sizes.append(len(requests))
        for request in requests:
            check_request_schema(request)
        answers = [self.answer_for(r) for r in requests]
        for answer in answers:
            if isinstance(answer, LLMError):
                raise answer
        return [self._result(r, a, len(requests)) for r, a in zip(requests, answers, strict=True)]

    @staticmethod
    def _result(request: LLMRequest, answer: Answer, batch_size: int) -> LLMResult:
        prompt_tokens = len(request_text(request).split())
        if isinstance(answer, Exception):
            return LLMResult.failure(
                request,
                f"{type(answer).__name__}: {answer}",
                prompt_tokens=prompt_tokens,
                batch_size=batch_size,
                backend_error=isinstance(answer, ConnectionError | TimeoutError),
            )
        text = answer if isinstance(answer, str) else json.dumps(answer)
        parsed, error = None, None
        if request.json_schema is not None:
            parsed, error = parse_and_validate(text, request.json_schema)
        return LLMResult(
            request_id=request.request_id,
            text=text,
            parsed=parsed,
            prompt_tokens=prompt_tokens,
            completion_tokens=len(text.split()),
            finish_reason="stop" if error is None else "error",
            batch_size=batch_size,
            adapter=request.adapter,
            error=error,
        )
