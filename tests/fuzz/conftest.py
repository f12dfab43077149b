"""The fuzz budgets (Hypothesis settings profiles) and the per-parser counts printed at the end of a run.

Two budgets: "fuzz-quick", the default, keeps the whole fuzz section of `make test` to seconds
(960 inputs a parser) and is derandomized, so CI is repeatable; "fuzz" (HYPOTHESIS_PROFILE=fuzz,
what `make fuzz` sets) tries at least FUZZ_INPUTS inputs a parser (100,000 unless set) with fresh
randomness each run. Each drawn example is one input plus VARIANTS cheap variants of it
(tests.fuzz.mutate.variants), since drawing costs more than most parsers take. Neither profile
writes an example database into the tree. The per-input limit of 100 ms is checked by the test
itself (tests/fuzz/test_parsers.py) around the parser call alone, so input generation and a loaded
machine do not count against a parser.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, Phase, settings

from tests.fuzz.tally import report

_COMMON = {
    "database": None,
    "deadline": None,
    "suppress_health_check": list(HealthCheck),
    "print_blob": True,
}
VARIANTS = 15
INPUTS = int(os.environ.get("FUZZ_INPUTS", "100000"))
settings.register_profile("fuzz-quick", max_examples=60, derandomize=True, **_COMMON)
settings.register_profile(
    "fuzz", max_examples=-(-INPUTS // (1 + VARIANTS)), derandomize=False,
    phases=[Phase.explicit, Phase.generate, Phase.shrink], **_COMMON,
)
PROFILE = "fuzz" if os.environ.get("HYPOTHESIS_PROFILE") == "fuzz" else "fuzz-quick"
FUZZ = settings.get_profile(PROFILE)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    lines = report()
    if lines:
        terminalreporter.section(f"fuzzed parsers ({PROFILE})")
        for line in lines:
            terminalreporter.write_line(line)
