"""Import a scenario from the original Generative Agents storage layout.

The layout (one simulation folder, e.g. ``base_the_ville_n25``)::

    reverie/meta.json                                 start, step length, persona names
    environment/0.json                                each persona's starting tile (x, y)
    personas/<name>/bootstrap_memory/scratch.json     identity, lifestyle, settings
    personas/<name>/bootstrap_memory/spatial_memory.json   world : sector : arena : [objects]

The world is the union of every persona's spatial memory; a persona's known places are the
arenas in its own. A persona without a spatial memory (the original starts it with an empty
one) knows its living area and the public places: the arenas of the sectors nobody lives in
(a warning names the missing file). A sector where personas start (their living area) gets the
mean of their tiles as its position; the others have none (default travel time). The original
files have no relationships: one is inferred wherever a persona's ``currently``/``learned`` text
names another persona, with the sentence that names them. Per-persona numbers (vision radius,
retrieval weights, reflection threshold) become the scenario's settings, the most common value
winning. The preset is ``reference``, the original implementation's defaults, under those values.

Every field is read by one of the typed readers below (``_str``, ``_int``, ``_number``, ...):
a value of the wrong type or out of range is a :class:`GAImportError` naming the file and the
field, never a traceback.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, NoReturn

from scenarios.loader import parse_scenario, write_scenario
from scenarios.schema import Scenario

log = logging.getLogger(__name__)


class GAImportError(Exception):
    """A file of the storage folder is missing or lacks what the importer needs, or the output
    path cannot be written. ``field`` is the path of the bad field in the file (or ``None``)."""

    def __init__(self, path: Path, what: str, field: str | None = None) -> None:
        self.path = path
        self.what = what
        self.field = field
        super().__init__(f"{path}: {field}: {what}" if field else f"{path}: {what}")


# scratch.json key -> (settings section, setting)
SETTINGS_KEYS: dict[str, tuple[str, str]] = {
    "vision_r": ("perception", "vision_radius"),
    "att_bandwidth": ("perception", "attention_bandwidth"),
    "retention": ("perception", "retention"),
    "recency_w": ("retrieval", "w_recency"),
    "relevance_w": ("retrieval", "w_relevance"),
    "importance_w": ("retrieval", "w_importance"),
    "recency_decay": ("retrieval", "recency_decay"),
    "importance_trigger_max": ("reflection", "threshold"),
}

_Reader = Callable[[dict[str, Any], str, Path], Any]

# scratch.json key -> its reader, with the bounds of the setting (actors.mind.settings)
_SETTING_READERS: dict[str, _Reader] = {
    "vision_r": lambda obj, key, path: _int(obj, key, path, ge=0),
    "att_bandwidth": lambda obj, key, path: _int(obj, key, path, ge=1),
    "retention": lambda obj, key, path: _int(obj, key, path, ge=1),
    "recency_w": lambda obj, key, path: _number(obj, key, path),
    "relevance_w": lambda obj, key, path: _number(obj, key, path),
    "importance_w": lambda obj, key, path: _number(obj, key, path),
    "recency_decay": lambda obj, key, path: _number(obj, key, path, gt=0, le=1),
    "importance_trigger_max": lambda obj, key, path: _int(obj, key, path, ge=1),
}


SECONDS_PER_DAY = 86_400  # the longest step the importer takes (the original's is 10 s)
LAST_START_YEAR = 9_000  # a start after it leaves a scenario no room to end (years end at 9999)


def import_ga(storage_dir: Path, hours: float = 48.0) -> Scenario:
    """The scenario stored in the Generative Agents folder ``storage_dir``."""
    storage_dir = Path(storage_dir)
    meta_path = storage_dir / "reverie" / "meta.json"
    meta = _object(_read_json(meta_path), meta_path, "")
    names = _names(meta, meta_path)
    start = _start(meta, meta_path)
    if start.year > LAST_START_YEAR:
        raise GAImportError(
            meta_path, f"the start {start:%Y-%m-%d} is after {LAST_START_YEAR}", field="curr_time"
        )
    step = _int(meta, "sec_per_step", meta_path, ge=1, le=SECONDS_PER_DAY, default=10)
    env_path = storage_dir / "environment" / "0.json"
    env = _object(_read_json(env_path), env_path, "")

    world: dict[str, dict[str, list[str]]] = {}  # sector -> arena -> objects, in order
    personas: list[dict[str, Any]] = []
    for name in names:
        folder = storage_dir / "personas" / name / "bootstrap_memory"
        scratch_path = folder / "scratch.json"
        spatial_path = folder / "spatial_memory.json"
        scratch = _object(_read_json(scratch_path), scratch_path, "")
        spatial = _read_json(spatial_path, optional=True)
        known: list[str] | None = None  # None: no spatial memory
        if spatial is _ABSENT:  # the original starts such a persona with an empty one
            log.warning(
                "%s: file not found; %s knows only the living area and the public places",
                spatial_path,
                name,
            )
        else:
            known = _merge_spatial(world, spatial, spatial_path)
        tile = _dict(env, name, env_path)
        xy = (_number(tile, "x", env_path, name, ge=0), _number(tile, "y", env_path, name, ge=0))
        personas.append({"scratch": scratch, "path": scratch_path, "known": known, "tile": xy})

    settings_seen: Counter[tuple[str, str, Any]] = Counter()
    starts: dict[str, list[tuple[float, float]]] = {}
    for p in personas:
        scratch, path = p["scratch"], p["path"]
        p["home"] = home = _home(_str(scratch, "living_area", path), path)
        sector, arena = home.split(":")
        world.setdefault(sector, {}).setdefault(arena, [])
        starts.setdefault(sector, []).append(p["tile"])
        for key, (section, field) in SETTINGS_KEYS.items():
            if scratch.get(key) is not None:
                settings_seen[(section, field, _SETTING_READERS[key](scratch, key, path))] += 1

    public = [f"{s}:{a}" for s, arenas in world.items() if s not in starts for a in arenas]
    agents = [
        _agent(
            p["scratch"],
            p["path"],
            p["home"],
            [p["home"], *public] if p["known"] is None else p["known"],
            names,
        )
        for p in personas
    ]

    sectors = [
        {
            "name": sector,
            **({"position": _mean(starts[sector])} if sector in starts else {}),
            "arenas": [
                {"name": a, "objects": [{"name": o} for o in objs]} for a, objs in arenas.items()
            ],
        }
        for sector, arenas in world.items()
    ]
    sim_code = _str(meta, "fork_sim_code", meta_path, default="")
    maze = _str(meta, "maze_name", meta_path, default="")
    data = {
        "name": _clean(sim_code or storage_dir.name),
        "description": f"Imported from the Generative Agents storage folder {storage_dir.name}.",
        "start": start,
        "step_seconds": step,
        "duration_hours": hours,
        "preset": "reference",
        "settings": _settings(settings_seen),
        "world": {"name": _clean(maze or "the Ville"), "sectors": sectors},
        "agents": agents,
        "measures": original_measures(agents, world, start),
    }
    return parse_scenario(data, source=str(storage_dir))


def original_measures(
    agents: list[dict[str, Any]], world: dict[str, dict[str, list[str]]], start: datetime
) -> dict[str, Any]:
    """What the original's storage seeds for its section-7 study, declared as measures where
    this storage has it: Isabella Rodriguez's Valentine's Day party at Hobbs Cafe (February 14,
    2023, 5 to 7pm) and Sam Moore's run for mayor, each only when the persona is here and its
    ``currently`` mentions it."""
    by_name = {a["name"]: a for a in agents}

    def mentions(name: str, word: str) -> bool:
        return name in by_name and word in by_name[name]["current_situation"].lower()

    information: list[dict[str, Any]] = []
    gatherings: list[dict[str, Any]] = []
    if mentions("Isabella Rodriguez", "party"):
        information.append(
            {
                "name": "party",
                "text": "Isabella Rodriguez is having a Valentine's Day party at Hobbs Cafe on "
                "February 14th, 2023, from 5pm to 7pm.",
                "question": "Did you know there is a Valentine's Day party? If so, where and when?",
                "seeded_in": ["Isabella Rodriguez"],
                "keywords": ["party"],
            }
        )
        party = datetime(2023, 2, 14, 17, 0, tzinfo=start.tzinfo)
        if "Hobbs Cafe" in world and party >= start:
            gatherings.append(
                {
                    "name": "party",
                    "place": "Hobbs Cafe",
                    "start": party,
                    "end": party + timedelta(hours=2),
                    "told": ["Isabella Rodriguez"],
                    "information": "party",
                }
            )
    if mentions("Sam Moore", "mayor"):
        information.append(
            {
                "name": "candidacy",
                "text": "Sam Moore is running for local mayor in the upcoming election.",
                "question": "Do you know who is running for mayor? If so, who?",
                "seeded_in": ["Sam Moore"],
                "keywords": ["mayor"],
            }
        )
    return {"information": information, "gatherings": gatherings}


def import_ga_to_file(
    storage_dir: Path, out_path: Path, *, overwrite: bool = False, hours: float = 48.0
) -> Scenario:
    """Import ``storage_dir`` and write it as YAML to ``out_path`` (atomically); an existing
    file is replaced only with ``overwrite=True``. An output path that cannot be written (a
    folder, in a folder that does not exist or is not writable) is a :class:`GAImportError`
    naming it, found before the import; a write that fails leaves nothing behind."""
    out_path = Path(out_path)
    if out_path.is_dir():
        raise GAImportError(out_path, "is a folder; give the path of the scenario file to write")
    if out_path.exists() and not overwrite:
        raise FileExistsError(
            f"{out_path} already exists; refusing to overwrite it (pass overwrite=True to replace)"
        )
    folder = out_path.parent
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise GAImportError(out_path, f"cannot be written: its folder {folder} {what}")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise GAImportError(out_path, f"cannot be written: its folder {folder} is not writable")
    scenario = import_ga(storage_dir, hours=hours)
    try:
        write_scenario(scenario, out_path)  # atomic: on failure nothing is left behind
    except OSError as exc:
        raise GAImportError(out_path, f"cannot be written: {exc.strerror or exc}") from None
    return scenario


# --- reading the files ----------------------------------------------------------------------


_ABSENT: Any = object()  # what reading a missing optional file gives


def _read_json(path: Path, *, optional: bool = False) -> Any:
    """The JSON value in ``path``; a missing file gives ``_ABSENT`` when ``optional``."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        if optional:
            return _ABSENT
        raise GAImportError(path, "file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise GAImportError(path, f"cannot be read: {exc}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno}, column {exc.colno}"
        raise GAImportError(path, f"not valid JSON at {where}: {exc.msg}") from None
    except ValueError as exc:  # a number of more digits than Python reads
        raise GAImportError(path, f"not valid JSON: {exc}") from None
    except RecursionError:
        raise GAImportError(path, "not valid JSON: nested too deeply") from None


# --- the typed field readers ----------------------------------------------------------------
#
# Each reads ``obj[key]`` of the file ``path``; ``at`` is the field path of ``obj`` in the file
# ("" for the top level). A missing key is an error unless a ``default`` is given, which a
# null value also gets. Errors read "<file>: <field path>: <what is wrong> (got <value>)".

_REQUIRED: Any = object()  # the default of a field that must be there
_UNSET: Any = object()  # what _raw gives for a field left out (or null) that has a default
_NUMBER = re.compile(r"\s*[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?\s*")
_INTEGER = re.compile(r"\s*[-+]?\d+\s*")


def _bad(path: Path, field: str, problem: str, value: Any) -> NoReturn:
    raise GAImportError(path, f"{problem} (got {_shown(value)})", field=field or None)


def _shown(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def _join(at: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{at}[{key}]"
    return f"{at}.{key}" if at else key


def _object(value: Any, path: Path, field: str) -> dict[str, Any]:
    """``value`` itself, which must be a JSON object."""
    if not isinstance(value, dict):
        _bad(path, field, "expected a JSON object", value)
    return value


def _raw(obj: dict[str, Any], key: str, path: Path, at: str, default: Any) -> Any:
    """``obj[key]``, or ``_UNSET`` where it is missing or null and has a ``default``."""
    if key not in obj or (obj[key] is None and default is not _REQUIRED):
        if default is _REQUIRED:
            raise GAImportError(path, f"missing key {key!r}", field=at or None)
        return _UNSET
    return obj[key]


def _dict(obj: dict[str, Any], key: str, path: Path, at: str = "") -> dict[str, Any]:
    return _object(_raw(obj, key, path, at, _REQUIRED), path, _join(at, key))


def _list(obj: dict[str, Any], key: str, path: Path, at: str = "") -> list[Any]:
    value = _raw(obj, key, path, at, _REQUIRED)
    if not isinstance(value, list):
        _bad(path, _join(at, key), "expected a list", value)
    return value


def _str(obj: dict[str, Any], key: str, path: Path, at: str = "", default: str = _REQUIRED) -> str:
    value = _raw(obj, key, path, at, default)
    if value is _UNSET:
        return default
    if not isinstance(value, str):
        _bad(path, _join(at, key), "expected a string", value)
    return value


def _number(
    obj: dict[str, Any],
    key: str,
    path: Path,
    at: str = "",
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    default: float = _REQUIRED,
) -> float:
    """A finite number (a JSON number, or a string holding one); ``int`` where it is written as
    a whole number, else ``float``."""
    value = _raw(obj, key, path, at, default)
    if value is _UNSET:
        return default
    field = _join(at, key)
    number: int | float
    if isinstance(value, bool):
        _bad(path, field, "expected a number, not a boolean", value)
    elif isinstance(value, int | float):
        number = value
    elif isinstance(value, str) and _NUMBER.fullmatch(value):
        number = int(value) if _INTEGER.fullmatch(value) else float(value)
    else:
        _bad(path, field, "expected a number", value)
    if isinstance(number, float) and not math.isfinite(number):
        _bad(path, field, "expected a finite number", value)
    if ge is not None and number < ge:
        _bad(path, field, f"must be at least {ge}", value)
    if gt is not None and number <= gt:
        _bad(path, field, f"must be greater than {gt}", value)
    if le is not None and number > le:
        _bad(path, field, f"must be at most {le}", value)
    return number


def _int(
    obj: dict[str, Any],
    key: str,
    path: Path,
    at: str = "",
    *,
    ge: int | None = None,
    le: int | None = None,
    default: int = _REQUIRED,
) -> int:
    """A whole number (``8``, ``8.0`` or ``"8"``), as an ``int``."""
    number = _number(obj, key, path, at, ge=ge, le=le, default=default)
    if isinstance(number, float):
        if not number.is_integer():
            _bad(path, _join(at, key), "expected a whole number", obj[key])
        return int(number)
    return number


# --- the fields -----------------------------------------------------------------------------


def _names(meta: dict[str, Any], path: Path) -> list[str]:
    """``persona_names``: a non-empty list of distinct names, each a folder of ``personas/``."""
    names = _list(meta, "persona_names", path)
    if not names:
        raise GAImportError(path, "'persona_names' must be a non-empty list of names")
    seen: set[str] = set()
    for i, name in enumerate(names):
        field = _join("persona_names", i)
        if not isinstance(name, str):
            _bad(path, field, "expected a string", name)
        if not name.strip() or name in (".", "..") or any(c in name for c in "/\\\0"):
            _bad(path, field, "not a persona's folder name", name)
        if name in seen:
            _bad(path, field, "listed twice", name)
        seen.add(name)
    return names


def _start(meta: dict[str, Any], path: Path) -> datetime:
    curr_time = _str(meta, "curr_time", path, default="")
    if curr_time:
        try:
            return datetime.strptime(curr_time, "%B %d, %Y, %H:%M:%S")
        except ValueError:
            pass
    raw = _str(meta, "start_date", path)
    try:
        return datetime.strptime(raw, "%B %d, %Y")
    except ValueError:
        raise GAImportError(path, f"'start_date' {raw!r} is not like 'February 13, 2023'") from None


def _merge_spatial(world: dict[str, dict[str, list[str]]], spatial: Any, path: Path) -> list[str]:
    """Add one persona's spatial memory to ``world``; its arenas as ``"Sector:Arena"``."""
    if not isinstance(spatial, dict) or not spatial:
        _bad(path, "", "expected {world: {sector: {arena: [objects]}}}", spatial)
    known: list[str] = []
    for world_name in spatial:
        sectors = _dict(spatial, world_name, path)
        for sector in sectors:
            at = _join(world_name, sector)
            arenas = _dict(sectors, sector, path, world_name)
            for arena in arenas:
                objects = _list(arenas, arena, path, at) if arenas[arena] is not None else []
                s, a = _clean(sector), _clean(arena)
                have = world.setdefault(s, {}).setdefault(a, [])
                for i, obj in enumerate(objects):
                    if not isinstance(obj, str):
                        _bad(path, _join(_join(at, arena), i), "expected a string", obj)
                    o = _clean(obj)
                    if o not in have:
                        have.append(o)
                known.append(f"{s}:{a}")
    return list(dict.fromkeys(known))


def _home(living_area: str, path: Path) -> str:
    parts = living_area.split(":")
    if len(parts) < 3 or not parts[1].strip() or not parts[2].strip():
        raise GAImportError(path, f"'living_area' {living_area!r} is not 'world:sector:arena'")
    return f"{_clean(parts[1])}:{_clean(parts[2])}"


def _agent(
    scratch: dict[str, Any], path: Path, home: str, known: list[str], names: list[str]
) -> dict[str, Any]:
    name = _str(scratch, "name", path)
    learned = _str(scratch, "learned", path, default="")
    currently = _str(scratch, "currently", path, default="")
    lifestyle = " ".join(t for t in (learned, _str(scratch, "lifestyle", path, default="")) if t)
    return {
        "name": _clean(name),
        "age": _int(scratch, "age", path, ge=0, le=150),
        "traits": _str(scratch, "innate", path),
        "lifestyle": lifestyle or "no lifestyle given",
        "current_situation": currently,
        "daily_requirements": _sentences(_str(scratch, "daily_plan_req", path, default="")),
        "home": home,
        "known_places": known,
        "relationships": _relationships(name, f"{currently} {learned}", names),
    }


def _relationships(name: str, text: str, names: list[str]) -> dict[str, str]:
    """Each other persona named in ``text``, with the first sentence naming them."""
    found: dict[str, str] = {}
    for sentence in _sentences(text):
        for other in names:
            if other != name and other not in found and other in sentence:
                found[_clean(other)] = sentence
    return found


def _sentences(text: str) -> list[str]:
    return [s.strip() for s in re.split(r"(?<=[.!?])\s+", text) if s.strip()]


def _settings(seen: Counter[tuple[str, str, Any]]) -> dict[str, dict[str, Any]]:
    """The most common value of each setting across personas (the first seen on a tie)."""
    out: dict[str, dict[str, Any]] = {}
    for (section, field, value), _ in seen.most_common():
        out.setdefault(section, {}).setdefault(field, value)
    return out


def _mean(tiles: list[tuple[float, float]]) -> list[float]:
    return [round(sum(t[i] for t in tiles) / len(tiles), 2) for i in (0, 1)]


def _clean(name: str) -> str:
    """A name the schema accepts: no ``":"`` and no line breaks."""
    cleaned = re.sub(r"\s*[:\n\r]+\s*", " - ", name).strip(" -")
    return cleaned or "unnamed"
