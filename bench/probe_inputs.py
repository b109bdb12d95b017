"""A probe of hostile inputs: does every one get a clean refusal?

Four kinds of input, each case independent (its own copy of every file, in a temporary folder):

- A. HTTP, against ``simulacra serve --model tiny --api-key K`` started here in a subprocess:
  bad JSON schemas (``$ref`` out of the document, huge, unbounded repetitions), bad sampling
  parameters, lone surrogates, huge prompts and bodies, malformed JSON, wrong types, unknown
  models, missing keys, and a batch of bad requests sent together with good ones.
  Clean: the expected status (400; 401 for a key, 404 for an unknown model or route, 400 or
  413 for a body too large) with an OpenAI error body ``{"error": {"message", "type", "param",
  "code"}}`` naming the parameter or limit, within 30 s, and a normal request answered (200)
  right after. A few cases marked "or served" also accept an ordinary 200 answer (no 500, no
  hang): inputs that are odd but harmless.
- B. Scenario files, ``simulacra run FILE --model tiny --steps 1 --out DIR``.
- C. ``simulacra import-ga STORAGE -o OUT`` on damaged copies of the Generative Agents storage
  folder under ``/work/shared/data`` (the folder holding ``reverie/meta.json``).
- D. ``simulacra resume COPY --steps 2`` on damaged copies of a small real run (made first:
  the town, the tiny model, 4 steps, checkpoints every 2).

CLI cases are clean with exit code 2, no traceback, an error on stderr naming the file or field
(one line; a scenario file's problems one per line, each prefixed with the file) and nothing
written: the case's folder (its input copies, the output path, the working directory) unchanged.

Prints a table and ``refused cleanly: N of M`` with the cases that were not, and writes
``bench/results/probe_inputs.json``.

Usage: .venv/bin/python bench/probe_inputs.py [--sections ABCD] [--jobs 2] [--keep]
       [--out bench/results/probe_inputs.json]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import hashlib
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results"
SIMULACRA = str(Path(sys.executable).parent / "simulacra")
TOWN = ROOT / "scenarios" / "town.yaml"
DATA = Path("/work/shared/data")
HTTP_TIMEOUT = 30.0
API_KEY = "probe-key-7f3a"
RAW = "__RAW__"  # a placeholder string replaced by raw text after json.dumps / yaml.safe_dump


@dataclass
class Result:
    section: str
    case: str
    tried: str
    expected: str
    happened: str
    clean: bool
    seconds: float


# --- processes ---------------------------------------------------------------------------------


@dataclass
class Proc:
    rc: int | None
    out: str
    err: str
    seconds: float
    timed_out: bool


class Env:
    """The probe's temporary folder and the environment of its subprocesses (a private Ray
    root, so that every Ray process this probe starts is recognisable as its own)."""

    def __init__(self, keep: bool) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="probe-", dir="/tmp"))
        self.ray_root = self.tmp / "ray"
        self.ray_root.mkdir()
        self.keep = keep
        self.env = dict(os.environ)
        self.env["SIMULACRA_RAY_TMPDIR"] = str(self.ray_root)
        self.env.pop("RAY_ADDRESS", None)
        self._n = 0
        self._lock = threading.Lock()

    def case_dir(self, label: str) -> Path:
        with self._lock:
            self._n += 1
            n = self._n
        d = self.tmp / "cases" / f"{n:03d}-{_slug(label)}"
        d.mkdir(parents=True)
        return d

    def cli(self, args: list[str], cwd: Path, timeout: float) -> Proc:
        start = time.monotonic()
        p = subprocess.Popen(
            [SIMULACRA, *args],
            cwd=cwd,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        try:
            out, err = p.communicate(timeout=timeout)
            timed_out = False
        except subprocess.TimeoutExpired:
            _kill_group(p)
            out, err = p.communicate()
            timed_out = True
        return Proc(
            p.returncode,
            out.decode(errors="replace"),
            err.decode(errors="replace"),
            time.monotonic() - start,
            timed_out,
        )

    def own_processes(self) -> list[int]:
        """Processes of the Ray clusters this probe started (by their environment or command
        line naming the probe's Ray root)."""
        mark = str(self.ray_root).encode()
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                environ = (entry / "environ").read_bytes()
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if b"SIMULACRA_RAY_RUN=" + mark in environ or mark in cmdline:
                found.append(int(entry.name))
        return found

    def stop_own_processes(self) -> list[int]:
        pids = self.own_processes()
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in pids:
                with contextlib.suppress(OSError):
                    os.kill(pid, sig)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and any(_alive(p) for p in pids):
                time.sleep(0.5)
            pids = [p for p in pids if _alive(p)]
            if not pids:
                break
        return pids

    def close(self) -> None:
        if not self.keep:
            shutil.rmtree(self.tmp, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _kill_group(p: subprocess.Popen[Any]) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(OSError):
            os.killpg(p.pid, sig)
        try:
            p.wait(timeout=15)
            return
        except subprocess.TimeoutExpired:
            continue


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text)[:48].strip("-")


# --- "nothing written" -------------------------------------------------------------------------


def snapshot(path: Path) -> dict[str, str]:
    """Every file and folder under ``path`` with its content's digest ({} when absent)."""
    if not path.exists():
        return {}
    if not path.is_dir():
        return {"": _digest(path)}
    out = {"": "dir"}
    for f in sorted(path.rglob("*")):
        rel = str(f.relative_to(path))
        out[rel] = "dir" if f.is_dir() else _digest(f)
    return out


def _digest(path: Path) -> str:
    try:
        return "file:" + hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    except OSError as exc:
        return f"unreadable:{exc.errno}"


def changes(before: dict[str, str], after: dict[str, str]) -> list[str]:
    out = []
    for rel in sorted(set(before) | set(after)):
        if rel not in before:
            out.append(f"created {rel or '(the path)'}")
        elif rel not in after:
            out.append(f"deleted {rel or '(the path)'}")
        elif before[rel] != after[rel]:
            out.append(f"changed {rel or '(the path)'}")
    return out


# --- judging a CLI case ------------------------------------------------------------------------


def judge_cli(proc: Proc, names: list[str], wrote: list[str], timeout: float) -> tuple[bool, str]:
    problems = []
    if proc.timed_out:
        problems.append(f"still running after {timeout:.0f} s (killed): not refused")
    elif proc.rc != 2:
        problems.append(f"exit code {proc.rc}, not 2")
    if "Traceback" in proc.err:
        problems.append("a Traceback on stderr")
    lines = [line for line in proc.err.splitlines() if line.strip()]
    at = next((i for i, line in enumerate(lines) if ": error:" in line), None)
    shown = ""
    if at is None:
        problems.append("no error line on stderr")
        tail = lines[-1] if lines else ""
        shown = f"; stderr ends {tail[:200]!r}" if tail else "; stderr empty"
    else:
        error, rest = lines[at], lines[at + 1 :]
        text = "\n".join(lines[at:])
        shown = f"; stderr: {error[:260]!r}" + (f" (+{len(rest)} lines)" if rest else "")
        after = error.split(": error: ", 1)[-1]
        prefix = after.split(": ", 1)[0] + ": " if ": " in after else None
        extra = [line for line in rest if prefix is None or not line.startswith(prefix)]
        if extra:
            problems.append(f"the error is {len(rest) + 1} lines (e.g. {extra[0][:120]!r})")
        missing = [n for n in names if not any(a.lower() in text.lower() for a in n.split("|"))]
        if missing:
            problems.append(f"the error does not name {', '.join(repr(m) for m in missing)}")
    if wrote:
        problems.append("wrote: " + ", ".join(wrote[:6]) + (" ..." if len(wrote) > 6 else ""))
    happened = f"exit {proc.rc} in {proc.seconds:.1f} s{shown}"
    if problems:
        happened += " | NOT CLEAN: " + "; ".join(problems)
    return not problems, happened


@dataclass
class CliCase:
    section: str
    name: str
    tried: str
    names: list[str]  # what the error must name (all, case-insensitive; "a|b": a or b)
    prepare: Callable[[Path], list[str]]  # writes the inputs into the case folder; the args
    timeout: float = 90.0


def run_cli_case(env: Env, case: CliCase) -> Result:
    d = env.case_dir(f"{case.section}-{case.name}")
    start = time.monotonic()
    try:
        args = case.prepare(d)
    except Exception as exc:  # a bug of the probe itself: reported, never hidden
        return Result(case.section, case.name, case.tried, "-", f"probe error: {exc!r}", False, 0.0)
    before = snapshot(d)
    proc = env.cli(args, cwd=d, timeout=case.timeout)
    after = snapshot(d)
    clean, happened = judge_cli(proc, case.names, changes(before, after), case.timeout)
    happened = happened.replace(f"{d}/", "").replace(str(d), ".")  # paths relative to the case
    expected = "exit 2, one error line naming " + " and ".join(repr(n) for n in case.names)
    expected += ", nothing written"
    if not env.keep:
        shutil.rmtree(d, ignore_errors=True)
    return Result(
        case.section, case.name, case.tried, expected, happened, clean, time.monotonic() - start
    )


# --- B. scenario files -------------------------------------------------------------------------


def _town() -> dict[str, Any]:
    return yaml.safe_load(TOWN.read_text(encoding="utf-8"))


ALIAS_BOMB = (
    "name: bomb\n"
    'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    "b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
    "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
    "d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n"
    "e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\n"
    "f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\n"
    "g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]\n"
    "h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]\n"
    "i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]\n"
    "description: *i\n"
)


def scenario_cases() -> list[CliCase]:
    def run_args(path: Path, d: Path, extra: Iterable[str] = ()) -> list[str]:
        out = d / "out"
        return ["run", str(path), "--model", "tiny", "--steps", "1", "--out", str(out), *extra]

    def mutated(fn: Callable[[dict[str, Any]], Any], raw: str | None = None, extra=()):
        def prepare(d: Path) -> list[str]:
            data = _town()
            fn(data)
            text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
            if raw is not None:
                text = text.replace(f"'{RAW}'", raw).replace(RAW, raw)
            path = d / "scenario.yaml"
            path.write_text(text, encoding="utf-8")
            return run_args(path, d, extra)

        return prepare

    def raw_file(content: bytes | str, name: str = "scenario.yaml"):
        def prepare(d: Path) -> list[str]:
            path = d / name
            if isinstance(content, str):
                path.write_text(content, encoding="utf-8")
            else:
                path.write_bytes(content)
            return run_args(path, d)

        return prepare

    def town_flags(*extra: str):
        def prepare(d: Path) -> list[str]:
            path = d / "scenario.yaml"
            shutil.copyfile(TOWN, path)
            if "--steps" in extra or "--until" in extra:
                return ["run", str(path), "--model", "tiny", "--out", str(d / "out"), *extra]
            return run_args(path, d, extra)

        return prepare

    def setter(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
        def fn(data: dict[str, Any]) -> None:
            node: Any = data
            keys = [int(k) if k.isdigit() else k for k in path.split(".")]
            for k in keys[:-1]:
                node = node[k]
            node[keys[-1]] = value

        return fn

    def deleter(path: str) -> Callable[[dict[str, Any]], None]:
        def fn(data: dict[str, Any]) -> None:
            node: Any = data
            keys = [int(k) if k.isdigit() else k for k in path.split(".")]
            for k in keys[:-1]:
                node = node[k]
            del node[keys[-1]]

        return fn

    def out_is(kind: str):
        def prepare(d: Path) -> list[str]:
            path = d / "scenario.yaml"
            shutil.copyfile(TOWN, path)
            out = d / "out"
            if kind == "nonempty":
                out.mkdir()
                (out / "keep.txt").write_text("keep me")
            else:
                out.write_text("a file, not a folder")
            return ["run", str(path), "--model", "tiny", "--steps", "1", "--out", str(out)]

        return prepare

    def missing_file(d: Path) -> list[str]:
        return run_args(d / "no-such-scenario.yaml", d)

    def directory(d: Path) -> list[str]:
        (d / "scenario.yaml").mkdir()
        return run_args(d / "scenario.yaml", d)

    dup_key = TOWN.read_text(encoding="utf-8").replace(
        "step_seconds: 10\n", "step_seconds: 10\nstep_seconds: 20\n", 1
    )
    syntax = TOWN.read_text(encoding="utf-8").replace("name: saltmere", "name: [saltmere", 1)
    pytag = "name: !!python/object/apply:os.system ['touch PWNED']\n" + "\n".join(
        line
        for line in TOWN.read_text(encoding="utf-8").splitlines()
        if not line.startswith("name:")
    )

    def agent0(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
        return setter(f"agents.0.{key}", value)

    S = "B.scenario"
    rows: list[tuple[str, str, list[str], Callable[[Path], list[str]]]] = [
        (
            "duration .inf",
            "duration_hours: .inf",
            ["duration_hours"],
            mutated(setter("duration_hours", RAW), ".inf"),
        ),
        (
            "duration 1e12",
            "duration_hours: 1e12",
            ["duration_hours"],
            mutated(setter("duration_hours", 1e12)),
        ),
        (
            "duration 1e308",
            "duration_hours: 1e308",
            ["duration_hours"],
            mutated(setter("duration_hours", 1e308)),
        ),
        (
            "duration .nan",
            "duration_hours: .nan",
            ["duration_hours"],
            mutated(setter("duration_hours", RAW), ".nan"),
        ),
        (
            "duration -1",
            "duration_hours: -1",
            ["duration_hours"],
            mutated(setter("duration_hours", -1)),
        ),
        (
            "duration 0",
            "duration_hours: 0",
            ["duration_hours"],
            mutated(setter("duration_hours", 0)),
        ),
        (
            "duration 'abc'",
            "duration_hours: abc",
            ["duration_hours"],
            mutated(setter("duration_hours", "abc")),
        ),
        (
            "duration 10**400",
            "duration_hours: 1 followed by 400 zeros (a YAML int)",
            ["duration_hours"],
            mutated(setter("duration_hours", RAW), "1" + "0" * 400),
        ),
        (
            "start in 9999",
            "start: 9999-12-31T12:00:00 (48 h run)",
            ["9999"],
            mutated(setter("start", RAW), "9999-12-31T12:00:00"),
        ),
        (
            "start not a date",
            "start: 'next tuesday'",
            ["start"],
            mutated(setter("start", "next tuesday")),
        ),
        (
            "start year 10000",
            "start: '10000-01-01T00:00:00'",
            ["start"],
            mutated(setter("start", "10000-01-01T00:00:00")),
        ),
        ("start missing", "no start key", ["start"], mutated(deleter("start"))),
        (
            "event in 9999",
            "events[0].at: 9999-01-01T00:00:00",
            ["events[0].at"],
            mutated(setter("events.0.at", RAW), "9999-01-01T00:00:00"),
        ),
        (
            "alias bomb",
            f"YAML billion laughs, {len(ALIAS_BOMB)} bytes, 9 levels of 9 aliases",
            ["alias"],
            raw_file(ALIAS_BOMB),
        ),
        (
            "deep nesting",
            "description: 5,000 nested [ ] (10 KB)",
            ["scenario.yaml"],
            mutated(setter("description", RAW), "[" * 5000 + "]" * 5000),
        ),
        (
            "python tag",
            "name: !!python/object/apply:os.system ['touch PWNED']",
            ["scenario.yaml"],
            raw_file(pytag),
        ),
        ("unknown top key", "bogus: 1 at the top", ["bogus"], mutated(setter("bogus", 1))),
        (
            "unknown agent key",
            "agents[0].favourite_colour: red",
            ["agents[0].favourite_colour"],
            mutated(agent0("favourite_colour", "red")),
        ),
        (
            "unknown settings key",
            "settings.retrieval.topk: 5",
            ["settings.retrieval.topk"],
            mutated(setter("settings.retrieval", {"topk": 5})),
        ),
        (
            "agents a string",
            "agents: 'everyone'",
            ["agents"],
            mutated(setter("agents", "everyone")),
        ),
        ("agents empty", "agents: []", ["agents"], mutated(setter("agents", []))),
        ("age 'abc'", "agents[0].age: abc", ["agents[0].age"], mutated(agent0("age", "abc"))),
        ("age 1e9", "agents[0].age: 1000000000", ["agents[0].age"], mutated(agent0("age", 10**9))),
        (
            "age 10**5000",
            "agents[0].age: a 5,001-digit integer",
            ["agents[0].age"],
            mutated(agent0("age", RAW), "1" + "0" * 5000),
        ),
        ("age null", "agents[0].age: null", ["agents[0].age"], mutated(agent0("age", None))),
        ("name 42", "agents[0].name: 42", ["agents[0].name"], mutated(agent0("name", 42))),
        (
            "name with colon",
            "agents[0].name: 'Owen: Castell'",
            ["agents[0].name"],
            mutated(agent0("name", "Owen: Castell")),
        ),
        (
            "memories [[1, 2]]",
            "agents[0].memories: [[1, 2]]",
            ["agents[0].memories"],
            mutated(agent0("memories", [[1, 2]])),
        ),
        (
            "home nowhere",
            "agents[0].home: 'Nowhere:void'",
            ["agents[0].home"],
            mutated(agent0("home", "Nowhere:void")),
        ),
        (
            "adapter unknown",
            "agents[0].adapter: nosuch (the tiny model serves alice, bob)",
            ["nosuch"],
            mutated(agent0("adapter", "nosuch")),
        ),
        (
            "adapter a path",
            "agents[0].adapter: '../../etc/passwd'",
            ["agents[0].adapter"],
            mutated(agent0("adapter", "../../etc/passwd")),
        ),
        (
            "step_seconds 0",
            "step_seconds: 0",
            ["step_seconds"],
            mutated(setter("step_seconds", 0)),
        ),
        (
            "step_seconds 10**20",
            "step_seconds: 10**20",
            ["step_seconds"],
            mutated(setter("step_seconds", 10**20)),
        ),
        (
            "checkpoint_every 0",
            "checkpoint_every: 0",
            ["checkpoint_every"],
            mutated(setter("checkpoint_every", 0)),
        ),
        (
            "sectors a mapping",
            "world.sectors: {a: 1}",
            ["world.sectors"],
            mutated(setter("world.sectors", {"a": 1})),
        ),
        (
            "settings.step_seconds",
            "settings.step_seconds: 60 (the scenario's is 10)",
            ["step_seconds"],
            mutated(setter("settings.step_seconds", 60)),
        ),
        ("preset unknown", "preset: turbo", ["preset"], mutated(setter("preset", "turbo"))),
        ("non-UTF-8", "bytes ff fe 80 in the name", ["utf-8"], raw_file(b"name: \xff\xfe\x80\n")),
        ("empty file", "a 0-byte file", ["empty"], raw_file(b"")),
        ("only a comment", "'# nothing'", ["empty"], raw_file("# nothing\n")),
        ("top-level list", "- a\n- b", ["mapping"], raw_file("- a\n- b\n")),
        ("YAML syntax", "an unclosed [ in name", ["line"], raw_file(syntax)),
        ("duplicate key", "step_seconds given twice", ["step_seconds"], raw_file(dup_key)),
        ("a directory", "the scenario path is a folder", ["scenario.yaml"], directory),
        (
            "missing file",
            "the scenario path does not exist",
            ["no-such-scenario.yaml"],
            missing_file,
        ),
        ("--steps -1", "the town with --steps -1", ["steps"], town_flags("--steps", "-1")),
        ("--until garbage", "--until 'soon'", ["until"], town_flags("--until", "soon")),
        (
            "--until 9999",
            "--until 9999-12-31T23:59:59 (the town ends 2024-03-06T07:00)",
            ["until"],
            town_flags("--until", "9999-12-31T23:59:59"),
        ),
        (
            "--checkpoint-every 0",
            "--checkpoint-every 0",
            ["checkpoint"],
            town_flags("--checkpoint-every", "0"),
        ),
        (
            "--agents-per-host abc",
            "--agents-per-host abc",
            ["agents-per-host"],
            town_flags("--agents-per-host", "abc"),
        ),
        (
            "--agents-per-host 0",
            "--agents-per-host 0",
            ["agents-per-host|agents_per_host"],
            town_flags("--agents-per-host", "0"),
        ),
        (
            "--until before start",
            "--until 2020-01-01T00:00:00 (before the start)",
            ["until"],
            town_flags("--until", "2020-01-01T00:00:00"),
        ),
        ("--steps 0", "the town with --steps 0", ["steps"], town_flags("--steps", "0")),
        ("--out non-empty", "--out a folder holding a file", ["out"], out_is("nonempty")),
        ("--out a file", "--out an existing file", ["out"], out_is("file")),
    ]
    return [CliCase(S, name, tried, names, prep) for name, tried, names, prep in rows]


# --- C. import-ga ------------------------------------------------------------------------------


def find_storage() -> Path:
    for meta in sorted(DATA.rglob("reverie/meta.json")):
        return meta.parent.parent
    raise SystemExit(f"no Generative Agents storage folder (reverie/meta.json) under {DATA}")


def import_cases(storage: Path) -> list[CliCase]:
    meta = json.loads((storage / "reverie" / "meta.json").read_text(encoding="utf-8"))
    first = meta["persona_names"][0]
    scratch = f"personas/{first}/bootstrap_memory/scratch.json"
    spatial = f"personas/{first}/bootstrap_memory/spatial_memory.json"
    env0 = "environment/0.json"
    meta_f = "reverie/meta.json"

    def copy_storage(d: Path) -> Path:
        s = d / "storage"
        shutil.copytree(storage, s)
        return s

    def args(s: Path, d: Path, out: Path | None = None, extra: Iterable[str] = ()) -> list[str]:
        return ["import-ga", str(s), "-o", str(out or d / "out.yaml"), *extra]

    def set_json(rel: str, path: list[Any], value: Any, raw: str | None = None):
        def prepare(d: Path) -> list[str]:
            s = copy_storage(d)
            f = s / rel
            data = json.loads(f.read_text(encoding="utf-8"))
            node = data
            for k in path[:-1]:
                node = node[k]
            if value is _DELETE:
                del node[path[-1]]
            else:
                node[path[-1]] = value
            text = json.dumps(data, indent=1, ensure_ascii=False)
            if raw is not None:
                text = text.replace(f'"{RAW}"', raw)
            f.write_text(text, encoding="utf-8")
            return args(s, d)

        return prepare

    def replace_file(rel: str, content: bytes | str | None):
        def prepare(d: Path) -> list[str]:
            s = copy_storage(d)
            f = s / rel
            if content is None:
                f.unlink()
            elif content is _DIRECTORY:
                f.unlink()
                f.mkdir()
            elif isinstance(content, str):
                f.write_text(content, encoding="utf-8")
            else:
                f.write_bytes(content)
            return args(s, d)

        return prepare

    def output(kind: str):
        def prepare(d: Path) -> list[str]:
            s = copy_storage(d)
            if kind == "dir":
                (d / "outdir").mkdir()
                return args(s, d, d / "outdir")
            if kind == "missing":
                return args(s, d, d / "missing" / "out.yaml")
            if kind == "exists":
                (d / "out.yaml").write_text("keep me\n")
                return args(s, d)
            if kind == "under a file":
                (d / "afile").write_text("x")
                return args(s, d, d / "afile" / "out.yaml")
            raise ValueError(kind)

        return prepare

    def hours(value: str):
        def prepare(d: Path) -> list[str]:
            return args(copy_storage(d), d, extra=["--hours", value])

        return prepare

    def storage_is(kind: str):
        def prepare(d: Path) -> list[str]:
            if kind == "missing":
                return args(d / "no-such-storage", d)
            (d / "storage").write_text("a file")
            return args(d / "storage", d)

        return prepare

    def sc(key: str, value: Any, raw: str | None = None):
        return set_json(scratch, [key], value, raw)

    def mt(key: str, value: Any, raw: str | None = None):
        return set_json(meta_f, [key], value, raw)

    def tile(key: str, value: Any, raw: str | None = None):
        return set_json(env0, [first, key], value, raw)

    S = "C.import-ga"
    rows: list[tuple[str, str, list[str], Callable[[Path], list[str]]]] = [
        (
            "age 'abc'",
            f'{first} scratch.json "age": "abc"',
            ["scratch.json", "age"],
            sc("age", "abc"),
        ),
        ("age -5", 'scratch.json "age": -5', ["scratch.json", "age"], sc("age", -5)),
        ("age true", 'scratch.json "age": true', ["scratch.json", "age"], sc("age", True)),
        (
            "age 1e400",
            'scratch.json "age": 1e400 (inf)',
            ["scratch.json", "age"],
            sc("age", RAW, "1e400"),
        ),
        (
            "age 10**5000",
            'scratch.json "age": a 5,001-digit number',
            ["scratch.json", "age"],
            sc("age", RAW, "1" + "0" * 5000),
        ),
        ("name 42", 'scratch.json "name": 42', ["scratch.json", "name"], sc("name", 42)),
        ("name null", 'scratch.json "name": null', ["scratch.json", "name"], sc("name", None)),
        (
            "name missing",
            'scratch.json without "name"',
            ["scratch.json", "name"],
            sc("name", _DELETE),
        ),
        ("innate 42", 'scratch.json "innate": 42', ["scratch.json", "innate"], sc("innate", 42)),
        (
            "living_area 'nowhere'",
            'scratch.json "living_area": "nowhere"',
            ["scratch.json", "living_area"],
            sc("living_area", "nowhere"),
        ),
        (
            "living_area 42",
            'scratch.json "living_area": 42',
            ["scratch.json", "living_area"],
            sc("living_area", 42),
        ),
        (
            "daily_plan_req 42",
            'scratch.json "daily_plan_req": 42',
            ["scratch.json", "daily_plan_req"],
            sc("daily_plan_req", 42),
        ),
        (
            "recency_decay [1]",
            'scratch.json "recency_decay": [1]',
            ["scratch.json", "recency_decay"],
            sc("recency_decay", [1]),
        ),
        (
            "recency_decay 2",
            'scratch.json "recency_decay": 2',
            ["scratch.json", "recency_decay"],
            sc("recency_decay", 2),
        ),
        (
            "recency_w NaN",
            'scratch.json "recency_w": NaN',
            ["scratch.json", "recency_w"],
            sc("recency_w", RAW, "NaN"),
        ),
        (
            "vision_r -1",
            'scratch.json "vision_r": -1',
            ["scratch.json", "vision_r"],
            sc("vision_r", -1),
        ),
        (
            "att_bandwidth 'abc'",
            'scratch.json "att_bandwidth": "abc"',
            ["scratch.json", "att_bandwidth"],
            sc("att_bandwidth", "abc"),
        ),
        (
            "importance_trigger_max 0",
            'scratch.json "importance_trigger_max": 0',
            ["scratch.json", "importance_trigger_max"],
            sc("importance_trigger_max", 0),
        ),
        (
            "tile x 'abc'",
            f'environment/0.json "{first}".x: "abc"',
            ["0.json", "x"],
            tile("x", "abc"),
        ),
        ("tile y null", "environment/0.json y: null", ["0.json", "y"], tile("y", None)),
        ("tile x -1", "environment/0.json x: -1", ["0.json", "x"], tile("x", -1)),
        (
            "tile x Infinity",
            "environment/0.json x: Infinity",
            ["0.json", "x"],
            tile("x", RAW, "Infinity"),
        ),
        (
            "persona not in env",
            f'environment/0.json without "{first}"',
            ["0.json", first],
            set_json(env0, [first], _DELETE),
        ),
        ("env a list", "environment/0.json is [1, 2]", ["0.json"], replace_file(env0, "[1, 2]")),
        (
            "sec_per_step 'abc'",
            'meta.json "sec_per_step": "abc"',
            ["meta.json", "sec_per_step"],
            mt("sec_per_step", "abc"),
        ),
        (
            "sec_per_step 0",
            'meta.json "sec_per_step": 0',
            ["meta.json", "sec_per_step"],
            mt("sec_per_step", 0),
        ),
        (
            "sec_per_step 1.5",
            'meta.json "sec_per_step": 1.5',
            ["meta.json", "sec_per_step"],
            mt("sec_per_step", 1.5),
        ),
        (
            "sec_per_step 10**30",
            'meta.json "sec_per_step": 10**30',
            ["meta.json", "sec_per_step"],
            mt("sec_per_step", 10**30),
        ),
        (
            "curr_time 12345",
            'meta.json "curr_time": 12345',
            ["meta.json", "curr_time"],
            mt("curr_time", 12345),
        ),
        (
            "start_date garbage",
            'meta.json "curr_time": "", "start_date": "someday"',
            ["meta.json", "start_date"],
            _chain(mt("curr_time", ""), meta_f, ["start_date"], "someday"),
        ),
        (
            "start_date year 9999",
            'meta.json "curr_time": "December 31, 9999, 23:00:00"',
            ["meta.json", "9999"],
            mt("curr_time", "December 31, 9999, 23:00:00"),
        ),
        (
            "persona_names 'abc'",
            'meta.json "persona_names": "abc"',
            ["meta.json", "persona_names"],
            mt("persona_names", "abc"),
        ),
        (
            "persona_names []",
            'meta.json "persona_names": []',
            ["meta.json", "persona_names"],
            mt("persona_names", []),
        ),
        (
            "persona_names [42]",
            'meta.json "persona_names": [42]',
            ["meta.json", "persona_names[0]"],
            mt("persona_names", [42]),
        ),
        (
            "persona_names '../..'",
            'meta.json "persona_names": ["../../etc"]',
            ["meta.json", "persona_names[0]"],
            mt("persona_names", ["../../etc"]),
        ),
        (
            "persona_names twice",
            f'meta.json "persona_names": ["{first}", "{first}"]',
            ["meta.json", "persona_names[1]"],
            mt("persona_names", [first, first]),
        ),
        (
            "persona without folder",
            'meta.json "persona_names": ["Nobody Here"]',
            ["Nobody Here", "scratch.json"],
            mt("persona_names", ["Nobody Here"]),
        ),
        (
            "meta garbage",
            "meta.json is '{not json'",
            ["meta.json", "JSON"],
            replace_file(meta_f, "{not json"),
        ),
        ("meta empty", "meta.json is empty", ["meta.json"], replace_file(meta_f, b"")),
        (
            "meta non-UTF-8",
            "meta.json is bytes ff fe 80",
            ["meta.json"],
            replace_file(meta_f, b"\xff\xfe\x80{}"),
        ),
        (
            "meta nesting",
            "meta.json is 100,000 nested [",
            ["meta.json"],
            replace_file(meta_f, "[" * 100000),
        ),
        ("meta a list", "meta.json is [1]", ["meta.json"], replace_file(meta_f, "[1]")),
        ("meta missing", "reverie/meta.json deleted", ["meta.json"], replace_file(meta_f, None)),
        (
            "meta a folder",
            "reverie/meta.json is a folder",
            ["meta.json"],
            replace_file(meta_f, _DIRECTORY),
        ),
        (
            "scratch garbage",
            "scratch.json is 'garbage'",
            ["scratch.json"],
            replace_file(scratch, "garbage"),
        ),
        ("scratch a list", "scratch.json is []", ["scratch.json"], replace_file(scratch, "[]")),
        (
            "spatial garbage",
            "spatial_memory.json is '{'",
            ["spatial_memory.json"],
            replace_file(spatial, "{"),
        ),
        (
            "spatial a list",
            "spatial_memory.json is [1]",
            ["spatial_memory.json"],
            replace_file(spatial, "[1]"),
        ),
        (
            "spatial object 42",
            "spatial_memory.json's first arena holds [42]",
            ["spatial_memory.json"],
            _spatial_42(copy_storage, args, spatial),
        ),
        (
            "env garbage",
            "environment/0.json is 'garbage'",
            ["0.json"],
            replace_file(env0, "garbage"),
        ),
        (
            "storage missing",
            "the storage folder does not exist",
            ["no-such-storage"],
            storage_is("missing"),
        ),
        ("storage a file", "the storage path is a file", ["storage"], storage_is("file")),
        ("output a directory", "-o an existing folder", ["outdir"], output("dir")),
        ("output in missing folder", "-o missing/out.yaml", ["missing"], output("missing")),
        (
            "output under a file",
            "-o afile/out.yaml (afile is a file)",
            ["afile"],
            output("under a file"),
        ),
        ("output exists", "-o an existing file, no --force", ["out.yaml"], output("exists")),
        ("--hours inf", "--hours inf", ["hours"], hours("inf")),
        ("--hours nan", "--hours nan", ["hours"], hours("nan")),
        ("--hours -1", "--hours -1", ["hours"], hours("-1")),
        ("--hours 1e12", "--hours 1e12", ["hours"], hours("1e12")),
    ]
    return [CliCase(S, name, tried, names, prep, timeout=60) for name, tried, names, prep in rows]


_DELETE: Any = object()
_DIRECTORY: Any = object()


def _chain(first: Callable[[Path], list[str]], rel: str, path: list[str], value: Any):
    """``first``, then one more JSON field set in the same copy."""

    def prepare(d: Path) -> list[str]:
        result = first(d)
        f = d / "storage" / rel
        data = json.loads(f.read_text(encoding="utf-8"))
        node = data
        for k in path[:-1]:
            node = node[k]
        node[path[-1]] = value
        f.write_text(json.dumps(data, indent=1), encoding="utf-8")
        return result

    return prepare


def _spatial_42(copy_storage, args, rel: str):
    def prepare(d: Path) -> list[str]:
        s = copy_storage(d)
        f = s / rel
        data = json.loads(f.read_text(encoding="utf-8"))
        world = next(iter(data.values()))
        sector = next(iter(world.values()))
        arena = next(iter(sector))
        sector[arena] = [42]
        f.write_text(json.dumps(data), encoding="utf-8")
        return args(s, d)

    return prepare


# --- D. run folders ----------------------------------------------------------------------------


def make_real_run(env: Env) -> tuple[subprocess.Popen[bytes], Path, Path]:
    """Starts the small real run the resume cases copy (in the background)."""
    out = env.tmp / "real-run"
    log = env.tmp / "real-run.log"
    args = ["run", str(TOWN), "--model", "tiny", "--steps", "4", "--checkpoint-every", "2"]
    args += ["--out", str(out), "--no-progress"]
    p = subprocess.Popen(
        [SIMULACRA, *args],
        cwd=env.tmp,
        env=env.env,
        stdin=subprocess.DEVNULL,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    return p, out, log


def resume_cases(run: Path) -> list[CliCase]:
    def copy_run(d: Path) -> Path:
        r = d / "run"
        shutil.copytree(run, r)
        return r

    def last_ckpt(r: Path) -> Path:
        return sorted((r / "checkpoints").iterdir())[-1]

    def first(r: Path, pattern: str) -> Path:
        found = sorted(r.glob(pattern))
        if not found:
            raise FileNotFoundError(f"no {pattern} in the run folder")
        return found[-1]

    def damage(target: Callable[[Path], Path], how: str, extra: Iterable[str] = ("--steps", "2")):
        def prepare(d: Path) -> list[str]:
            r = copy_run(d)
            f = target(r)
            if how == "delete":
                if f.is_dir():
                    shutil.rmtree(f)
                else:
                    f.unlink()
            elif how == "truncate":
                data = f.read_bytes()
                f.write_bytes(data[: len(data) // 2])
            elif how == "empty":
                f.write_bytes(b"")
            elif how == "garbage":
                f.write_bytes(os.urandom(max(64, f.stat().st_size)))
            elif how == "msgpack-int":
                f.write_bytes(b"\x2a")  # msgpack of 42
            elif how == "not-json":
                f.write_text("{this is not json")
            elif how == "json-list":
                f.write_text("[1, 2, 3]")
            elif how == "non-utf8":
                f.write_bytes(b"\xff\xfe\x80{}")
            elif how == "none":
                pass
            else:
                raise ValueError(how)
            return ["resume", str(r), *extra]

        return prepare

    def manifest_edit(fn: Callable[[dict[str, Any]], None]):
        def prepare(d: Path) -> list[str]:
            r = copy_run(d)
            f = r / "manifest.json"
            data = json.loads(f.read_text(encoding="utf-8"))
            fn(data)
            f.write_text(json.dumps(data, indent=1), encoding="utf-8")
            return ["resume", str(r), "--steps", "2"]

        return prepare

    def not_a_run(kind: str):
        def prepare(d: Path) -> list[str]:
            r = d / "run"
            if kind == "empty":
                r.mkdir()
            elif kind == "files":
                r.mkdir()
                (r / "notes.txt").write_text("not a run")
                (r / "checkpoints").mkdir()
            elif kind == "file":
                r.write_text("a file")
            elif kind == "missing":
                pass
            return ["resume", str(r), "--steps", "2"]

        return prepare

    def events_part(r: Path) -> Path:
        return first(r, "parts/events-*.parquet")

    def llm_part(r: Path) -> Path:
        return sorted(r.glob("parts/llm_calls-*.parquet"))[0]

    def state(r: Path) -> Path:
        return last_ckpt(r) / "state.msgpack"

    def manifest(r: Path) -> Path:
        return r / "manifest.json"

    def pop(key: str) -> Callable[[dict[str, Any]], None]:
        return lambda m: m.pop(key, None)

    def set_in(path: list[str], value: Any) -> Callable[[dict[str, Any]], None]:
        def fn(m: dict[str, Any]) -> None:
            node = m
            for k in path[:-1]:
                node = node[k]
            node[path[-1]] = value

        return fn

    # the names each error must hold: found from the real run's files
    ev = events_part(run).name
    llm = llm_part(run).name
    S = "D.resume"
    rows: list[tuple[str, str, list[str], Callable[[Path], list[str]]]] = [
        ("part deleted", f"parts/{ev} deleted", [ev], damage(events_part, "delete")),
        (
            "part truncated",
            f"parts/{ev} cut to half its bytes",
            [ev],
            damage(events_part, "truncate"),
        ),
        ("part empty", f"parts/{ev} 0 bytes", [ev], damage(events_part, "empty")),
        ("part garbage", f"parts/{ev} random bytes", [ev], damage(events_part, "garbage")),
        (
            "early part deleted",
            f"parts/{llm} (the first part) deleted",
            [llm],
            damage(llm_part, "delete"),
        ),
        (
            "parts folder deleted",
            "parts/ deleted",
            ["parts"],
            damage(lambda r: r / "parts", "delete"),
        ),
        (
            "state truncated",
            "last checkpoint's state.msgpack cut to half",
            ["state.msgpack"],
            damage(state, "truncate"),
        ),
        (
            "state empty",
            "last checkpoint's state.msgpack 0 bytes",
            ["state.msgpack"],
            damage(state, "empty"),
        ),
        (
            "state garbage",
            "last checkpoint's state.msgpack random bytes",
            ["state.msgpack"],
            damage(state, "garbage"),
        ),
        (
            "state msgpack 42",
            "last checkpoint's state.msgpack is msgpack 42",
            ["state.msgpack"],
            damage(state, "msgpack-int"),
        ),
        (
            "checkpoints deleted",
            "checkpoints/ deleted",
            ["checkpoint"],
            damage(lambda r: r / "checkpoints", "delete"),
        ),
        (
            "manifest not JSON",
            "manifest.json is '{this is not json'",
            ["manifest.json"],
            damage(manifest, "not-json"),
        ),
        ("manifest empty", "manifest.json 0 bytes", ["manifest.json"], damage(manifest, "empty")),
        (
            "manifest a list",
            "manifest.json is [1, 2, 3]",
            ["manifest.json"],
            damage(manifest, "json-list"),
        ),
        (
            "manifest non-UTF-8",
            "manifest.json bytes ff fe 80",
            ["manifest.json"],
            damage(manifest, "non-utf8"),
        ),
        (
            "manifest no scenario",
            'manifest.json without "scenario"',
            ["manifest.json"],
            manifest_edit(pop("scenario")),
        ),
        (
            "manifest no options",
            'manifest.json without "options"',
            ["manifest.json", "options"],
            manifest_edit(pop("options")),
        ),
        (
            "manifest scenario bad",
            'manifest.json scenario.duration_hours "abc"',
            ["manifest.json", "duration_hours"],
            manifest_edit(set_in(["scenario", "duration_hours"], "abc")),
        ),
        (
            "manifest settings bad",
            'manifest.json "settings": 42',
            ["manifest.json", "settings"],
            manifest_edit(set_in(["settings"], 42)),
        ),
        (
            "manifest model missing",
            'manifest.json options.engine.model "/no/such/model"',
            ["/no/such/model"],
            manifest_edit(set_in(["options", "engine", "model"], "/no/such/model")),
        ),
        (
            "manifest checkpoint_every -1",
            "manifest.json options.checkpoint_every -1",
            ["manifest.json", "checkpoint_every"],
            manifest_edit(set_in(["options", "checkpoint_every"], -1)),
        ),
        (
            "manifest target_step 'abc'",
            'manifest.json "target_step": "abc" (resumed without --steps)',
            ["manifest.json", "target_step"],
            _no_steps(manifest_edit(set_in(["target_step"], "abc"))),
        ),
        ("not a run: empty folder", "an empty folder", ["manifest.json"], not_a_run("empty")),
        (
            "not a run: other files",
            "a folder with notes.txt and an empty checkpoints/",
            ["manifest.json"],
            not_a_run("files"),
        ),
        ("not a run: a file", "the run path is a file", ["run"], not_a_run("file")),
        ("not a run: missing", "the run path does not exist", ["run"], not_a_run("missing")),
        (
            "--steps 0",
            "an intact copy with --steps 0",
            ["steps"],
            damage(manifest, "none", ("--steps", "0")),
        ),
        (
            "--steps -2",
            "an intact copy with --steps -2",
            ["steps"],
            damage(manifest, "none", ("--steps", "-2")),
        ),
        (
            "--agents-per-host 0",
            "an intact copy with --agents-per-host 0",
            ["agents-per-host|agents_per_host"],
            damage(manifest, "none", ("--steps", "2", "--agents-per-host", "0")),
        ),
    ]
    return [CliCase(S, name, tried, names, prep, timeout=90) for name, tried, names, prep in rows]


def _no_steps(prepare: Callable[[Path], list[str]]) -> Callable[[Path], list[str]]:
    def wrapped(d: Path) -> list[str]:
        args = prepare(d)
        return [a for a in args if a not in ("--steps", "2")]

    return wrapped


# --- A. HTTP -----------------------------------------------------------------------------------

CHAT = "/v1/chat/completions"
COMP = "/v1/completions"
BOTH = (CHAT, COMP)


def base_body(path: str) -> dict[str, Any]:
    if path == CHAT:
        return {
            "model": "tiny",
            "messages": [{"role": "user", "content": "Say hi."}],
            "max_tokens": 4,
        }
    return {"model": "tiny", "prompt": "Say hi.", "max_tokens": 4}


@dataclass
class HttpCase:
    name: str
    tried: str
    paths: tuple[str, ...]
    patch: dict[str, Any] | None = None  # merged over the base body (None: remove the key)
    raw: dict[str, str] = field(default_factory=dict)  # '"__RAWk__"' -> raw JSON text
    body: bytes | Callable[[str], bytes] | None = None  # the whole body instead
    headers: dict[str, str | None] = field(default_factory=dict)  # None: header left out
    method: str = "POST"
    expect: tuple[int, ...] = (400,)
    names: tuple[str, ...] = ()  # one of them in the error's message or param
    or_served: bool = False  # an ordinary 200 answer is also fine (odd but harmless input)
    chunked: bool = False


def rf(schema: Any) -> dict[str, Any]:
    return {
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "probe", "schema": schema},
        }
    }


def _props(n: int) -> dict[str, Any]:
    return {"type": "object", "properties": {f"p{i}": {"type": "string"} for i in range(n)}}


def _deep_schema(depth: int) -> str:
    return '{"type":"array","items":' * depth + "{}" + "}" * depth


def http_cases() -> list[HttpCase]:
    R = "__RAW0__"
    ref = ("$ref", "reference", "response_format")
    schema_rows: list[tuple[str, str, Any, dict[str, str], tuple[str, ...]]] = [
        ("$ref file", "$ref: file:///etc/passwd", {"$ref": "file:///etc/passwd"}, {}, ref),
        ("$ref http", "$ref: http://127.0.0.1:1/x", {"$ref": "http://127.0.0.1:1/x"}, {}, ref),
        ("$ref missing", "$ref: #/defs/x (no such place)", {"$ref": "#/defs/x"}, {}, ref),
        (
            "$dynamicRef out",
            "$dynamicRef: http://127.0.0.1:1/x#meta",
            {"$dynamicRef": "http://127.0.0.1:1/x#meta"},
            {},
            ref,
        ),
        (
            "$ref metaschema",
            "$ref: the 2020-12 metaschema URL",
            {"$ref": "https://json-schema.org/draft/2020-12/schema"},
            {},
            ref,
        ),
        (
            "$ref nested file",
            "properties.a.$ref: file:///etc/shadow",
            {"type": "object", "properties": {"a": {"$ref": "file:///etc/shadow"}}},
            {},
            ref,
        ),
        (
            "$ref chain out",
            "#/$defs/a -> #/$defs/b -> file:///etc/passwd",
            {
                "$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "file:///etc/passwd"}},
                "$ref": "#/$defs/a",
            },
            {},
            ref,
        ),
        (
            "$ref relative",
            '$id http://127.0.0.1:1/root + $ref "other"',
            {"$id": "http://127.0.0.1:1/root", "$ref": "other"},
            {},
            ref,
        ),
        ("$ref 42", "$ref: 42 (not a string)", {"$ref": 42}, {}, ref),
        (
            "$ref self loop",
            "$defs.a = {$ref: #/$defs/a}, root $ref #/$defs/a",
            {"$defs": {"a": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"},
            {},
            ref,
        ),
        (
            "10,000 properties",
            "an object schema with 10,000 properties (259 KB)",
            _props(10000),
            {},
            ("properties", "bytes", "response_format"),
        ),
        (
            "35,000 properties",
            "an object schema with 35,000 properties (just under 1 MiB)",
            _props(35000),
            {},
            ("properties", "bytes", "response_format"),
        ),
        (
            "minLength 1e9",
            "string minLength 10^9",
            {"type": "string", "minLength": 10**9},
            {},
            ("minLength",),
        ),
        (
            "maxLength 1e12",
            "string maxLength 10^12",
            {"type": "string", "maxLength": 10**12},
            {},
            ("maxLength",),
        ),
        (
            "minItems 1e9",
            "array minItems 10^9",
            {"type": "array", "items": {"type": "integer"}, "minItems": 10**9},
            {},
            ("minItems",),
        ),
        (
            "maxProperties 1e9",
            "object maxProperties 10^9",
            {"type": "object", "maxProperties": 10**9},
            {},
            ("maxProperties",),
        ),
        (
            "minLength 1e400",
            "minLength: 1e400 (inf)",
            {"type": "string", "minLength": R},
            {R: "1e400"},
            ("minLength",),
        ),
        (
            "pattern '('",
            "string pattern '(' (not a regex)",
            {"type": "string", "pattern": "("},
            {},
            ("pattern", "regex", "response_format"),
        ),
        (
            "pattern surrogate",
            'string pattern "\\ud800"',
            {"type": "string", "pattern": R},
            {R: '"\\ud800"'},
            ("pattern", "response_format"),
        ),
        (
            "property surrogate",
            'a property named "\\ud800"',
            {"type": "object", "properties": {R: {"type": "string"}}},
            {f'"{R}": {{': '"\\ud800": {'},
            ("response_format",),
        ),
        ("type nope", 'type: "nope"', {"type": "nope"}, {}, ("type", "response_format")),
        ("schema a string", 'schema: "abc"', "abc", {}, ("schema", "response_format")),
        (
            "multipleOf 0",
            "number multipleOf 0",
            {"type": "number", "multipleOf": 0},
            {},
            ("multipleOf", "response_format"),
        ),
        (
            "enum 100,000",
            "enum of 100,000 strings",
            {"enum": [f"v{i}" for i in range(100000)]},
            {},
            ("bytes", "enum", "response_format"),
        ),
        (
            "nesting 300",
            "items nested 300 deep",
            R,
            {f'"{R}"': _deep_schema(300)},
            ("response_format", "deep", "nest"),
        ),
        (
            "nesting 900",
            "items nested 900 deep",
            R,
            {f'"{R}"': _deep_schema(900)},
            ("response_format", "deep", "nest"),
        ),
    ]
    cases: list[HttpCase] = []
    for name, tried, schema, raw, names in schema_rows:
        cases.append(HttpCase(f"schema {name}", tried, BOTH, rf(schema), dict(raw), names=names))
    cases += [
        HttpCase(
            "schema missing",
            "response_format json_schema without schema",
            BOTH,
            {"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}},
            names=("schema", "response_format"),
        ),
        HttpCase(
            "response_format xml",
            'response_format.type "xml"',
            BOTH,
            {"response_format": {"type": "xml"}},
            names=("response_format",),
        ),
        HttpCase(
            "json_schema a string",
            'response_format.json_schema "abc"',
            BOTH,
            {"response_format": {"type": "json_schema", "json_schema": "abc"}},
            names=("json_schema", "response_format"),
        ),
    ]

    param_rows: list[tuple[str, str, dict[str, Any], dict[str, str], tuple[str, ...], bool]] = [
        ("max_tokens 1e9", "max_tokens 10^9", {"max_tokens": 10**9}, {}, ("max_tokens",), False),
        ("max_tokens 0", "max_tokens 0", {"max_tokens": 0}, {}, ("max_tokens",), False),
        ("max_tokens -1", "max_tokens -1", {"max_tokens": -1}, {}, ("max_tokens",), False),
        ("max_tokens 'abc'", 'max_tokens "abc"', {"max_tokens": "abc"}, {}, ("max_tokens",), False),
        ("max_tokens 1.5", "max_tokens 1.5", {"max_tokens": 1.5}, {}, ("max_tokens",), False),
        ("max_tokens 2**64", "max_tokens 2^64", {"max_tokens": 2**64}, {}, ("max_tokens",), False),
        (
            "max_tokens 4097",
            "max_tokens 4097 (max_tokens_limit + 1)",
            {"max_tokens": 4097},
            {},
            ("max_tokens",),
            False,
        ),
        (
            "max_tokens past context",
            "max_tokens 2047 (the tiny model's context is 2048)",
            {"max_tokens": 2047},
            {},
            ("context", "max_tokens"),
            False,
        ),
        (
            "max_tokens true",
            "max_tokens true (a boolean)",
            {"max_tokens": True},
            {},
            ("max_tokens",),
            False,
        ),
        (
            "temperature NaN",
            "temperature NaN (raw JSON)",
            {"temperature": R},
            {R: "NaN"},
            ("temperature",),
            False,
        ),
        ("temperature -1", "temperature -1", {"temperature": -1}, {}, ("temperature",), False),
        (
            "temperature 1e309",
            "temperature 1e309 (raw JSON: inf)",
            {"temperature": R},
            {R: "1e309"},
            ("temperature",),
            False,
        ),
        (
            "temperature Infinity",
            "temperature Infinity (raw JSON)",
            {"temperature": R},
            {R: "Infinity"},
            ("temperature",),
            False,
        ),
        (
            "temperature -Infinity",
            "temperature -Infinity (raw JSON)",
            {"temperature": R},
            {R: "-Infinity"},
            ("temperature",),
            False,
        ),
        (
            "temperature 'hot'",
            'temperature "hot"',
            {"temperature": "hot"},
            {},
            ("temperature",),
            False,
        ),
        (
            "temperature 1e308",
            "temperature 1e308 (finite, absurd)",
            {"temperature": 1e308},
            {},
            ("temperature",),
            True,
        ),
        ("top_p 0", "top_p 0", {"top_p": 0}, {}, ("top_p",), False),
        ("top_p 1.5", "top_p 1.5", {"top_p": 1.5}, {}, ("top_p",), False),
        ("top_p NaN", "top_p NaN (raw JSON)", {"top_p": R}, {R: "NaN"}, ("top_p",), False),
        ("top_p -0.5", "top_p -0.5", {"top_p": -0.5}, {}, ("top_p",), False),
        ("seed 2**64", "seed 2^64", {"seed": 2**64}, {}, ("seed",), False),
        ("seed -1", "seed -1", {"seed": -1}, {}, ("seed",), False),
        ("seed 2**63", "seed 2^63", {"seed": 2**63}, {}, ("seed",), False),
        ("seed 1.5", "seed 1.5", {"seed": 1.5}, {}, ("seed",), False),
        ("seed 'x'", 'seed "x"', {"seed": "x"}, {}, ("seed",), False),
        (
            "stop 1000 strings",
            "stop: a list of 1,000 strings",
            {"stop": [f"stop{i}" for i in range(1000)]},
            {},
            ("stop",),
            False,
        ),
        (
            "stop 100,000 strings",
            "stop: a list of 100,000 strings",
            {"stop": [f"s{i}" for i in range(100000)]},
            {},
            ("stop",),
            False,
        ),
        (
            "stop 100 KB string",
            "stop: one 100,000-character string",
            {"stop": "x" * 100000},
            {},
            ("stop",),
            True,
        ),
        ("stop 42", "stop: 42", {"stop": 42}, {}, ("stop",), False),
        ("stop [42]", "stop: [42]", {"stop": [42]}, {}, ("stop",), False),
        (
            "stop surrogate",
            'stop: ["\\ud800"] (raw JSON escape)',
            {"stop": [R]},
            {R: '"\\ud800"'},
            ("stop",),
            False,
        ),
        ("n 2", "n 2", {"n": 2}, {}, ("n",), False),
        ("n 0", "n 0", {"n": 0}, {}, ("n",), False),
        ("n -1", "n -1", {"n": -1}, {}, ("n",), False),
        ("n 1e9", "n 10^9", {"n": 10**9}, {}, ("n",), False),
        ("stream true", "stream true (unsupported)", {"stream": True}, {}, ("stream",), False),
        (
            "model unknown",
            'model "gpt-4" (not served)',
            {"model": "gpt-4"},
            {},
            ("model", "adapter"),
            False,
        ),
        (
            "model a path",
            'model "../../etc/passwd"',
            {"model": "../../etc/passwd"},
            {},
            ("model", "adapter"),
            False,
        ),
        ("model empty", 'model ""', {"model": ""}, {}, ("model", "adapter"), False),
        ("model 42", "model 42", {"model": 42}, {}, ("model",), False),
        (
            "model surrogate",
            'model "\\ud800" (raw JSON escape)',
            {"model": R},
            {R: '"\\ud800"'},
            ("model", "adapter"),
            False,
        ),
        (
            "model 100 KB",
            "model: a 100,000-character name",
            {"model": "m" * 100000},
            {},
            ("model", "adapter"),
            False,
        ),
        ("model missing", "no model key", {"model": None}, {}, ("model",), False),
        (
            "duplicate key",
            "max_tokens 4 then max_tokens 10^9 in one object",
            {"max_tokens": R},
            {f'"max_tokens": "{R}"': '"max_tokens": 4, "max_tokens": 1000000000'},
            ("max_tokens",),
            False,
        ),
    ]
    for name, tried, patch, raw, names, served in param_rows:
        expect = (400, 404) if name.startswith("model unknown") else (400,)
        cases.append(
            HttpCase(
                name, tried, BOTH, patch, dict(raw), names=names, or_served=served, expect=expect
            )
        )

    msg = "messages"
    cases += [
        HttpCase(
            "max_completion_tokens 1e9",
            "max_completion_tokens 10^9",
            (CHAT,),
            {"max_completion_tokens": 10**9},
            names=("max_tokens", "max_completion_tokens"),
        ),
        HttpCase(
            "max_completion_tokens -1",
            "max_completion_tokens -1",
            (CHAT,),
            {"max_completion_tokens": -1},
            names=("max_tokens", "max_completion_tokens"),
        ),
        HttpCase(
            "content surrogate",
            'messages[0].content "\\ud800" (raw JSON escape)',
            (CHAT,),
            {msg: [{"role": "user", "content": R}]},
            {R: '"\\ud800"'},
            names=("messages",),
        ),
        HttpCase(
            "content part surrogate",
            'content [{"type": "text", "text": "\\ud800"}]',
            (CHAT,),
            {msg: [{"role": "user", "content": [{"type": "text", "text": R}]}]},
            {R: '"\\ud800"'},
            names=("messages",),
        ),
        HttpCase(
            "role surrogate",
            'messages[0].role "\\ud800"',
            (CHAT,),
            {msg: [{"role": R, "content": "hi"}]},
            {R: '"\\ud800"'},
            names=("role", "messages"),
        ),
        HttpCase(
            "1 MB content",
            "messages[0].content of 1,000,000 characters",
            (CHAT,),
            {msg: [{"role": "user", "content": "a " * 500000}]},
            names=("context", "prompt", "messages"),
        ),
        HttpCase(
            "30,000 messages",
            "30,000 empty user messages (900 KB)",
            (CHAT,),
            {msg: [{"role": "user", "content": ""}] * 30000},
            names=("context", "prompt", "messages"),
        ),
        HttpCase("messages a string", 'messages: "hi"', (CHAT,), {msg: "hi"}, names=("messages",)),
        HttpCase("messages empty", "messages: []", (CHAT,), {msg: []}, names=("messages",)),
        HttpCase(
            "messages of strings", 'messages: ["hi"]', (CHAT,), {msg: ["hi"]}, names=("messages",)
        ),
        HttpCase("messages missing", "no messages key", (CHAT,), {msg: None}, names=("messages",)),
        HttpCase(
            "message without role",
            'messages: [{"content": "hi"}]',
            (CHAT,),
            {msg: [{"content": "hi"}]},
            names=("role", "messages"),
        ),
        HttpCase(
            "role tool",
            'messages: [{"role": "tool", ...}]',
            (CHAT,),
            {msg: [{"role": "tool", "content": "hi"}]},
            names=("role", "messages"),
        ),
        HttpCase(
            "role 42",
            "messages[0].role 42",
            (CHAT,),
            {msg: [{"role": 42, "content": "hi"}]},
            names=("role", "messages"),
        ),
        HttpCase(
            "content a number",
            "messages[0].content 42",
            (CHAT,),
            {msg: [{"role": "user", "content": 42}]},
            names=("content", "messages"),
        ),
        HttpCase(
            "content null",
            "messages[0].content null",
            (CHAT,),
            {msg: [{"role": "user", "content": None}]},
            names=("content", "messages"),
        ),
        HttpCase(
            "content nested list",
            "messages[0].content [[[1]]]",
            (CHAT,),
            {msg: [{"role": "user", "content": [[[1]]]}]},
            names=("content", "messages"),
        ),
        HttpCase(
            "content part text 42",
            'content [{"type": "text", "text": 42}]',
            (CHAT,),
            {msg: [{"role": "user", "content": [{"type": "text", "text": 42}]}]},
            names=("content", "messages"),
        ),
        HttpCase(
            "prompt surrogate",
            'prompt "\\ud800" (raw JSON escape)',
            (COMP,),
            {"prompt": R},
            {R: '"\\ud800"'},
            names=("prompt",),
        ),
        HttpCase(
            "1 MB prompt",
            "prompt of 1,000,000 characters",
            (COMP,),
            {"prompt": "a " * 500000},
            names=("context", "prompt"),
        ),
        HttpCase("prompt a number", "prompt 42", (COMP,), {"prompt": 42}, names=("prompt",)),
        HttpCase("prompt []", "prompt []", (COMP,), {"prompt": []}, names=("prompt",)),
        HttpCase(
            "prompt token ids",
            "prompt [[1, 2, 3]]",
            (COMP,),
            {"prompt": [[1, 2, 3]]},
            names=("prompt",),
        ),
        HttpCase("prompt missing", "no prompt key", (COMP,), {"prompt": None}, names=("prompt",)),
        HttpCase("echo true", "echo true (unsupported)", (COMP,), {"echo": True}, names=("echo",)),
        HttpCase(
            "10,000 prompts",
            'prompt: a list of 10,000 "hi" (60 KB), max_tokens 16',
            (COMP,),
            {"prompt": ["hi"] * 10000, "max_tokens": 16},
            names=("prompt",),
            or_served=True,
        ),
    ]

    def over_limit(_: str) -> bytes:
        text = json.dumps(base_body(CHAT))
        return (text[:-1] + " " * (1024 * 1024 + 1 - len(text)) + "}").encode()

    cases += [
        HttpCase(
            "malformed JSON",
            '{"model": "tiny", "messages": [',
            BOTH,
            body=b'{"model": "tiny", "messages": [',
            names=("JSON", "body"),
        ),
        HttpCase("empty body", "a 0-byte body", BOTH, body=b"", names=("JSON", "body")),
        HttpCase("body null", "body: null", BOTH, body=b"null", names=("body",)),
        HttpCase("body a list", "body: []", BOTH, body=b"[]", names=("body",)),
        HttpCase("body 42", "body: 42", BOTH, body=b"42", names=("body",)),
        HttpCase(
            "body non-UTF-8",
            "bytes ff fe 80 then JSON",
            BOTH,
            body=b"\xff\xfe\x80" + json.dumps(base_body(CHAT)).encode(),
            names=("JSON", "body", "utf"),
        ),
        HttpCase(
            "nesting 100,000", "100,000 nested [", BOTH, body=b"[" * 100000, names=("JSON", "body")
        ),
        HttpCase(
            "20 MB body",
            "a 20 MB body (Content-Length)",
            BOTH,
            body=b"x" * (20 * 1024 * 1024),
            expect=(400, 413),
            names=("max_request_bytes",),
        ),
        HttpCase(
            "1 MiB + 1 body",
            "valid JSON padded to 1,048,577 bytes",
            (CHAT,),
            body=over_limit,
            expect=(400, 413),
            names=("max_request_bytes",),
        ),
        HttpCase(
            "2 MiB chunked",
            "a 2 MiB body sent chunked (no Content-Length)",
            (CHAT,),
            body=b"y" * (2 * 1024 * 1024),
            chunked=True,
            expect=(400, 413),
            names=("max_request_bytes",),
        ),
        HttpCase(
            "no API key",
            "no Authorization header",
            BOTH,
            headers={"Authorization": None},
            expect=(401,),
            names=("API key",),
        ),
        HttpCase(
            "wrong API key",
            "Authorization: Bearer wrong",
            BOTH,
            headers={"Authorization": "Bearer wrong"},
            expect=(401,),
            names=("API key",),
        ),
        HttpCase(
            "empty bearer",
            "Authorization: 'Bearer '",
            (CHAT,),
            headers={"Authorization": "Bearer "},
            expect=(401,),
            names=("API key",),
        ),
        HttpCase(
            "key as X-API-Key",
            "the key in X-API-Key, no Authorization",
            (CHAT,),
            headers={"Authorization": None, "X-API-Key": API_KEY},
            expect=(401,),
            names=("API key",),
        ),
        HttpCase(
            "Basic auth",
            "Authorization: Basic (key as password)",
            (CHAT,),
            headers={"Authorization": "Basic dXNlcjpwcm9iZS1rZXktN2YzYQ=="},
            expect=(401,),
            names=("API key",),
        ),
        HttpCase(
            "models without key",
            "GET /v1/models without a key",
            ("/v1/models",),
            method="GET",
            headers={"Authorization": None},
            expect=(401,),
            names=("API key",),
        ),
        HttpCase(
            "unknown route", "POST /v1/nope", ("/v1/nope",), expect=(404,), names=("not found",)
        ),
        HttpCase(
            "wrong method",
            "GET /v1/chat/completions",
            (CHAT,),
            method="GET",
            expect=(405,),
            names=("method",),
        ),
    ]
    return cases


def build_body(case: HttpCase, path: str) -> bytes:
    if case.body is not None:
        return case.body(path) if callable(case.body) else case.body
    body = base_body(path)
    for k, v in (case.patch or {}).items():
        if v is None:
            body.pop(k, None)
        else:
            body[k] = copy.deepcopy(v)
    text = json.dumps(body)
    for placeholder, raw in case.raw.items():
        if placeholder.startswith('"'):
            text = text.replace(placeholder, raw)
        else:
            text = text.replace(f'"{placeholder}"', raw)
    return text.encode("utf-8")


@dataclass
class Answer:
    status: int | None
    body: bytes
    seconds: float
    error: str | None = None

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            return None


def send(
    port: int,
    path: str,
    body: bytes | None,
    headers: dict[str, str | None] | None = None,
    method: str = "POST",
    chunked: bool = False,
    timeout: float = HTTP_TIMEOUT,
) -> Answer:
    h: dict[str, str | None] = {
        "Content-Type": "application/json",
        "Authorization": f"Bearer {API_KEY}",
    }
    h.update(headers or {})
    sent = {k: v for k, v in h.items() if v is not None}
    start = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        try:
            if chunked and body is not None:
                step = 64 * 1024
                chunks = (body[i : i + step] for i in range(0, len(body), step))
                conn.request(method, path, body=chunks, headers=sent, encode_chunked=True)
            else:
                conn.request(method, path, body=body if method == "POST" else None, headers=sent)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered (and closed) before the whole body was sent
        r = conn.getresponse()
        data = r.read()
        return Answer(r.status, data, time.monotonic() - start)
    except TimeoutError:
        return Answer(
            None, b"", time.monotonic() - start, f"no answer within {timeout:.0f} s (hang)"
        )
    except (OSError, http.client.HTTPException) as exc:
        return Answer(None, b"", time.monotonic() - start, f"{type(exc).__name__}: {exc}")
    finally:
        conn.close()


def normal(port: int, seed: int = 0) -> Answer:
    body = {**base_body(CHAT), "seed": seed}
    return send(port, CHAT, json.dumps(body).encode())


def error_problems(answer: Answer, expect: tuple[int, ...], names: tuple[str, ...]) -> list[str]:
    """What keeps ``answer`` from being a clean refusal."""
    if answer.status is None:
        return [answer.error or "no answer"]
    if answer.status == 200 and 200 not in expect:
        return ["served (200), not refused"]
    problems = []
    if answer.status not in expect:
        problems.append(f"status {answer.status}, not {'/'.join(map(str, expect))}")
    data = answer.json()
    err = data.get("error") if isinstance(data, dict) else None
    if not isinstance(err, dict) or not {"message", "type", "param", "code"} <= set(err):
        problems.append(f"not an OpenAI error body: {answer.body[:120]!r}")
        return problems
    if not isinstance(err["message"], str) or not err["message"]:
        problems.append("empty error message")
    text = f"{err['message']} {err['param']}".lower()
    if names and not any(n.lower() in text for n in names):
        problems.append(f"the error names none of {', '.join(repr(n) for n in names)}")
    return problems


def describe(answer: Answer) -> str:
    if answer.status is None:
        return f"{answer.error} ({answer.seconds:.1f} s)"
    data = answer.json()
    err = data.get("error") if isinstance(data, dict) else None
    if isinstance(err, dict):
        detail = f"{err.get('type')}/param={err.get('param')}/code={err.get('code')}: "
        detail += repr(str(err.get("message"))[:200])
    elif answer.status == 200:
        detail = "an ordinary answer"
    else:
        detail = repr(answer.body[:160])
    return f"{answer.status} {detail} ({answer.seconds:.1f} s)"


class Service:
    """``simulacra serve --model tiny`` in a subprocess of its own session."""

    def __init__(self, env: Env) -> None:
        self.env = env
        self.port = _free_port()
        self.log = env.tmp / f"serve-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.start_s = 0.0

    def start(self, timeout: float = 600) -> str | None:
        args = ["serve", "--model", "tiny", "--port", str(self.port), "--api-key", API_KEY]
        start = time.monotonic()
        self.proc = subprocess.Popen(
            [SIMULACRA, *args],
            cwd=self.env.tmp,
            env=self.env.env,
            stdin=subprocess.DEVNULL,
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        while time.monotonic() - start < timeout:
            if self.proc.poll() is not None:
                return f"serve exited with {self.proc.returncode}: {self.tail()}"
            a = send(self.port, "/v1/models", None, method="GET", timeout=10)
            if a.status == 200:
                self.start_s = time.monotonic() - start
                return None
            time.sleep(2)
        return f"serve did not answer /v1/models within {timeout:.0f} s"

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def tail(self, n: int = 400) -> str:
        with contextlib.suppress(OSError):
            return self.log.read_text(errors="replace")[-n:]
        return ""

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(OSError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=90)
            except subprocess.TimeoutExpired:
                _kill_group(self.proc)
        self.proc = None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def recover(service: Service, limit: float = 240) -> tuple[bool, float]:
    """Waits for the service to answer a normal request again (restarting it if it died)."""
    start = time.monotonic()
    while time.monotonic() - start < limit:
        if not service.alive():
            service.stop()
            if service.start() is not None:
                return False, time.monotonic() - start
            return True, time.monotonic() - start
        if normal(service.port).status == 200:
            return True, time.monotonic() - start
        time.sleep(3)
    return False, time.monotonic() - start


def run_http_case(service: Service, case: HttpCase, path: str) -> Result:
    label = f"{case.name} [{'chat' if path == CHAT else 'completions' if path == COMP else path}]"
    start = time.monotonic()
    body = build_body(case, path)
    answer = send(service.port, path, body, case.headers, case.method, case.chunked)
    if case.or_served and answer.status == 200:
        problems = []
    else:
        problems = error_problems(answer, case.expect, case.names)
    after = normal(service.port)
    happened = describe(answer)
    if after.status == 200:
        happened += f"; then a normal request: 200 ({after.seconds:.1f} s)"
    else:
        problems.append("the service did not answer a normal request right after")
        ok, waited = recover(service)
        state = f"back after {waited:.0f} s" if ok else f"not back after {waited:.0f} s"
        happened += f"; then a normal request: {describe(after)}; service {state}"
        if not service.alive():
            happened += " (serve died)"
    expected = f"{'/'.join(map(str, case.expect))} naming " + " or ".join(
        repr(n) for n in case.names
    )
    if case.or_served:
        expected += ", or served normally (200)"
    expected += "; then a normal request answered"
    if problems:
        happened += " | NOT CLEAN: " + "; ".join(problems)
    tried = f"{case.method} {path}: {case.tried}"
    return Result(
        "A.http", label, tried, expected, happened, not problems, time.monotonic() - start
    )


def concurrent_case(service: Service, name: str, bad: list[tuple[HttpCase, str]]) -> Result:
    """Bad requests and 10 good ones sent together: each bad one refused, every good one 200."""
    start = time.monotonic()
    jobs: list[Callable[[], Answer]] = []
    for case, path in bad:
        jobs.append(partial(send, service.port, path, build_body(case, path), case.headers))
    jobs += [partial(normal, service.port, seed=i) for i in range(10)]
    with ThreadPoolExecutor(len(jobs)) as pool:
        answers = list(pool.map(lambda job: job(), jobs))
    problems = []
    bad_ok = 0
    for (case, _), answer in zip(bad, answers[: len(bad)], strict=True):
        p = error_problems(answer, case.expect, case.names)
        if p:
            problems.append(f"bad {case.name}: {'; '.join(p)}")
        else:
            bad_ok += 1
    good = answers[len(bad) :]
    good_ok = sum(a.status == 200 for a in good)
    slowest = max(a.seconds for a in good)
    for i, a in enumerate(good):
        if a.status != 200:
            problems.append(f"good {i}: {describe(a)}")
    happened = (
        f"bad refused cleanly {bad_ok}/{len(bad)}, good 200 {good_ok}/10 (slowest {slowest:.1f} s)"
    )
    after = normal(service.port)
    if after.status != 200:
        problems.append("no normal answer after")
        recover(service)
    if problems:
        happened += " | NOT CLEAN: " + "; ".join(problems[:5])
    tried = f"{len(bad)} bad (" + ", ".join(c.name for c, _ in bad) + ") + 10 good, all at once"
    return Result(
        "A.http",
        name,
        tried,
        "each bad one refused (4xx error body), all 10 good ones 200 within 30 s",
        happened,
        not problems,
        time.monotonic() - start,
    )


def http_section(env: Env, results: list[Result], log: Callable[[Result], None]) -> float:
    service = Service(env)
    problem = service.start()
    if problem is not None:
        r = Result(
            "A.http",
            "service start",
            "simulacra serve --model tiny",
            "answers /v1/models",
            problem,
            False,
            0.0,
        )
        results.append(r)
        log(r)
        service.stop()
        return 0.0
    print(
        f"  serve answered /v1/models after {service.start_s:.0f} s (port {service.port})",
        flush=True,
    )
    try:
        cases = http_cases()
        by_name = {c.name: c for c in cases}
        # the slow ones last, so that their aftermath cannot touch the others
        slow = {"10,000 prompts", "schema 35,000 properties"}
        for case in (c for c in cases if c.name not in slow):
            for path in case.paths:
                r = run_http_case(service, case, path)
                results.append(r)
                log(r)
        mix = [
            "temperature NaN",
            "schema $ref file",
            "max_tokens 1e9",
            "malformed JSON",
            "content surrogate",
            "schema 10,000 properties",
            "model unknown",
        ]
        bad = [(by_name[n], CHAT) for n in mix]
        r = concurrent_case(service, "7 bad + 10 good at once", bad)
        results.append(r)
        log(r)
        bad2 = [(by_name[n], CHAT) for n in mix[:-1]] + [
            (by_name["schema 35,000 properties"], CHAT)
        ]
        r = concurrent_case(service, "7 bad (one a 35,000-property schema) + 10 good", bad2)
        results.append(r)
        log(r)
        for case in (c for c in cases if c.name in slow):
            for path in case.paths:
                r = run_http_case(service, case, path)
                results.append(r)
                log(r)
    finally:
        service.stop()
    return service.start_s


# --- the report --------------------------------------------------------------------------------


def print_row(r: Result) -> None:
    mark = "yes" if r.clean else "NO "
    happened = r.happened if len(r.happened) <= 150 else r.happened[:147] + "..."
    print(f"{mark} {r.section:<12} {r.case[:44]:<44} {r.seconds:6.1f}s  {happened}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sections", default="ABCD", help="which of A (HTTP), B, C, D to run")
    parser.add_argument("--jobs", type=int, default=2, help="CLI cases run at once")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument("--out", default=str(RESULTS / "probe_inputs.json"))
    args = parser.parse_args()
    sections = args.sections.upper()
    started = time.monotonic()
    env = Env(args.keep)
    results: list[Result] = []
    lock = threading.Lock()

    def log(r: Result) -> None:
        with lock:
            print_row(r)

    def run_cli_cases(cases: list[CliCase]) -> None:
        with ThreadPoolExecutor(max(1, args.jobs)) as pool:
            for r in pool.map(lambda c: run_cli_case(env, c), cases):
                results.append(r)
                log(r)

    print(f"probe of hostile inputs; temporary folder {env.tmp}", flush=True)
    real: tuple[subprocess.Popen[bytes], Path, Path] | None = None
    stats: dict[str, Any] = {}
    try:
        if "D" in sections:
            real = make_real_run(env)
            print("  started the small real run for D in the background", flush=True)
        if "B" in sections:
            print(
                "B. scenario files: simulacra run FILE --model tiny --steps 1 --out DIR", flush=True
            )
            from scenarios.loader import load_scenario

            load_scenario(TOWN)  # the unmodified town must load: the cases' control
            run_cli_cases(scenario_cases())
        if "C" in sections:
            storage = find_storage()
            print(f"C. simulacra import-ga {storage} (damaged copies) -o OUT", flush=True)
            control = env.case_dir("C-control")
            shutil.copytree(storage, control / "storage")
            p = env.cli(
                ["import-ga", str(control / "storage"), "-o", str(control / "ok.yaml")],
                control,
                120,
            )
            wrote = "wrote" if (control / "ok.yaml").is_file() else "did not write"
            stats["import_ga_control"] = f"exit {p.rc}, {wrote} the scenario"
            print(f"  control (an intact copy): {stats['import_ga_control']}", flush=True)
            run_cli_cases(import_cases(storage))
        if real is not None:
            proc, run_dir, run_log = real
            print("D. run folders: simulacra resume COPY --steps 2", flush=True)
            t = time.monotonic()
            try:
                proc.wait(timeout=1200)
            except subprocess.TimeoutExpired:
                _kill_group(proc)
            stats["real_run"] = {"rc": proc.returncode, "waited_s": round(time.monotonic() - t, 1)}
            if proc.returncode == 0 and (run_dir / "manifest.json").is_file():
                print(
                    f"  the real run is ready ({run_dir}); waited {time.monotonic() - t:.0f} s",
                    flush=True,
                )
                run_cli_cases(resume_cases(run_dir))
            else:
                tail = run_log.read_text(errors="replace")[-600:]
                r = Result(
                    "D.resume",
                    "real run",
                    "simulacra run town --steps 4",
                    "exit 0",
                    f"exit {proc.returncode}: {tail}",
                    False,
                    0.0,
                )
                results.append(r)
                log(r)
        if "A" in sections:
            print("A. HTTP: simulacra serve --model tiny --port P --api-key K", flush=True)
            stats["serve_start_s"] = round(http_section(env, results, log), 1)
    finally:
        if real is not None and real[0].poll() is None:
            _kill_group(real[0])
        left = env.stop_own_processes()
        stats["ray_processes_left"] = left
        env.close()

    wall = time.monotonic() - started
    clean = [r for r in results if r.clean]
    not_clean = [r for r in results if not r.clean]
    print()
    for section in sorted({r.section for r in results}):
        rs = [r for r in results if r.section == section]
        print(f"{section:<12} refused cleanly {sum(r.clean for r in rs)} of {len(rs)}")
    print(f"\nrefused cleanly: {len(clean)} of {len(results)}")
    if not_clean:
        print("not refused cleanly:")
        for r in not_clean:
            print(f"  - {r.section} {r.case}: {r.tried}\n      -> {r.happened}")
    print(f"wall time {wall:.0f} s")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "command": " ".join([".venv/bin/python", "bench/probe_inputs.py", *sys.argv[1:]]),
        "wall_s": round(wall, 1),
        "refused_cleanly": len(clean),
        "cases": len(results),
        "not_clean": [f"{r.section} {r.case}" for r in not_clean],
        "stats": stats,
        "results": [asdict(r) for r in results],
    }
    out.write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"written {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
