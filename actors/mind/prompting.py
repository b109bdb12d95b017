"""Prompt templates (one file per step, named fields) and the mind's one way to ask the model.

A template file ``prompts/<name>.txt`` has a ``### system`` and a ``### user`` section; fields are
``$name`` (``string.Template``). Every step's system section is ``$persona`` alone: the agent's
persona block (:func:`persona_block`, from ``prompts/blocks/persona.txt``), the same text for
every purpose, so that all of one agent's requests share a long stable prefix that an engine
with prefix caching computes once. What changes (memories, transcript) comes next, in the user
message, and the task last.

Every question carries a JSON schema; its ``max_tokens`` is, unless given, the longest answer the
schema admits (:func:`serving.json_schemas.answer_tokens`). An answer that fails is asked once
more with another seed, then given up (``None``) and counted, so that a bad answer never crashes
a run.
"""

from __future__ import annotations

import string
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from actors.mind.persona import Persona
from serving.json_schemas import answer_tokens
from serving.llm import LLM
from serving.prompt_files import read_sections
from serving.seeds import derive
from serving.types import ChatMessage, LLMRequest

PROMPTS_DIR = Path(__file__).parent / "prompts"
BLOCKS_DIR = PROMPTS_DIR / "blocks"
DEFAULT_MAX_TOKENS = 256


@dataclass(frozen=True)
class PromptTemplate:
    name: str
    system: string.Template
    user: string.Template

    @property
    def fields(self) -> set[str]:
        found: set[str] = set()
        for t in (self.system, self.user):
            found.update(t.get_identifiers())
        return found

    def render(self, **fields: Any) -> tuple[ChatMessage, ...]:
        missing = self.fields - set(fields)
        if missing:
            raise KeyError(f"prompt {self.name!r}: missing fields {sorted(missing)}")
        extra = set(fields) - self.fields
        if extra:
            raise KeyError(f"prompt {self.name!r}: unknown fields {sorted(extra)}")
        values = {k: str(v) for k, v in fields.items()}
        return (
            ChatMessage("system", self.system.substitute(values).strip()),
            ChatMessage("user", self.user.substitute(values).strip()),
        )


@cache
def load_prompt(name: str) -> PromptTemplate:
    """Reads ``prompts/<name>.txt``."""
    system, user = read_sections(PROMPTS_DIR / f"{name}.txt")
    return PromptTemplate(name, system, user)


@cache
def _persona_template() -> string.Template:
    return string.Template((BLOCKS_DIR / "persona.txt").read_text(encoding="utf-8"))


def _lines(items: Any) -> str:
    return "\n".join(f"- {item}" for item in items) or "- (nobody yet)"


def persona_block(persona: Persona) -> str:
    """The agent's system message: who it is, whom and which places it knows.

    The same text for every purpose (it depends on the persona only), so one agent's requests
    share it as their prefix; the known places come last, as they grow during a run.
    """
    details = [f"Name: {persona.name} (age: {persona.age})", f"Innate traits: {persona.traits}"]
    details.append(f"Lifestyle: {persona.lifestyle}")
    if persona.current_situation:
        details.append(f"Currently: {persona.current_situation}")
    if persona.daily_requirements:
        details.append("Daily requirements: " + "; ".join(persona.daily_requirements))
    if persona.home:
        details.append(f"Home: {persona.home}")
    people = [f"{who}: {what}" for who, what in persona.relationships.items()]
    places = [p for p in dict.fromkeys((*persona.known_places, persona.home)) if p]
    return (
        _persona_template()
        .substitute(
            name=persona.name,
            details="\n".join(details),
            people=_lines(people),
            places="; ".join(places) or "(none yet)",
        )
        .strip()
    )


@dataclass(frozen=True)
class Question:
    """One thing to ask: a template, its fields, the answer's schema, and why (the purpose).

    ``max_tokens`` of ``None`` is the longest answer ``schema`` admits (or
    :data:`DEFAULT_MAX_TOKENS` for a schema with no longest answer).
    """

    prompt: str | PromptTemplate  # a template's name (prompts/<name>.txt) or the template
    fields: dict[str, Any]
    schema: dict[str, Any]
    purpose: str
    max_tokens: int | None = None
    temperature: float = 0.7

    @property
    def budget(self) -> int:
        """The request's ``max_tokens``."""
        if self.max_tokens is not None:
            return self.max_tokens
        try:
            return answer_tokens(self.schema)
        except ValueError:  # unbounded: an open string or array
            return DEFAULT_MAX_TOKENS


@dataclass
class AskStats:
    """Counts per purpose: calls, answers given up on (after the retry), retries."""

    calls: Counter[str] = field(default_factory=Counter)
    failures: Counter[str] = field(default_factory=Counter)
    retries: Counter[str] = field(default_factory=Counter)

    def get_state(self) -> dict[str, dict[str, int]]:
        return {
            "calls": dict(self.calls),
            "failures": dict(self.failures),
            "retries": dict(self.retries),
        }

    def set_state(self, state: dict[str, dict[str, int]]) -> None:
        self.calls = Counter(state["calls"])
        self.failures = Counter(state["failures"])
        self.retries = Counter(state["retries"])


class Asker:
    """Asks the model questions in one batch, as one agent (its adapter, its seed).

    Seeds come from the agent's seed and a counter that is part of the agent's state, so a
    resumed run asks exactly the same requests as an uninterrupted one.
    """

    def __init__(
        self, llm: LLM, agent_id: str, adapter: str | None = None, seed: int = 0, retries: int = 1
    ) -> None:
        self.llm = llm
        self.agent_id = agent_id
        self.adapter = adapter
        self.seed = seed
        self.retries = retries
        self.counter = 0
        self.stats = AskStats()

    def _seed(self) -> int:
        self.counter += 1
        return derive(self.seed, self.agent_id, self.counter, bits=32)

    def _request(self, q: Question) -> LLMRequest:
        return LLMRequest(
            messages=(
                q.prompt if isinstance(q.prompt, PromptTemplate) else load_prompt(q.prompt)
            ).render(**q.fields),
            json_schema=q.schema,
            adapter=self.adapter,
            max_tokens=q.budget,
            temperature=q.temperature,
            seed=self._seed(),
            purpose=q.purpose,
        )

    async def ask(self, questions: Sequence[Question]) -> list[Any | None]:
        """The parsed answer to each question, or ``None`` where it failed twice."""
        answers: list[Any | None] = [None] * len(questions)
        pending = list(range(len(questions)))
        for attempt in range(self.retries + 1):
            if not pending:
                break
            requests = [self._request(questions[i]) for i in pending]
            for i in pending:
                (self.stats.calls if attempt == 0 else self.stats.retries)[
                    questions[i].purpose
                ] += 1
            results = await self.llm.generate(requests)
            still = []
            for i, result in zip(pending, results, strict=True):
                if result.ok and result.parsed is not None:
                    answers[i] = result.parsed
                else:
                    still.append(i)
            pending = still
        for i in pending:
            self.stats.failures[questions[i].purpose] += 1
        return answers

    async def ask_one(self, question: Question) -> Any | None:
        (answer,) = await self.ask([question])
        return answer

    def get_state(self) -> dict[str, Any]:
        return {"counter": self.counter, "stats": self.stats.get_state()}

    def set_state(self, state: dict[str, Any]) -> None:
        self.counter = int(state["counter"])
        self.stats.set_state(state["stats"])
