"""The viewer's server on a real run folder: the built-in town run through the real driver with
a scripted model (local hosts), served over HTTP on 127.0.0.1, and read back as a browser would."""

from __future__ import annotations

import http.client
import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pyarrow.parquet as pq
import pytest

from cluster.run import RunOptions, start_run
from scenarios.loader import load_scenario
from tests.fakes import scripted_host_factory
from viewer.live import LiveFeed
from viewer.run_view import RunView, ViewError
from viewer.server import ViewServer

TOWN = Path(__file__).parents[2] / "scenarios" / "town.yaml"
STEPS = 30


def run_town(run_dir: Path, watch: Any = None) -> Path:
    town = load_scenario(TOWN)
    factory = scripted_host_factory(town, answers_seed=3)
    options = RunOptions(steps=STEPS, checkpoint_every=10, agents_per_host=13, progress=False)
    return start_run(town, options, out=run_dir, factory=factory, watch=watch)


@pytest.fixture(scope="module")
def town_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return run_town(tmp_path_factory.mktemp("viewer") / "run")


@pytest.fixture(scope="module")
def server(town_run: Path) -> Any:
    s = ViewServer(RunView(town_run), port=0)
    s.start()
    yield s
    s.stop()


def get(server: ViewServer, path: str) -> tuple[int, bytes]:
    host, port = server.server_address[:2]
    conn = http.client.HTTPConnection(str(host), port, timeout=10)
    conn.request("GET", path)
    response = conn.getresponse()
    body = response.read()
    conn.close()
    return response.status, body


def get_json(server: ViewServer, path: str) -> Any:
    status, body = get(server, path)
    assert status == 200, (path, body)
    return json.loads(body)


def events_of(run_dir: Path) -> list[dict[str, Any]]:
    return pq.read_table(run_dir / "events.parquet").to_pylist()


def test_the_server_binds_loopback_by_default(server: ViewServer) -> None:
    assert server.server_address[0] == "127.0.0.1"


def test_meta_names_every_agent_and_sector(server: ViewServer, town_run: Path) -> None:
    meta = get_json(server, "/api/meta")
    town = load_scenario(TOWN)
    assert [a["name"] for a in meta["agents"]] == [a.name for a in town.agents]
    assert {s["name"] for s in meta["world"]["sectors"]} == {s.name for s in town.world.sectors}
    assert meta["steps"] == {"first": 0, "last": STEPS - 1}
    assert meta["run"]["status"] == "finished" and meta["run"]["live"] is False
    for s in meta["world"]["sectors"]:
        assert 0 <= s["x"] <= meta["world"]["width"] and 0 <= s["y"] <= meta["world"]["height"]
    assert {e["kind"] for e in events_of(town_run)} <= set(meta["kinds"])  # every filter offered


def test_agent_places_at_a_step_are_the_events_tables(server: ViewServer, town_run: Path) -> None:
    events = events_of(town_run)
    homes = {a.name: a.start or a.home for a in load_scenario(TOWN).agents}
    moved_somewhere = 0
    for step in (0, 7, 15, STEPS - 1):
        expected = dict(homes)
        for e in events:  # the location of the agent's latest move or activity by this step
            if e["step"] <= step and e["kind"] in ("move", "activity"):
                expected[e["agent"]] = e["location"]
        state = get_json(server, f"/api/state?step={step}")
        assert state["step"] == step
        got = {a["name"]: a["place"] for a in state["agents"]}
        assert got == expected, step
        moved_somewhere += sum(got[n] != homes[n] for n in got)
    assert moved_somewhere > 0  # the run moves agents, so the comparison means something


def test_a_step_range_slice_is_exactly_those_steps(server: ViewServer, town_run: Path) -> None:
    events = events_of(town_run)
    part = get_json(server, "/api/events?from=5&to=12&limit=5000")
    expected = [e for e in events if 5 <= e["step"] <= 12]
    assert len(part["events"]) == len(expected) > 0 and not part["truncated"]
    assert [(e["step"], e["agent"], e["kind"], e["text"]) for e in part["events"]] == [
        (e["step"], e["agent"], e["kind"], e["text"]) for e in expected
    ]
    name = expected[0]["agent"]
    only = get_json(server, f"/api/events?from=0&to=29&agent={quote(name)}&kind=move,activity")
    assert only["events"] and all(
        e["agent"] == name and e["kind"] in ("move", "activity") for e in only["events"]
    )
    small = get_json(server, "/api/events?from=0&to=29&limit=3")
    assert len(small["events"]) == 3 and small["truncated"]


def test_the_agent_panel_has_the_plan_memories_and_retrievals(server: ViewServer) -> None:
    name = "Owen Castell"
    panel = get_json(server, f"/api/agent?name={quote(name)}&step=20")
    assert panel["persona"]["home"].startswith("Castell House")
    blocks = panel["plan"]["blocks"]
    assert blocks and sum(b["current"] for b in blocks) == 1
    assert blocks[0]["start"] == "00:00" and blocks[-1]["end"] == "24:00"
    created = [m["created"] for m in panel["memories"]]
    assert created and created == sorted(created, reverse=True)
    assert all(c <= "2024-03-04T07:03:20" for c in created)  # nothing after step 20's time
    assert panel["retrievals"] and panel["retrievals"][0]["candidates"]
    first = panel["retrievals"][0]["candidates"]
    assert [c["rank"] for c in first] == sorted(c["rank"] for c in first)


@pytest.mark.parametrize(
    "path",
    [
        "/static/../manifest.json",
        "/static/%2e%2e/manifest.json",
        "/static/..%2fmanifest.json",
        "/static/%252e%252e%252fmanifest.json",
        "/figures/../manifest.json",
        "/figures/..%2f..%2fmanifest.json",
        "/figures/%2e%2e%5cmanifest.json",
        "/../manifest.json",
        "/%2e%2e/%2e%2e/etc/passwd",
        "/manifest.json",
        "/events.parquet",
        "/api/../manifest.json",
    ],
)
def test_no_path_reaches_outside_the_page_and_the_figures(server: ViewServer, path: str) -> None:
    status, body = get(server, path)
    assert status == 404, path
    assert b"simulacra-run" not in body and b"root:" not in body


def test_bad_requests_name_what_is_wrong(server: ViewServer) -> None:
    status, body = get(server, "/api/agent?name=Nobody&step=3")
    assert status == 400 and b"Nobody" in body
    status, body = get(server, "/api/state?step=soon")
    assert status == 400 and b"step" in body


def test_a_folder_that_is_not_a_run_is_refused_with_the_reason(tmp_path: Path) -> None:
    with pytest.raises(ViewError, match="not a run folder"):
        RunView(tmp_path)
    (tmp_path / "manifest.json").write_text("{broken")
    with pytest.raises(ViewError, match="not valid JSON"):
        RunView(tmp_path)


def test_the_page_and_its_files_are_served(server: ViewServer) -> None:
    status, page = get(server, "/")
    assert status == 200 and b"<html" in page.lower()
    for name in ("app.js", "style.css"):
        status, _ = get(server, f"/static/{name}")
        assert status == 200, name


def test_a_live_run_feeds_its_steps_between_checkpoints(tmp_path: Path) -> None:
    """The live feed's view grows step by step although the folder's tables land only at
    checkpoints; its stream ends with the run."""
    seen: list[tuple[int, int]] = []

    class Watch:
        feed = LiveFeed()
        view: RunView

        def opened(self, run_dir: Path) -> None:
            self.view = RunView(run_dir, self.feed)

        def stepped(self, sim: Any) -> None:
            self.feed.push(sim.step_no - 1, sim.tables.buffered("events"))
            self.view.refresh()
            newest = self.view.events(0, self.view.last_step, limit=5000)["events"]
            seen.append((self.view.last_step, max((e["step"] for e in newest), default=-1)))

        def ended(self) -> None:
            self.feed.end()

    watch = Watch()
    run_town(tmp_path / "run", watch)
    assert [last for last, _ in seen] == list(range(STEPS))
    # steps 0..8 are in no table file yet (the first checkpoint is at step 10): only the feed
    assert seen[3][1] > 0
    assert watch.view.is_live is False


def test_a_measured_run_shows_its_numbers_and_serves_only_its_figures(
    town_run: Path, tmp_path: Path
) -> None:
    import shutil

    run_dir = tmp_path / "measured"
    shutil.copytree(town_run, run_dir)
    (run_dir / "measures.json").write_text(json.dumps({"network": {"density": 0.25}}))
    (run_dir / "figures").mkdir()
    png = b"\x89PNG\r\n\x1a\n" + b"0" * 64
    (run_dir / "figures" / "network.png").write_bytes(png)
    (run_dir / "figures" / "notes.txt").write_text("not a figure")
    server = ViewServer(RunView(run_dir), port=0)
    server.start()
    try:
        measures = get_json(server, "/api/meta")["measures"]
        assert measures == {
            "summary": {"network": {"density": 0.25}},
            "figures": ["/figures/network.png"],
        }
        assert get(server, "/figures/network.png") == (200, png)
        assert get(server, "/figures/notes.txt")[0] == 404
    finally:
        server.stop()
