"""How fast the viewer is: the server's response time for a step's state and a slice of events,
and, in headless Chromium, the time to first paint, to the first map drawn, and to a slider move.

Run folders are made first (through the real driver in this process, a scripted model, local
hosts: the same folder a model-backed run writes, in seconds): the built-in town for one game
hour (360 steps) and for its whole 48 game hours, and a 250-agent synthetic town
(``--synthetic-steps`` steps); ``--run DIR`` adds a run folder of your own (a model-backed run
has more events a step).

    .venv/bin/python bench/bench_viewer.py [--run DIR ...] [--out bench/results/bench_viewer.json]
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).parents[1]
sys.path.insert(0, str(ROOT))

from cluster.run import RunOptions, start_run  # noqa: E402
from scenarios.loader import load_scenario  # noqa: E402
from scenarios.schema import Scenario  # noqa: E402
from scenarios.synthetic import synthetic_town  # noqa: E402
from tests.fakes import scripted_host_factory  # noqa: E402
from viewer.run_view import RunView  # noqa: E402
from viewer.server import ViewServer  # noqa: E402


def make_run(scenario: Scenario, steps: int, out: Path) -> float:
    factory = scripted_host_factory(scenario, answers_seed=1)
    options = RunOptions(steps=steps, checkpoint_every=60, agents_per_host=50, progress=False)
    t0 = time.perf_counter()
    start_run(scenario, options, out=out, factory=factory)
    return time.perf_counter() - t0


def median_ms(server: ViewServer, paths: list[str]) -> float:
    host, port = server.server_address[:2]
    times = []
    for path in paths:
        conn = http.client.HTTPConnection(str(host), port, timeout=30)
        t0 = time.perf_counter()
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        times.append((time.perf_counter() - t0) * 1000)
        conn.close()
        assert response.status == 200, path
    return statistics.median(times)


def browser_times(browser: Any, url: str, last: int, moves: int) -> dict[str, float]:
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    t0 = time.perf_counter()
    page.goto(url)
    page.wait_for_function("window.viewer && window.viewer.ready", polling=5, timeout=60_000)
    ready_ms = (time.perf_counter() - t0) * 1000
    paint = page.evaluate(
        "(performance.getEntriesByName('first-contentful-paint')[0] || {}).startTime || null"
    )
    rng = random.Random(0)
    slider = []
    for _ in range(moves):
        step = rng.randrange(0, last + 1)
        t1 = time.perf_counter()
        page.locator("#slider").fill(str(step))
        page.wait_for_function(f"window.viewer.step === {step}", polling=5, timeout=30_000)
        slider.append((time.perf_counter() - t1) * 1000)
    page.close()
    return {
        "first_paint_ms": paint or float("nan"),
        "map_drawn_ms": ready_ms,
        "slider_move_ms": statistics.median(slider),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--synthetic-steps", type=int, default=60)
    parser.add_argument("--moves", type=int, default=10)
    parser.add_argument("--run", action="append", default=[], help="also an existing run folder")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "bench_viewer.json"))
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    tmp = Path(tempfile.mkdtemp(prefix="bench_viewer_"))
    town = load_scenario(ROOT / "scenarios" / "town.yaml")
    cases = [
        ("town, 1 game hour", town, 360),
        ("town, 48 game hours", town, 48 * 360),
        ("synthetic, 250 agents", synthetic_town(250, seed=0), args.synthetic_steps),
    ]
    made = []
    for label, scenario, steps in cases:  # before the browser: its driver holds an event loop
        run_dir = tmp / label.replace(",", "").replace(" ", "-")
        made.append((label, scenario, steps, run_dir, make_run(scenario, steps, run_dir)))
    for folder in args.run:
        view = RunView(folder)
        made.append((Path(folder).name, view.scenario, view.last_step + 1, Path(folder), 0.0))
    rows = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=args.chromium, args=["--no-sandbox"])
        for label, scenario, steps, run_dir, made_s in made:
            t0 = time.perf_counter()
            view = RunView(run_dir)
            open_ms = (time.perf_counter() - t0) * 1000
            server = ViewServer(view, port=0)
            server.start()
            last = view.last_step
            rng = random.Random(1)
            states = [f"/api/state?step={rng.randrange(last + 1)}" for _ in range(50)]
            slices = []
            for _ in range(50):
                a = rng.randrange(last + 1)
                slices.append(f"/api/events?from={max(0, a - 60)}&to={a}")
            name = scenario.agents[0].name.replace(" ", "%20")
            agent_paths = [f"/api/agent?name={name}&step={last}"] * 10
            row = {
                "run": label,
                "agents": len(scenario.agents),
                "steps": steps,
                "events": view.event_count,
                "run_made_s": round(made_s, 1),
                "open_ms": round(open_ms, 1),
                "state_ms": round(median_ms(server, states), 2),
                "slice_ms": round(median_ms(server, slices), 2),
                "meta_ms": round(median_ms(server, ["/api/meta"] * 10), 2),
                "agent_ms": round(median_ms(server, agent_paths), 2),
            }
            timed = browser_times(browser, server.url, last, args.moves)
            row.update({k: round(v, 1) for k, v in timed.items()})
            server.stop()
            rows.append(row)
        browser.close()
    shutil.rmtree(tmp, ignore_errors=True)
    columns = list(rows[0])
    print(" | ".join(columns))
    for r in rows:
        print(" | ".join(str(r[c]) for c in columns))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(rows, indent=2))
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
