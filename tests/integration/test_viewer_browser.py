"""The viewer in a real browser (Debian's headless Chromium, driven by Playwright): a tiny-model
town run with ``simulacra run --view`` is watched live as its steps arrive, then its finished
folder is served by ``simulacra view``'s server and used as a researcher would: every agent on
the map, the slider moving agents, a click opening an agent's plan."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from scenarios.loader import load_scenario
from tests.servers import free_port
from viewer.run_view import RunView
from viewer.server import ViewServer

pytestmark = pytest.mark.integration

ROOT = Path(__file__).parents[2]
TOWN = ROOT / "scenarios" / "town.yaml"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
STEPS = 60


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), "Debian's chromium is needed: apt-get install chromium"
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture(scope="module")
def live_run(tmp_path_factory: pytest.TempPathFactory, browser: Any) -> Iterator[Any]:
    """A tiny-model town run with --view, in its own process, and a page following it; yields
    (run folder, steps.last values the page saw while the run went, a screenshot path)."""
    tmp = tmp_path_factory.mktemp("live")
    port = free_port()
    command = [
        *(sys.executable, "-m", "cluster.cli", "run", str(TOWN), "--model", "tiny"),
        *("--steps", str(STEPS), "--checkpoint-every", "30", "--out", str(tmp / "run")),
        *("--no-progress", "--view", "--view-port", str(port)),
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    url = None
    lines = []
    deadline = time.monotonic() + 300
    while url is None and time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line and proc.poll() is not None:
            break
        lines.append(line)
        found = re.search(r"watch the run at (http://127\.0\.0\.1:\d+/)", line)
        url = found.group(1) if found else None
    assert url, "".join(lines[-30:])
    page = browser.new_page()
    page.goto(url)
    page.wait_for_function("window.viewer && window.viewer.ready", timeout=60_000)
    seen = []
    while proc.poll() is None and time.monotonic() < deadline:
        seen.append(page.evaluate("window.viewer.step"))
        time.sleep(0.5)
    shot = tmp / "live.png"
    page.screenshot(path=str(shot))
    page.close()
    rest = proc.stderr.read()
    assert proc.wait(timeout=60) == 0, "".join(lines) + rest
    yield tmp / "run", seen, shot


def test_live_mode_shows_new_steps_arriving(live_run: Any) -> None:
    run_dir, seen, shot = live_run
    steps = [s for s in seen if s is not None]
    assert len(set(steps)) >= 3, seen  # the page followed the run through several steps
    assert steps == sorted(steps)  # following the newest step, never going back
    assert shot.stat().st_size > 10_000
    assert (run_dir / "events.parquet").is_file()


@pytest.fixture(scope="module")
def finished_page(live_run: Any, browser: Any) -> Iterator[Any]:
    run_dir = live_run[0]
    server = ViewServer(RunView(run_dir), port=0)
    server.start()
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(server.url)
    page.wait_for_function("window.viewer && window.viewer.ready", timeout=30_000)
    yield page, run_dir, errors
    page.close()
    server.stop()


def test_the_map_shows_every_agent_by_name(finished_page: Any) -> None:
    page, _, errors = finished_page
    names = page.locator("#map g.agent text.agent-name").all_text_contents()
    assert sorted(names) == sorted(a.name for a in load_scenario(TOWN).agents)
    assert errors == []


def places(page: Any) -> dict[str, str]:
    return dict(
        page.eval_on_selector_all(
            "#map g.agent", "gs => gs.map(g => [g.dataset.name, g.dataset.place])"
        )
    )


def test_moving_the_slider_moves_an_agent(finished_page: Any) -> None:
    page, run_dir, _ = finished_page
    page.locator("#slider").fill("0")
    page.wait_for_function("window.viewer.step === 0")
    before = places(page)
    page.locator("#slider").fill(str(STEPS - 1))
    page.wait_for_function(f"window.viewer.step === {STEPS - 1}")
    after = places(page)
    assert before.keys() == after.keys()
    assert any(before[n] != after[n] for n in before), (before, after)
    page.screenshot(path=str(run_dir.parent / "finished.png"))


def test_clicking_an_agent_shows_its_plan(finished_page: Any) -> None:
    page, _, errors = finished_page
    page.locator('#map g.agent[data-name="Owen Castell"]').click()
    panel = page.locator("#agent-panel")
    panel.wait_for(state="visible")
    page.wait_for_selector("#agent-panel li.block")
    assert "Owen Castell" in panel.inner_text()
    assert page.locator("#agent-panel li.block.current").count() == 1
    assert errors == []
