"""What check-config and the start refuse: each value issue 14 found passing, one of each kind of declared check, every
problem of a file at once, and `run` refusing to start on them; the exact line each prints."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from hostvigil.cli import main
from hostvigil.collector import readable_file
from hostvigil.config import ConfigError, load
from hostvigil.registry import REGISTRY
from tests.conftest import free_port, refused_config, run_as_nobody

# (the config's text, the line check-config prints after "hostvigil: config error: {path}: ")
CASES = [
    # the values issue 14 found passing check-config and then failing a collector
    ("[collectors.zfs]\nbackend = 'zfsd'",
     "collectors.zfs.backend: 'zfsd' is not one of auto, libzfs, json, text, kstat"),
    ("[collectors.ups]\ntls = 'yes'", "collectors.ups.tls: 'yes' is not one of auto, required, off"),
    ("[collectors.probe]\nprobe_interval = '1s'\nprobe_timeout = '5s'",
     "collectors.probe.probe_timeout: 5 s is longer than probe_interval (1 s)"),
    ("[collectors.probe]\ntargets = ['tcp:mx1.example.net']",
     'collectors.probe.targets: target "tcp:mx1.example.net": a TCP target needs a port from 1 to 65535 (use "HOST" '
     'or "icmp:HOST" for ICMP echo, "tcp:HOST:PORT" for TCP, IPv6 literals in brackets)'),
    ("[collectors.ups]\npassword_file = '/etc/passwd'",
     "collectors.ups.password_file: set without username (upsd takes PASSWORD only after USERNAME)"),
    ("[collectors.smart]\ninterval = '1m'\ntimeout = '2m'",
     "collectors.smart.timeout: 120s is longer than the interval, 60s: runs would overlap"),
    ("[agent]\nstate_dir = '/nonexistent-hostvigil/state'",
     "agent.state_dir: /nonexistent-hostvigil/state: its parent directory does not exist"),
    # one of each kind a declaration can hold
    ("[collectors.mail]\ndaemons = ['dovecot', 'exim']",  # choices, for each item of a list
     "collectors.mail.daemons: 'exim' is not one of dovecot, postfix, cyrus"),
    ("[collectors.kernel]\nmax_lines_per_second = 0", "collectors.kernel.max_lines_per_second: 0 is below the least "
                                                      "value, 1"),
    ("[collectors.mail]\nprobe_interval = '2s'",  # at_most: the default probe_timeout (5 s) against a shorter interval
     "collectors.mail.probe_timeout: 5 s is longer than probe_interval (2 s)"),
    ("[collectors.ups]\nca_file = '/nonexistent-hostvigil/ca.pem'",  # check: a readable file
     "collectors.ups.ca_file: cannot read /nonexistent-hostvigil/ca.pem: No such file or directory"),
    ("[collectors.ups]\nserver = 'upsd.example.net:0'",  # check: an address
     "collectors.ups.server: bad address 'upsd.example.net:0' (expected HOST[:PORT] or \"[IPV6]:PORT\", a port from 1 "
     "to 65535)"),
    ("[collectors.smart]\ndevices = ['/dev/sda sat extra']",
     'collectors.smart.devices: "/dev/sda sat extra" is not "NAME" or "NAME TYPE" (e.g. "/dev/bus/0 megaraid,5")'),
    ("[collectors.raid]\ncontrollers = 'first'",
     "collectors.raid.controllers: 'first' is not 'all' or one controller number such as '0'"),
]


@pytest.mark.parametrize(("text", "line"), CASES)
def test_check_config_prints_the_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, line: str
) -> None:
    path = tmp_path / "hostvigil.toml"
    path.write_text(text + "\n")
    assert main(["check-config", "--config", str(path)]) == 2
    assert capsys.readouterr().err == f"hostvigil: config error: {path}: {line}\n"


def test_every_problem_of_a_file_is_named_at_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Three mistakes are three lines in one round, not three rounds of fixing; a bad value of one key does not hide
    another's."""
    path = tmp_path / "hostvigil.toml"
    path.write_text("\n".join(text for text, _ in CASES[:3]) + "\n[agent]\nlog_level = 'loud'\n")
    assert main(["check-config", "--config", str(path)]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"hostvigil: config error: {path}: {line}"
        for line in ('agent.log_level: "loud" is not one of debug, info, warning, error', CASES[2][1], CASES[1][1],
                     CASES[0][1])
    ]
    with pytest.raises(ConfigError) as refused:
        load(path, REGISTRY)
    assert len(refused.value.problems) == 4
    assert str(refused.value) == "; ".join(refused.value.problems), "one line, as a reload refused logs it"


def test_the_rules_between_options_wait_for_each_option_to_be_sound(tmp_path: Path) -> None:
    """A password file that cannot be read is that key's problem; "needs username" would be a second, misleading
    line about the same mistake."""
    path = tmp_path / "hostvigil.toml"
    assert refused_config(path, "[collectors.ups]\npassword_file = '/nonexistent-hostvigil/pw'\n") == (
        f"{path}: collectors.ups.password_file: cannot read /nonexistent-hostvigil/pw: No such file or directory",
    )


def test_every_default_passes_its_own_declaration() -> None:
    """The built-in values are what a file without the key gets: each must pass the checks declared beside it, and
    each at_most must name a duration of the same collector."""
    for name, cls in REGISTRY.items():
        for key, option in cls.options.items():
            assert option.problem(option.default) is None, f"collectors.{name}.{key}"
            if option.at_most:
                assert cls.options[option.at_most].kind == option.kind == "duration", f"collectors.{name}.{key}"


def test_run_refuses_to_start_on_a_bad_config(tmp_path: Path) -> None:
    """Exit status 2, the same line check-config prints, and nothing served."""
    path = tmp_path / "hostvigil.toml"
    state = tmp_path / "state"
    path.write_text(f"[agent]\nstate_dir = '{state}'\n[collectors.zfs]\nbackend = 'zfsd'\n")
    port = free_port()
    result = subprocess.run(
        [sys.executable, "-m", "hostvigil", "run", "--config", str(path), "--listen", f"127.0.0.1:{port}"],
        capture_output=True, text=True, timeout=30, check=False,
    )
    assert result.returncode == 2
    assert result.stderr == f"hostvigil: config error: {path}: {CASES[0][1]}\n"
    assert not state.exists(), "nothing was set up"


def test_a_listen_error_names_the_address(tmp_path: Path) -> None:
    port = free_port()
    path = tmp_path / "hostvigil.toml"
    disabled = "".join(f"[collectors.{name}]\nenabled = false\n" for name in REGISTRY)
    path.write_text(f"[agent]\nstate_dir = '{tmp_path / 'state'}'\n{disabled}")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen(1)
        result = subprocess.run(
            [sys.executable, "-m", "hostvigil", "run", "--config", str(path), "--listen", f"127.0.0.1:{port}"],
            capture_output=True, text=True, timeout=30, check=False,
        )
    assert result.returncode == 1
    assert f"cannot start: cannot listen on 127.0.0.1:{port}: Address already in use" in result.stderr


def test_readable_file_neither_hangs_on_a_fifo_nor_takes_a_directory(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match=f"^{fifo} is not a regular file$"):
        readable_file(str(fifo))
    with pytest.raises(ValueError, match=f"^{tmp_path} is not a regular file$"):
        readable_file(str(tmp_path))
    readable_file("")  # not set
    (tmp_path / "pw").write_text("secret\n")
    readable_file(str(tmp_path / "pw"))


def test_a_file_the_user_cannot_read_is_refused(nobody_tmp: Path) -> None:
    """check-config run as the agent's user says what the agent would meet: a password file it may not open."""
    secret = nobody_tmp / "pw"
    secret.write_text("secret\n")
    secret.chmod(0)

    def check() -> None:
        with pytest.raises(ValueError, match=f"^cannot read {secret}: Permission denied$"):
            readable_file(str(secret))

    run_as_nobody(check)


def test_a_timeout_past_its_interval_is_named_beside_another_bad_option(tmp_path: Path) -> None:
    path = tmp_path / "hostvigil.toml"
    path.write_text(
        "[collectors.probe]\ntargets = ['tcp:mx1.example.net']\nprobe_interval = '1s'\nprobe_timeout = '5s'\n"
    )
    with pytest.raises(ConfigError) as refused:
        load(path, REGISTRY)
    assert [problem.split(": ")[1] for problem in refused.value.problems] == [
        "collectors.probe.targets", "collectors.probe.probe_timeout"
    ]
