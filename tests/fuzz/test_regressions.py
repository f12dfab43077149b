"""The inputs that once raised what their parser does not document, kept as fixed cases beside the fuzzing.

Each is the smallest form of an input the fuzzer (or the issue that asked for it) found: deep
JSON nesting (RecursionError), numbers past float range or Python's int-string digit limit
(OverflowError, an unnamed ValueError), a counter str.isdigit() takes and int() refuses
(StopIteration), an address int(x, 16) reads as negative (struct.error). The contract checked
is the target's own (tests/fuzz/targets.py): its documented error or, for those documented
never to raise, nothing at all.
"""

from __future__ import annotations

import pytest

from tests.fuzz.targets import TARGETS

DEEP = "[" * 100_000 + "]" * 100_000
HUGE = "9" * 5000  # past the 4300-digit int-string limit
BIG = "9" * 400  # an int no float holds
SMARTCTL = '{"smartctl": {"exit_status": 0}, '
ZPOOL = '{"output_version": {"command": "zpool status"}, "pools": {"tank": {"name": "tank", "state": "DEGRADED", '
ROUTE = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"

CASES: list[tuple[str, tuple[object, ...]]] = [
    ("kernel.parse_journal_json", (DEEP,)),
    ("kernel.parse_journal_json", ('{"__REALTIME_TIMESTAMP": "' + BIG + '", "MESSAGE": "x"}',)),
    ("kernel.parse_journal_json", ('{"__REALTIME_TIMESTAMP": "1", "MESSAGE": ' + "[" * 900 + "]" * 900 + "}",)),
    ("kernel.parse_journal_json", ('{"__REALTIME_TIMESTAMP": ' + HUGE + "}",)),
    ("mail.parse_journal_entry", ('{"__CURSOR": "s=1", "SYSLOG_IDENTIFIER": ' + DEEP + "}",)),
    ("smart.parse_report", (SMARTCTL + '"x": ' + DEEP + "}",)),
    ("smart.parse_report", (SMARTCTL + '"temperature": {"current": ' + BIG + "}}",)),
    ("smart.parse_report", (SMARTCTL + '"power_on_time": {"hours": 1, "minutes": ' + BIG + "}}",)),
    ("smart.parse_scan", (SMARTCTL + '"devices": ' + DEEP + "}",)),
    ("raid.parse_controllers", ('{"Controllers": ' + DEEP + "}",)),
    ("raid.parse_drives", ('{"Controllers": [{"Command Status": {"Status": ' + "[" * 900 + "]" * 900 + "}}]}",)),
    ("zfs.parse_status_json", (ZPOOL + '"vdevs": ' + DEEP + "}}}",)),
    ("zfs.parse_status_json", (ZPOOL + '"error_count": 1e400}}}',)),
    ("zfs.parse_status_json", (ZPOOL + '"scan_stats": {"function": "SCRUB", "state": "FINISHED", "end_time": '
                               + BIG + "}}}}",)),
    ("zfs.parse_list_json", ('{"output_version": {}, "pools": {"tank": {"properties": {"capacity": {"value": '
                             + BIG + "}}}}}",)),
    ("zfs.parse_status_text", ("  pool: tank\n state: ONLINE\nconfig:\n\n\tNAME STATE READ WRITE CKSUM\n"
                               "\ttank ONLINE 0 0 0\n\t  sda ONLINE " + BIG + " 0 0\n",)),
    ("zfs.parse_list_text", ("tank\t" + BIG + "\t1\t1\t1%\t1%\tONLINE\n",)),
    ("zfs.parse_count+percent+date+duration", (HUGE + ":00:00",)),
    ("procfs.parse_pressure", ("some avg10=0.00 avg60=0.00 avg300=0.00 total=" + BIG + "\n",)),
    ("collector.MetricSpec", (10**400,)),
    ("network.parse_netdev_sysfs", ({}, {"rx_bytes": "²\n"})),
    ("network.parse_route", (ROUTE + "eth0\t00000000\t-0000001\t0003\t0\t0\t0\t00000000\t0\t0\t0\n",)),
    ("hwmon.parse_sensor", ("temp1", {"input": BIG})),
    ("edac.parse_controller", ("mc0", {"ce_count": BIG}, {}, {})),
    ("power_supply.parse_power_supply", ("BAT0", {"type": "Battery", "energy_now": BIG})),
    ("kernel.split_prefix+classify", ("[" + HUGE + ".000000] Kernel panic - not syncing: x",)),
    ("kernel.events_from_text", ("[" + HUGE + ".000000] Kernel panic - not syncing: x\n",)),
    ("kernel.events_from_text", ("Out of memory: Killed process " + HUGE + " (mysqld) total-vm:1kB\n",)),
]
BY_NAME = {target.name: target for target in TARGETS}


@pytest.mark.parametrize(("name", "args"), CASES, ids=[f"{name}-{i}" for i, (name, _) in enumerate(CASES)])
def test_once_fatal_input_meets_the_contract(name: str, args: tuple[object, ...]) -> None:
    target = BY_NAME[name]
    message = None
    try:
        target.call(*args)
    except target.raises as exc:
        message = str(exc)
    assert message != "", f"{name}: an error that names nothing"


def test_a_number_past_float_range_is_infinite_not_an_error() -> None:
    sample = BY_NAME["collector.MetricSpec"].call(-(10**400))
    assert sample.value == float("-inf")  # type: ignore[attr-defined]

