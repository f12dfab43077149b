"""The command runner: deadlines, whole process groups, capped output, exit status as data."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from hostvigil.runner import STDERR_LIMIT, SYSTEM_BIN_DIRS, CommandRunner


def test_exit_status_is_data_not_an_exception() -> None:
    result = CommandRunner().run(["sh", "-c", "echo out; echo err >&2; exit 68"], timeout=5)
    assert result.status == 68
    assert result.stdout == b"out\n"
    assert "exit status 68: err" in result.describe()
    assert not result.ok


def test_locale_is_c() -> None:
    result = CommandRunner().run(["sh", "-c", "echo $LC_ALL"], timeout=5)
    assert result.stdout == b"C\n"


def test_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "grandchild.pid"
    start = time.monotonic()
    result = CommandRunner().run(["sh", "-c", f"sleep 300 & echo $! > {pidfile}; wait"], timeout=0.5)
    assert result.timed_out
    assert result.status is None
    assert time.monotonic() - start < 3
    grandchild = int(pidfile.read_text())
    deadline = time.monotonic() + 2
    while _alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not _alive(grandchild), "the background sleep survived its group's kill"
    assert "no answer within" in result.describe()


def test_output_is_capped() -> None:
    result = CommandRunner(output_limit=1000).run(["head", "-c", "100000", "/dev/zero"], timeout=5)
    assert result.status == 0
    assert len(result.stdout) == 1000
    assert result.truncated


def test_a_call_asks_for_its_own_limit_and_the_rest_is_drained() -> None:
    """Past the limit the output is read and dropped, so the command ends on its own and its exit status is known;
    stderr is kept to STDERR_LIMIT and never marks stdout truncated."""
    runner = CommandRunner(output_limit=1 << 20)
    result = runner.run(["sh", "-c", "head -c 5000000 /dev/zero; head -c 200000 /dev/zero >&2; exit 3"], timeout=10,
                        limit=1000)
    assert (result.status, result.timed_out, result.truncated) == (3, False, True)
    assert len(result.stdout) == 1000
    assert len(result.stderr) == STDERR_LIMIT
    quiet = runner.run(["sh", "-c", "echo ok; head -c 200000 /dev/zero >&2"], timeout=10, limit=1000)
    assert (quiet.stdout, quiet.truncated) == (b"ok\n", False)


def test_missing_command() -> None:
    result = CommandRunner().run(["hostvigil-no-such-tool"], timeout=5)
    assert result.status is None
    assert "No such file" in result.describe()
    assert (result.not_found, result.permission_denied, result.stuck) == (True, False, False)


def test_a_command_that_may_not_run(tmp_path: Path) -> None:
    """Why a command did not run is a field, so that no caller reads it from the words of the error."""
    tool = tmp_path / "zpool"
    tool.write_text("#!/bin/sh\nexit 0\n")
    tool.chmod(0o644)  # not executable: EACCES, for root too
    result = CommandRunner().run([str(tool)], timeout=5)
    assert (result.status, result.not_found, result.permission_denied) == (None, False, True)


def test_bin_dirs_come_first(tmp_path: Path) -> None:
    tool = tmp_path / "smartctl"
    tool.write_text("#!/bin/sh\necho recorded\n")
    tool.chmod(0o755)
    assert CommandRunner(bin_dirs=[str(tmp_path)]).run(["smartctl"], timeout=5).stdout == b"recorded\n"


def test_a_stuck_command_is_not_started_again() -> None:
    """A killed command that has not exited (D state) blocks re-runs of the same argv until it goes."""
    runner = CommandRunner()
    argv = ("sleep", "300")
    hung = subprocess.Popen(argv, start_new_session=True)  # stands in for a process SIGKILL cannot end
    runner._stuck[argv] = hung
    try:
        result = runner.run(argv, timeout=5)
        assert result.status is None
        assert "still stuck" in result.describe()
        assert result.stuck
        assert not result.not_found
        assert runner.stuck() == [argv]
        assert runner.run(["true"], timeout=5).ok  # other commands are unaffected
    finally:
        hung.kill()
        hung.wait()
    again = runner.run(argv, timeout=0.2)  # gone now: the same command starts (and times out) normally
    assert again.timed_out
    assert runner.stuck() == []


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie waiting for init to reap it is dead for our purposes.
    with open(f"/proc/{pid}/stat") as fh:
        return fh.read().split(") ", 1)[1][0] != "Z"


def test_admin_tools_are_found_off_an_ordinary_users_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """smartctl, zpool and the IPMI tools live in /usr/sbin or /sbin, which an ordinary user's PATH lacks: a tool
    there is run, not reported missing."""
    tool = next((Path(d) / name for d in SYSTEM_BIN_DIRS for name in ("smartctl", "ipmi-sensors", "zpool", "sysctl")
                 if (Path(d) / name).exists() and not any(Path(b, name).exists() for b in ("/usr/bin", "/bin"))), None)
    if tool is None:
        pytest.skip("no admin tool only in /usr/local/sbin, /usr/sbin or /sbin here")
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    result = CommandRunner().run([tool.name, "--version"], timeout=5)
    assert not result.not_found, result.describe()
