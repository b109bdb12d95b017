"""Synthetic towns of any size, for scaling studies: deterministic from a seed.

``synthetic_town(n)`` builds households of one to four people (a sector each: a bedroom per
person, a kitchen, a living room), workplaces scaled with the population (about one per ten
people, of a dozen kinds), and public places everyone knows a few of. Names combine first and
last names (12,000 pairs; a middle initial beyond that), so even 10,000 agents have unique ones.
``write_scenario`` (from :mod:`scenarios.loader`) writes any scenario back as YAML.
"""

from __future__ import annotations

import math
import random
from datetime import datetime
from typing import Any

from scenarios.loader import write_scenario
from scenarios.schema import Scenario

__all__ = ["synthetic_town", "write_scenario"]

START = datetime(2024, 3, 4, 7, 0)


def _words(text: str) -> list[str]:
    return text.split()


FIRST_NAMES = _words("""
Ada Alba Alder Alma Ansel Arlo Astrid Aurel Basil Bea Bellamy Blythe Bram Briar Cal Cass
Cedric Celia Cleo Cora Corin Dalia Dara Darius Della Dorian Edda Edie Elio Elsa Emeric Enzo
Esme Ezra Fern Fia Flint Flora Frey Gael Gemma Gideon Greer Gwen Hale Hana Hart Hollis Ida
Ilse Imre Inez Ira Isla Ivo Jago Jem Juno Kai Kasia Kit Lark Leif Lena Linus Lior Lotte Luca
Mabel Maren Milo Mira Nell Nico Noor Odile Olin Orla Otto Pax Perrin Quill Rafe Remy Rhea
Rowan Runa Sabin Sage Selma Silas Sol Suki Tam Tamsin Teo Thea Tove Uma Una Vale Vera Wren
Yara Yves Zane Zora Amos Bryn Dov Elin Faye Hugo Joss Koa Lyle Mina Neve Oren Pia Rue Saul
""")

LAST_NAMES = _words("""
Abbott Alder Ashby Barrow Beck Birch Blackwood Brook Calder Carrow Cask Cobb Colter Crane
Dale Dunmore Eastwick Elms Fairley Fell Finch Forde Frost Garrow Gill Glenn Gorse Greaves
Hadley Hale Harrow Heath Holt Hurst Ingle Ives Jarrow Keel Kemp Kerr Lane Larch Lowe Lund
Marsh Mayne Merrow Moss Nash Noble Oakes Orme Pace Pell Penrose Pike Quarry Rook Rowe Rush
Sallow Scott Shale Shaw Sorrel Stone Strand Sykes Tarn Thorne Toft Tull Upton Vance Vale
Wade Ward Weir Wells Whin Wick Wilde Wold Wray Yarrow York Bale Coombe Dray Fenn Grove Hythe
Lyle Marl Neath Oxley Quay Reed Teague
""")

TRAITS = [
    "kind, patient, organised",
    "curious, talkative, restless",
    "quiet, careful, observant",
    "cheerful, generous, forgetful",
    "ambitious, sharp, impatient",
    "gentle, thoughtful, shy",
    "practical, blunt, loyal",
    "warm, funny, easily distracted",
]

# kind of workplace -> (job title, [(arena, [objects])])
WORKPLACES: dict[str, tuple[str, list[tuple[str, list[str]]]]] = {
    "Cafe": ("barista", [("cafe", ["espresso machine", "counter", "customer tables"])]),
    "Bakery": ("baker", [("shop", ["counter", "bread shelves"]), ("bakehouse", ["oven"])]),
    "Grocery": ("shop assistant", [("aisles", ["shelves", "checkout counter"])]),
    "School": ("teacher", [("classroom", ["teacher's desk", "whiteboard"]), ("staff room", [])]),
    "Library": ("librarian", [("reading room", ["bookshelves", "reading table", "desk"])]),
    "Pub": ("bar server", [("bar", ["bar counter", "pub tables", "dartboard"])]),
    "Clinic": ("nurse", [("waiting room", ["reception desk"]), ("consulting room", ["couch"])]),
    "Town Office": ("clerk", [("office", ["desk", "filing cabinet"])]),
    "Workshop": ("carpenter", [("workshop", ["workbench", "lathe", "tool wall"])]),
    "Pharmacy": ("pharmacist", [("pharmacy", ["pharmacy counter", "medicine cabinet"])]),
    "Harbour": ("fisher", [("quay", ["fishing boat", "net rack"])]),
    "Market": ("stallholder", [("market square", ["fruit stall", "fish stall"])]),
}

PUBLIC = ["Cafe", "Pub", "Library", "Grocery", "Market"]

SLEEP = [(21, 5), (22, 6), (23, 7), (0, 8), (22, 7), (23, 6)]
MEALS = ["noon", "1pm", "5pm", "6pm", "7pm"]


def synthetic_town(n_agents: int, seed: int = 0, hours: float = 1.0) -> Scenario:
    """A town of ``n_agents`` people, the same for the same ``seed``, running ``hours``."""
    if n_agents < 1:
        raise ValueError("n_agents must be at least 1")
    rng = random.Random(seed)
    side = 150.0 * max(1.0, math.sqrt(n_agents / 25))
    names = _names(n_agents, rng)

    workplaces = _workplaces(n_agents, rng, side)
    sectors: list[dict[str, Any]] = [w["sector"] for w in workplaces]
    public = [w for w in workplaces if w["kind"] in PUBLIC] or workplaces
    agents: list[dict[str, Any]] = []
    i = 0
    household = 0
    while i < n_agents:
        size = min(rng.randint(1, 4), n_agents - i)
        members = names[i : i + size]
        household += 1
        sector = f"{members[0].split()[-1]} household {household}"
        sectors.append(
            {
                "name": sector,
                "position": _position(rng, side),
                "arenas": [
                    *(
                        {"name": f"bedroom {k + 1}", "objects": _objs(["bed", "desk"])}
                        for k in range(size)
                    ),
                    {"name": "kitchen", "objects": _objs(["stove", "refrigerator", "table"])},
                    {"name": "living room", "objects": _objs(["sofa", "bookshelf"])},
                ],
            }
        )
        for k, name in enumerate(members):
            work = workplaces[rng.randrange(len(workplaces))]
            agents.append(_agent(name, k, members, sector, work, public, rng))
        i += size

    data = {
        "name": f"synthetic-{n_agents}-seed{seed}",
        "description": f"A synthetic town of {n_agents} agents (seed {seed}).",
        "start": START,
        "step_seconds": 10,
        "duration_hours": hours,
        "checkpoint_every": 360,
        "preset": "paper",
        "world": {"name": "Synthetic Town", "sectors": sectors},
        "agents": agents,
    }
    return Scenario.model_validate(data)


def _names(n: int, rng: random.Random) -> list[str]:
    pairs = len(FIRST_NAMES) * len(LAST_NAMES)
    picks = rng.sample(range(pairs), min(n, pairs))
    names = [_pair(p) for p in picks]
    extra = 0
    while len(names) < n:  # beyond every pair: a middle initial makes 26 times as many
        first, last = _pair(extra % pairs).split(" ")
        names.append(f"{first} {chr(ord('A') + (extra // pairs) % 26)}. {last}")
        extra += 1
    return names


def _pair(index: int) -> str:
    first, last = divmod(index, len(LAST_NAMES))
    return f"{FIRST_NAMES[first]} {LAST_NAMES[last]}"


def _workplaces(n: int, rng: random.Random, side: float) -> list[dict[str, Any]]:
    kinds = list(WORKPLACES)
    count = max(len(kinds), math.ceil(n / 10))
    out = []
    for k in range(count):
        kind = kinds[k % len(kinds)]
        job, arenas = WORKPLACES[kind]
        name = kind if k < len(kinds) else f"{kind} {k // len(kinds) + 1}"
        sector = {
            "name": name,
            "position": _position(rng, side),
            "arenas": [{"name": a, "objects": _objs(objs)} for a, objs in arenas],
        }
        out.append({"kind": kind, "job": job, "sector": sector, "place": f"{name}:{arenas[0][0]}"})
    return out


def _agent(
    name: str,
    k: int,
    members: list[str],
    sector: str,
    work: dict[str, Any],
    public: list[dict[str, Any]],
    rng: random.Random,
) -> dict[str, Any]:
    sleep, wake = rng.choice(SLEEP)
    age = rng.randint(19, 80)
    places = [work["place"], *(p["place"] for p in rng.sample(public, min(3, len(public))))]
    first = name.split()[0]
    return {
        "name": name,
        "age": age,
        "traits": rng.choice(TRAITS),
        "lifestyle": (
            f"{first} goes to bed around {_hour(sleep)}, wakes up around {_hour(wake)}, "
            f"eats lunch around {rng.choice(MEALS[:2])} and dinner around {rng.choice(MEALS[2:])}."
        ),
        "current_situation": f"{name} works as a {work['job']} at the {work['sector']['name']}.",
        "daily_requirements": [f"work at the {work['sector']['name']}", "have dinner at home"],
        "home": f"{sector}:bedroom {k + 1}",
        "known_places": list(dict.fromkeys([*places, f"{sector}:kitchen"])),
        "relationships": {m: "lives in the same household" for m in members if m != name},
        "memories": [f"{name} has lived in the town for {rng.randint(1, 40)} years."],
    }


def _objs(names: list[str]) -> list[dict[str, str]]:
    return [{"name": n} for n in names]


def _position(rng: random.Random, side: float) -> list[float]:
    return [round(rng.uniform(0, side), 1), round(rng.uniform(0, side * 2 / 3), 1)]


def _hour(h: int) -> str:
    if h == 0:
        return "midnight"
    return f"{h if h <= 12 else h - 12}{'am' if h < 12 else 'pm'}"
