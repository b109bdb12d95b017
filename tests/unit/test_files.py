"""Atomic writes: the file is whole or untouched."""

from __future__ import annotations

from pathlib import Path

import pytest

from serving.files import atomic_write, write_bytes_atomic, write_text_atomic


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "table.txt"
    write_text_atomic(target, "old", fsync=True)

    def fail(tmp: Path) -> None:
        tmp.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, fail)
    assert target.read_text() == "old"
    assert [p.name for p in target.parent.iterdir()] == ["table.txt"]


def test_bytes_replace_the_file(tmp_path: Path) -> None:
    target = tmp_path / "x.bin"
    write_bytes_atomic(target, b"one")
    write_bytes_atomic(target, b"two")
    assert target.read_bytes() == b"two"
