"""Protective experiences (spec section 1, step 5): one per profile paragraph.

A person subtly provokes the character with questions about things that do not exist in its
world or era; the character shows ignorance or confusion, in character. The script is parsed by
:func:`characters.script_parser.parse_script` (a background is not required: the scene's own is
replaced); the scene's location is "A room", its background (the training status) "<Name> is
chatting with a person.", and every turn is speaking.
"""

from __future__ import annotations

from typing import Any

from characters.data import Scene
from characters.profile import Profile
from characters.scenes import TEMPERATURE, TOP_P, TURN_CHARS, derived_seed, source, turns_schema
from characters.script_parser import parse_script
from characters.templates import render
from serving.json_schemas import answer_tokens, choice, obj, sentence
from serving.types import LLMRequest

PURPOSE = "character.protective"
LOCATION = "A room"
PERSON = "Person"
_SEED_SALT = 7_777_777

TURNS = 8
"""The fewest turns asked of a protective scene."""


def status(name: str) -> str:
    return f"{name} is chatting with a person."


def protective_schema(name: str, max_tokens: int) -> dict[str, Any]:
    """A structured protective scene: turns of the person and the character, all speaking; as
    many as fit in ``max_tokens``, at least :data:`TURNS` (or as many as fit, at least 3)."""
    turn = obj(role=choice([PERSON, name]), content=sentence(TURN_CHARS))
    schema = turns_schema(turn, {}, max_tokens, 3)
    turns = schema["properties"]["turns"]
    turns["minItems"] = min(TURNS, turns["maxItems"])
    return schema


def protective_request(
    profile: Profile, paragraph: int, seed: int, max_tokens: int = 2048, structured: bool = True
) -> LLMRequest:
    """The protective scene of one paragraph: ``structured`` under a JSON schema (see
    :func:`protective_schema`), else free text in the script layout."""
    schema = None
    fields: dict[str, Any] = {
        "source": source(profile, paragraph),
        "name": profile.name,
        "person": PERSON,
        "turns": TURNS,
    }
    if structured:
        schema = protective_schema(profile.name, max_tokens)
        turns = schema["properties"]["turns"]
        fields["turns"] = f"{turns['minItems']} to {turns['maxItems']}"
        max_tokens = max(max_tokens, answer_tokens(schema))
    messages = render("protective_script" if structured else "protective", **fields)
    return LLMRequest.chat(
        list(messages),
        json_schema=schema,
        max_tokens=max_tokens,
        temperature=TEMPERATURE,
        top_p=TOP_P,
        seed=derived_seed(seed, _SEED_SALT, paragraph),
        purpose=PURPOSE,
    )


def parse_protective(text: str, name: str, source: str) -> tuple[Scene | None, str | None]:
    """The protective scene of a script, or ``(None, reason)``."""
    scene, reason = parse_script(
        text,
        name,
        setting="Protective",
        location=LOCATION,
        source=source,
        require_background=False,
    )
    if scene is None:
        return None, reason
    scene["background"] = status(name)
    scene["dialogue"] = [{**turn, "action": "speaking"} for turn in scene["dialogue"]]
    return scene, None
