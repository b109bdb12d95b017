"""The prompts: one stable persona prefix per agent, budgets that fit, constraints in schemas."""

from __future__ import annotations

import asyncio
import json
import random
import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from actors.mind.agent import Agent
from actors.mind.dialogue import Conversation, decide_reaction, relationship_schema
from actors.mind.memory import Memory
from actors.mind.memory_store import InMemoryStore
from actors.mind.persona import Persona
from actors.mind.planning import WAKE_HOURS, places_of
from actors.mind.prompting import PROMPTS_DIR, load_prompt, persona_block
from actors.mind.reflection import reflect
from actors.mind.settings import MindSettings
from characters.judge import DIMENSIONS, judge_request
from characters.profile import parse_profile
from characters.protective import protective_request
from characters.scenes import SCENE_TYPES, completion_request, extraction_request
from serving.json_schemas import answer_chars, answer_tokens
from serving.schema import parse_and_validate
from serving.scripted import ScriptedLLM
from serving.types import ChatMessage, LLMRequest
from tests.fakes import HashEmbedder, random_valid_answers, sample_from_schema

START = datetime(2024, 3, 4, 7, 0)
PERSONA = Persona(
    "Elin Marrow",
    44,
    "warm, patient, organised",
    "goes to bed around 10:30pm, wakes up around 6:30am",
    current_situation="teaches the older class at the primary school",
    daily_requirements=("teach from 8:45am to 3:15pm", "mark pupils' work in the evening"),
    home="Marrow House:kitchen",
    known_places=("Saltmere Primary School:classroom", "Lighthouse Park:pier"),
    relationships={"Tobias Marrow": "her husband", "Priya Mehta": "her headteacher"},
)
OTHER = "Tobias Marrow"
PURPOSES = {
    "plan_day",
    "plan_hourly",
    "plan_decompose",
    "plan_revise",
    "importance",
    "reaction",
    "relationship",
    "dialogue",
    "chat_summary",
    "chat_reflection",
    "reflection_questions",
    "reflection_insights",
    "interview",
    "probe",
}


def make_agent(persona: Persona = PERSONA, seed: int = 0) -> tuple[Agent, ScriptedLLM]:
    llm = ScriptedLLM(random_valid_answers(seed))
    settings = MindSettings.from_preset("paper")
    memory = Memory(persona.name, InMemoryStore(dim=64), HashEmbedder(), settings.retrieval)
    return Agent(persona, llm, memory, settings, seed=seed), llm


async def every_purpose(agent: Agent) -> None:
    """Asks the model once for each of the mind's purposes, as one agent."""
    now = START
    await agent.seed_memories([("Tobias said the engine is running rough", None)], now)
    await agent.step([], now + timedelta(hours=2))  # the day plan, hourly, decomposition
    await decide_reaction(
        agent.asker,
        agent.memory,
        agent.persona,
        OTHER,
        "mending nets",
        now,
        agent.settings.retrieval,
    )
    await agent.speak(OTHER, ((OTHER, "Morning, love."),), now)
    talk = ((OTHER, "Morning, love."), (agent.name, "Good morning."))
    summary = await agent.summarize(OTHER, talk)
    await agent.finish_conversation(
        Conversation((agent.name, OTHER), talk, summary, now, 2), now + timedelta(hours=2)
    )
    await agent.seed_memories([(f"Elin saw gull number {i}", 5) for i in range(6)], now)
    settings = agent.settings
    await reflect(
        agent.asker, agent.memory, agent.persona, now, settings.reflection, settings.importance
    )
    await agent.interview("What are you doing today?", now + timedelta(hours=3))
    await agent.probe("Do you know of Tobias Marrow?", now + timedelta(hours=3))
    await agent.probe("Do you know of Priya Mehta?", now + timedelta(hours=3), say_what=False)


async def test_every_purpose_begins_with_the_same_persona_message() -> None:
    agent, llm = make_agent()
    await every_purpose(agent)
    assert {r.purpose for r in llm.calls} == PURPOSES
    expected = ChatMessage("system", persona_block(PERSONA))
    for request in llm.calls:
        assert request.messages is not None and len(request.messages) == 2
        assert request.messages[0] == expected, request.purpose  # byte for byte
        assert request.messages[1].role == "user"
    block = expected.content
    assert block.startswith("You are Elin Marrow.")
    for part in ("Tobias Marrow: her husband", "Lighthouse Park:pier", "wakes up around 6:30am"):
        assert part in block
    # the persona is the whole system message: nothing of any purpose comes before it
    assert len({r.messages[0].content for r in llm.calls if r.messages}) == 1


def test_every_prompt_file_has_the_persona_alone_as_its_system_section() -> None:
    for path in PROMPTS_DIR.glob("*.txt"):
        assert load_prompt(path.stem).system.template.strip() == "$persona", path


async def test_each_purpose_budget_fits_its_longest_answer() -> None:
    agent, llm = make_agent()
    await every_purpose(agent)
    for request in llm.calls:
        assert request.json_schema is not None
        longest = answer_tokens(request.json_schema)
        assert longest <= request.max_tokens <= 1.25 * longest + 16, request.purpose
    budgets = {r.purpose: r.max_tokens for r in llm.calls}
    assert budgets["importance"] <= 24 and budgets["reaction"] <= 32  # were 32 and 32
    assert budgets["interview"] <= 320 and budgets["dialogue"] <= 256  # were 300 and 256
    # a decomposition's budget follows the steps asked for (it was 40 tokens a step + 64, up
    # to 4096, whatever the block)
    for r in llm.calls:
        if r.purpose == "plan_decompose" and r.json_schema is not None:
            steps = r.json_schema["maxItems"]
            assert r.max_tokens <= steps * 90 + 8


def test_answer_tokens_counts_the_longest_compact_answer() -> None:
    importance = {
        "type": "object",
        "properties": {"importance": {"type": "integer", "minimum": 1, "maximum": 10}},
        "required": ["importance"],
    }
    assert answer_chars(importance) == len('{"importance": 10}')  # as xgrammar writes it
    assert 8 <= answer_tokens(importance) <= 24
    line = {"type": "string", "pattern": "^[a-z]{1,100}$"}
    assert answer_chars(line) == 102 and answer_tokens(line) == 2 + 100 + 1
    with pytest.raises(ValueError):
        answer_tokens({"type": "string"})
    with pytest.raises(ValueError):
        answer_tokens({"type": "array", "items": {"type": "boolean"}})


def _schemas_by_purpose(calls: list[LLMRequest]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for r in calls:
        assert r.json_schema is not None
        out.setdefault(r.purpose, []).append(r.json_schema)
    return out


async def test_schemas_carry_the_constraints_a_small_model_breaks() -> None:
    agent, llm = make_agent()
    await every_purpose(agent)
    schemas = _schemas_by_purpose(llm.calls)
    places = list(places_of(PERSONA))
    # the day plan: the wake-up hour is an enum
    (day,) = schemas["plan_day"]
    assert day["properties"]["wake_hour"]["enum"] == list(WAKE_HOURS)
    # hourly: a fixed-length array (the hours implied by position), places an enum
    (hourly,) = schemas["plan_hourly"]
    assert hourly["minItems"] == hourly["maxItems"] == 24 - agent.plan.wake_hour  # type: ignore[union-attr]
    assert hourly["items"]["properties"]["location"]["enum"] == places
    activity = hourly["items"]["properties"]["activity"]["pattern"]
    assert re.fullmatch(activity, "taking the boat out") and re.fullmatch(activity, "Pip's lunch")
    for junk in ("1. wake up", "...(the full", " ", "work.crazy.b.513"):
        assert not re.fullmatch(activity, junk), junk  # words only, a letter first
    # decomposition: exactly the steps asked for, minutes an enum of multiples of the step
    for schema in schemas["plan_decompose"]:
        assert schema["minItems"] == schema["maxItems"]
        assert schema["items"]["properties"]["minutes"]["enum"] == [5, 10, 15]
    for schema in schemas["plan_revise"]:
        assert schema["items"]["properties"]["location"]["enum"] == places
        assert all(m % 5 == 0 for m in schema["items"]["properties"]["minutes"]["enum"])
    # reflection: exactly the questions asked, each ending with "?"; cited numbers in 1..N
    (questions,) = schemas["reflection_questions"]
    q = questions["properties"]["questions"]
    assert q["minItems"] == q["maxItems"] == agent.settings.reflection.questions
    assert re.fullmatch(q["items"]["pattern"], "What matters to me?")
    assert not re.fullmatch(q["items"]["pattern"], "what matters to me")
    insights_requests = [r for r in llm.calls if r.purpose == "reflection_insights"]
    assert insights_requests
    for request in insights_requests:
        assert request.messages is not None and request.json_schema is not None
        shown = re.findall(r"^(\d+)\. ", request.messages[1].content, re.MULTILINE)
        item = request.json_schema["properties"]["insights"]["items"]
        cited = item["properties"]["evidence"]["items"]
        assert (cited["minimum"], cited["maximum"]) == (1, len(shown))
        n = agent.settings.reflection.insights_per_question
        assert request.json_schema["properties"]["insights"]["minItems"] == n


def test_relationship_and_utterance_patterns() -> None:
    schema: dict[str, Any] = relationship_schema(PERSONA.name, OTHER)
    pattern = schema["properties"]["summary"]["pattern"]
    for good in ("Tobias is my husband.", "Tobias Marrow fixes boats!", "Elin loves Tobias."):
        assert re.fullmatch(pattern, good), good
    for bad in ("He is my husband.", "Tobias is my husband", "Tobiasz is here."):
        assert not re.fullmatch(pattern, bad), bad
    from actors.mind.dialogue import UTTERANCE_SCHEMA

    line = UTTERANCE_SCHEMA["properties"]["utterance"]["pattern"]
    assert re.fullmatch(line, "Good morning, Tobias!")
    for bad in ("Elin: good morning.", "good morning.", "Good morning"):
        assert not re.fullmatch(line, bad), bad


@pytest.mark.parametrize("seed", range(5))
async def test_random_valid_answers_to_the_new_schemas_validate(seed: int) -> None:
    agent, llm = make_agent(seed=seed)
    await every_purpose(agent)
    rng = random.Random(seed)
    for request in llm.calls:
        assert request.json_schema is not None
        answer = sample_from_schema(request.json_schema, rng)
        _, error = parse_and_validate(json.dumps(answer), request.json_schema)
        assert error is None, (request.purpose, answer, error)
    assert sum(agent.asker.stats.failures.values()) == 0


async def test_places_enum_follows_learned_places() -> None:
    agent, llm = make_agent()
    agent.learn_places(["The Anchor Pub:bar"])
    await agent.step([], START)
    (hourly,) = [r for r in llm.calls if r.purpose == "plan_hourly"]
    assert hourly.json_schema is not None
    enum = hourly.json_schema["items"]["properties"]["location"]["enum"]
    assert "The Anchor Pub:bar" in enum
    assert hourly.messages is not None and "The Anchor Pub:bar" in hourly.messages[0].content


# -- the character pipeline ---------------------------------------------------------------------

PROFILE = parse_profile(
    "# Socrates\n\nSocrates was a philosopher of Athens.\n\nHe was tried and put to death.\n"
)


def test_generations_of_one_paragraph_share_their_system_message() -> None:
    scene = {"type": "Chat", "location": "Agora", "background": "Noon in the agora."}
    requests = [
        extraction_request(PROFILE, 0, 0, 3, 0),
        completion_request(PROFILE, 0, scene, 0, 0, 0),
        protective_request(PROFILE, 0, 0),
    ]
    systems = {r.messages[0] for r in requests if r.messages}
    assert len(systems) == 1
    (system,) = systems
    assert system.role == "system" and "Socrates was a philosopher of Athens." in system.content
    assert "put to death" not in system.content  # only its own paragraph
    other = extraction_request(PROFILE, 1, 1, 3, 0)
    assert other.messages is not None and other.messages[0] != system
    assert "Status: Noon in the agora." in requests[1].text()


def test_extraction_asks_for_exactly_n_scenes_of_known_types() -> None:
    request = extraction_request(PROFILE, 0, 0, 4, 0)
    assert request.json_schema is not None
    scenes = request.json_schema["properties"]["scenes"]
    assert scenes["minItems"] == scenes["maxItems"] == 4
    assert scenes["items"]["properties"]["type"]["enum"] == list(SCENE_TYPES)
    assert request.max_tokens == answer_tokens(request.json_schema)


def test_the_judge_shares_its_prefix_across_dimensions() -> None:
    requests = [
        judge_request(d, "Socrates", "A philosopher.", "Q?", "An answer.") for d in DIMENSIONS
    ]
    assert len({r.messages[0] for r in requests if r.messages}) == 1
    users = [r.messages[1].content for r in requests if r.messages]
    head = users[0].split("Judge one thing only.")[0]
    assert head and all(u.startswith(head) for u in users)  # the answer, then the criterion
    for r in requests:
        assert r.json_schema is not None and r.max_tokens == answer_tokens(r.json_schema)


def test_structured_scripts_parse_and_only_the_character_thinks(tmp_path: Path) -> None:
    from characters.build import build_character
    from characters.data import read_scenes
    from characters.scenes import render_script, script_schema

    schema = script_schema("Socrates", 2048)
    turns = schema["properties"]["turns"]
    assert turns["minItems"] == 3 and turns["maxItems"] > 3
    assert answer_tokens(schema) <= 2048
    other, mine = (
        {"role": "Meno", "action": "thinking", "content": "Hm."},
        {"role": "Socrates", "action": "thinking", "content": "Hm."},
    )
    answer = {"background": "Noon.", "turns": [mine, mine, other]}
    assert parse_and_validate(json.dumps(answer), schema)[1] is not None  # Meno cannot think
    answer["turns"] = [mine, mine, {**other, "action": "speaking"}]
    assert parse_and_validate(json.dumps(answer), schema)[1] is None
    assert render_script(answer).startswith("Background: Noon.\n\nSocrates (thinking)\nHm.")
    small = script_schema("Socrates", 64)  # too small a budget still asks for 3 turns
    assert small["properties"]["turns"]["minItems"] == 3
    summary = asyncio.run(
        build_character(PROFILE, ScriptedLLM(random_valid_answers(1)), tmp_path, 2, 4, seed=3)
    )
    counts = summary["counts"]
    assert counts["raw_scenes"] == 8 and counts["parsed"] == 8 and counts["protective"] == 2
    scenes = read_scenes(tmp_path / "generated.json")
    assert all(
        t["action"] == "speaking" or t["role"] == "Socrates" for s in scenes for t in s["dialogue"]
    )
