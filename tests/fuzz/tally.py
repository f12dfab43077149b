"""What the fuzz run did, per parser: inputs tried, documented errors raised, and the slowest input.

Kept apart from the tests so that the session summary (tests/fuzz/conftest.py) can print it: the
counts are the evidence `make fuzz` gives, and a run that silently tried few inputs must show.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Tally:
    inputs: int = 0
    rejected: int = 0  # inputs the parser refused with its documented error
    slowest: float = 0.0  # seconds
    slowest_size: int = 0  # characters or bytes of that input


TALLIES: dict[str, Tally] = {}


def size_of(args: tuple[object, ...]) -> int:
    """Characters or bytes of an input, summed over its parts (files of a directory, lines of a reply)."""
    total = 0
    for arg in args:
        if isinstance(arg, str | bytes):
            total += len(arg)
        elif isinstance(arg, dict):
            total += sum(size_of((key, value)) for key, value in arg.items())
        elif isinstance(arg, list | tuple):
            total += size_of(tuple(arg))
    return total


def report() -> list[str]:
    """One line per parser, widest name first aligned: the session summary."""
    if not TALLIES:
        return []
    width = max(len(name) for name in TALLIES)
    lines = [f"{'parser':<{width}}  {'inputs':>8}  {'rejected':>8}  {'slowest ms':>10}  {'its size':>9}"]
    for name, tally in sorted(TALLIES.items()):
        lines.append(f"{name:<{width}}  {tally.inputs:>8}  {tally.rejected:>8}  {tally.slowest * 1000:>10.1f}  "
                     f"{tally.slowest_size:>9}")
    total = sum(t.inputs for t in TALLIES.values())
    lines.append(f"{len(TALLIES)} parsers, {total} inputs, {min(t.inputs for t in TALLIES.values())} at least each")
    return lines
