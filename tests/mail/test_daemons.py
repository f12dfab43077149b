"""Mail daemons told apart by their command lines, their processes by parentage, restarts by a new master PID.

The process lists are as this machine's /proc showed them with the test servers running
(command lines as tests/mail/servers.py and cyrus.py start them, and as Debian's units
start the system's); the collector's tests run the same code on the live /proc.
"""

from __future__ import annotations

import os
from pathlib import Path

from hostvigil.collectors.mail.daemons import Process, Restarts, configured_with, find, installed, scan

DOVECOT = Process(8120, 1, "dovecot", "S", 100, ("/usr/sbin/dovecot", "-F", "-c", "/tmp/dv/dovecot.conf"))
SYSTEM_DOVECOT = Process(700, 1, "dovecot", "S", 50, ("/usr/sbin/dovecot", "-F"))
POSTFIX = Process(19309, 1, "master", "S", 200, ("/usr/lib/postfix/sbin/master", "-w"))
CYRUS = Process(3100, 3000, "master", "S", 300, ("/usr/lib/cyrus/bin/master", "-C", "/tmp/cy/imapd.conf", "-M",
                                                 "/tmp/cy/cyrus.conf", "-p", "/tmp/cy/master.pid"))
PROCESSES = [
    DOVECOT, SYSTEM_DOVECOT, POSTFIX, CYRUS,
    Process(8122, 8120, "anvil", "S", 101, ("dovecot/anvil",)),
    Process(8131, 8120, "imap-login", "S", 102, ("dovecot/imap-login",)),
    Process(8140, 8120, "imap", "S", 103, ("dovecot/imap",)),
    Process(20213, 19309, "pickup", "S", 201, ("pickup", "-l", "-t", "unix", "-u")),
    Process(21713, 19309, "smtpd", "S", 202, ("smtpd", "-n", "127.0.0.1:60139", "-t", "inet", "-u")),
    Process(3101, 3100, "imapd", "S", 301, ("/x/usr/lib/cyrus/bin/imapd", "-U", "1", "-C", "/tmp/cy/imapd.conf")),
    Process(9000, 1, "master", "Z", 400, ()),  # a zombie: no command line left
    Process(9100, 1, "vim", "S", 500, ("vim", "master")),
]


def test_masters_are_told_apart_by_their_command_lines_not_their_names() -> None:
    found = find(PROCESSES, ["dovecot", "postfix", "cyrus"])
    assert [p.pid for p in found["dovecot"].mains] == [8120, 700]
    assert [p.pid for p in found["postfix"].mains] == [19309]  # "master" the name of both Postfix's and Cyrus's
    assert [p.pid for p in found["cyrus"].mains] == [3100]
    assert sorted(p.pid for p in found["dovecot"].children) == [8122, 8131, 8140]
    assert sorted(p.pid for p in found["postfix"].children) == [20213, 21713]
    assert [p.pid for p in found["cyrus"].children] == [3101]


def test_the_instance_configured_here_is_picked_where_several_run() -> None:
    ours = {"dovecot": configured_with("-c", "/tmp/dv/dovecot.conf", "/etc/dovecot/dovecot.conf"),
            "cyrus": configured_with("-M", "/etc/cyrus.conf", "/etc/cyrus.conf")}
    found = find(PROCESSES, ["dovecot", "cyrus"], ours)
    assert [p.pid for p in found["dovecot"].mains] == [8120]
    assert found["cyrus"].mains == []  # started with another cyrus.conf
    system = find(PROCESSES, ["dovecot"], {"dovecot": configured_with("-c", "/etc/dovecot/dovecot.conf",
                                                                        "/etc/dovecot/dovecot.conf")})
    assert [p.pid for p in system["dovecot"].mains] == [700]  # no -c: the default configuration


def test_a_restart_is_a_new_master_pid_not_a_reload() -> None:
    restarts = Restarts()
    assert restarts.update(find([DOVECOT], ["dovecot"])) == {"dovecot": 0}
    assert restarts.update(find([DOVECOT], ["dovecot"])) == {"dovecot": 0}  # SIGHUP keeps the PID
    assert restarts.update(find([], ["dovecot"])) == {"dovecot": 0}  # gone: not yet a restart
    again = Process(8200, 1, "dovecot", "S", 900, DOVECOT.argv)
    assert restarts.update(find([again], ["dovecot"])) == {"dovecot": 1}
    assert restarts.update(find([again], ["dovecot"])) == {"dovecot": 1}


def test_what_is_installed_is_expected(tmp_path: Path) -> None:
    (tmp_path / "usr/lib/postfix/sbin").mkdir(parents=True)
    (tmp_path / "usr/lib/postfix/sbin/master").touch()
    assert installed(tmp_path) == ["postfix"]
    assert installed(tmp_path / "nothing") == []


def test_scan_reads_this_process() -> None:
    (me,) = [p for p in scan(Path("/proc")) if p.pid == os.getpid()]
    assert "python" in me.argv[0]
    assert me.start_ticks > 0
