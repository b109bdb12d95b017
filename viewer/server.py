"""The viewer's HTTP server: the page, its JSON slices of one run folder, and a stream of new steps.

Standard library only (``http.server``): one thread per request, bound to 127.0.0.1 unless told
otherwise. It serves exactly three kinds of path: the page's own files (a fixed list read from
the package at start), the ``/api/...`` endpoints of ``viewer/API.md``, and the PNGs of the run's
``figures/`` by their listed names. No path from a request is ever joined to a folder, so
``..`` and its encodings have nothing to reach.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from viewer.run_view import RunView, ViewError

log = logging.getLogger(__name__)

STATIC_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
}
HEARTBEAT_S = 15.0
POLL_S = 0.5  # how often the stream looks for new steps in a run of another process


def static_files() -> dict[str, tuple[bytes, str]]:
    """The page's files shipped in the package: name -> (content, content type)."""
    found = {}
    for item in resources.files("viewer").joinpath("static").iterdir():
        suffix = "." + item.name.rsplit(".", 1)[-1]
        if item.is_file() and suffix in STATIC_TYPES:
            found[item.name] = (item.read_bytes(), STATIC_TYPES[suffix])
    return found


class ViewServer(ThreadingHTTPServer):
    """Serves ``view`` at ``host:port`` (port 0: any free one; see :attr:`url`)."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, view: RunView, host: str = "127.0.0.1", port: int = 8765) -> None:
        self.view = view
        self.files = static_files()
        self.stopping = threading.Event()
        super().__init__((host, port), _Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        name = host.decode() if isinstance(host, bytes) else host
        return f"http://{name}:{port}/"

    def start(self) -> threading.Thread:
        """Serves in a background thread (for a run in progress); :meth:`stop` ends it."""
        thread = threading.Thread(target=self.serve_forever, name="simulacra-view", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        self.stopping.set()
        self.shutdown()
        self.server_close()


class _Handler(BaseHTTPRequestHandler):
    server: ViewServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s - %s", self.address_string(), format % args)

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        path = unquote(parts.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        try:
            if path in ("/", "/index.html"):
                self._file("index.html")
            elif path.startswith("/static/"):
                self._file(path[len("/static/") :])
            elif path.startswith("/figures/"):
                self._figure(path[len("/figures/") :])
            elif path == "/api/stream":
                self._stream()
            elif path.startswith("/api/"):
                self._json(HTTPStatus.OK, self._api(path[len("/api/") :], query))
            else:
                self._json(HTTPStatus.NOT_FOUND, {"error": f"{path}: not found"})
        except _NotFound as exc:
            self._json(HTTPStatus.NOT_FOUND, {"error": str(exc)})
        except ViewError as exc:
            self._json(HTTPStatus.BAD_REQUEST, {"error": str(exc)})
        except (BrokenPipeError, ConnectionResetError):
            pass

    # ---- the endpoints ------------------------------------------------------------------------

    def _api(self, name: str, q: dict[str, str]) -> Any:
        view = self.server.view
        if name == "meta":
            return view.meta()
        if name == "state":
            return view.state(_int(q, "step", 0))
        if name == "events":
            kinds = {k for k in q["kind"].split(",") if k} if q.get("kind") else None
            return view.events(
                _int(q, "from", 0),
                _int(q, "to", view.last_step),
                agent=q.get("agent") or None,
                kinds=kinds,
                limit=_int(q, "limit", 500),
            )
        if name == "agent":
            if not q.get("name"):
                raise ViewError("name: missing (the agent's name)")
            return view.agent(q["name"], _int(q, "step", view.last_step))
        raise _NotFound(f"/api/{name}: no such endpoint")

    def _stream(self) -> None:
        """Server-sent events: ``step`` when the newest step grows, ``end`` when the run is over."""
        view = self.server.view
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        sent = -1
        beat = time.monotonic()
        while not self.server.stopping.is_set():
            if view.live is not None:
                view.live.wait(view.live.snapshot()[0], POLL_S)
            else:
                time.sleep(POLL_S)
            view.refresh()
            if view.last_step != sent:
                sent = view.last_step
                self._send_event("step", {"last": sent})
            elif time.monotonic() - beat > HEARTBEAT_S:
                self.wfile.write(b": alive\n\n")
                self.wfile.flush()
                beat = time.monotonic()
            if not view.is_live:
                self._send_event("end", {"last": view.last_step})
                return

    def _send_event(self, event: str, data: dict[str, Any]) -> None:
        self.wfile.write(f"event: {event}\ndata: {json.dumps(data)}\n\n".encode())
        self.wfile.flush()

    # ---- files --------------------------------------------------------------------------------

    def _file(self, name: str) -> None:
        found = self.server.files.get(name)
        if found is None:
            self._json(HTTPStatus.NOT_FOUND, {"error": f"/static/{name}: not found"})
            return
        self._send(HTTPStatus.OK, found[0], found[1])

    def _figure(self, name: str) -> None:
        view = self.server.view
        if name not in view.figure_names():  # only the listed names: nothing else is reachable
            self._json(HTTPStatus.NOT_FOUND, {"error": f"/figures/{name}: not found"})
            return
        self._send(HTTPStatus.OK, (view.run_dir / "figures" / name).read_bytes(), "image/png")

    def _json(self, status: HTTPStatus, body: Any) -> None:
        self._send(status, json.dumps(body).encode(), "application/json; charset=utf-8")

    def _send(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)


class _NotFound(ViewError):
    pass


def _int(q: dict[str, str], key: str, default: int) -> int:
    if key not in q:
        return default
    try:
        return int(q[key])
    except ValueError:
        raise ViewError(f"{key}={q[key]!r}: not an integer") from None
