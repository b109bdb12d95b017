"""Scene extraction and experience completion (spec section 1, steps 2 and 3): the requests.

Extraction asks, for one profile chunk, for up to ``scenes_per_chunk`` scenes the chunk supports,
under a JSON schema (strings bounded by a pattern, the list by ``maxItems``, so that even a weak
model's constrained answer ends and validates). Completion asks, for one scene and its chunk,
for a free-text script in the layout :mod:`characters.script_parser` reads. Both sample at
temperature 0.7, top_p 0.95, with seeds derived from the build's seed, so a build's requests are
the same every time it runs (what lets a rerun answer them from its recording).
"""

from __future__ import annotations

from typing import Any, TypedDict

from characters.profile import Profile
from serving.json_schemas import text as bounded_text
from serving.types import LLMRequest, LLMResult

TEMPERATURE = 0.7
TOP_P = 0.95
EXTRACTION_PURPOSE = "character.scenes"
COMPLETION_PURPOSE = "character.experience"


class SceneSeed(TypedDict):
    """One imagined scene, before its script is written."""

    type: str
    location: str
    background: str


def scenes_schema(scenes_per_chunk: int) -> dict[str, Any]:
    scene = {
        "type": "object",
        "properties": {
            "type": bounded_text(40),
            "location": bounded_text(100),
            "background": bounded_text(300),
        },
        "required": ["type", "location", "background"],
        "additionalProperties": False,
    }
    return {
        "type": "object",
        "properties": {
            "scenes": {"type": "array", "items": scene, "minItems": 0, "maxItems": scenes_per_chunk}
        },
        "required": ["scenes"],
        "additionalProperties": False,
    }


def derived_seed(seed: int, *parts: int) -> int:
    """A stable per-request seed from the build's seed and the request's indices."""
    value = seed & 0xFFFFFFFF
    for part in parts:
        value = (value * 1_000_003 + part + 1) % 2_147_483_647
    return value


EXTRACTION_PROMPT = """\
Context about {name}:
{chunk}

Imagine up to {n} different scenes from the life of {name} that the context above supports: \
conversations, debates, speeches, lessons, quarrels, moments alone. For each scene give its \
type (for example Chat, Debate, Speech), its location, and a short background: the time, the \
place, who is there and what is happening. Use only what fits {name}'s world and era. Answer as \
JSON: {{"scenes": [{{"type": ..., "location": ..., "background": ...}}, ...]}}."""

COMPLETION_PROMPT = """\
Context about {name}:
{chunk}

Scene type: {type}
Location: {location}
Status: {background}

You are a professional scriptwriter. Write the script of this scene, with {name} at its centre, \
true to the context above and to {name}'s personality, manner of speaking and knowledge. First \
write one paragraph starting with "Background:" that sets the place, the time and who is there \
(no thoughts). Then write the interactions as blocks separated by blank lines; each block starts \
with a line "<Name> (speaking)" or "<Name> (thinking)" followed by what is said or thought. Only \
{name} may think; the other characters only speak. Write at least 1200 words, with many turns."""


def extraction_request(
    profile: Profile, chunk: int, prompt_index: int, scenes_per_chunk: int, seed: int
) -> LLMRequest:
    text = EXTRACTION_PROMPT.format(
        name=profile.name, chunk=profile.paragraphs[chunk], n=scenes_per_chunk
    )
    return LLMRequest.chat(
        [("user", text)],
        json_schema=scenes_schema(scenes_per_chunk),
        max_tokens=200 * scenes_per_chunk + 64,
        temperature=TEMPERATURE,
        top_p=TOP_P,
        seed=derived_seed(seed, prompt_index),
        purpose=EXTRACTION_PURPOSE,
    )


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
) -> LLMRequest:
    text = COMPLETION_PROMPT.format(
        name=profile.name,
        chunk=profile.paragraphs[chunk],
        type=scene["type"],
        location=scene["location"],
        background=scene["background"],
    )
    return LLMRequest.chat(
        [("user", text)],
        max_tokens=max_tokens,
        temperature=TEMPERATURE,
        top_p=TOP_P,
        seed=derived_seed(seed, prompt_index, scene_index),
        purpose=COMPLETION_PURPOSE,
    )
