"""Importing the original Generative Agents storage layout (the 25-agent Ville)."""

from __future__ import annotations

import errno
import json
import logging
import os
import subprocess
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from cluster.cli import main
from scenarios.import_ga import SETTINGS_KEYS, GAImportError, import_ga, import_ga_to_file
from scenarios.loader import load_scenario, mind_settings
from scenarios.schema import Scenario
from serving import files

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


def test_the_originals_seeded_news_are_declared_as_measures(ville: Scenario) -> None:
    info = {i.name: i for i in ville.measures.information}
    assert info["party"].seeded_in == ["Isabella Rodriguez"]
    assert info["candidacy"].seeded_in == ["Sam Moore"]
    (party,) = ville.measures.gatherings
    assert (party.place, party.information, party.told) == (
        "Hobbs Cafe",
        "party",
        ["Isabella Rodriguez"],
    )
    assert (party.start.hour, party.end.hour, party.start.day) == (17, 19, 14)


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


# --- hardened inputs: a wrong type or value names the file and the field ---------------------

JOHN = "personas/John Lin/bootstrap_memory/scratch.json"
META = "reverie/meta.json"
ENV = "environment/0.json"
HOBBS = "personas/Isabella Rodriguez/bootstrap_memory/spatial_memory.json"


def _set(*keys: str | int, to: Any) -> Callable[[Any], None]:
    """An edit of a JSON document: ``doc[keys[0]][keys[1]]... = to``."""

    def edit(doc: Any) -> None:
        for key in keys[:-1]:
            doc = doc[key]
        doc[keys[-1]] = to

    return edit


def _edit(storage: Path, rel: str, edit: Callable[[Any], None]) -> Path:
    path = storage / rel
    doc = json.loads(path.read_text())
    edit(doc)
    path.write_text(json.dumps(doc))  # json.dumps writes float("nan") as NaN, as Python reads
    return path


BAD_FIELDS = [
    # (file, edit, field, what the message says)
    (JOHN, _set("age", to="abc"), "age", "expected a number"),
    (JOHN, _set("age", to=-1), "age", "must be at least 0"),
    (JOHN, _set("age", to=151), "age", "must be at most 150"),
    (JOHN, _set("age", to=float("nan")), "age", "expected a finite number"),
    (JOHN, _set("age", to=45.5), "age", "expected a whole number"),
    (JOHN, _set("age", to=True), "age", "not a boolean"),
    (JOHN, _set("age", to=None), "age", "expected a number"),
    (JOHN, _set("age", to=[45]), "age", "expected a number"),
    (JOHN, _set("name", to=42), "name", "expected a string"),
    (JOHN, _set("name", to=None), "name", "expected a string"),
    (JOHN, _set("innate", to=["kind"]), "innate", "expected a string"),
    (JOHN, _set("learned", to=["a", "list"]), "learned", "expected a string"),
    (JOHN, _set("daily_plan_req", to={"a": 1}), "daily_plan_req", "expected a string"),
    (JOHN, _set("living_area", to=42), "living_area", "expected a string"),
    (META, _set("persona_names", 3, to=42), "persona_names[3]", "expected a string"),
    (META, _set("persona_names", 3, to=None), "persona_names[3]", "expected a string"),
    (META, _set("persona_names", 3, to="../John Lin"), "persona_names[3]", "folder name"),
    (META, _set("persona_names", 20, to="Latoya Williams"), "persona_names[20]", "listed twice"),
    (META, _set("persona_names", to="John Lin"), "persona_names", "expected a list"),
    (META, _set("persona_names", to={"John Lin": 1}), "persona_names", "expected a list"),
    (META, _set("sec_per_step", to="abc"), "sec_per_step", "expected a number"),
    (META, _set("sec_per_step", to=0), "sec_per_step", "must be at least 1"),
    (META, _set("sec_per_step", to=10**30), "sec_per_step", "must be at most 86400"),
    (META, _set("curr_time", to="December 31, 9999, 23:00:00"), "curr_time", "is after 9000"),
    (META, _set("curr_time", to=12345), "curr_time", "expected a string"),
    (META, _set("curr_time", to=None), None, "missing key"),  # start_date is then needed
    (META, _set("maze_name", to=["the_ville"]), "maze_name", "expected a string"),
    (ENV, _set("John Lin", "x", to="abc"), "John Lin.x", "expected a number"),
    (ENV, _set("John Lin", "y", to=-3), "John Lin.y", "must be at least 0"),
    (ENV, _set("John Lin", "x", to=float("inf")), "John Lin.x", "expected a finite number"),
    (ENV, _set("John Lin", to=[16, 18]), "John Lin", "expected a JSON object"),
    (HOBBS, _set("the Ville", "Hobbs Cafe", to=["cafe"]), "the Ville.Hobbs Cafe", "JSON object"),
    (HOBBS, _set("the Ville", "Hobbs Cafe", "cafe", to="cafe customer seating"), None, "a list"),
    (HOBBS, _set("the Ville", "Hobbs Cafe", "cafe", 0, to=7), None, "expected a string"),
]


def _bad_id(case: tuple[str, Any, str | None, str]) -> str:
    rel, _, field, what = case
    return f"{Path(rel).name}-{field}-{what}"


@pytest.mark.parametrize("case", BAD_FIELDS, ids=[_bad_id(c) for c in BAD_FIELDS])
def test_a_bad_field_names_the_file_and_the_field(
    tmp_path: Path, case: tuple[str, Callable[[Any], None], str | None, str]
) -> None:
    rel, edit, field, what = case
    copy = _copy(tmp_path)
    if rel == META and field is None:  # curr_time unset: the start is start_date
        _edit(copy, META, lambda meta: meta.pop("start_date"))
    path = _edit(copy, rel, edit)
    with pytest.raises(GAImportError) as caught:
        import_ga(copy)
    error = caught.value
    assert error.path == path
    assert what in str(error)
    if field is not None:
        assert error.field == field
        assert str(error).startswith(f"{path}: {field}: ")
    assert "\n" not in str(error)


def test_a_spatial_memory_field_path_goes_down_to_the_object(tmp_path: Path) -> None:
    copy = _copy(tmp_path)
    path = _edit(copy, HOBBS, _set("the Ville", "Hobbs Cafe", "cafe", 0, to=7))
    with pytest.raises(GAImportError) as caught:
        import_ga(copy)
    assert str(caught.value) == f"{path}: the Ville.Hobbs Cafe.cafe[0]: expected a string (got 7)"


@pytest.mark.parametrize("value", [[1], "abc", True, {"a": 1}, float("nan")], ids=repr)
@pytest.mark.parametrize("key", list(SETTINGS_KEYS))
def test_a_setting_that_is_not_a_number_names_it(tmp_path: Path, key: str, value: Any) -> None:
    copy = _copy(tmp_path)
    path = _edit(copy, JOHN, _set(key, to=value))
    with pytest.raises(GAImportError) as caught:
        import_ga(copy)
    assert caught.value.path == path and caught.value.field == key
    assert str(caught.value).startswith(f"{path}: {key}: expected a ")
    assert f"(got {value!r})" in str(caught.value)


@pytest.mark.parametrize(
    ("key", "value", "what"),
    [
        ("recency_decay", 0, "must be greater than 0"),
        ("recency_decay", 1.5, "must be at most 1"),
        ("vision_r", -1, "must be at least 0"),
        ("att_bandwidth", 2.5, "expected a whole number"),
        ("importance_trigger_max", 0, "must be at least 1"),
    ],
)
def test_a_setting_out_of_range_names_it(tmp_path: Path, key: str, value: Any, what: str) -> None:
    copy = _copy(tmp_path)
    path = _edit(copy, JOHN, _set(key, to=value))
    with pytest.raises(GAImportError, match=what) as caught:
        import_ga(copy)
    assert caught.value.path == path and caught.value.field == key


def test_a_number_written_as_a_string_is_read_as_before(tmp_path: Path, ville: Scenario) -> None:
    copy = _copy(tmp_path)
    _edit(copy, JOHN, _set("age", to="45"))
    _edit(copy, JOHN, _set("recency_decay", to="0.995"))
    _edit(copy, META, _set("sec_per_step", to="10"))
    scenario = import_ga(copy)
    assert (scenario.agents, scenario.settings, scenario.step_seconds) == (
        ville.agents,
        ville.settings,
        ville.step_seconds,
    )


def test_a_long_value_is_shown_truncated(tmp_path: Path) -> None:
    copy = _copy(tmp_path)
    _edit(copy, JOHN, _set("age", to="x" * 1000))
    with pytest.raises(GAImportError) as caught:
        import_ga(copy)
    message = str(caught.value)
    assert "(got 'xxxx" in message and message.endswith("...)") and len(message) < 300


@pytest.mark.parametrize("rel", [META, ENV, JOHN])
def test_a_file_that_is_not_an_object_names_the_file(tmp_path: Path, rel: str) -> None:
    copy = _copy(tmp_path)
    (copy / rel).write_text('["a", "list"]')
    with pytest.raises(GAImportError, match=r"expected a JSON object \(got \['a', 'list'\]\)"):
        import_ga(copy)


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ('{\n  "age": 1,\n  oops\n}\n', "line 3, column 3"),
        ("", "line 1, column 1"),
        ('{"age": 1}\n{"age": 2}\n', "line 2, column 1"),
        ("[" * 100_000, "nested too deeply"),
    ],
)
@pytest.mark.parametrize("rel", [META, ENV, JOHN, HOBBS])
def test_garbage_json_names_the_file_and_the_position(
    tmp_path: Path, rel: str, text: str, where: str
) -> None:
    copy = _copy(tmp_path)
    path = copy / rel
    path.write_text(text)
    with pytest.raises(GAImportError) as caught:
        import_ga(copy)
    assert caught.value.path == path
    assert str(caught.value).startswith(f"{path}: not valid JSON") and where in str(caught.value)


# --- the output path ------------------------------------------------------------------------


def test_an_output_folder_is_an_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(GAImportError, match="is a folder") as caught:
        import_ga_to_file(VILLE, tmp_path)
    assert caught.value.path == tmp_path
    with pytest.raises(GAImportError, match="is a folder"):
        import_ga_to_file(VILLE, tmp_path, overwrite=True)
    assert list(tmp_path.iterdir()) == []


def test_an_output_in_a_missing_folder_is_an_error_and_creates_nothing(tmp_path: Path) -> None:
    out = tmp_path / "no" / "such" / "ville.yaml"
    with pytest.raises(GAImportError, match="does not exist") as caught:
        import_ga_to_file(VILLE, out)
    assert caught.value.path == out and str(caught.value).startswith(f"{out}: cannot be written")
    assert list(tmp_path.iterdir()) == []


def test_an_output_under_a_file_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("keep me\n")
    out = tmp_path / "file" / "ville.yaml"
    with pytest.raises(GAImportError, match="is not a folder") as caught:
        import_ga_to_file(VILLE, out)
    assert caught.value.path == out
    assert (tmp_path / "file").read_text() == "keep me\n"


def test_an_output_in_a_read_only_folder_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    # the folder as an unprivileged user sees a 0o555 folder (this may run as root)
    real_access = os.access
    monkeypatch.setattr(
        "scenarios.import_ga.os.access",
        lambda path, mode: False if Path(path) == folder else real_access(path, mode),
    )
    with pytest.raises(GAImportError, match="not writable"):
        import_ga_to_file(VILLE, folder / "ville.yaml")
    assert list(folder.iterdir()) == []


def test_a_failed_write_is_an_error_naming_the_output_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(src: object, dst: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(files.os, "replace", full)
    out = tmp_path / "ville.yaml"
    with pytest.raises(GAImportError) as caught:
        import_ga_to_file(VILLE, out)
    assert str(caught.value) == f"{out}: cannot be written: {os.strerror(errno.ENOSPC)}"
    assert list(tmp_path.iterdir()) == []


def test_the_cli_exits_2_with_one_line_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    copy = _copy(tmp_path / "in")
    scratch = _edit(copy, JOHN, _set("age", to="abc"))
    out = tmp_path / "ville.yaml"
    assert main(["import-ga", str(copy), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err == f"simulacra import-ga: error: {scratch}: age: expected a number (got 'abc')\n"
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["in"]

    assert main(["import-ga", str(VILLE), "-o", str(tmp_path / "in")]) == 2
    assert f"{tmp_path / 'in'}: is a folder" in capsys.readouterr().err


# --- a persona without a spatial memory -----------------------------------------------------

ISABELLA_HOME = "Isabella Rodriguez's apartment:main room"
PUBLIC = {
    "The Rose and Crown Pub:pub",
    "Hobbs Cafe:cafe",
    "Oak Hill College:hallway",
    "Oak Hill College:library",
    "Oak Hill College:classroom",
    "The Willows Market and Pharmacy:store",
    "Harvey Oak Supply Store:supply store",
    "Johnson Park:park",
}


def test_a_missing_spatial_memory_gives_the_living_area_and_public_places(
    tmp_path: Path, ville: Scenario, caplog: pytest.LogCaptureFixture
) -> None:
    copy = _copy(tmp_path)
    spatial = copy / HOBBS
    spatial.unlink()
    with caplog.at_level(logging.WARNING, logger="scenarios.import_ga"):
        scenario = import_ga(copy)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and str(spatial) in warnings[0].getMessage()
    assert "file not found" in warnings[0].getMessage()

    isabella = next(a for a in scenario.agents if a.name == "Isabella Rodriguez")
    assert isabella.home == ISABELLA_HOME
    assert isabella.known_places[0] == ISABELLA_HOME
    assert set(isabella.known_places) == {ISABELLA_HOME} | PUBLIC
    assert set(isabella.known_places) <= set(scenario.world.places())
    # the others are as before
    others = [a for a in scenario.agents if a.name != "Isabella Rodriguez"]
    assert others == [a for a in ville.agents if a.name != "Isabella Rodriguez"]


def test_public_places_are_the_sectors_nobody_lives_in(ville: Scenario) -> None:
    homes = {a.home.split(":")[0] for a in ville.agents}
    public = {p for p in ville.world.places() if p.split(":")[0] not in homes}
    assert public == PUBLIC


def test_the_cli_prints_the_missing_spatial_memory_warning(tmp_path: Path) -> None:
    copy = _copy(tmp_path / "in")
    (copy / HOBBS).unlink()
    out = tmp_path / "ville.yaml"
    done = subprocess.run(
        [sys.executable, "-m", "cluster.cli", "import-ga", str(copy), "-o", str(out)],
        cwd=Path(__file__).parents[2],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert f"WARNING scenarios.import_ga: {copy / HOBBS}: file not found" in done.stderr
    assert len(load_scenario(out).agents) == 25
