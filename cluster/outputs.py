"""A run's tables: events, model calls, retrievals, memories, written as Parquet.

Rows are buffered in memory and flushed as one part file per table at every checkpoint
(``parts/<table>-<step>.parquet``). A part holds exactly the rows of the steps since the
previous checkpoint, so resuming from a checkpoint drops the later parts and nothing is
counted twice. At the end of a run the parts are joined into ``<table>.parquet``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from serving.files import atomic_write
from serving.wrappers.accounting import SCHEMA as ACCOUNTING_SCHEMA

EVENTS = pa.schema(
    [
        pa.field("step", pa.int64(), nullable=False),
        pa.field("time", pa.timestamp("s"), nullable=False),
        pa.field("agent", pa.string()),
        pa.field("kind", pa.string(), nullable=False),
        pa.field("location", pa.string()),
        pa.field("text", pa.string(), nullable=False),
    ]
)
"""``events.parquet``. Kinds: move, activity, observation, talk, wait, utterance, conversation,
plan, reflection, event (a scheduled scenario event)."""
EVENT_KINDS = (
    *("move", "activity", "observation", "talk", "wait", "utterance", "conversation"),
    *("plan", "reflection", "event"),
)
"""Every kind of row in ``events.parquet`` (``event``: a scheduled scenario event)."""

LLM_CALLS = pa.schema(
    [
        ACCOUNTING_SCHEMA.field("step"),
        ACCOUNTING_SCHEMA.field("agent"),
        ACCOUNTING_SCHEMA.field("purpose"),
        ACCOUNTING_SCHEMA.field("adapter"),
        ACCOUNTING_SCHEMA.field("prompt_tokens"),
        ACCOUNTING_SCHEMA.field("completion_tokens"),
        ACCOUNTING_SCHEMA.field("latency_s"),
        ACCOUNTING_SCHEMA.field("engine_s"),
        ACCOUNTING_SCHEMA.field("batch_size"),
        ACCOUNTING_SCHEMA.field("cached_tokens"),
        ACCOUNTING_SCHEMA.field("queue_s"),
        ACCOUNTING_SCHEMA.field("queue_length"),
        ACCOUNTING_SCHEMA.field("ok"),
        ACCOUNTING_SCHEMA.field("error"),
        ACCOUNTING_SCHEMA.field("request_id"),
    ]
)
"""``llm_calls.parquet``: one row per model request, as the agent's host saw it."""

RETRIEVALS = pa.schema(
    [
        pa.field("step", pa.int64()),
        pa.field("agent", pa.string(), nullable=False),
        pa.field("retrieval_id", pa.string(), nullable=False),
        pa.field("query", pa.string(), nullable=False),
        pa.field("record_id", pa.string(), nullable=False),
        pa.field("recency_raw", pa.float64(), nullable=False),
        pa.field("recency", pa.float64(), nullable=False),
        pa.field("importance_raw", pa.float64(), nullable=False),
        pa.field("importance", pa.float64(), nullable=False),
        pa.field("relevance_raw", pa.float64(), nullable=False),
        pa.field("relevance", pa.float64(), nullable=False),
        pa.field("score", pa.float64(), nullable=False),
        pa.field("rank", pa.int64(), nullable=False),
        pa.field("returned", pa.bool_(), nullable=False),
    ]
)
"""``retrievals.parquet``: one row per candidate of every retrieval (the mind's traces).

``retrieval_id`` names the retrieval (one query of one agent: its rows share it), unique in the
run and the same in a resumed run (``actors.mind.retrieval.RetrievalIds``); ``record_id`` is the
candidate's, the key of ``memories.parquet``'s ``record_id``. Parts written before retrieval ids
read back with nulls there."""

MEMORIES = pa.schema(
    [
        pa.field("step", pa.int64(), nullable=False),
        pa.field("agent", pa.string(), nullable=False),
        pa.field("record_id", pa.string(), nullable=False),
        pa.field("kind", pa.string(), nullable=False),
        pa.field("description", pa.string(), nullable=False),
        pa.field("created", pa.timestamp("s"), nullable=False),
        pa.field("last_accessed", pa.timestamp("s"), nullable=False),
        pa.field("importance", pa.int64(), nullable=False),
        pa.field("depth", pa.int64(), nullable=False),
        pa.field("evidence", pa.list_(pa.string()), nullable=False),
        pa.field("expires", pa.timestamp("s")),
        pa.field("transcript", pa.list_(pa.list_(pa.string()))),
    ]
)
"""``memories.parquet``: every agent's memory records at the end of the run (and, per
checkpoint, ``checkpoints/<step>/memories.parquet``). ``record_id`` is the record's id (``id`` in
the checkpoint's records, ``MemoryRecord.id``), the key ``retrievals.record_id`` and
``evidence`` refer to."""

TABLES: dict[str, pa.Schema] = {
    "events": EVENTS,
    "llm_calls": LLM_CALLS,
    "retrievals": RETRIEVALS,
}


def write_table(table: pa.Table, path: str | os.PathLike[str]) -> Path:
    """Writes ``table`` to ``path`` atomically (a temporary file, then a rename)."""
    return atomic_write(path, lambda tmp: pq.write_table(table, tmp))


def rows_table(rows: Iterable[dict[str, Any]], schema: pa.Schema) -> pa.Table:
    """Rows (dicts with at least the schema's columns) as a table of exactly ``schema``."""
    names = schema.names
    return pa.Table.from_pylist([{n: r.get(n) for n in names} for r in rows], schema=schema)


def memory_rows(step: int, agent: str, records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Memory records (``MemoryRecord.to_dict`` data) as rows of :data:`MEMORIES` (a record's
    ``id`` becomes the column ``record_id``)."""
    from datetime import datetime

    def when(value: str | None) -> datetime | None:
        return None if value is None else datetime.fromisoformat(value)

    return [
        {
            "step": step,
            "agent": agent,
            "record_id": r["id"],
            "kind": r["kind"],
            "description": r["description"],
            "created": when(r["created"]),
            "last_accessed": when(r["last_accessed"]),
            "importance": r["importance"],
            "depth": r["depth"],
            "evidence": list(r["evidence"]),
            "expires": when(r.get("expires")),
            "transcript": r.get("transcript"),
        }
        for r in records
    ]


class RunTables:
    """Buffers rows per table; flushes them as part files at checkpoints; joins at the end.

    Args:
        run_dir: the run folder.
    """

    def __init__(self, run_dir: str | os.PathLike[str]) -> None:
        self.run_dir = Path(run_dir)
        self.parts_dir = self.run_dir / "parts"
        self._rows: dict[str, list[dict[str, Any]]] = {name: [] for name in TABLES}
        self.counts: dict[str, int] = {name: 0 for name in TABLES}

    def add(self, table: str, rows: Iterable[dict[str, Any]]) -> None:
        buffered = self._rows[table]
        before = len(buffered)
        buffered.extend(rows)
        self.counts[table] += len(buffered) - before

    def buffered(self, table: str) -> list[dict[str, Any]]:
        """A copy of ``table``'s rows not yet flushed (a live view reads them each step)."""
        return list(self._rows[table])

    def flush(self, step: int) -> None:
        """Writes the buffered rows as parts for the steps up to ``step``; empties the buffers."""
        for name, schema in TABLES.items():
            rows = self._rows[name]
            if rows:
                write_table(rows_table(rows, schema), self.parts_dir / f"{name}-{step:09d}.parquet")
            self._rows[name] = []

    def discard_after(self, step: int) -> None:
        """Forgets buffered rows and deletes parts of steps after ``step`` (resuming there)."""
        self._rows = {name: [] for name in TABLES}
        for part in self._parts():
            if part_step(part) > step:
                part.unlink()

    def _parts(self) -> list[Path]:
        if not self.parts_dir.is_dir():
            return []
        return sorted(self.parts_dir.glob("*.parquet"))

    def finish(self) -> dict[str, Path]:
        """Joins every table's parts into ``<table>.parquet`` (empty tables too)."""
        written: dict[str, Path] = {}
        for name, schema in TABLES.items():
            tables = [pq.read_table(p, schema=schema) for p in table_parts(self.run_dir, name)]
            table = pa.concat_tables(tables) if tables else schema.empty_table()
            written[name] = write_table(table, self.run_dir / f"{name}.parquet")
        return written


def table_parts(run_dir: str | os.PathLike[str], table: str) -> list[Path]:
    """``table``'s part files in a run folder, in step order."""
    return sorted((Path(run_dir) / "parts").glob(f"{table}-*.parquet"))


class TableReadError(Exception):
    """A run table's file that cannot be read (names the file)."""


def table_files(run_dir: str | os.PathLike[str], name: str) -> list[Path]:
    """The files holding table ``name`` of a run folder: ``<name>.parquet`` of a finished run,
    else its parts so far (a running or interrupted run)."""
    whole = Path(run_dir) / f"{name}.parquet"
    return [whole] if whole.is_file() else table_parts(run_dir, name)


def read_run_table(run_dir: str | os.PathLike[str], name: str) -> pa.Table:
    """Table ``name`` of a run folder (:func:`table_files`); empty when it has none."""
    schema = TABLES[name]
    tables = []
    for path in table_files(run_dir, name):
        try:
            tables.append(pq.read_table(path, schema=schema))
        except (OSError, pa.ArrowInvalid) as exc:
            raise TableReadError(f"{path}: unreadable table ({exc})") from None
    return pa.concat_tables(tables) if tables else schema.empty_table()


def part_step(path: Path) -> int:
    """The step a table part was flushed at (``<table>-<step>.parquet``)."""
    return int(path.stem.rsplit("-", 1)[1])
