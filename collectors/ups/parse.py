"""Pure parsers for the replies of upsd, NUT's network server (protocol version 1.3, NUT 2.8).

No I/O and no metrics here. A reply is one line (`VAR <ups> <name> "<value>"`, `OK ...`,
`ERR <CODE> [extra]`) or a list framed by `BEGIN LIST <what>` and `END LIST <what>`.
Words are split as NUT's parseconf splits them: by spaces, with multi-word elements in
double quotes, and `\\"` and `\\\\` for an embedded quote or backslash. What upsd
does not send (an unterminated quote, a line of another UPS, a list without its end)
is a ValueError naming the line, so a broken peer never passes for data.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

# A number as drivers print them: "100", "24.0", "-60", "1.5e3"; hex ids and "n/a" are not numbers.
_NUMBER = re.compile(r"^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$")
# Variable name components that make a number an identifier or a date, not a measurement
# (ups.serial "000000000000", ups.vendorid "0764", ups.mfr.date, outlet.1.id).
_IDENTIFIER_PARTS = frozenset({"serial", "id", "productid", "vendorid", "firmware", "version", "date", "part"})
_SHOWN = 120  # characters of an offending line quoted in an error


@dataclass(frozen=True)
class ErrorReply:
    """`ERR <CODE> [extra]`: upsd refused the command (UNKNOWN-UPS, DRIVER-NOT-CONNECTED, DATA-STALE, ...)."""

    code: str
    extra: str = ""

    def __str__(self) -> str:
        return f"ERR {self.code}{' ' + self.extra if self.extra else ''}"


@dataclass(frozen=True)
class UpsEntry:
    name: str
    description: str


@dataclass(frozen=True)
class UpsVariables:
    """The reply to `LIST VAR <ups>`: every variable of one UPS, values as upsd sent them (unescaped)."""

    ups: str
    values: Mapping[str, str] = field(hash=False)

    @property
    def status(self) -> tuple[str, ...] | None:
        """The words of ups.status ("OB", "LB"), None when the driver did not publish it."""
        text = self.values.get("ups.status")
        return None if text is None else parse_status(text)


def _shown(line: str) -> str:
    return repr(line if len(line) <= _SHOWN else line[:_SHOWN] + "...")


def split_words(line: str) -> tuple[str, ...]:
    """The words of a protocol line, quotes and backslash escapes undone; ValueError if a quote is left open."""
    words: list[str] = []
    i, n = 0, len(line)
    while i < n:
        if line[i] == " ":
            i += 1
            continue
        quoted = line[i] == '"'
        i += 1 if quoted else 0
        word: list[str] = []
        while i < n and (quoted or line[i] != " "):
            char = line[i]
            if char == "\\":
                if i + 1 >= n:
                    raise ValueError(f"backslash at the end of line {_shown(line)}")
                word.append(line[i + 1])
                i += 2
            elif char == '"' and quoted:
                quoted = False
                i += 1
                if i < n and line[i] != " ":
                    raise ValueError(f"no space after a closing quote in line {_shown(line)}")
                break
            elif char == '"':
                raise ValueError(f"quote inside a word in line {_shown(line)}")
            else:
                word.append(char)
                i += 1
        if quoted:
            raise ValueError(f"unterminated quoted string in line {_shown(line)}")
        words.append("".join(word))
    return tuple(words)


def _check_line(line: str) -> None:
    if not line or any(ord(c) < 0x20 and c != "\t" for c in line) or "\x7f" in line:
        raise ValueError(f"empty line or control characters in line {_shown(line)}")


def parse_error(line: str) -> ErrorReply | None:
    """`ERR <CODE> [extra]` as an ErrorReply, None for any other line."""
    if not line.startswith("ERR ") and line != "ERR":
        return None
    _check_line(line)
    words = split_words(line)
    if len(words) < 2 or not re.fullmatch(r"[A-Z][A-Z0-9-]*", words[1]):
        raise ValueError(f"ERR without an error code: {_shown(line)}")
    return ErrorReply(words[1], " ".join(words[2:]))


def parse_ok(line: str) -> str:
    """The text after OK ("Goodbye", "STARTTLS", ""); ValueError if the line is not an OK."""
    _check_line(line)
    if line != "OK" and not line.startswith("OK "):
        raise ValueError(f"expected OK, got {_shown(line)}")
    return line[3:]


def parse_var(line: str, ups: str, name: str | None = None) -> tuple[str, str]:
    """(variable, value) of `VAR <ups> <name> "<value>"`, the reply to GET VAR or a LIST VAR line."""
    _check_line(line)
    words = split_words(line)
    if len(words) != 4 or words[0] != "VAR":
        raise ValueError(f'expected VAR {ups} <name> "<value>", got {_shown(line)}')
    if words[1] != ups:
        raise ValueError(f"a variable of UPS {words[1]!r}, not of {ups!r}: {_shown(line)}")
    if name is not None and words[2] != name:
        raise ValueError(f"variable {words[2]!r}, not the {name!r} asked for: {_shown(line)}")
    if not words[2]:
        raise ValueError(f"empty variable name in line {_shown(line)}")
    return words[2], words[3]


def _list_body(lines: Sequence[str], what: str) -> Sequence[str]:
    """The lines between `BEGIN LIST <what>` and `END LIST <what>`, which must open and close the reply."""
    if not lines:
        raise ValueError(f"empty reply, expected BEGIN LIST {what}")
    for line in lines:
        _check_line(line)
    if split_words(lines[0]) != ("BEGIN", "LIST", *what.split(" ")):
        raise ValueError(f"expected BEGIN LIST {what}, got {_shown(lines[0])}")
    if len(lines) < 2 or split_words(lines[-1]) != ("END", "LIST", *what.split(" ")):
        raise ValueError(f"list not closed by END LIST {what}; last line {_shown(lines[-1])}")
    return lines[1:-1]


def parse_ups_list(lines: Sequence[str]) -> tuple[UpsEntry, ...]:
    """The reply to `LIST UPS`: each UPS upsd serves, with its description."""
    entries: list[UpsEntry] = []
    for line in _list_body(lines, "UPS"):
        words = split_words(line)
        if len(words) != 3 or words[0] != "UPS" or not words[1]:
            raise ValueError(f'expected UPS <name> "<description>", got {_shown(line)}')
        if any(entry.name == words[1] for entry in entries):
            raise ValueError(f"UPS {words[1]!r} listed twice: {_shown(line)}")
        entries.append(UpsEntry(words[1], words[2]))
    return tuple(entries)


def parse_var_list(lines: Sequence[str], ups: str) -> UpsVariables:
    """The reply to `LIST VAR <ups>`: every line must be a VAR of that UPS, each variable once."""
    values: dict[str, str] = {}
    for line in _list_body(lines, f"VAR {ups}"):
        name, value = parse_var(line, ups)
        if name in values:
            raise ValueError(f"variable {name!r} listed twice: {_shown(line)}")
        values[name] = value
    return UpsVariables(ups, values)


def parse_status(text: str) -> tuple[str, ...]:
    """The words of ups.status: "OL CHRG" -> ("OL", "CHRG"); "FSD OB LB" -> ("FSD", "OB", "LB")."""
    return tuple(text.split())


def number(text: str) -> float | None:
    """A variable's value as a number, None if it is not one (text, hex id, inf/nan)."""
    text = text.strip()
    if not _NUMBER.match(text):
        return None
    value = float(text)
    return value if math.isfinite(value) else None


def is_measurement(name: str) -> bool:
    """False for variables whose numbers are not measurements: serials, vendor/product ids, dates, versions,
    and the driver's own settings (driver.*)."""
    parts = name.split(".")
    return parts[0] != "driver" and not _IDENTIFIER_PARTS.intersection(parts)


def measurements(values: Mapping[str, str]) -> dict[str, float]:
    """The numeric measurement variables of a UPS, by name."""
    result: dict[str, float] = {}
    for name, text in values.items():
        value = number(text)
        if value is not None and is_measurement(name):
            result[name] = value
    return result
