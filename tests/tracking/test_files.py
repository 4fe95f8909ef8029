"""Atomic writes: a reader sees the old file or the new one, never half of one, and no temp file stays."""

from __future__ import annotations

import json
import os
import stat

import pytest

from alva.tracking import atomic_write_bytes, atomic_write_json
from alva.tracking import files as files_module


def test_write_creates_folders_and_leaves_no_temp_file(tmp_path):
    path = tmp_path / "a" / "b" / "out.bin"
    atomic_write_bytes(path, b"first")
    atomic_write_bytes(path, b"second")
    assert path.read_bytes() == b"second"
    assert sorted(p.name for p in path.parent.iterdir()) == ["out.bin"]


def test_write_json_is_readable_json(tmp_path):
    path = tmp_path / "config.json"
    obj = {"model": "cnn-small", "settings": {"lr": 0.001, "epochs": 2}, "list": [1, None, True]}
    atomic_write_json(path, obj)
    assert json.loads(path.read_text()) == obj
    assert path.read_text().endswith("\n")


@pytest.mark.parametrize("failing", ["replace", "fsync"])
def test_failure_mid_write_keeps_the_old_file(tmp_path, monkeypatch, failing):
    path = tmp_path / "state.json"
    atomic_write_json(path, {"version": 1})

    def boom(*args, **kwargs):
        raise OSError("disk gone")

    monkeypatch.setattr(files_module.os, failing, boom)
    with pytest.raises(OSError, match="disk gone"):
        atomic_write_json(path, {"version": 2})
    monkeypatch.undo()
    assert json.loads(path.read_text()) == {"version": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_keyboard_interrupt_mid_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "weights.bin"
    atomic_write_bytes(path, b"old")

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(files_module.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_bytes(path, b"new")
    monkeypatch.undo()
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["weights.bin"]


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
@pytest.mark.parametrize("umask", [0o022, 0o077], ids=["umask022", "umask077"])
def test_written_file_has_the_permissions_of_a_plain_open(tmp_path, umask):
    """Written files follow the umask like any other file (not 0600 as a bare temp file would be)."""
    old = os.umask(umask)
    try:
        atomic_write_bytes(tmp_path / "atomic.bin", b"x")
        (tmp_path / "plain.bin").write_bytes(b"x")
    finally:
        os.umask(old)
    mode = stat.S_IMODE((tmp_path / "atomic.bin").stat().st_mode)
    assert mode == stat.S_IMODE((tmp_path / "plain.bin").stat().st_mode)
    assert mode == 0o666 & ~umask
