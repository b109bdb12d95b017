"""Training examples (spec section 2): the meta-prompt, and turns joined by ``<|eot|>``.

The wording of the meta-prompt is the project's own. Data in the released ``prompted`` layout
already carries its prompts and trains as it is.
"""

from __future__ import annotations

from characters.data import Prompted, Scene, Turn

EOT = "<|eot|>"

META_PROMPT = (
    "You are {name}. Stay in character: answer as {name} would, in {name}'s own tone, manner "
    "and vocabulary, and with everything {name} knows. Say nothing {name} could not know."
)


def prompt_for(name: str, location: str, status: str) -> str:
    """The meta-prompt, a blank line, then the scene's location and status, then the cue."""
    return (
        META_PROMPT.format(name=name)
        + "\n\n"
        + f"Location: {location}\n"
        + f"Status: {status}\n"
        + "The interactions are as follows:\n\n"
    )


def format_output(turns: list[Turn]) -> str:
    """``{role} ({action}): {content}`` per turn, consecutive same (role, action) merged with a
    newline, joined by ``<|eot|>\\n`` and ending with ``<|eot|>``."""
    merged: list[list[str]] = []
    for turn in turns:
        role, action, content = turn["role"], turn["action"], turn["content"].strip()
        if merged and merged[-1][0] == role and merged[-1][1] == action:
            merged[-1][2] += "\n" + content
        else:
            merged.append([role, action, content])
    return f"{EOT}\n".join(f"{r} ({a}): {c}" for r, a, c in merged) + EOT


def status_of(name: str, scene: Scene) -> str:
    """A scene's status line: its background (protective scenes carry their fixed status)."""
    return scene["background"].strip() or f"{name} is chatting with a person."


def to_prompted(name: str, scene: Scene) -> Prompted:
    return {
        "prompt": prompt_for(name, scene["location"], status_of(name, scene)),
        "output": format_output(scene["dialogue"]),
        "source": scene["source"],
    }
