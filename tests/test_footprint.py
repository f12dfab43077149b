"""The agent's own footprint: what it holds is what it reports."""

from __future__ import annotations

import psutil

from hostvigil.footprint import return_free_memory


def test_freed_heap_goes_back_to_the_kernel() -> None:
    """Memory freed in the middle of the C heap stays resident until trimmed (glibc returns only its top): 32 MB of
    64 KB blocks, each followed by a small block that stays, are freed, and the trim gives most of it back."""
    process = psutil.Process()
    blocks, kept = [], []
    for _ in range(512):
        blocks.append(bytes(64 * 1024))
        kept.append(bytes(600))  # pins the heap above each freed block
    del blocks
    held = process.memory_info().rss
    assert return_free_memory()
    assert held - process.memory_info().rss > 16 * 1024 * 1024
    assert len(kept) == 512
