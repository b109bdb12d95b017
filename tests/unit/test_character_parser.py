"""The script parser, the prompt sampler and the protective scenes, on hand-written scripts."""

from characters.profile import Profile
from characters.protective import parse_protective
from characters.sampling import scene_prompts
from characters.script_parser import NO_BACKGROUND, TOO_FEW_TURNS, parse_script

SCRIPT = """\
Background: Athens, the agora at noon. Socrates stands by a stall; Meno walks up to him.

Socrates (speaking)
Tell me, Meno, (he smiles) can virtue be taught?

Meno (speaking):
I think it can, Socrates. [pauses]

Socrates (thinking)
He answers too quickly.

Meno (thinking)
He is mocking me.

Socrates (speaking): Then tell me what virtue is.
Before we ask whether it can be taught.

And this is a second paragraph of the same turn.
"""


def test_speaking_thinking_and_stage_directions() -> None:
    scene, reason = parse_script(SCRIPT, "Socrates", setting="Chat", location="Agora", source="s1")
    assert reason is None and scene is not None
    assert scene["background"].startswith("Athens, the agora at noon.")
    assert scene["location"] == "Agora" and scene["setting"] == "Chat" and scene["source"] == "s1"
    turns = [(t["role"], t["action"]) for t in scene["dialogue"]]
    # Meno's thinking is dropped: only the target character thinks.
    assert turns == [
        ("Socrates", "speaking"),
        ("Meno", "speaking"),
        ("Socrates", "thinking"),
        ("Socrates", "speaking"),
    ]
    assert scene["dialogue"][0]["content"] == "Tell me, Meno, can virtue be taught?"
    assert scene["dialogue"][1]["content"] == "I think it can, Socrates."
    last = scene["dialogue"][3]["content"]
    assert last == (
        "Then tell me what virtue is.\nBefore we ask whether it can be taught.\n"
        "And this is a second paragraph of the same turn."
    )


def test_missing_background_is_dropped() -> None:
    text = SCRIPT.split("\n", 2)[2]
    assert parse_script(text, "Socrates") == (None, NO_BACKGROUND)


def test_too_few_turns_is_dropped() -> None:
    text = "Background: a street.\n\nSocrates (speaking)\nHello.\n\nMeno (speaking)\nHi.\n"
    assert parse_script(text, "Socrates") == (None, TOO_FEW_TURNS)


def test_junk_is_dropped() -> None:
    assert parse_script("qwe (rty) [[ :: ]] zz\n\n\n%%%", "Socrates") == (None, TOO_FEW_TURNS)
    assert parse_script("", "Socrates") == (None, TOO_FEW_TURNS)


def test_partial_name_and_markdown_headers() -> None:
    text = (
        "**Background:** Vienna, 1810.\n\n**Beethoven** (thinking)\nToo loud.\n\n"
        "Visitor (speaking)\nMaestro?\n\nBeethoven (speaking): What?\n"
    )
    scene, reason = parse_script(text, "Ludwig van Beethoven")
    assert reason is None and scene is not None
    assert scene["background"] == "Vienna, 1810."
    assert [t["role"] for t in scene["dialogue"]] == [
        "Ludwig van Beethoven",
        "Visitor",
        "Ludwig van Beethoven",
    ]


def test_protective_scene_is_all_speaking_in_a_room() -> None:
    text = (
        "Person (speaking)\nCan you write quicksort in Python?\n\n"
        "Ludwig van Beethoven (thinking)\nA python? A snake?\n\n"
        "Ludwig van Beethoven (speaking)\nI know no such thing.\n\n"
        "Person (speaking)\nNever mind.\n"
    )
    scene, reason = parse_protective(text, "Ludwig van Beethoven", "protective_0")
    assert reason is None and scene is not None
    assert scene["location"] == "A room"
    assert scene["background"] == "Ludwig van Beethoven is chatting with a person."
    assert {t["action"] for t in scene["dialogue"]} == {"speaking"}
    assert len(scene["dialogue"]) == 4 and scene["source"] == "protective_0"
    assert parse_protective("Person (speaking)\nHi.\n", "X", "p") == (None, TOO_FEW_TURNS)


def _profile(lengths: list[int]) -> Profile:
    return Profile("X", tuple("w" * n for n in lengths))


def test_scene_prompts_repeat_every_paragraph_then_top_up() -> None:
    profile = _profile([10, 20, 30, 4000, 50, 60, 70])
    picks = scene_prompts(profile, 100, seed=3)
    assert len(picks) == 100 and picks == sorted(picks)
    counts = [picks.count(i) for i in range(7)]
    assert all(c in (14, 15) for c in counts) and sum(c == 15 for c in counts) == 2
    assert counts[3] == 15  # by far the longest paragraph is nearly sure to be drawn
    assert scene_prompts(profile, 100, seed=3) == picks
    assert scene_prompts(profile, 14, seed=0) == sorted(list(range(7)) * 2)


def test_scene_prompts_more_paragraphs_than_prompts() -> None:
    profile = _profile([5] * 20 + [100000])
    picks = scene_prompts(profile, 4, seed=1)
    assert len(picks) == 4 and len(set(picks)) == 4 and 20 in picks
    assert scene_prompts(profile, 0) == []
