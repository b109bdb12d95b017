"""The Ray start-up options and the choice of what ``simulacra stop`` stops, without Ray."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cluster import ray_runtime
from cluster.logs import QUIET_ENV, WORKER_SETUP_HOOK, Verbosity, worker_env
from cluster.ray_runtime import (
    ClusterDir,
    ProcessInfo,
    cluster_of,
    init_options,
    leftovers,
    local_env,
    looks_like_ray,
    quiet_config,
    read_clusters,
)

ROOT = Path("/tmp/simulacra-ray-test")
RAY = "/venv/lib/python3.11/site-packages/ray"
RAYLET = f"{RAY}/core/src/ray/raylet/raylet"
DEAD = ClusterDir(ROOT / "100", 100, driver_alive=False)
LIVE = ClusterDir(ROOT / "200", 200, driver_alive=True)


def test_a_local_cluster_is_private_to_this_machine_and_quiet() -> None:
    options = init_options(Verbosity.NORMAL, num_cpus=2, run_dir=ROOT / "1")
    assert options["address"] == "local"  # never RAY_ADDRESS nor a `ray start` cluster
    assert options["_node_ip_address"] == "127.0.0.1"
    assert options["include_dashboard"] is False
    assert options["_temp_dir"] == str(ROOT / "1")
    assert options["num_cpus"] == 2
    assert options["logging_level"] == 30
    assert options["log_to_driver"] is True  # warnings and errors of workers still show
    env = options["runtime_env"]
    assert env["worker_process_setup_hook"] == WORKER_SETUP_HOOK
    assert set(QUIET_ENV) <= set(env["env_vars"])


def test_verbose_leaves_ray_as_it_is() -> None:
    options = init_options(Verbosity.VERBOSE, run_dir=ROOT / "1")
    assert options["logging_level"] == 20
    assert "runtime_env" not in options
    assert quiet_config(Verbosity.VERBOSE) == {}
    assert worker_env(Verbosity.VERBOSE) == {}


def test_joining_a_cluster_passes_only_the_address_and_verbosity() -> None:
    options = init_options(Verbosity.NORMAL, address="10.0.0.1:6379")
    assert options["address"] == "10.0.0.1:6379"
    assert not {"_node_ip_address", "_temp_dir", "include_dashboard", "num_cpus"} & set(options)


def test_a_local_cluster_needs_its_folder() -> None:
    with pytest.raises(ValueError):
        init_options(Verbosity.NORMAL)


def test_the_local_environment_sets_auth_loopback_and_no_metrics() -> None:
    env = local_env(ROOT / "7", "token", "t0k")
    assert env["RAY_AUTH_MODE"] == "token" and env["RAY_AUTH_TOKEN"] == "t0k"
    assert env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] == "0"
    assert ray_runtime.LOCAL_DEFAULTS["RAY_enable_metrics_collection"] == "0"
    assert ray_runtime.LOCAL_DEFAULTS["RAY_USAGE_STATS_ENABLED"] == "0"
    assert env[ray_runtime.RUN_ENV] == str(ROOT / "7")
    assert quiet_config(Verbosity.NORMAL) == {"RAY_enable_output_error_log_if_still_retry": "0"}


def test_a_user_setting_wins_over_the_quiet_worker_env(monkeypatch) -> None:
    monkeypatch.setenv("TRANSFORMERS_VERBOSITY", "info")
    assert worker_env(Verbosity.NORMAL)["TRANSFORMERS_VERBOSITY"] == "info"


def _proc(pid: int, ppid: int = 1, **kw) -> ProcessInfo:
    return ProcessInfo(pid, ppid, kw.pop("name", f"p{pid}"), **kw)


def test_a_process_belongs_to_a_cluster_by_env_command_line_or_open_file() -> None:
    clusters = [DEAD, LIVE]
    assert cluster_of(_proc(1, run_env=str(DEAD.path)), clusters, RAY) == DEAD
    raylet = _proc(2, cmdline=f"{RAYLET} --session_dir={LIVE.path}/session_x")
    assert cluster_of(raylet, clusters, RAY) == LIVE
    agent = _proc(3, name="ray::DashboardAgent", open_paths=(f"{DEAD.path}/session/logs/a.out",))
    assert cluster_of(agent, clusters, RAY) == DEAD
    # a folder whose name starts like another's is not it
    other = _proc(4, cmdline=f"{RAYLET} --session_dir={ROOT}/1000/session_x")
    assert cluster_of(other, clusters, RAY) is None
    assert cluster_of(_proc(5, cmdline="ray::IDLE"), clusters, RAY) is None


def test_a_users_own_process_reading_a_clusters_logs_is_not_ray() -> None:
    log_file = f"{DEAD.path}/session_latest/logs/raylet.out"
    tail = _proc(6, name="tail", cmdline=f"tail -f {log_file}", open_paths=(log_file,))
    assert not looks_like_ray(tail, RAY)
    assert cluster_of(tail, [DEAD], RAY) is None
    assert leftovers([tail], [DEAD], RAY) == {}
    monitor = f"/venv/bin/python -u {RAY}/autoscaler/_private/monitor.py --logs-dir={DEAD.path}/s"
    assert looks_like_ray(_proc(7, cmdline=monitor), RAY)
    assert looks_like_ray(_proc(8, name="ray::RuntimeEnvAgent"), RAY)


def test_only_the_processes_of_a_cluster_whose_driver_is_gone_are_chosen() -> None:
    processes = [
        _proc(11, name="ray::DashboardAgent", open_paths=(f"{DEAD.path}/s/logs/agent.log",)),
        _proc(12, name="ray::RuntimeEnvAgent", run_env=str(DEAD.path)),
        _proc(13, cmdline=f"{RAYLET} --x={DEAD.path}/s"),
        _proc(14, ppid=13, name="ray::AgentHost"),  # a worker under the dead cluster's raylet
        _proc(21, cmdline=f"{RAY}/core/src/ray/gcs/gcs_server --log_dir={LIVE.path}/s/logs"),
        _proc(22, ppid=21, name="ray::ServeReplica", run_env=str(LIVE.path)),
        _proc(31, cmdline=f"{RAYLET} --session_dir=/tmp/ray/session_x"),  # somebody's own Ray
        _proc(32, ppid=31, name="ray::IDLE"),
        _proc(200, cmdline="python simulacra run", run_env=str(DEAD.path)),  # a live driver
        _proc(300, name="python", run_env=str(DEAD.path)),  # this process (protected)
    ]
    chosen = leftovers(processes, [DEAD, LIVE], RAY, protected={300})
    assert sorted(chosen) == [11, 12, 13, 14]


def test_a_descendant_of_a_leftover_belonging_to_a_live_cluster_is_kept() -> None:
    processes = [_proc(11, run_env=str(DEAD.path)), _proc(12, ppid=11, run_env=str(LIVE.path))]
    assert sorted(leftovers(processes, [DEAD, LIVE], RAY)) == [11]


def test_nothing_is_chosen_while_every_driver_runs() -> None:
    processes = [_proc(21, run_env=str(LIVE.path)), _proc(31, cmdline=f"{RAYLET} /tmp/ray/x")]
    assert leftovers(processes, [LIVE], RAY) == {}
    assert leftovers(processes, [], RAY) == {}


def test_read_clusters_tells_live_drivers_from_gone_ones(tmp_path) -> None:
    import psutil

    me = tmp_path / str(os.getpid())
    me.mkdir()
    started = psutil.Process().create_time()
    (me / "driver.json").write_text(json.dumps({"pid": os.getpid(), "started": started}))
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    gone = tmp_path / str(child.pid)
    gone.mkdir()
    (gone / "driver.json").write_text(json.dumps({"pid": child.pid, "started": time.time()}))
    reused = tmp_path / "1"  # pid 1 runs, but it is not the process that wrote the record
    reused.mkdir()
    (reused / "driver.json").write_text(json.dumps({"pid": 1, "started": 12.0}))
    (tmp_path / "session_latest").mkdir()  # not a cluster folder
    found = {c.path.name: c.driver_alive for c in read_clusters(tmp_path)}
    assert found == {str(os.getpid()): True, str(child.pid): False, "1": False}


def test_stop_with_nothing_left_behind_stops_nothing(tmp_path) -> None:
    stopped = ray_runtime.stop_leftovers(root=tmp_path / "none")
    assert stopped.processes == () and stopped.removed == ()


def test_stop_stops_a_leftover_and_prunes_old_folders(tmp_path, monkeypatch) -> None:
    """A real process standing for an orphaned Ray agent: its environment names a cluster
    folder whose driver is gone."""
    root = tmp_path
    monkeypatch.setattr(ray_runtime, "KEEP_ENDED", 1)
    folders = []
    for pid in (999_999_1, 999_999_2):  # no such pids: drivers that are gone
        folder = root / str(pid)
        folder.mkdir()
        (folder / "driver.json").write_text(json.dumps({"pid": pid, "started": 1.0}))
        folders.append(folder)
    os.utime(folders[0], (1, 1))  # the older one
    env = {**os.environ, ray_runtime.RUN_ENV: str(folders[1])}
    orphan = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], env=env)
    try:
        deadline = time.time() + 10
        while time.time() < deadline:  # until its environment is readable
            dry = ray_runtime.stop_leftovers(root=root, dry_run=True)
            if orphan.pid in {p.pid for p in dry.processes}:
                break
            time.sleep(0.1)
        assert [p.pid for p in dry.processes] == [orphan.pid]
        assert orphan.poll() is None and all(f.exists() for f in folders)  # a dry run
        stopped = ray_runtime.stop_leftovers(root=root, grace_s=5)
        assert [p.pid for p in stopped.processes] == [orphan.pid]
        assert orphan.wait(timeout=10) is not None
        assert stopped.removed == (folders[0],) and not folders[0].exists()
        assert folders[1].exists()  # the newest ended one stays, for its logs
    finally:
        if orphan.poll() is None:
            orphan.kill()


def test_the_stop_command_with_nothing_left_behind(tmp_path, monkeypatch, capsys) -> None:
    from cluster.cli import main

    monkeypatch.setenv(ray_runtime.ROOT_ENV, str(tmp_path))
    assert main(["stop"]) == 0
    assert "nothing to stop" in capsys.readouterr().out
