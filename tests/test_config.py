"""Every class of config error exits with status 2 and one line naming the file, the key and the reason."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from hostvigil.cli import main
from hostvigil.config import ConfigError, load, parse_duration
from hostvigil.registry import REGISTRY


def check(tmp_path: Path, text: str, capsys: pytest.CaptureFixture[str]) -> str:
    path = tmp_path / "hostvigil.toml"
    path.write_text(text)
    assert main(["check-config", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert str(path) in err
    return err


@pytest.mark.parametrize(
    ("text", "key", "reason"),
    [
        ("[agnet]\n", "agnet", "unknown key"),
        ("[agent]\nlisten_address = ':1'\n", "agent.listen_address", "unknown key"),
        ("[collectors.limits]\ndaemon = ['x']\n", "collectors.limits.daemon", "unknown key (known here: enabled,"),
        ("[collectors.nosuch]\n", "collectors.nosuch", "unknown key (known here: agent, clock, crash, edac, hwmon,"),
        ("[paths]\nprocfs = '/proc'\n", "paths.procfs", "unknown key"),
        ("[agent]\nlisten = 10091\n", "agent.listen", "expected a string, got integer 10091"),
        ("[agent]\nlisten = 'localhost'\n", "agent.listen", 'bad listen address "localhost"'),
        ("[agent]\nlog_level = 'verbose'\n", "agent.log_level", '"verbose" is not one of'),
        ("[collectors.limits]\nenabled = 'yes'\n", "collectors.limits.enabled", "expected a boolean, got string 'yes'"),
        ("[collectors.limits]\ninterval = 30\n", "collectors.limits.interval", 'expected a duration such as "30s"'),
        ("[collectors.limits]\ninterval = '30 sec'\n", "collectors.limits.interval", 'bad duration "30 sec"'),
        ("[collectors.limits]\ntimeout = '0s'\n", "collectors.limits.timeout", "greater than zero"),
        ("[collectors.limits]\ndaemons = 'dovecot'\n", "collectors.limits.daemons", "expected a list, got string"),
        ("[collectors.limits]\ndaemons = ['dovecot', 1]\n", "collectors.limits.daemons", "list of strings"),
        ("collectors = 1\n", "collectors", "expected a table, got integer 1"),
        ("[snapshots]\nkeep = 0\n", "snapshots.keep", "must be at least 1"),
        ("[snapshots]\nmin_gap = 10\n", "snapshots.min_gap", 'expected a duration such as "30s"'),
        ("[snapshots]\nretention = 5\n", "snapshots.retention", "unknown key"),
        ("[collectors.kernel]\nmax_lines_per_second = '20k'\n", "collectors.kernel.max_lines_per_second",
         "expected an integer"),
        # what the types alone cannot tell, checked by the collector when the config is loaded
        ("[collectors.probe]\ntargets = ['tcp:mx1.example.net']\n", "collectors.probe.targets",
         'target "tcp:mx1.example.net": a TCP target needs a port'),
        ("[collectors.mail]\nendpoints = ['imaps://mail.example.org', 'imapx://h']\n", "collectors.mail",
         'endpoints[1]: "imapx://h": unknown scheme "imapx"'),
        ("[collectors.mail]\nendpoints = [{ url = 'imaps://h', user = 'probe' }]\n", "collectors.mail",
         'endpoints[0]: user "probe" needs password_file (the password is never in the config)'),
        ("[collectors.mail]\nendpoints = [3]\n", "collectors.mail.endpoints", "expected a list of strings or tables"),
        ("[collectors.mail]\nprobe_timeout = '30s'\n", "collectors.mail.probe_timeout",
         "30 s is longer than probe_interval (15 s)"),
        # the values issue 14 found passing check-config and then failing a collector
        ("[collectors.zfs]\nbackend = 'zfsd'\n", "collectors.zfs.backend",
         "'zfsd' is not one of auto, libzfs, json, text, kstat"),
        ("[collectors.ups]\ntls = 'yes'\n", "collectors.ups.tls", "'yes' is not one of auto, required, off"),
        ("[collectors.ipmi]\ntool = 'openipmi'\n", "collectors.ipmi.tool", "'openipmi' is not one of"),
        ("[collectors.ups]\npassword_file = '/etc/passwd'\n", "collectors.ups.password_file",
         "set without username"),
        ("[collectors.ups]\nupses = ['ups@host:99999']\n", "collectors.ups.upses", "bad address 'host:99999'"),
        ("[collectors.probe]\nprobe_timeout = '5s'\nprobe_interval = '1s'\n", "collectors.probe.probe_timeout",
         "5 s is longer than probe_interval (1 s)"),
        ("[collectors.smart]\nconcurrency = 0\n", "collectors.smart.concurrency", "0 is below the least value, 1"),
        ("[collectors.mail]\nmax_in_flight = 0\n", "collectors.mail.max_in_flight", "below the least value, 1"),
        ("[collectors.limits]\ninterval = '5s'\ntimeout = '6s'\n", "collectors.limits.timeout",
         "6s is longer than the interval, 5s: runs would overlap"),
        ("[agent]\nstate_dir = '/nonexistent-hv/state'\n", "agent.state_dir", "its parent directory does not exist"),
    ],
)
def test_config_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, key: str, reason: str
) -> None:
    err = check(tmp_path, text, capsys)
    assert f": {key}: " in err
    assert reason in err


def test_invalid_toml(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = check(tmp_path, "[agent\nlisten = ':1'\n", capsys)
    assert "not valid TOML" in err
    assert "line 1" in err


def test_missing_file_named_on_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", "--config", str(tmp_path / "nope.toml")]) == 2
    assert "nope.toml: file not found" in capsys.readouterr().err


def test_bad_listen_flag(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--listen", "127.0.0.1"]) == 2
    assert "--listen" in capsys.readouterr().err


def test_unknown_collector_flag(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["collect", "--collector", "nosuch"]) == 2
    assert "unknown collector nosuch" in capsys.readouterr().err


def test_valid_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "hostvigil.toml"
    path.write_text(
        "[agent]\nlisten = '127.0.0.1:9999'\nstate_dir = 'state'\n"
        "[paths]\nproc = 'fixture/proc'\n"
        "[collectors.limits]\ninterval = '1m30s'\ntimeout = '500ms'\ndaemons = ['dovecot']\n"
        "[collectors.agent]\nenabled = false\n"
    )
    assert main(["check-config", "--config", str(path)]) == 0
    assert "OK" in capsys.readouterr().out
    config = load(path, REGISTRY)
    assert config.paths.proc == tmp_path / "fixture/proc"  # relative to the config file
    assert config.state_dir == tmp_path / "state"
    assert config.collectors["limits"].interval == 90
    assert config.collectors["limits"].timeout == 0.5
    assert config.collectors["limits"].options["daemons"] == ["dovecot"]
    assert not config.collectors["agent"].enabled


def test_no_file_at_all_means_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("hostvigil.config.DEFAULT_PATH", tmp_path / "absent.toml")
    config = load(None, REGISTRY)
    assert config.listen == ":10091"
    assert all(c.enabled for c in config.collectors.values())


@pytest.mark.parametrize(("text", "seconds"), [("30s", 30), ("5m", 300), ("1h", 3600), ("250ms", 0.25), ("1m30s", 90)])
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_config_error_text() -> None:
    assert str(ConfigError("/etc/x.toml", "agent.listen", "bad")) == "/etc/x.toml: agent.listen: bad"


def test_the_example_config_loads_and_shows_every_option_at_its_default() -> None:
    """packaging/hostvigil.toml.example is what a packager installs and an operator edits: it must load, and show
    every key of every collector with the value the agent would use without it."""
    example = Path(__file__).parent.parent / "packaging" / "hostvigil.toml.example"
    config = load(example, REGISTRY)
    tables = tomllib.loads(example.read_text())["collectors"]
    for name, cls in REGISTRY.items():
        assert set(tables.get(name, {})) >= {"enabled", *cls.options}, f"[collectors.{name}] lacks keys"
        assert config.collectors[name].interval == cls.interval, name
        for option, spec in cls.options.items():
            assert config.collectors[name].options[option] == spec.default, f"collectors.{name}.{option}"


def test_a_config_that_is_not_utf8_names_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "hostvigil.toml"
    path.write_bytes(b"[agent]\nlog_level = '\xff'\n")
    assert main(["check-config", "--config", str(path)]) == 2
    assert capsys.readouterr().err == f"hostvigil: config error: {path}: not UTF-8 (byte 0xff at offset 21)\n"


def test_a_bad_listen_option_is_named_as_such_and_config_errors_are_not(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", "--listen", "1.2.3:99999", "--config", str(tmp_path / "none.toml")]) == 2
    err = capsys.readouterr().err
    assert err == 'hostvigil: --listen: bad listen address "1.2.3:99999" (use ADDR:PORT, e.g. "127.0.0.1:10091")\n'
