"""Scene extraction and experience completion (spec section 1, steps 2 and 3): the requests.

Extraction asks, for one profile chunk, for exactly ``scenes_per_chunk`` scenes the chunk
supports, each of a known type, under a JSON schema (strings bounded by a pattern, the list by
``maxItems``, so that even a weak model's constrained answer ends and validates). Completion
asks, for one scene and its chunk, for a free-text script in the layout that
:mod:`characters.script_parser` reads, shown in the prompt. Both share the chunk's system
message (:func:`source`), so their requests share a prefix. Both sample at temperature 0.7,
top_p 0.95, with seeds derived from the build's seed, so a build's requests are the same every
time it runs (what lets a rerun answer them from its recording).
"""

from __future__ import annotations

from typing import Any, TypedDict

from characters.profile import Profile
from characters.script_parser import MIN_TURNS
from characters.templates import render, source_block
from serving.json_schemas import answer_tokens, array, choice, obj, sentence
from serving.json_schemas import text as bounded_text
from serving.types import LLMRequest, LLMResult

TEMPERATURE = 0.7
TOP_P = 0.95
EXTRACTION_PURPOSE = "character.scenes"
COMPLETION_PURPOSE = "character.experience"
SCENE_TYPES: tuple[str, ...] = (
    "Chat",
    "Debate",
    "Speech",
    "Lesson",
    "Quarrel",
    "Interview",
    "Meeting",
    "Negotiation",
    "Confession",
    "Monologue",
)
"""The kinds of scene an extraction may name (the paper's examples and their neighbours)."""
SCRIPT_WORDS = 1200
"""The length asked of a free-text script (spec: at least 1,200 words)."""
TURN_CHARS = 240
"""The longest line of a structured script (the paper's scenes: about 36 words a turn)."""
BACKGROUND_CHARS = 400
MAX_TURNS = 24
NAME_PATTERN = "^[A-Z][A-Za-z.'\\- ]{0,39}$"
"""Another character's name in a structured script."""


class SceneSeed(TypedDict):
    """One imagined scene, before its script is written."""

    type: str
    location: str
    background: str


def scenes_schema(scenes_per_chunk: int) -> dict[str, Any]:
    """Exactly ``scenes_per_chunk`` scenes, each of a known type."""
    scene = obj(
        type=choice(SCENE_TYPES),
        location=bounded_text(60),
        background=bounded_text(300),
    )
    return obj(scenes=array(scene, scenes_per_chunk, scenes_per_chunk))


def derived_seed(seed: int, *parts: int) -> int:
    """A stable per-request seed from the build's seed and the request's indices."""
    value = seed & 0xFFFFFFFF
    for part in parts:
        value = (value * 1_000_003 + part + 1) % 2_147_483_647
    return value


def source(profile: Profile, chunk: int) -> str:
    """The system message of every generation from paragraph ``chunk``."""
    return source_block(profile.name, profile.paragraphs[chunk])


def extraction_request(
    profile: Profile, chunk: int, prompt_index: int, scenes_per_chunk: int, seed: int
) -> LLMRequest:
    schema = scenes_schema(scenes_per_chunk)
    return LLMRequest.chat(
        list(
            render(
                "scene_extraction",
                source=source(profile, chunk),
                name=profile.name,
                n=scenes_per_chunk,
                types=", ".join(SCENE_TYPES),
            )
        ),
        json_schema=schema,
        max_tokens=answer_tokens(schema),
        temperature=TEMPERATURE,
        top_p=TOP_P,
        seed=derived_seed(seed, prompt_index),
        purpose=EXTRACTION_PURPOSE,
    )


def turns_schema(
    turn: dict[str, Any], fixed: dict[str, Any], max_tokens: int, least: int
) -> dict[str, Any]:
    """``fixed`` plus as many turns (at least ``least``) as fit in ``max_tokens``."""
    most = least
    while most < MAX_TURNS and answer_tokens(obj(**fixed, turns=array(turn, least, most + 1))) <= (
        max_tokens
    ):
        most += 1
    return obj(**fixed, turns=array(turn, least, most))


def script_schema(name: str, max_tokens: int) -> dict[str, Any]:
    """A structured script: a background, then turns; only ``name`` may think.

    As many turns as fit in ``max_tokens`` (at least the parser's minimum, whatever the
    budget: the request's ``max_tokens`` is then raised to fit them).
    """
    target = obj(
        role=choice([name]), action=choice(["speaking", "thinking"]), content=sentence(TURN_CHARS)
    )
    other = obj(
        role={"type": "string", "pattern": NAME_PATTERN},
        action=choice(["speaking"]),
        content=sentence(TURN_CHARS),
    )
    return turns_schema(
        {"anyOf": [target, other]},
        {"background": sentence(BACKGROUND_CHARS)},
        max_tokens,
        MIN_TURNS,
    )


def render_script(answer: dict[str, Any]) -> str:
    """A structured script in the layout :func:`characters.script_parser.parse_script` reads."""
    blocks = []
    if isinstance(answer.get("background"), str):
        blocks.append(f"Background: {answer['background'].strip()}")
    for turn in answer.get("turns") or []:
        if isinstance(turn, dict):
            role = str(turn.get("role", "")).strip()
            action = str(turn.get("action", "speaking")).strip()
            blocks.append(f"{role} ({action})\n{str(turn.get('content', '')).strip()}")
    return "\n\n".join(blocks) + "\n"


def script_text(result: LLMResult) -> str:
    """The script of a completion or protective result: its structured answer rendered, or its
    free text."""
    if isinstance(result.parsed, dict):
        return render_script(result.parsed)
    return result.text


def read_scene_seeds(result: LLMResult) -> list[SceneSeed]:
    """The scenes of an extraction answer (none for a failed one)."""
    if not result.ok or not isinstance(result.parsed, dict):
        return []
    seeds: list[SceneSeed] = []
    for item in result.parsed.get("scenes") or []:
        if isinstance(item, dict) and all(
            isinstance(item.get(k), str) for k in SceneSeed.__annotations__
        ):
            seeds.append(
                {
                    "type": item["type"].strip(),
                    "location": item["location"].strip(),
                    "background": item["background"].strip(),
                }
            )
    return seeds


def completion_request(
    profile: Profile,
    chunk: int,
    scene: SceneSeed,
    prompt_index: int,
    scene_index: int,
    seed: int,
    max_tokens: int = 2048,
    structured: bool = True,
) -> LLMRequest:
    """The script of one scene. ``structured``: under a JSON schema (a background, then turns
    of known speakers, as many as fit in ``max_tokens``), which even a small model's answer
    follows; else free text in the script layout, as the paper asks (at least 1,200 words)."""
    template = "experience_script" if structured else "experience_completion"
    fields: dict[str, Any] = {
        "source": source(profile, chunk),
        "name": profile.name,
        "type": scene["type"],
        "location": scene["location"],
        "background": scene["background"],
    }
    schema = None
    if structured:
        schema = script_schema(profile.name, max_tokens)
        turns = schema["properties"]["turns"]
        fields["turns"] = f"{turns['minItems']} to {turns['maxItems']}"
        max_tokens = max(max_tokens, answer_tokens(schema))
    else:
        fields["words"] = SCRIPT_WORDS
    return LLMRequest.chat(
        list(render(template, **fields)),
        json_schema=schema,
        max_tokens=max_tokens,
        temperature=TEMPERATURE,
        top_p=TOP_P,
        seed=derived_seed(seed, prompt_index, scene_index),
        purpose=COMPLETION_PURPOSE,
    )
