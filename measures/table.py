"""``measures.parquet``: the measures of a run, tidy (one row per measure, subject and time)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import pyarrow as pa

MeasureKind = Literal["awareness", "network", "attendance", "cost"]
MEASURE_KINDS: tuple[MeasureKind, ...] = ("awareness", "network", "attendance", "cost")
"""What ``simulacra measure --measures`` and an experiment's ``measures`` can name."""

MEASURES = pa.schema(
    [
        pa.field("measure", pa.string(), nullable=False),
        pa.field("subject", pa.string(), nullable=False),
        pa.field("step", pa.int64()),
        pa.field("time", pa.timestamp("s")),
        pa.field("value", pa.float64(), nullable=False),
        pa.field("evidence", pa.list_(pa.string()), nullable=False),
    ]
)
"""Measures (``subject`` in brackets):

- ``aware``, ``claims_to_know``, ``hallucination`` [``<information>/<agent>``]: 1 or 0 at a
  measured checkpoint; ``evidence``: the supporting memory records' ids;
- ``aware_share``, ``hallucinations`` [``<information>``]: the share of agents aware, the number
  of unsupported yeses, at a checkpoint;
- ``aware_share_over_time`` [``<information>``]: the share aware from the first supporting
  record of each agent aware at the last measured checkpoint (one row per change);
- ``knows_of`` [``<agent>-><other>``]: the relationship probe's answer (evidence: the records
  shown); ``density_interview``, ``density_memory``, ``edges_interview``, ``edges_memory``
  [``network``];
- ``attended`` [``<gathering>/<agent>``], ``attendance``, ``told_attended``, ``aware_attended``
  [``<gathering>``]: at the gathering's start;
- ``cost.<name>`` [``run``]: model calls, tokens, calls per agent-hour, wall time (the run's);
  ``measurement.model_calls`` [``measure``]: the probes this measurement asked.
"""


@dataclass(frozen=True)
class MeasureRow:
    measure: str
    subject: str
    step: int | None
    time: datetime | None
    value: float
    evidence: tuple[str, ...] = ()


def measures_table(rows: Sequence[MeasureRow]) -> pa.Table:
    return pa.Table.from_pylist(
        [
            {
                "measure": r.measure,
                "subject": r.subject,
                "step": r.step,
                "time": r.time,
                "value": float(r.value),
                "evidence": list(r.evidence),
            }
            for r in rows
        ],
        schema=MEASURES,
    )
