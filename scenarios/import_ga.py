"""Import a scenario from the original Generative Agents storage layout.

The layout (one simulation folder, e.g. ``base_the_ville_n25``)::

    reverie/meta.json                                 start, step length, persona names
    environment/0.json                                each persona's starting tile (x, y)
    personas/<name>/bootstrap_memory/scratch.json     identity, lifestyle, settings
    personas/<name>/bootstrap_memory/spatial_memory.json   world : sector : arena : [objects]

The world is the union of every persona's spatial memory; a persona's known places are the
arenas in its own. A sector where personas start (their living area) gets the mean of their
tiles as its position; the others have none (default travel time). The original files have no
relationships: one is inferred wherever a persona's ``currently``/``learned`` text names another
persona, with the sentence that names them. Per-persona numbers (vision radius, retrieval
weights, reflection threshold) become the scenario's settings, the most common value winning.
The preset is ``reference``, the original implementation's defaults, under those values.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

from scenarios.loader import parse_scenario, write_scenario
from scenarios.schema import Scenario


class GAImportError(Exception):
    """A file of the storage folder is missing or lacks what the importer needs."""

    def __init__(self, path: Path, what: str) -> None:
        self.path = path
        self.what = what
        super().__init__(f"{path}: {what}")


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


def import_ga(storage_dir: Path, hours: float = 48.0) -> Scenario:
    """The scenario stored in the Generative Agents folder ``storage_dir``."""
    storage_dir = Path(storage_dir)
    meta_path = storage_dir / "reverie" / "meta.json"
    meta = _read_json(meta_path)
    names = _key(meta, "persona_names", meta_path)
    if not isinstance(names, list) or not names:
        raise GAImportError(meta_path, "'persona_names' must be a non-empty list of names")
    start = _start(meta, meta_path)
    step = int(meta.get("sec_per_step", 10))
    env_path = storage_dir / "environment" / "0.json"
    env = _read_json(env_path)

    world: dict[str, dict[str, list[str]]] = {}  # sector -> arena -> objects, in order
    personas: list[dict[str, Any]] = []
    for name in names:
        folder = storage_dir / "personas" / name / "bootstrap_memory"
        scratch_path = folder / "scratch.json"
        spatial_path = folder / "spatial_memory.json"
        scratch = _read_json(scratch_path)
        spatial = _read_json(spatial_path)
        known = _merge_spatial(world, spatial, spatial_path)
        tile = _key(env, name, env_path)
        xy = (float(_key(tile, "x", env_path)), float(_key(tile, "y", env_path)))
        personas.append({"scratch": scratch, "path": scratch_path, "known": known, "tile": xy})

    agents: list[dict[str, Any]] = []
    settings_seen: Counter[tuple[str, str, Any]] = Counter()
    starts: dict[str, list[tuple[float, float]]] = {}
    for p in personas:
        scratch, path = p["scratch"], p["path"]
        home = _home(_key(scratch, "living_area", path), path)
        sector, arena = home.split(":")
        world.setdefault(sector, {}).setdefault(arena, [])
        starts.setdefault(sector, []).append(p["tile"])
        for key, (section, field) in SETTINGS_KEYS.items():
            if scratch.get(key) is not None:
                settings_seen[(section, field, scratch[key])] += 1
        agents.append(_agent(scratch, path, home, p["known"], names))

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
    data = {
        "name": _clean(str(meta.get("fork_sim_code") or storage_dir.name)),
        "description": f"Imported from the Generative Agents storage folder {storage_dir.name}.",
        "start": start,
        "step_seconds": step,
        "duration_hours": hours,
        "preset": "reference",
        "settings": _settings(settings_seen),
        "world": {"name": _clean(str(meta.get("maze_name") or "the Ville")), "sectors": sectors},
        "agents": agents,
    }
    return parse_scenario(data, source=str(storage_dir))


def import_ga_to_file(
    storage_dir: Path, out_path: Path, *, overwrite: bool = False, hours: float = 48.0
) -> Scenario:
    """Import ``storage_dir`` and write it as YAML to ``out_path`` (atomically); an existing
    file is replaced only with ``overwrite=True``."""
    out_path = Path(out_path)
    if out_path.exists() and not overwrite:
        raise FileExistsError(
            f"{out_path} already exists; refusing to overwrite it (pass overwrite=True to replace)"
        )
    scenario = import_ga(storage_dir, hours=hours)
    write_scenario(scenario, out_path)
    return scenario


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise GAImportError(path, "file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise GAImportError(path, f"cannot be read: {exc}") from None
    except json.JSONDecodeError as exc:
        raise GAImportError(path, f"not valid JSON: {exc}") from None


def _key(data: Any, key: str, path: Path) -> Any:
    if not isinstance(data, dict):
        raise GAImportError(path, f"expected a JSON object holding {key!r}")
    if key not in data:
        raise GAImportError(path, f"missing key {key!r}")
    return data[key]


def _start(meta: dict[str, Any], path: Path) -> datetime:
    if meta.get("curr_time"):
        try:
            return datetime.strptime(meta["curr_time"], "%B %d, %Y, %H:%M:%S")
        except ValueError:
            pass
    raw = _key(meta, "start_date", path)
    try:
        return datetime.strptime(str(raw), "%B %d, %Y")
    except ValueError:
        raise GAImportError(path, f"'start_date' {raw!r} is not like 'February 13, 2023'") from None


def _merge_spatial(world: dict[str, dict[str, list[str]]], spatial: Any, path: Path) -> list[str]:
    """Add one persona's spatial memory to ``world``; its arenas as ``"Sector:Arena"``."""
    if not isinstance(spatial, dict) or not spatial:
        raise GAImportError(path, "expected {world: {sector: {arena: [objects]}}}")
    known: list[str] = []
    for sectors in spatial.values():
        if not isinstance(sectors, dict):
            raise GAImportError(path, "expected {world: {sector: {arena: [objects]}}}")
        for sector, arenas in sectors.items():
            if not isinstance(arenas, dict):
                raise GAImportError(path, f"sector {sector!r}: expected {{arena: [objects]}}")
            for arena, objects in arenas.items():
                s, a = _clean(sector), _clean(arena)
                have = world.setdefault(s, {}).setdefault(a, [])
                for obj in objects or []:
                    o = _clean(str(obj))
                    if o not in have:
                        have.append(o)
                known.append(f"{s}:{a}")
    return list(dict.fromkeys(known))


def _home(living_area: str, path: Path) -> str:
    parts = str(living_area).split(":")
    if len(parts) < 3:
        raise GAImportError(path, f"'living_area' {living_area!r} is not 'world:sector:arena'")
    return f"{_clean(parts[1])}:{_clean(parts[2])}"


def _agent(
    scratch: dict[str, Any], path: Path, home: str, known: list[str], names: list[str]
) -> dict[str, Any]:
    name = _key(scratch, "name", path)
    learned = str(scratch.get("learned") or "")
    currently = str(scratch.get("currently") or "")
    lifestyle = " ".join(t for t in (learned, str(scratch.get("lifestyle") or "")) if t)
    return {
        "name": _clean(name),
        "age": int(_key(scratch, "age", path)),
        "traits": str(_key(scratch, "innate", path)),
        "lifestyle": lifestyle or "no lifestyle given",
        "current_situation": currently,
        "daily_requirements": _sentences(str(scratch.get("daily_plan_req") or "")),
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
