"""The upsd reply parsers on replies captured from a real upsd 2.8.0, on the .dev fixture as upsd sends it, and
on garbage."""

from __future__ import annotations

import pytest

from hostvigil.collectors.ups.parse import (
    ErrorReply,
    UpsEntry,
    is_measurement,
    measurements,
    number,
    parse_error,
    parse_ok,
    parse_status,
    parse_ups_list,
    parse_var,
    parse_var_list,
    split_words,
)
from tests.conftest import FIXTURES

NUT = FIXTURES / "ups"
CAPTURES = NUT / "upsd-2.8.0"
DEV = NUT / "telegraf__upsd_CyberPowerSystems_CP900EPFCLCD__variables.dev"


def reply(name: str) -> list[str]:
    """A captured reply as lines, the way the client hands them over (newlines removed)."""
    data = (CAPTURES / name).read_bytes()
    assert data.endswith(b"\n")
    return data.decode().split("\n")[:-1]


def dev_values() -> dict[str, str]:
    """The .dev fixture ("name: value" as upsc prints it) as a dict."""
    return dict(line.split(": ", 1) for line in DEV.read_text().splitlines())


def as_upsd_sends(values: dict[str, str], ups: str) -> list[str]:
    """LIST VAR reply lines for these values, quoted and escaped as upsd does (pconf_encode: \\ and ")."""
    def encoded(value: str) -> str:
        return value.replace("\\", "\\\\").replace('"', '\\"')

    return [
        f"BEGIN LIST VAR {ups}", *(f'VAR {ups} {name} "{encoded(value)}"' for name, value in values.items()),
        f"END LIST VAR {ups}",
    ]


def test_dev_fixture_converted_is_what_upsd_sends() -> None:
    """upsd served the .dev fixture through dummy-ups: apart from driver.* (the serving driver's own), the captured
    reply is the fixture converted line by line, and it parses back to the fixture's values."""
    dev = {name: value for name, value in dev_values().items() if not name.startswith("driver.")}
    captured = [line for line in reply("list-var-ol.txt") if not line.startswith("VAR dummy driver.")]
    assert captured == as_upsd_sends(dev, "dummy")
    parsed = parse_var_list(captured, "dummy")
    assert parsed.ups == "dummy"
    assert dict(parsed.values) == dev


def test_every_dev_value_round_trips() -> None:
    """Including driver.*, values with spaces ("No test initiated") and the usb driver's parentheses."""
    values = dev_values()
    assert dict(parse_var_list(as_upsd_sends(values, "cp900"), "cp900").values) == values
    assert values["driver.version.usb"] == "libusb-1.0.26 (API: 0x1000109)"


def test_captured_list_var_with_escapes() -> None:
    """The driver's port path holds a quote pair and a backslash: upsd escaped them, the parser undoes it."""
    variables = parse_var_list(reply("list-var-ol.txt"), "dummy")
    assert variables.values["driver.parameter.port"] == '/tmp/hostvigil-nut-capture/dev "A" \\ 1.dev'
    assert variables.values["ups.test.result"] == "No test initiated"
    assert variables.status == ("OL",)
    assert len(variables.values) == 39


def test_captured_forced_shutdown_on_low_battery() -> None:
    variables = parse_var_list(reply("list-var-fsd-ob-lb.txt"), "dummy")
    assert variables.status == ("FSD", "OB", "LB")
    assert number(variables.values["battery.charge"]) == 8
    assert number(variables.values["battery.runtime"]) == 95
    assert number(variables.values["input.voltage"]) == 0


def test_captured_list_ups_unescapes_the_description() -> None:
    assert parse_ups_list(reply("list-ups.txt")) == (UpsEntry("dummy", 'Rack "A" \\ feed'),)


def test_captured_single_line_replies() -> None:
    assert parse_var(reply("get-var-ups.status.txt")[0], "dummy", "ups.status") == ("ups.status", "OL")
    assert parse_ok(reply("ok-goodbye.txt")[0]) == "Goodbye"
    assert parse_ok(reply("ok-starttls.txt")[0]) == "STARTTLS"
    for name, code in (
        ("err-unknown-ups.txt", "UNKNOWN-UPS"), ("err-var-not-supported.txt", "VAR-NOT-SUPPORTED"),
        ("err-feature-not-configured.txt", "FEATURE-NOT-CONFIGURED"), ("err-data-stale.txt", "DATA-STALE"),
        ("err-driver-not-connected.txt", "DRIVER-NOT-CONNECTED"),
    ):
        (line,) = reply(name)
        assert parse_error(line) == ErrorReply(code), name
    assert parse_error(reply("get-var-ups.status.txt")[0]) is None


def test_error_with_extra_text() -> None:
    error = parse_error("ERR UNKNOWN-UPS some extra words")
    assert error == ErrorReply("UNKNOWN-UPS", "some extra words")
    assert str(error) == "ERR UNKNOWN-UPS some extra words"


@pytest.mark.parametrize(
    ("status", "words"),
    [("OL", ("OL",)), ("OL CHRG", ("OL", "CHRG")), ("OB LB", ("OB", "LB")), ("FSD OB LB", ("FSD", "OB", "LB")),
     ("ALARM OL  RB", ("ALARM", "OL", "RB")), ("", ())],
)
def test_status_words(status: str, words: tuple[str, ...]) -> None:
    assert parse_status(status) == words


def test_words_and_escapes() -> None:
    assert split_words('VAR ups x ""') == ("VAR", "ups", "x", "")
    assert split_words('UPS  a   "b c"') == ("UPS", "a", "b c")
    assert split_words(r'VAR u v "back\\slash \"q\""') == ("VAR", "u", "v", 'back\\slash "q"')
    assert split_words(r"a\ b") == ("a b",)


@pytest.mark.parametrize(
    ("text", "value"),
    [("100", 100.0), ("24.0", 24.0), ("-60", -60.0), ("0.5", 0.5), (".5", 0.5), ("1.5e3", 1500.0), (" 228 ", 228.0),
     ("0501", 501.0), ("n/a", None), ("", None), ("PbAcid", None), ("inf", None), ("nan", None), ("1e999", None),
     ("0x10", None), ("12 V", None)],
)
def test_number(text: str, value: float | None) -> None:
    assert number(text) == value


def test_measurements_leave_out_identifiers_and_driver_settings() -> None:
    found = measurements(dev_values())
    assert found["battery.charge"] == 100
    assert found["ups.timer.shutdown"] == -60
    assert found["input.transfer.high"] == 260
    for name in ("ups.serial", "device.serial", "ups.productid", "ups.vendorid", "driver.parameter.pollinterval",
                 "driver.debug", "battery.mfr.date", "ups.status", "ups.beeper.status"):
        assert name not in found, name
    assert not is_measurement("outlet.1.id")
    assert is_measurement("outlet.1.current")


GARBAGE = [
    ('VAR dummy ups.status "OL', "unterminated quoted string"),
    ('VAR dummy ups.status "OL\\', "backslash at the end"),
    ('VAR dummy ups.status "OL"x', "no space after a closing quote"),
    ('VAR dummy ups."status "OL"', "quote inside a word"),
    ('VAR dummy ups.status "O\x00L"', "control characters"),
    ('VAR other ups.status "OL"', "a variable of UPS 'other'"),
    ('VAR dummy ups.status "OL" extra', "expected VAR dummy"),
    ("VAR dummy ups.status", "expected VAR dummy"),
    ('UPS dummy "x"', "expected VAR dummy"),
    ("", "empty line"),
]


@pytest.mark.parametrize(("line", "message"), GARBAGE)
def test_garbage_var_lines_name_the_line(line: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as caught:
        parse_var(line, "dummy")
    if line:
        assert repr(line)[:40] in str(caught.value)


def test_get_var_reply_must_be_the_variable_asked_for() -> None:
    with pytest.raises(ValueError, match=r"not the 'ups\.load' asked for"):
        parse_var(reply("get-var-ups.status.txt")[0], "dummy", "ups.load")


def test_broken_lists() -> None:
    lines = reply("list-var-ol.txt")
    with pytest.raises(ValueError, match="not closed by END LIST VAR dummy"):
        parse_var_list(lines[:-1], "dummy")
    with pytest.raises(ValueError, match="expected BEGIN LIST VAR dummy"):
        parse_var_list(lines[1:], "dummy")
    with pytest.raises(ValueError, match="expected BEGIN LIST VAR other"):
        parse_var_list(lines, "other")
    with pytest.raises(ValueError, match="listed twice"):
        parse_var_list([*lines[:2], *lines[1:]], "dummy")
    with pytest.raises(ValueError, match="empty reply"):
        parse_var_list([], "dummy")
    ups = reply("list-ups.txt")
    with pytest.raises(ValueError, match="listed twice"):
        parse_ups_list([*ups[:2], *ups[1:]])
    with pytest.raises(ValueError, match="expected UPS <name>"):
        parse_ups_list([ups[0], 'UPS dummy', ups[-1]])
    with pytest.raises(ValueError, match="expected BEGIN LIST UPS"):
        parse_ups_list(lines)


def test_not_ok_and_bad_errors() -> None:
    with pytest.raises(ValueError, match="expected OK"):
        parse_ok("ERR ACCESS-DENIED")
    with pytest.raises(ValueError, match="ERR without an error code"):
        parse_error("ERR")
    with pytest.raises(ValueError, match="ERR without an error code"):
        parse_error("ERR access denied")


def test_oversize_garbage_is_quoted_short() -> None:
    """A megabyte of garbage in one line: the error quotes its start, not all of it."""
    line = "VAR dummy x \"" + "A" * (1 << 20)
    with pytest.raises(ValueError, match="unterminated") as caught:
        parse_var(line, "dummy")
    assert len(str(caught.value)) < 250
    long_value = "VAR dummy x \"" + "B" * 10_000 + "\""
    assert parse_var(long_value, "dummy") == ("x", "B" * 10_000)  # the parser has no limit; the client has
