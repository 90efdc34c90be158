"""Atomic writes: the previous file survives a failed write, and no temp file is left behind."""

from __future__ import annotations

import os
import stat

import pytest

from adbench import io


def test_write_replaces_content_with_shared_permissions(tmp_path):
    target = tmp_path / "sub" / "result.json"
    io.write_atomic(target, "first")
    io.write_atomic(target, b"second")
    assert target.read_text() == "second"
    mode = stat.S_IMODE(os.stat(target).st_mode)
    assert mode == 0o666 & ~io._umask()


def test_failed_write_keeps_previous_file(tmp_path, monkeypatch):
    target = tmp_path / "result.json"
    io.write_atomic(target, "finished result")

    def disk_full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(io.os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space left"):
        io.write_atomic(target, "partial")
    assert target.read_text() == "finished result"
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]
