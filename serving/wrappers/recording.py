"""Recording and replay of model answers, as a msgpack stream (never pickle).

A recording is a header record ``{"format": "simulacra-llm-recording", "version": 1}``
followed by one record per request, ``{"request": LLMRequest.to_dict(), "result":
LLMResult.to_dict()}``, appended after every call. A run interrupted mid-write leaves a partial
last record, which readers ignore and an appending recorder cuts off.
"""

from __future__ import annotations

import dataclasses
import os
from collections import defaultdict, deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgpack

from serving.files import write_bytes_atomic
from serving.llm import LLM
from serving.types import LLMError, LLMRequest, LLMResult

FORMAT = "simulacra-llm-recording"
VERSION = 1


class ReplayMissError(LLMError):
    """A replayed request has no (more) recorded answers in the recording."""

    status_code = 404
    error_type = "not_found_error"


def _read(path: Path) -> tuple[list[tuple[LLMRequest, LLMResult]], int]:
    """The complete records of a recording and the byte offset where they end."""
    records: list[tuple[LLMRequest, LLMResult]] = []
    with open(path, "rb") as f:
        unpacker = msgpack.Unpacker(f, raw=False)
        try:
            header = next(unpacker, None)
            if header is None:  # empty, or interrupted within the header
                return [], 0
            if not isinstance(header, dict) or header.get("format") != FORMAT:
                raise ValueError(f"{path} is not an LLM recording (no {FORMAT!r} header)")
            if header.get("version") != VERSION:
                raise ValueError(
                    f"{path}: recording format version {header.get('version')!r} is not "
                    f"supported (this code reads version {VERSION})"
                )
            end = unpacker.tell()
            for record in unpacker:  # stops quietly at a partial last record
                request = LLMRequest.from_dict(record["request"])
                records.append((request, LLMResult.from_dict(record["result"])))
                end = unpacker.tell()
        except (msgpack.UnpackException, TypeError, KeyError) as exc:
            raise ValueError(f"{path}: corrupt LLM recording: {exc!r}") from exc
    return records, end


def load_recording(path: str | os.PathLike[str]) -> list[tuple[LLMRequest, LLMResult]]:
    """Every complete ``(request, result)`` record of a recording, in order."""
    return _read(Path(path))[0]


def write_recording(
    path: str | os.PathLike[str], records: Sequence[tuple[LLMRequest, LLMResult]]
) -> Path:
    """Writes ``records`` as a whole recording (header first), atomically."""
    packer = msgpack.Packer(use_bin_type=True)
    data = packer.pack({"format": FORMAT, "version": VERSION}) + b"".join(
        packer.pack({"request": q.to_dict(), "result": r.to_dict()}) for q, r in records
    )
    return write_bytes_atomic(path, data)


class RecordingLLM:
    """Passes calls to ``inner`` and appends every request and its result to ``path``.

    Args:
        inner: the LLM that answers.
        path: the recording file; its folder is created.
        append: add to an existing recording instead of refusing to touch it.

    Raises:
        FileExistsError: ``path`` exists, is not empty and ``append`` is false.
    """

    def __init__(self, inner: LLM, path: str | os.PathLike[str], append: bool = False) -> None:
        self.inner = inner
        self.path = Path(path)
        self._packer = msgpack.Packer(use_bin_type=True)
        exists = self.path.exists() and self.path.stat().st_size > 0
        if exists and not append:
            raise FileExistsError(
                f"{self.path} already holds a recording; pass append=True to add to it"
            )
        self.path.parent.mkdir(parents=True, exist_ok=True)
        end = _read(self.path)[1] if exists else 0
        with open(self.path, "r+b" if exists else "wb") as f:
            f.truncate(end)  # cuts a partial last record left by an interrupted run
            if end == 0:
                f.write(self._packer.pack({"format": FORMAT, "version": VERSION}))

    async def generate(self, requests: Sequence[LLMRequest]) -> list[LLMResult]:
        results = await self.inner.generate(requests)
        data = b"".join(
            self._packer.pack({"request": req.to_dict(), "result": res.to_dict()})
            for req, res in zip(requests, results, strict=True)
        )
        with open(self.path, "ab") as f:
            f.write(data)
            f.flush()
        return results


class ReplayLLM:
    """Answers requests from a recording, without any engine.

    A request is matched by :meth:`LLMRequest.content_key` (everything but its id and purpose);
    the same request asked again gets the next answer recorded for it. The result carries the
    new request's id.

    Args:
        path: the recording.
        strict: raise :class:`ReplayMissError` for a request with no recorded answer left;
            otherwise it comes back as an error row.
        fallback: an LLM that answers the misses instead (neither raise nor error row).
        repeat_last: a request whose recorded answers are all used gets the last of them again
            (a simulation rolled back to a checkpoint asks the same questions once more).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        strict: bool = True,
        fallback: LLM | None = None,
        repeat_last: bool = False,
    ) -> None:
        self.path = Path(path)
        self.strict = strict
        self.fallback = fallback
        self.repeat_last = repeat_last
        self._records = load_recording(self.path)
        self._last = {request.content_key(): i for i, (request, _) in enumerate(self._records)}
        self._used: set[int] = set()
        self._queues: dict[tuple[Any, ...], deque[int]] = {}
        self._counts: dict[tuple[Any, ...], int] = defaultdict(int)
        for request, _ in self._records:
            self._counts[request.content_key()] += 1
        self._rebuild()
        self.hits = 0
        self.misses = 0

    def _rebuild(self) -> None:
        queues: dict[tuple[Any, ...], deque[int]] = defaultdict(deque)
        for index, (request, _) in enumerate(self._records):
            if index not in self._used:
                queues[request.content_key()].append(index)
        self._queues = dict(queues)

    def __len__(self) -> int:
        """How many recorded answers are left."""
        return len(self._records) - len(self._used)

    def _miss_message(self, request: LLMRequest) -> str:
        recorded = self._counts.get(request.content_key(), 0)
        why = (
            "is not in the recording"
            if recorded == 0
            else f"was asked more often than recorded ({recorded} answer(s), all used)"
        )
        text = request.text()
        return (
            f"replay miss: the request (purpose {request.purpose!r}, text ending "
            f"{text[-80:]!r}) {why}; recording: {self.path}"
        )

    async def generate(self, requests: Sequence[LLMRequest]) -> list[LLMResult]:
        keys = [request.content_key() for request in requests]
        taken: dict[tuple[Any, ...], int] = defaultdict(int)
        picks: list[int | None] = []
        repeats: set[int] = set()  # rows answered again with a used answer (not consumed)
        for row, key in enumerate(keys):
            queue = self._queues.get(key, deque())
            if taken[key] < len(queue):
                picks.append(queue[taken[key]])
            elif self.repeat_last and key in self._last:
                picks.append(self._last[key])
                repeats.add(row)
            else:
                picks.append(None)
            taken[key] += 1
        missed = [i for i, pick in enumerate(picks) if pick is None]
        results: list[LLMResult | None] = [None] * len(requests)
        if missed and self.fallback is not None:
            answers = await self.fallback.generate([requests[i] for i in missed])
            for i, answer in zip(missed, answers, strict=True):
                results[i] = answer
        elif missed and self.strict:
            first = requests[missed[0]]
            more = f" ({len(missed)} of {len(requests)} requests missed)" if len(missed) > 1 else ""
            raise ReplayMissError(self._miss_message(first) + more, first.request_id)
        else:
            for i in missed:
                results[i] = LLMResult.failure(requests[i], self._miss_message(requests[i]))
        for i, (key, pick) in enumerate(zip(keys, picks, strict=True)):
            if pick is not None:  # consumed only once the call cannot fail any more
                if i not in repeats:
                    self._queues[key].popleft()
                    self._used.add(pick)
                recorded = self._records[pick][1]
                results[i] = dataclasses.replace(recorded, request_id=requests[i].request_id)
        self.hits += len(requests) - len(missed)
        self.misses += len(missed)
        return [r for r in results if r is not None]

    def get_state(self) -> dict[str, Any]:
        """Which recorded answers were used (plain data, for checkpoints)."""
        return {"path": str(self.path), "used": sorted(self._used)}

    def set_state(self, state: dict[str, Any]) -> None:
        """Restores the position saved by :meth:`get_state`."""
        self._used = {int(i) for i in state["used"]}
        self._rebuild()
