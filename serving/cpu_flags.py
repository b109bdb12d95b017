"""What the CPU can do, from ``/proc/cpuinfo``: which kernels pay off on this machine.

Machines of one kind differ: some report AVX2 only, others AVX-512 with bf16 and AMX tiles.
Engines choose at start from these flags (never assume them), and every speed figure is printed
beside them.
"""

from __future__ import annotations

import platform
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path

NAMED = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")


@dataclass(frozen=True)
class CpuFlags:
    """The flags that choose kernels, and the CPU's model name."""

    model: str
    avx2: bool
    avx512f: bool
    avx512_bf16: bool
    amx_bf16: bool
    amx_tile: bool

    @property
    def bf16_matmul(self) -> bool:
        """Matrix units that multiply bf16 natively (AMX tiles, or AVX-512 bf16 dot products):
        where bf16 weights can beat float32."""
        return (self.amx_bf16 and self.amx_tile) or self.avx512_bf16

    def describe(self) -> str:
        shown = [name for name in NAMED if getattr(self, name)] or ["none of " + ", ".join(NAMED)]
        return f"{self.model} ({platform.machine()}): {' '.join(shown)}"

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "bf16_matmul": self.bf16_matmul, "machine": platform.machine()}


def parse_cpuinfo(text: str) -> CpuFlags:
    """The flags of the first processor listed in a ``/proc/cpuinfo`` text."""
    flags: set[str] = set()
    model = "unknown CPU"
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "flags" and not flags:
            flags = set(value.split())
        elif key == "model name" and model == "unknown CPU":
            model = value.strip()
    return CpuFlags(model, *(name in flags for name in NAMED))


@cache
def cpu_flags(path: str = "/proc/cpuinfo") -> CpuFlags:
    """This machine's flags (none where ``/proc/cpuinfo`` cannot be read: not Linux)."""
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""
    return parse_cpuinfo(text)
