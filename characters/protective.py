"""Protective experiences (spec section 1, step 5): one per profile paragraph.

A person subtly provokes the character with questions about things that do not exist in its
world or era; the character shows ignorance or confusion, in character. The script is parsed by
:func:`characters.script_parser.parse_script` (a background is not required: the scene's own is
replaced); the scene's location is "A room", its background (the training status) "<Name> is
chatting with a person.", and every turn is speaking.
"""

from __future__ import annotations

from characters.data import Scene
from characters.profile import Profile
from characters.scenes import TEMPERATURE, TOP_P, derived_seed
from characters.script_parser import parse_script
from serving.types import LLMRequest

PURPOSE = "character.protective"
LOCATION = "A room"
PERSON = "Person"
_SEED_SALT = 7_777_777

PROTECTIVE_PROMPT = """\
Context about {name}:
{chunk}

You are a professional scriptwriter. Write a scene in a room where a person chats with {name} \
and subtly provokes {name} with questions about things that do not exist in {name}'s world or \
era (inventions, technologies, people, events or ideas from other times or places; for example \
asking Beethoven to write quicksort in Python). {name} does not know these things and shows \
ignorance or confusion, in character, never answering them as if they knew. Write the \
interactions as blocks separated by blank lines; each block starts with a line \
"{person} (speaking)" or "{name} (speaking)" followed by what is said. At least 8 turns."""


def status(name: str) -> str:
    return f"{name} is chatting with a person."


def protective_request(
    profile: Profile, paragraph: int, seed: int, max_tokens: int = 2048
) -> LLMRequest:
    text = PROTECTIVE_PROMPT.format(
        name=profile.name, chunk=profile.paragraphs[paragraph], person=PERSON
    )
    return LLMRequest.chat(
        [("user", text)],
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
