"""Importing the original Generative Agents storage layout (the 25-agent Ville)."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest

from scenarios.import_ga import GAImportError, import_ga, import_ga_to_file
from scenarios.loader import load_scenario, mind_settings
from scenarios.schema import Scenario

VILLE = Path(__file__).parents[3] / "shared" / "data" / "the_ville_n25"

# The reference data lives beside the checkout (../shared), in CI too; a missing copy fails.
assert VILLE.is_dir(), f"{VILLE} is missing: the tests read ../shared/data beside the checkout"


@pytest.fixture(scope="module")
def ville() -> Scenario:
    return import_ga(VILLE)


def _copy(tmp_path: Path) -> Path:
    """A writable copy of the storage folder (the original is read-only)."""
    out = tmp_path / "ville"
    for src in VILLE.rglob("*"):
        if src.is_file():
            dst = out / src.relative_to(VILLE)
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_bytes(src.read_bytes())
    return out


def test_twenty_five_agents_from_the_start(ville: Scenario) -> None:
    assert len(ville.agents) == 25
    assert ville.start == datetime(2023, 2, 13, 0, 0)
    assert ville.step_seconds == 10
    assert ville.duration_hours == 48


def test_john_lin(ville: Scenario) -> None:
    john = next(a for a in ville.agents if a.name == "John Lin")
    assert john.home == "Lin family's house:Mei and John Lin's bedroom"
    assert john.age == 45
    assert john.traits == "patient, kind, organized"
    assert "pharmacy shop keeper" in john.lifestyle and "goes to bed around 10pm" in john.lifestyle
    assert john.current_situation.startswith("John Lin is living with his wife")
    assert "The Willows Market and Pharmacy:store" in john.known_places
    assert "Hobbs Cafe:cafe" in john.known_places
    assert john.daily_requirements[0].startswith("John Lin goes to the Willow Market")
    assert set(john.relationships) == {"Mei Lin", "Eddy Lin"}
    assert "his wife, Mei Lin" in john.relationships["Mei Lin"]


def test_known_places_are_each_personas_own(ville: Scenario) -> None:
    places = set(ville.world.places())
    eddy = next(a for a in ville.agents if a.name == "Eddy Lin")
    assert eddy.home in places  # from the union, though not in his own spatial memory
    for agent in ville.agents:
        assert agent.known_places and set(agent.known_places) <= places


def test_settings_from_scratch(ville: Scenario) -> None:
    settings = mind_settings(ville)
    perception = settings.perception
    assert (perception.vision_radius, perception.attention_bandwidth, perception.retention) == (
        8,
        8,
        8,
    )
    assert settings.reflection.threshold == 250
    assert settings.retrieval.recency_decay == 0.995
    assert (settings.retrieval.w_recency, settings.retrieval.w_relevance) == (1, 1)


def test_sector_positions_from_start_tiles(ville: Scenario) -> None:
    sectors = {s.name: s for s in ville.world.sectors}
    assert sectors["Lin family's house"].position == pytest.approx((91.33, 74.0))
    assert sectors["Hobbs Cafe"].position is None


def test_write_and_load_back(tmp_path: Path, ville: Scenario) -> None:
    out = tmp_path / "ville.yaml"
    written = import_ga_to_file(VILLE, out, hours=6)
    assert written.duration_hours == 6
    assert load_scenario(out) == written


def test_refuses_to_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "ville.yaml"
    out.write_text("keep me\n")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        import_ga_to_file(VILLE, out)
    assert out.read_text() == "keep me\n"
    import_ga_to_file(VILLE, out, overwrite=True)
    assert len(load_scenario(out).agents) == 25


def test_a_missing_scratch_names_the_file(tmp_path: Path) -> None:
    copy = _copy(tmp_path)
    scratch = copy / "personas" / "Mei Lin" / "bootstrap_memory" / "scratch.json"
    scratch.unlink()
    with pytest.raises(GAImportError) as caught:
        import_ga(copy)
    assert caught.value.path == scratch
    assert str(scratch) in str(caught.value) and "file not found" in str(caught.value)


def test_a_missing_key_names_the_file_and_key(tmp_path: Path) -> None:
    copy = _copy(tmp_path)
    scratch = copy / "personas" / "John Lin" / "bootstrap_memory" / "scratch.json"
    data = json.loads(scratch.read_text())
    del data["living_area"]
    scratch.write_text(json.dumps(data))
    with pytest.raises(GAImportError, match="missing key 'living_area'") as caught:
        import_ga(copy)
    assert caught.value.path == scratch


def test_a_missing_meta_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(GAImportError, match=r"meta\.json: file not found"):
        import_ga(tmp_path)
