"""No parser is worse than linear: inputs that were once quadratic, timed at n and 4n.

Linear time makes the ratio about 4; a quadratic one makes it about 16. The inputs are the
shapes that were quadratic: /proc/mdstat's Personalities line full of "[" (a regex that
scanned to the end of the line from every "["), an ipmitool sdr value column of many
lower-case states (joined to the one before, one copy each), and, each a regex search
tried from every character of a long run: a storcli temperature of many digits, a zpool
scan continuation line of one long word, a kernel line "Link is " followed by a long word, many
hung-task lines cut short and run together (fuzzing found it: each ran to the end of the line),
a "callbacks suppressed" line after one, a cyrus.conf entry of one long word, an IMAP line
of many "[CAPABILITY " and a smartctl message of many "Device is in ". Each size is timed
several times and the fastest run counts, so a busy machine does not fail the test; sizes
are chosen so that the larger input takes milliseconds when the parser is linear.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable

import pytest

from hostvigil.collectors.ipmi.parse import parse_freeipmi_sensors, parse_ipmitool_sdr
from hostvigil.collectors.kernel.parse import classify, suppressed_count
from hostvigil.collectors.mail.parse import imap_capabilities, parse_imap
from hostvigil.collectors.mail.parse_cyrus import parse_cyrus_conf
from hostvigil.collectors.mail.parse_dovecot import parse_service_status
from hostvigil.collectors.md.parse import parse_mdstat
from hostvigil.collectors.raid.parse import parse_drives
from hostvigil.collectors.smart.parse import parse_report
from hostvigil.collectors.zfs.parse_status import parse_status_text


def _mdstat(n: int) -> str:
    return "Personalities : " + "[" * n + "\nunused devices: <none>\n"


def _sdr(n: int) -> str:
    # An `ipmitool sdr elist` line (telegraf's fixture) whose states go on: "a" starts lower case, so it continues
    # the state before it, as "AC out-of-range, but present" does.
    return "PS1 Status       | C8h | ok  | 10.1 | Presence detected" + ", a" * n + "\n"


def _storcli(n: int) -> str:
    drive = "Drive /c0/e252/s0"
    return json.dumps({"Controllers": [{
        "Command Status": {"Controller": 0, "Status": "Success"},
        "Response Data": {
            drive: [{"EID:Slt": "252:0", "DID": 1, "State": "Onln"}],
            f"{drive} - Detailed Information": {f"{drive} State": {"Drive Temperature": "1" * n}},
        },
    }]})


def _zpool(n: int) -> str:
    return "  pool: tank\n state: ONLINE\n  scan: scrub in progress since Sun Jul 25 16:07:49 2021\n\t" + "A" * n + "\n"


def _imap(text: str) -> object:
    return imap_capabilities(parse_imap(text))


def _smartctl(n: int) -> str:
    return json.dumps({"smartctl": {"exit_status": 2, "messages": [{"string": "Device is in " * (n // 13)}]}})


CASES: list[tuple[str, Callable[[str], object], Callable[[int], str], int]] = [
    ("mdstat Personalities line", parse_mdstat, _mdstat, 200_000),
    ("ipmitool sdr states", parse_ipmitool_sdr, _sdr, 50_000),
    ("storcli drive temperature", parse_drives, _storcli, 200_000),
    ("zpool scan line", parse_status_text, _zpool, 200_000),
    ("kernel link line", classify, lambda n: "Link is " + "9" * n, 100_000),
    ("kernel hung task lines cut and run together", classify,
     lambda n: "INFO: task controller:1428 blocked for " * (n // 40), 100_000),
    ("kernel suppressed line", suppressed_count, lambda n: "a" * n + " callbacks suppressed", 200_000),
    ("cyrus.conf entry", parse_cyrus_conf, lambda n: "SERVICES {\n  imap cmd=imapd " + "a" * n + "\n}\n", 200_000),
    ("IMAP capability code", _imap, lambda n: "* OK " + "[CAPABILITY " * (n // 12), 200_000),
    ("smartctl low-power message", parse_report, _smartctl, 200_000),
    # found by fuzzing: a header line grown wide, then every row (or the header itself) looked up across it
    ("doveadm header of many columns", parse_service_status,
     lambda n: "name\tprocess_count\tprocess_limit\tlisten_pending" + "".join(f"\tc{i}" for i in range(n // 8))
     + "\n", 100_000),
    ("ipmi-sensors header of many columns", parse_freeipmi_sensors,
     lambda n: "ID,Name" + ",a" * (n // 4) + "\n" + "1,x\n" * (n // 8), 100_000),
]


def _seconds(parse: Callable[[str], object], text: str, runs: int = 5) -> float:
    """The fastest of `runs` runs; a run slower than SLOW ends the timing at once (a quadratic parser on these
    sizes would take minutes)."""
    fastest = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        with contextlib.suppress(ValueError):  # the documented error is an answer too, in the same time
            parse(text)
        fastest = min(fastest, time.perf_counter() - start)
        if fastest > SLOW:
            break
    return fastest


SLOW = 0.5


@pytest.mark.parametrize(("parse", "build", "n"), [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_time_grows_linearly_with_the_input(parse: Callable[[str], object], build: Callable[[int], str],
                                            n: int) -> None:
    probe = _seconds(parse, build(n // 16), runs=1)  # under a millisecond if linear: stops a quadratic one early
    assert probe < SLOW / 10, f"{probe:.2f} s for {n // 16} repetitions: far from linear"
    small = _seconds(parse, build(n))
    assert small < SLOW, f"{small:.2f} s for {n} repetitions: far from linear"
    large = _seconds(parse, build(4 * n))
    assert large / small < 8, f"{small * 1000:.1f} ms for n, {large * 1000:.1f} ms for 4n"
