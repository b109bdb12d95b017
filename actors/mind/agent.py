"""A generative agent: perceive -> remember -> reflect -> react -> plan -> act (spec section 8).

Plain Python: the world and the host actor call ``step``; the model is reached only through the
:class:`~serving.llm.LLM` interface and memory only through :class:`Memory`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from actors.mind import schemas
from actors.mind.dialogue import (
    Conversation,
    chat_record,
    decide_reaction,
    may_talk,
    next_utterance,
    relationship_summary,
    summarize_chat,
)
from actors.mind.events import Action, Observation
from actors.mind.importance import clamp, score_importance
from actors.mind.memory import Memory
from actors.mind.perception import perceive
from actors.mind.persona import Persona
from actors.mind.planning import SLEEP, DayPlan, decompose, plan_day, replan
from actors.mind.prompting import Asker, Question, persona_block
from actors.mind.records import MemoryRecord, expiry
from actors.mind.reflection import ReflectionTrigger, reflect, reflect_after_chat
from actors.mind.settings import MindSettings
from serving.llm import LLM

INTERVIEW_SCHEMA = schemas.obj(answer=schemas.sentence(300))
PROBE_SCHEMA = schemas.obj(knows=schemas.boolean(), what=schemas.sentence(200))
KNOWS_SCHEMA = schemas.obj(knows=schemas.boolean())  # a probe that asks only yes or no
_PROBE_FORMS = {  # say_what: the schema and the answer's form shown in the prompt
    True: (PROBE_SCHEMA, '{"knows": <true or false>, "what": <what you know, in one sentence>}'),
    False: (KNOWS_SCHEMA, '{"knows": <true or false>}'),
}


def minute_of_day(now: datetime) -> int:
    return now.hour * 60 + now.minute


class Agent:
    """One agent's mind.

    Args:
        persona: who the agent is.
        llm: the model (any :class:`LLM`: the Serve client, an engine, a scripted model).
        memory: the agent's memory stream.
        settings: every number of the spec.
        seed: the run's seed (with the agent's name, it seeds every request and every record
            id: the public async methods give new records ids from the agent's
            :class:`~actors.mind.records.RecordIds`).
    """

    def __init__(
        self,
        persona: Persona,
        llm: LLM,
        memory: Memory,
        settings: MindSettings | None = None,
        seed: int = 0,
    ) -> None:
        self.persona = persona
        self.memory = memory
        self.settings = settings or MindSettings()
        self.asker = Asker(llm, persona.name, adapter=persona.adapter, seed=seed)
        self.trigger = ReflectionTrigger(self.settings.reflection.threshold)
        self.plan: DayPlan | None = None
        self.action: Action | None = None
        self.action_until: datetime | None = None
        self.recent: deque[tuple[str, str]] = deque(maxlen=self.settings.perception.retention)
        self.last_talked: dict[str, datetime] = {}
        self.known_places: list[str] = list(persona.known_places)
        self.reflections = 0
        self._now: datetime | None = None  # the last game time the agent was told

    def _saw(self, now: datetime) -> None:
        if self._now is None or now > self._now:
            self._now = now

    @property
    def name(self) -> str:
        return self.persona.name

    @property
    def asleep(self) -> bool:
        return self.action is not None and self.action.description == SLEEP

    async def step(self, observations: list[Observation], now: datetime) -> list[Action]:
        """One step: returns the agent's new action(s); none while it continues the current one."""
        self._saw(now)
        return await self._step(observations, now)

    async def _step(self, observations: list[Observation], now: datetime) -> list[Action]:
        actions: list[Action] = []
        replan_needed = False
        if self.plan is None or self.plan.date != now.date():
            await self._plan_day(now)
            replan_needed = True

        perceived = perceive(observations, list(self.recent), self.settings.perception)
        new_records = await self._remember_observations(perceived, now)
        if self.trigger.add(new_records):
            await reflect(
                self.asker,
                self.memory,
                self.persona,
                now,
                self.settings.reflection,
                self.settings.importance,
            )
            self.trigger.reset()
            self.reflections += 1

        reaction = await self._react(perceived, now)
        if reaction is not None:
            return [reaction]
        if replan_needed or self.action_until is None or now >= self.action_until:
            actions.append(await self._next_action(now))
        return actions

    @property
    def talking(self) -> bool:
        """Talking, or still in the game minutes of a conversation just finished (``chat_done``
        until ``action_until``, relative to the last game time the agent was told)."""
        if self.action is None:
            return False
        if self.action.kind == "talk":
            return True
        return (
            self.action.kind == "chat_done"
            and self.action_until is not None
            and self._now is not None
            and self._now < self.action_until
        )

    def learn_places(self, places: Sequence[str]) -> None:
        """Adds places to those the agent knows (and plans with); known ones are ignored."""
        known = list(self.persona.known_places)
        new = [p for p in dict.fromkeys(places) if p not in known]
        if not new:
            return
        self.persona = replace(self.persona, known_places=(*known, *new))
        self.known_places = list(self.persona.known_places)

    async def _react(self, perceived: list[Observation], now: datetime) -> Action | None:
        """On perceiving another agent: talk, wait for it, or carry on (spec section 7)."""
        for o in perceived:
            if o.kind != "agent" or o.subject == self.name:
                continue
            text = o.description.lower()
            if not may_talk(
                self.asleep,
                self.talking,
                o.asleep or "sleeping" in text or "asleep" in text,
                o.talking or "chatting" in text or "conversation" in text,
                now,
                self.last_talked.get(o.subject),
                self.settings.dialogue,
                self.settings.step_seconds,
            ):
                continue
            decision = await decide_reaction(
                self.asker,
                self.memory,
                self.persona,
                o.subject,
                o.description,
                now,
                self.settings.retrieval,
            )
            if decision == "continue":
                continue
            if decision == "talk":
                return Action(
                    "talk", self.name, f"talk with {o.subject}", o.location, target=o.subject
                )
            return Action("wait", self.name, f"wait for {o.subject}", o.location, target=o.subject)
        return None

    async def speak(
        self, other: str, transcript: tuple[tuple[str, str], ...], now: datetime
    ) -> tuple[str, bool]:
        """This agent's next line in a conversation with ``other`` (and whether it ends it)."""
        self._saw(now)
        return await self._speak(other, transcript, now)

    async def _speak(
        self, other: str, transcript: tuple[tuple[str, str], ...], now: datetime
    ) -> tuple[str, bool]:
        relationship = await relationship_summary(
            self.asker,
            self.memory,
            self.persona,
            other,
            "talking with " + self.name,
            now,
            self.settings.retrieval.relationship_k,
        )
        return await next_utterance(
            self.asker,
            self.memory,
            self.persona,
            other,
            transcript,
            relationship,
            now,
            self.settings.retrieval,
            self.settings.dialogue,
        )

    def speaker(self, now: datetime) -> _AgentSpeaker:
        """This agent as a :class:`~actors.mind.dialogue.Speaker` for a conversation at ``now``."""
        return _AgentSpeaker(self, now)

    async def summarize(self, other: str, transcript: Sequence[tuple[str, str]]) -> str:
        """This agent's one-line summary of its conversation with ``other``."""
        return await summarize_chat(
            self.asker, self.persona, other, tuple((s, u) for s, u in transcript)
        )

    async def finish_conversation(self, conversation: Conversation, now: datetime) -> Action:
        """Stores the chat, reflects on it, takes its summary as the current action, re-plans."""
        self._saw(now)
        return await self._finish_conversation(conversation, now)

    async def seed_memories(
        self, memories: Sequence[tuple[str, int | None]], now: datetime
    ) -> list[MemoryRecord]:
        """Stores ``(description, importance)`` observations at ``now`` (e.g. a scenario's
        starting memories). An importance of None is scored by the model (all in one batch);
        a given one is clamped to 1..10. Returns the stored records."""
        self._saw(now)
        if not memories:
            return []
        unscored = [text for text, importance in memories if importance is None]
        scores = iter(
            await score_importance(self.asker, self.persona, unscored, self.settings.importance)
            if unscored
            else []
        )
        records = [
            self.memory.record(
                "observation",
                text,
                now,
                next(scores)
                if importance is None
                else clamp(importance, self.settings.importance.fallback),
            )
            for text, importance in memories
        ]
        return await self.memory.remember(records)

    async def _finish_conversation(self, conversation: Conversation, now: datetime) -> Action:
        (importance,) = await score_importance(
            self.asker, self.persona, [conversation.summary], self.settings.importance, kind="chat"
        )
        record = chat_record(self.memory, conversation, now, importance)
        await self.memory.remember([record])
        await reflect_after_chat(
            self.asker,
            self.memory,
            self.persona,
            record,
            now,
            self.settings.reflection,
            self.settings.importance,
        )
        for other in conversation.participants:
            if other != self.name:
                self.last_talked[other] = now
        location = self.action.location if self.action is not None else ""
        self.action = Action(
            "chat_done",
            self.name,
            conversation.summary,
            location,
            duration_minutes=conversation.minutes,
        )
        self.action_until = now + timedelta(minutes=conversation.minutes)
        if self.plan is not None:
            self.plan = await replan(
                self.asker,
                self.persona,
                self.plan,
                minute_of_day(self.action_until)
                if self.action_until.date() == now.date()
                else 1440,
                f"talked with {', '.join(conversation.participants)}: {conversation.summary}",
                self.settings.planning,
            )
        return self.action

    async def _plan_day(self, now: datetime) -> None:
        yesterday = self.plan.describe(self.name) if self.plan is not None else ""
        self.plan = await plan_day(
            self.asker, self.persona, now.date(), yesterday, self.settings.planning
        )
        record = self.memory.record(
            "plan",
            self.plan.describe(self.name),
            now,
            self.settings.importance.plan,
            expires=expiry("plan", now, self.settings.reflection.expiry_days),
        )
        await self.memory.remember([record])

    async def _remember_observations(
        self, perceived: list[Observation], now: datetime
    ) -> list[MemoryRecord]:
        if not perceived:
            return []
        descriptions = [o.description for o in perceived]
        scores = await score_importance(
            self.asker, self.persona, descriptions, self.settings.importance
        )
        records = [
            self.memory.record("observation", d, now, s)
            for d, s in zip(descriptions, scores, strict=True)
        ]
        for o in perceived:
            self.recent.append(o.event_key)
        await self.memory.remember(records)
        return records

    async def _next_action(self, now: datetime) -> Action:
        assert self.plan is not None
        minute = minute_of_day(now)
        self.plan = await decompose(
            self.asker, self.persona, self.plan, minute, self.settings.planning
        )
        entry = self.plan.entry_at(minute)
        remaining = entry.start + entry.duration - minute
        self.action = Action(
            "activity", self.name, entry.activity, entry.location, duration_minutes=remaining
        )
        self.action_until = now + timedelta(minutes=remaining)
        return self.action

    async def interview(self, question: str, now: datetime) -> tuple[str, list[str]]:
        """Answers ``question`` in character from retrieved memories.

        Returns:
            The answer and the ids of the records it was grounded in.
        """
        return await self._interview(question, now)

    async def _interview(self, question: str, now: datetime) -> tuple[str, list[str]]:
        answer, used = await self._ask_from_memory("interview", question, now, INTERVIEW_SCHEMA)
        return (answer["answer"] if answer else ""), used

    async def probe(
        self, question: str, now: datetime, *, say_what: bool = True
    ) -> tuple[bool, str, list[str]]:
        """A yes-or-no interview (a measure's probe): does the agent know what ``question`` asks,
        and (with ``say_what``) what; decoded under :data:`PROBE_SCHEMA` (or
        :data:`KNOWS_SCHEMA`, a few tokens, for the many probes whose answer is only yes or no).

        Returns:
            Whether it says it knows, what it says (``""`` without ``say_what``), and the ids of
            the records it was shown.
        """
        schema, form = _PROBE_FORMS[say_what]
        answer, used = await self._ask_from_memory("probe", question, now, schema, answer_form=form)
        if not answer:
            return False, "", used
        return bool(answer["knows"]), str(answer.get("what", "")), used

    async def _ask_from_memory(
        self,
        template: str,
        question: str,
        now: datetime,
        schema: dict[str, Any],
        **more: str,
    ) -> tuple[dict[str, Any] | None, list[str]]:
        found = (await self.memory.retrieve([question], now))[question]
        statements = "\n".join(f"- {r.description}" for r in found) or "- (nothing)"
        fields = {"persona": persona_block(self.persona), "memories": statements, **more}
        answer = await self.asker.ask_one(
            Question(template, {**fields, "question": question}, schema, template)
        )
        return answer, [r.id for r in found]

    def get_state(self) -> dict[str, Any]:
        """Plain data: everything of the agent that changes during a run (memory aside)."""
        return {
            "persona": self.persona.to_dict(),
            "asker": self.asker.get_state(),
            "trigger": self.trigger.get_state(),
            "plan": None if self.plan is None else self.plan.to_dict(),
            "action": None if self.action is None else self.action.to_dict(),
            "action_until": None if self.action_until is None else self.action_until.isoformat(),
            "recent": [list(k) for k in self.recent],
            "last_talked": {k: v.isoformat() for k, v in self.last_talked.items()},
            "known_places": list(self.known_places),
            "reflections": self.reflections,
            **self.memory.get_state(),
            "now": None if self._now is None else self._now.isoformat(),
        }

    def set_state(self, state: dict[str, Any]) -> None:
        self.persona = Persona.from_dict(state["persona"])
        self.asker.set_state(state["asker"])
        self.trigger.set_state(state["trigger"])
        self.plan = None if state["plan"] is None else DayPlan.from_dict(state["plan"])
        self.action = None if state["action"] is None else Action.from_dict(state["action"])
        until = state["action_until"]
        self.action_until = None if until is None else datetime.fromisoformat(until)
        self.recent = deque(
            (tuple(k) for k in state["recent"]), maxlen=self.settings.perception.retention
        )
        self.last_talked = {k: datetime.fromisoformat(v) for k, v in state["last_talked"].items()}
        self.known_places = list(state["known_places"])
        self.reflections = int(state["reflections"])
        self.memory.set_state(state)
        now = state.get("now")
        self._now = None if now is None else datetime.fromisoformat(now)


class _AgentSpeaker:
    def __init__(self, agent: Agent, now: datetime) -> None:
        self._agent = agent
        self._now = now

    @property
    def name(self) -> str:
        return self._agent.name

    async def speak(self, other: str, transcript: tuple[tuple[str, str], ...]) -> tuple[str, bool]:
        return await self._agent.speak(other, tuple(transcript), self._now)
