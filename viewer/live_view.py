"""``simulacra run --view``: the viewer's server for the run in progress in this process."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from viewer.live import LiveFeed
from viewer.run_view import RunView
from viewer.server import ViewServer

if TYPE_CHECKING:
    from cluster.simulation import Simulation

END_GRACE_S = 1.0


class LiveView:
    """A ``cluster.run.RunWatch``: serves the page once the run folder exists, feeds it every
    step, and tells the page when the run is over (the server stops with the run)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 8765) -> None:
        self.host, self.port = host, port
        self.feed = LiveFeed()
        self.server: ViewServer | None = None

    def opened(self, run_dir: Path) -> None:
        self.server = ViewServer(RunView(run_dir, self.feed), self.host, self.port)
        self.server.start()
        print(f"watch the run at {self.server.url}", file=sys.stderr, flush=True)

    def stepped(self, sim: Simulation) -> None:
        self.feed.push(sim.step_no - 1, sim.tables.buffered("events"))

    def ended(self) -> None:
        self.feed.end()
        if self.server is not None:
            time.sleep(END_GRACE_S)  # the open pages hear the end before the server goes
            self.server.stop()
            folder = self.server.view.run_dir
            print(f"the run is over; to look at it again: simulacra view {folder}", file=sys.stderr)
