"""Starting or joining Ray, and stopping what a killed local run left behind.

A local cluster (no ``address``) is private to the process that starts it (the *driver*):

- it keeps its session files in its own folder, ``<root>/<driver pid>/`` (:func:`ray_root`:
  ``$SIMULACRA_RAY_TMPDIR``, else ``simulacra-ray-<uid>`` in ``$RAY_TMPDIR`` or the system's temp
  folder), with ``driver.json`` naming the driver; every process of the cluster carries
  ``SIMULACRA_RAY_RUN=<that folder>`` in its environment;
- it listens on 127.0.0.1 only, with no dashboard, no metrics export and no usage stats, and
  token authentication on, with a token of its own (never written to disk);
- it never joins another cluster (``ray.init(address="local")``: not ``RAY_ADDRESS``, not a
  cluster started with ``ray start``).

Before a local cluster starts, the Ray processes of earlier ones whose driver is gone (killed)
are stopped (:func:`stop_leftovers`; also ``simulacra stop``). A cluster joined with ``address``
is never touched.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import secrets
import shutil
import signal
import stat
import sys
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cluster import logs
from cluster.logs import Verbosity

log = logging.getLogger(__name__)

ROOT_ENV = "SIMULACRA_RAY_TMPDIR"
RUN_ENV = "SIMULACRA_RAY_RUN"
DRIVER_FILE = "driver.json"
KEEP_ENDED = 3  # folders of ended local clusters kept for their logs (the newest)
LOOPBACK = "127.0.0.1"


def ray_root() -> Path:
    """The folder holding every local cluster's folder."""
    if os.environ.get(ROOT_ENV):
        return Path(os.environ[ROOT_ENV])
    base = os.environ.get("RAY_TMPDIR") or ("/tmp" if sys.platform == "darwin" else None)
    uid = os.getuid() if hasattr(os, "getuid") else "user"
    return Path(base or tempfile.gettempdir()) / f"simulacra-ray-{uid}"


def local_env(run_dir: Path, auth_mode: str, token: str) -> dict[str, str]:
    """The environment a local cluster's processes start with (set in the driver before
    ``ray.init``; Ray's processes inherit it)."""
    return {
        "RAY_AUTH_MODE": auth_mode,
        "RAY_AUTH_TOKEN": token,  # this cluster's own, never in ~/.ray/auth_token (mode 644)
        # On Linux Ray turns 127.0.0.1 into the machine's address and binds its gRPC servers
        # on every interface; in its single-machine mode (macOS' and Windows' default) the
        # node's address stays 127.0.0.1 and its listeners bind that
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
        RUN_ENV: str(run_dir),
    }


# Defaults of a local cluster (a variable the user set wins).
LOCAL_DEFAULTS: Mapping[str, str] = {
    "RAY_enable_metrics_collection": "0",  # no Prometheus export (an open port on 0.0.0.0)
    "RAY_USAGE_STATS_ENABLED": "0",
    # Serve's routers ask a replica its queue length within 0.1 s and warn when it does not
    # answer: on a small busy machine a CPU-bound replica often does not, which is neither a
    # network problem nor worth a line per request
    "RAY_SERVE_QUEUE_LENGTH_RESPONSE_DEADLINE_S": "1.0",
}


def quiet_config(verbosity: Verbosity) -> dict[str, str]:
    """Ray settings (environment variables) for ``verbosity``: at ``NORMAL``, no "Task
    ServeController.listen_for_change failed ... will be retried" lines at shutdown."""
    if verbosity is Verbosity.VERBOSE:
        return {}
    return {"RAY_enable_output_error_log_if_still_retry": "0"}


def runtime_env(verbosity: Verbosity) -> dict[str, Any] | None:
    """The job's runtime environment: quiet workers at ``NORMAL``; nothing at ``VERBOSE``."""
    if verbosity is Verbosity.VERBOSE:
        return None
    return {
        "env_vars": logs.worker_env(verbosity),
        "worker_process_setup_hook": logs.WORKER_SETUP_HOOK,
    }


def init_options(
    verbosity: Verbosity,
    address: str | None = None,
    num_cpus: int | None = None,
    run_dir: Path | None = None,
) -> dict[str, Any]:
    """The keyword arguments of ``ray.init``: joining ``address``, or starting a local cluster
    in ``run_dir``."""
    options: dict[str, Any] = {
        "logging_level": verbosity.log_level,
        "log_to_driver": True,  # workers' warnings and errors still show; their noise is cut
    }
    env = runtime_env(verbosity)
    if env is not None:
        options["runtime_env"] = env
    if address:
        return {"address": address, **options}
    if run_dir is None:
        raise ValueError("a local cluster needs its folder (run_dir)")
    return {
        "address": "local",
        "num_cpus": num_cpus,
        "include_dashboard": False,
        "_node_ip_address": LOOPBACK,
        "_temp_dir": str(run_dir),
        **options,
    }


def init_ray(
    address: str | None = None,
    num_cpus: int | None = None,
    verbosity: Verbosity | None = None,
    **kwargs: Any,
) -> None:
    """Joins the Ray cluster at ``address`` or starts a local one (see the module). Idempotent.

    ``verbosity`` defaults to what :func:`cluster.logs.setup_logging` set; ``kwargs`` go to
    ``ray.init`` as they are."""
    import ray

    if ray.is_initialized():
        return
    verbosity = verbosity or logs.current()
    for key, value in quiet_config(verbosity).items():
        os.environ.setdefault(key, value)
    if address:
        ray.init(**init_options(verbosity, address=address), **kwargs)
    else:
        stop_leftovers(report=log.warning)
        run_dir = _claim_run_dir()
        auth_mode = os.environ.get("RAY_AUTH_MODE") or "token"
        if auth_mode != "token":
            log.warning("RAY_AUTH_MODE=%s: the local Ray cluster runs without a token", auth_mode)
        for key, value in LOCAL_DEFAULTS.items():
            os.environ.setdefault(key, value)
        os.environ.update(local_env(run_dir, auth_mode, _process_token()))
        _reread_environment()
        options = init_options(verbosity, num_cpus=num_cpus, run_dir=run_dir)
        ray.init(**{**options, **kwargs})
    log.info("Ray ready: %s", ray.cluster_resources())


@functools.cache
def _process_token() -> str:
    """The token of the local clusters this process starts: one per process, random (Ray reads
    a process's token once, so a second local cluster started here must have the same)."""
    return secrets.token_hex(32)


def _reread_environment() -> None:
    """Ray reads ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER`` and its ``RAY_*`` settings (``RAY_AUTH_MODE``
    among them) when it is imported: this process imported Ray before :func:`init_ray` set them,
    so they are read again here, as Ray itself does when it turns token authentication on (the
    processes Ray starts read them from their environment)."""
    from ray._private import ray_constants
    from ray._raylet import Config  # type: ignore[attr-defined]

    ray_constants.ENABLE_RAY_CLUSTER = False
    Config.initialize("")


def _claim_run_dir() -> Path:
    """This process's cluster folder, with ``driver.json`` naming it (pid and start time), in
    a root folder of this user's own (mode 700: session files, sockets and logs)."""
    import psutil

    root = ray_root()
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = root.lstat()
    if stat.S_ISLNK(st.st_mode) or (hasattr(os, "getuid") and st.st_uid != os.getuid()):
        raise RuntimeError(f"{root} is not this user's own folder; set {ROOT_ENV} to one that is")
    if ROOT_ENV not in os.environ and st.st_mode & 0o077:
        root.chmod(0o700)
    run_dir = root / str(os.getpid())
    run_dir.mkdir(exist_ok=True)
    record = {"pid": os.getpid(), "started": psutil.Process().create_time(), "argv": sys.argv}
    tmp = run_dir / f".{DRIVER_FILE}.tmp"
    tmp.write_text(json.dumps(record), encoding="utf-8")
    tmp.replace(run_dir / DRIVER_FILE)
    return run_dir


# --- what a killed local run left behind -------------------------------------------------


@dataclass(frozen=True)
class ProcessInfo:
    """What :func:`leftovers` needs to know of a process."""

    pid: int
    ppid: int
    name: str
    cmdline: str = ""
    run_env: str | None = None  # its SIMULACRA_RAY_RUN, where its environment can be read
    open_paths: tuple[str, ...] = ()  # the files it holds open (read only where needed)


@dataclass(frozen=True)
class ClusterDir:
    """A local cluster's folder and whether its driver still runs."""

    path: Path
    driver_pid: int | None
    driver_alive: bool


def _inside(path: str, folder: Path) -> bool:
    folder_text = str(folder).rstrip("/") + "/"
    return path == str(folder) or path.startswith(folder_text)


def looks_like_ray(proc: ProcessInfo, ray_dir: str) -> bool:
    """Whether ``proc`` is one of Ray's: a worker or agent (``ray::...``, ``ray-...``), or a
    program of the ``ray`` package (``ray_dir``: gcs_server, raylet, the dashboard, monitors)."""
    title = proc.cmdline or proc.name
    return title.startswith(("ray::", "ray-")) or (bool(ray_dir) and ray_dir + "/" in title)


def cluster_of(
    proc: ProcessInfo, clusters: Sequence[ClusterDir], ray_dir: str
) -> ClusterDir | None:
    """The local cluster ``proc`` belongs to: its environment names the cluster's folder, or
    it is one of Ray's (:func:`looks_like_ray`) and its command line mentions the folder or it
    holds a file open in it (Ray's agents rename themselves and lose their environment's text,
    but keep their log files open). A ``tail -f`` of a cluster's log is nobody's."""
    for cluster in clusters:
        folder = str(cluster.path)
        if proc.run_env is not None and proc.run_env == folder:
            return cluster
    if not looks_like_ray(proc, ray_dir):
        return None
    for cluster in clusters:
        folder = str(cluster.path)
        if folder + "/" in proc.cmdline or proc.cmdline.endswith(folder):
            return cluster
        if any(_inside(p, cluster.path) for p in proc.open_paths):
            return cluster
    return None


def leftovers(
    processes: Iterable[ProcessInfo],
    clusters: Sequence[ClusterDir],
    ray_dir: str,
    protected: Iterable[int] = (),
) -> dict[int, ProcessInfo]:
    """The processes to stop: those of a cluster whose driver is gone, and their descendants;
    never a ``protected`` pid (this process, its ancestors, a live driver) nor a process of a
    cluster whose driver runs."""
    if all(c.driver_alive for c in clusters):
        return {}
    procs = {p.pid: p for p in processes}
    keep = set(protected) | {c.driver_pid for c in clusters if c.driver_alive and c.driver_pid}
    chosen: dict[int, ProcessInfo] = {}
    for proc in procs.values():
        if proc.pid in keep:
            continue
        cluster = cluster_of(proc, clusters, ray_dir)
        if cluster is not None and not cluster.driver_alive:
            chosen[proc.pid] = proc
    children: dict[int, list[int]] = {}
    for proc in procs.values():
        children.setdefault(proc.ppid, []).append(proc.pid)
    stack = list(chosen)
    while stack:
        for child in children.get(stack.pop(), []):
            if child in chosen or child in keep:
                continue
            if (c := cluster_of(procs[child], clusters, ray_dir)) is not None and c.driver_alive:
                continue
            chosen[child] = procs[child]
            stack.append(child)
    return chosen


def read_clusters(root: Path) -> list[ClusterDir]:
    """Every local cluster folder under ``root``, with whether its driver still runs."""
    import psutil

    clusters: list[ClusterDir] = []
    if not root.is_dir():
        return clusters
    for path in sorted(root.iterdir()):
        if not path.is_dir() or not path.name.isdigit():
            continue
        pid, started = int(path.name), None
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            record = json.loads((path / DRIVER_FILE).read_text(encoding="utf-8"))
            pid, started = int(record["pid"]), float(record["started"])
        alive = False
        with contextlib.suppress(psutil.Error):
            proc = psutil.Process(pid)
            alive = proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
            if alive and started is not None:
                alive = abs(proc.create_time() - started) < 1.0  # not a new process on that pid
        clusters.append(ClusterDir(path, pid, alive))
    return clusters


def ray_package_dir() -> str:
    """The folder of the installed ``ray`` package (found without importing it)."""
    import importlib.util

    spec = importlib.util.find_spec("ray")
    if spec is None or not spec.submodule_search_locations:
        return ""
    return str(next(iter(spec.submodule_search_locations)))


def _processes(clusters: Sequence[ClusterDir], ray_dir: str) -> list[ProcessInfo]:
    """This user's processes, each with what :func:`cluster_of` reads (open files only of those
    not matched otherwise and named like Ray's)."""
    import psutil

    uid = os.getuid() if hasattr(os, "getuid") else None
    found = []
    for proc in psutil.process_iter(["pid", "ppid", "name", "cmdline", "uids"]):
        info = proc.info
        if uid is not None and info["uids"] is not None and info["uids"].real != uid:
            continue
        cmdline = " ".join(info["cmdline"] or [])
        run_env = None
        with contextlib.suppress(psutil.Error, OSError):
            run_env = proc.environ().get(RUN_ENV)
        item = ProcessInfo(info["pid"], info["ppid"] or 0, info["name"] or "", cmdline, run_env)
        if cluster_of(item, clusters, ray_dir) is None and looks_like_ray(item, ray_dir):
            with contextlib.suppress(psutil.Error, OSError):
                paths = tuple(f.path for f in proc.open_files())
                item = ProcessInfo(item.pid, item.ppid, item.name, cmdline, run_env, paths)
        found.append(item)
    return found


def _protected() -> set[int]:
    import psutil

    pids = {os.getpid()}
    with contextlib.suppress(psutil.Error):
        pids |= {p.pid for p in psutil.Process().parents()}
    return pids


@dataclass(frozen=True)
class Stopped:
    """What :func:`stop_leftovers` found and did."""

    processes: tuple[ProcessInfo, ...]
    survivors: tuple[int, ...]  # pids still running after SIGKILL
    removed: tuple[Path, ...]  # folders of ended clusters deleted (beyond the newest few)

    def describe(self) -> str:
        listed = ", ".join(f"{p.pid} ({p.name})" for p in self.processes)
        text = f"stopped {len(self.processes)} Ray process(es) left by a killed run: {listed}"
        if self.survivors:
            text += f"; still running: {', '.join(map(str, self.survivors))}"
        return text


def stop_leftovers(
    root: Path | None = None,
    dry_run: bool = False,
    grace_s: float = 5.0,
    report: Any = None,
) -> Stopped:
    """Stops the Ray processes of local clusters under ``root`` whose driver is gone (SIGTERM,
    then SIGKILL after ``grace_s``), and deletes the folders of ended clusters but the newest
    :data:`KEEP_ENDED`. Clusters whose driver runs, and any other Ray cluster, are left alone.
    ``report`` (e.g. ``log.warning``) gets one line when something was stopped."""
    import psutil

    root = root or ray_root()
    clusters = read_clusters(root)
    if not clusters:
        return Stopped((), (), ())
    ray_dir = ray_package_dir()
    chosen = leftovers(_processes(clusters, ray_dir), clusters, ray_dir, _protected())
    procs = tuple(sorted(chosen.values(), key=lambda p: p.pid))
    if dry_run:
        return Stopped(procs, (), ())
    handles = []
    for info in procs:
        with contextlib.suppress(psutil.Error):
            handle = psutil.Process(info.pid)
            handle.send_signal(signal.SIGTERM)
            handles.append(handle)
    _, alive = psutil.wait_procs(handles, timeout=grace_s)
    for handle in alive:
        with contextlib.suppress(psutil.Error):
            handle.kill()
    _, alive = psutil.wait_procs(alive, timeout=grace_s)
    survivors = tuple(p.pid for p in alive)
    owners = (cluster_of(chosen[pid], clusters, ray_dir) for pid in survivors)
    busy = {c.path for c in owners if c is not None}
    stopped = Stopped(procs, survivors, _prune(clusters, busy))
    if procs and report is not None:
        report(stopped.describe())
    return stopped


def _prune(clusters: Sequence[ClusterDir], busy: set[Path]) -> tuple[Path, ...]:
    """Deletes ended clusters' folders beyond the newest :data:`KEEP_ENDED` (not one with a
    process that would not stop)."""
    ended = [c for c in clusters if not c.driver_alive and c.path not in busy]
    ended.sort(key=lambda c: _mtime(c.path), reverse=True)
    for cluster in ended[KEEP_ENDED:]:
        shutil.rmtree(cluster.path, ignore_errors=True)
    return tuple(c.path for c in ended[KEEP_ENDED:])


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0
