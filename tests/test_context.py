"""What a collector run reads files with: Context.read and Context.parse."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from hostvigil.collector import CollectorError, Context, Paths
from hostvigil.runner import CommandRunner


def context() -> Context:
    return Context(Paths(), CommandRunner(), time.monotonic() + 10, logging.getLogger("test"))


def test_a_file_is_read_whole_up_to_its_limit_across_chunks(tmp_path: Path) -> None:
    """Read in 64 KiB chunks (one read of the whole limit allocated a megabyte per small /proc file): a file
    several chunks long comes back whole, and one past the limit is cut there."""
    data = bytes(range(256)) * 1024  # 256 KiB, not valid UTF-8: decoded with replacements
    path = tmp_path / "big"
    path.write_bytes(data)
    ctx = context()
    assert ctx.read(path) == data.decode(errors="replace")
    assert ctx.read(path, limit=100_000) == data[:100_000].decode(errors="replace")
    assert ctx.read(Path("/proc/self/comm")) == Path("/proc/self/comm").read_text()


def test_a_missing_file_is_none_and_an_unreadable_one_names_itself(tmp_path: Path) -> None:
    ctx = context()
    assert ctx.read(tmp_path / "absent") is None
    assert ctx.read(tmp_path / "absent" / "below") is None
    with pytest.raises(CollectorError, match=f"{tmp_path}: Is a directory"):  # EISDIR, for root as for anyone
        ctx.read(tmp_path)
