"""Every parser, fed mutated real samples: it returns, or raises its documented error, and never takes 100 ms.

The error a parser may raise is its contract (tests/fuzz/targets.py names it per parser):
ValueError naming the bad input for most, nothing for those that skip what they cannot read.
Anything else (RecursionError from deep JSON, OverflowError from a huge number, IndexError,
KeyError, TypeError, StopIteration, struct.error, ZeroDivisionError...) is a bug in the parser
and fails here with the input that caused it. Each drawn input is tried with VARIANTS variants
of it (see tests/fuzz/conftest.py). The time limit is per input, on the parser call alone; an
input over it (or the slowest yet, which the summary reports) is timed twice more and the
fastest run counts, so one scheduling hiccup on a shared machine does not fail the run while a
parser that is slow on that input does.
"""

from __future__ import annotations

import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz.conftest import FUZZ, VARIANTS
from tests.fuzz.mutate import variants
from tests.fuzz.tally import TALLIES, Tally, size_of
from tests.fuzz.targets import TARGETS, Target

LIMIT = 0.1  # seconds per input
SEEDS = st.integers(0, 2**32 - 1)


def _timed(target: Target, args: tuple[object, ...]) -> tuple[float, bool]:
    """(seconds, whether the documented error was raised) of one call; any other error names the input."""
    start = time.perf_counter()
    try:
        target.call(*args)
    except target.raises:
        return time.perf_counter() - start, True
    except Exception as exc:
        exc.add_note(f"{target.name} on the input {args!r:.3000}")
        raise
    return time.perf_counter() - start, False


def _check(target: Target, args: tuple[object, ...], tally: Tally) -> None:
    seconds, rejected = _timed(target, args)
    if seconds > min(LIMIT, tally.slowest):  # over the limit, or the slowest yet: the fastest of three counts
        seconds = min(seconds, *(_timed(target, args)[0] for _ in range(2)))
    tally.inputs += 1
    tally.rejected += rejected
    if seconds > tally.slowest:
        tally.slowest, tally.slowest_size = seconds, size_of(args)
    assert seconds <= LIMIT, f"{target.name} took {seconds * 1000:.0f} ms on the input {args!r:.3000}"


@pytest.mark.parametrize("target", TARGETS, ids=[target.name for target in TARGETS])
@FUZZ
@given(data=st.data())
def test_parser_raises_only_its_documented_error_and_is_fast(target: Target, data: st.DataObject) -> None:
    args = data.draw(target.inputs, label="input")
    seed = data.draw(SEEDS, label="seed of the variants")
    tally = TALLIES.setdefault(target.name, Tally())
    for candidate in (args, *variants(args, seed, VARIANTS, lambda part: size_of((part,)))):
        _check(target, candidate, tally)
