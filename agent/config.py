"""The configuration file: TOML, validated whole before anything starts.

Every error names the file, the key and the reason in one line, so that
`hostvigil check-config` and a failed start both say exactly what to fix; all
of a file's errors are found in one pass (ConfigError.problems), so a file with
three mistakes is not fixed in three rounds. Each collector option is checked
by what its Option declares (choices, bounds, another option it may not
exceed, a check such as a readable file) and then by the collector's own
`validate` for rules between options: what would only fail a run later is
refused here.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from hostvigil.collector import Collector, Option, Paths

DEFAULT_PATH = Path("/etc/hostvigil/hostvigil.toml")
# 9100-9999 is fully allocated on the Prometheus default-port list; see README.
DEFAULT_PORT = 10091
DEFAULT_LISTEN = f":{DEFAULT_PORT}"
LOG_LEVELS = ("debug", "info", "warning", "error")

T = TypeVar("T")

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


class ConfigError(Exception):
    """A configuration problem, rendered as 'FILE: KEY: REASON'; `problems` holds every problem found, one such line
    each (str() is them joined by "; ", one line for a log). `ConfigError.listing(lines)` makes one of several."""

    def __init__(self, source: str, key: str, reason: str) -> None:
        line = f"{source}: {key}: {reason}" if key else f"{source}: {reason}"
        super().__init__(line)
        self.problems: tuple[str, ...] = (line,)

    @classmethod
    def listing(cls, problems: Sequence[str]) -> ConfigError:
        error = cls.__new__(cls)
        Exception.__init__(error, "; ".join(problems))
        error.problems = tuple(problems)
        return error


@dataclass(frozen=True)
class CollectorConfig:
    enabled: bool
    interval: float
    timeout: float
    options: Mapping[str, Any]


@dataclass(frozen=True)
class SnapshotConfig:
    """The flight recorder: how often, how many, how big, and how often events may add one."""

    enabled: bool = True
    interval: float = 60.0
    keep: int = 60
    max_bytes: int = 1 << 20
    max_total_bytes: int = 64 << 20
    min_gap: float = 10.0


@dataclass(frozen=True)
class Config:
    source: str = "<defaults>"
    listen: str = DEFAULT_LISTEN
    state_dir: Path | None = None
    web_config_file: Path | None = None  # the exporter toolkit's YAML: TLS, basic auth (hostvigil.webconfig)
    log_level: str = "info"
    paths: Paths = field(default_factory=Paths)
    collectors: Mapping[str, CollectorConfig] = field(default_factory=dict)
    snapshots: SnapshotConfig = field(default_factory=SnapshotConfig)


def parse_duration(text: str) -> float:
    """Seconds in a duration such as "30s", "5m", "1m30s" or "250ms"."""
    text = text.strip()
    pos = 0
    total = 0.0
    for match in _DURATION_PART.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        pos = match.end()
    if not text or pos != len(text):
        raise ValueError(f'bad duration "{text}" (use e.g. "500ms", "30s", "5m", "1h")')
    if total <= 0:
        raise ValueError(f'duration "{text}" must be greater than zero')
    return total


def parse_listen(text: str) -> tuple[str, int]:
    """Host and port of an "ADDR:PORT" listen address ("" host = all addresses)."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f'bad listen address "{text}" (use ADDR:PORT, e.g. "127.0.0.1:{DEFAULT_PORT}")')
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port_text)


def load(path: Path | None, collectors: Mapping[str, type[Collector]]) -> Config:
    """Read and validate a config file; no file at the default path means defaults. ConfigError lists every
    problem (`problems`); this is the one check `check-config`, `run` and a reload all make."""
    if path is None:
        if not DEFAULT_PATH.exists():
            return _validate({}, "<defaults>", Path.cwd(), collectors)
        path = DEFAULT_PATH
    source = str(path)
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(source, "", "file not found") from None
    except OSError as exc:
        raise ConfigError(source, "", f"cannot read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, "", f"not valid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(source, "", f"not UTF-8 (byte {exc.object[exc.start]:#04x} at offset {exc.start})") from None
    return _validate(data, source, path.parent, collectors)


def _validate(
    data: Mapping[str, Any], source: str, base: Path, known: Mapping[str, type[Collector]]
) -> Config:
    reader = _Reader(source)
    config = _read(reader, data, base, known)
    if reader.problems:
        raise ConfigError.listing(reader.problems)
    return config


def _read(reader: _Reader, data: Mapping[str, Any], base: Path, known: Mapping[str, type[Collector]]) -> Config:
    """The config, with what is wrong noted in the reader and the default taken in its place."""
    reader.only_keys(data, "", ("agent", "paths", "snapshots", "collectors"))
    agent = reader.table(data, "agent")
    reader.only_keys(agent, "agent", ("listen", "state_dir", "log_level", "web_config_file"))
    listen = reader.value(agent, "agent", "listen", str, DEFAULT_LISTEN)
    reader.check(lambda: parse_listen(listen), "agent.listen", None)
    state_dir = reader.value(agent, "agent", "state_dir", str, "")
    web_config_file = reader.value(agent, "agent", "web_config_file", str, "")
    log_level = reader.value(agent, "agent", "log_level", str, "info")
    if log_level not in LOG_LEVELS:
        reader.note("agent.log_level", f'"{log_level}" is not one of {", ".join(LOG_LEVELS)}')
        log_level = "info"
    if state_dir:
        _check_state_dir(reader, base / state_dir)

    paths_table = reader.table(data, "paths")
    defaults = Paths()
    reader.only_keys(paths_table, "paths", tuple(vars(defaults)))
    paths = Paths(
        **{
            name: base / reader.value(paths_table, "paths", name, str, str(default))
            for name, default in vars(defaults).items()
        }
    )

    table = reader.table(data, "collectors")
    reader.only_keys(table, "collectors", tuple(known))
    collectors = {
        name: _collector_config(reader, reader.table(table, f"collectors.{name}", name), cls)
        for name, cls in known.items()
    }
    return Config(
        snapshots=_snapshot_config(reader, reader.table(data, "snapshots")),
        source=reader.source,
        listen=listen,
        state_dir=base / state_dir if state_dir else None,
        web_config_file=base / web_config_file if web_config_file else None,
        log_level=log_level,
        paths=paths,
        collectors=collectors,
    )


def _snapshot_config(reader: _Reader, table: Mapping[str, Any]) -> SnapshotConfig:
    defaults = SnapshotConfig()
    reader.only_keys(table, "snapshots", tuple(vars(defaults)))
    config = SnapshotConfig(
        enabled=reader.value(table, "snapshots", "enabled", bool, defaults.enabled),
        interval=reader.duration(table, "snapshots", "interval", defaults.interval),
        keep=reader.value(table, "snapshots", "keep", int, defaults.keep),
        max_bytes=reader.value(table, "snapshots", "max_bytes", int, defaults.max_bytes),
        max_total_bytes=reader.value(table, "snapshots", "max_total_bytes", int, defaults.max_total_bytes),
        min_gap=reader.duration(table, "snapshots", "min_gap", defaults.min_gap),
    )
    for name in ("keep", "max_bytes", "max_total_bytes"):
        if getattr(config, name) < 1:
            reader.note(f"snapshots.{name}", "must be at least 1")
    return config


def _check_state_dir(reader: _Reader, path: Path) -> None:
    """The agent creates the state directory itself, never its parents: a missing parent is a typo (or a mount that
    is not there yet), not a directory tree to make. One that exists too open is tightened or refused at start
    (hostvigil.control.keep_private)."""
    if path.exists():
        if not path.is_dir():
            reader.note("agent.state_dir", f"{path} exists and is not a directory")
    elif not path.parent.is_dir():  # a mistyped path is refused rather than created
        reader.note("agent.state_dir", f"{path}: its parent directory does not exist")


def _collector_config(
    reader: _Reader, table: Mapping[str, Any], cls: type[Collector]
) -> CollectorConfig:
    key = f"collectors.{cls.name}"
    reader.only_keys(table, key, ("enabled", "interval", "timeout", *cls.options))
    interval = reader.duration(table, key, "interval", cls.interval)
    timeout = reader.duration(table, key, "timeout", cls.timeout)
    if timeout > interval:
        if "timeout" in table:
            reader.note(
                f"{key}.timeout", f"{timeout:g}s is longer than the interval, {interval:g}s: runs would overlap"
            )
        timeout = interval  # a shorter interval set alone brings the built-in timeout down with it
    before = len(reader.problems)
    options, sound = {}, set()  # sound: the options whose own value passed
    for name, option in cls.options.items():
        noted = len(reader.problems)
        options[name] = reader.option(table, key, name, option)
        if len(reader.problems) == noted:
            sound.add(name)
    for name, option in cls.options.items():
        limit = option.at_most
        if limit and {name, limit} <= sound and options[name] > options[limit]:
            reader.note(f"{key}.{name}", f"{options[name]:g} s is longer than {limit} ({options[limit]:g} s)")
    if len(reader.problems) == before:  # the rules between options need each option's own value to be sound
        try:
            cls.validate(options)
        except ValueError as exc:
            name, sep, reason = str(exc).partition(": ")
            if sep and name in cls.options:  # "OPTION: reason", as validate's messages start
                reader.note(f"{key}.{name}", reason)
            else:
                reader.note(key, str(exc))
    return CollectorConfig(
        enabled=reader.value(table, key, "enabled", bool, cls.enabled_by_default),
        interval=interval,
        timeout=timeout,
        options=options,
    )


_TYPE_NAMES = {bool: "a boolean", str: "a string", int: "an integer", float: "a number", list: "a list"}


class _Reader:
    """Typed access to TOML tables that notes each problem as a line naming the key, and goes on with the default."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.problems: list[str] = []

    def note(self, key: str, reason: str) -> None:
        self.problems.append(str(ConfigError(self.source, key, reason)))

    def only_keys(self, table: Mapping[str, Any], where: str, allowed: tuple[str, ...]) -> None:
        for name in table:
            if name not in allowed:
                key = f"{where}.{name}" if where else name
                self.note(key, f"unknown key (known here: {', '.join(allowed)})")

    def table(self, data: Mapping[str, Any], key: str, name: str | None = None) -> Mapping[str, Any]:
        value = data.get(name or key, {})
        if not isinstance(value, dict):
            self.note(key, f"expected a table, got {_describe(value)}")
            return {}
        return value

    def value(self, table: Mapping[str, Any], where: str, name: str, kind: type[T], default: T) -> T:
        if name not in table:
            return default
        value = table[name]
        # bool is an int subclass in Python; TOML keeps them apart and so do we.
        ok = isinstance(value, kind) and not (kind is not bool and isinstance(value, bool))
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)  # type: ignore[return-value]
        if not ok:
            self.note(f"{where}.{name}", f"expected {_TYPE_NAMES[kind]}, got {_describe(value)}")
            return default
        return value  # type: ignore[no-any-return]

    def duration(self, table: Mapping[str, Any], where: str, name: str, default: float) -> float:
        if name not in table:
            return default
        value = table[name]
        if not isinstance(value, str):
            self.note(f"{where}.{name}", f'expected a duration such as "30s", got {_describe(value)}')
            return default
        return self.check(lambda: parse_duration(value), f"{where}.{name}", default)

    def option(self, table: Mapping[str, Any], where: str, name: str, option: Option) -> Any:
        """The option's value, or its default after noting why the value given cannot be used."""
        before = len(self.problems)
        if option.kind == "duration":
            value = self.duration(table, where, name, option.default)
        else:
            value = self.value(table, where, name, option.python_type, option.default)
            if option.kind == "strings" and not all(isinstance(item, str) for item in value):
                self.note(f"{where}.{name}", "expected a list of strings")
            if option.kind == "list" and not all(isinstance(item, str | dict) for item in value):
                self.note(f"{where}.{name}", "expected a list of strings or tables")
        if len(self.problems) == before:
            problem = option.problem(value)
            if problem is None:
                return value
            self.note(f"{where}.{name}", problem)
        return option.default

    def check(self, parse: Callable[[], T], key: str, default: T) -> T:
        try:
            return parse()
        except ValueError as exc:
            self.note(key, str(exc))
            return default


def _describe(value: Any) -> str:
    names = {bool: "boolean", int: "integer", float: "number", str: "string", list: "list", dict: "table"}
    text = repr(value) if not isinstance(value, dict | list) else ""
    kind = names.get(type(value), type(value).__name__)
    return f"{kind} {text}".strip()
