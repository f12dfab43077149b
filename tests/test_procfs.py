"""The /proc parsers on real captured files, and on the malformed input they must refuse."""

from __future__ import annotations

import pytest

from hostvigil import procfs
from tests.conftest import TREES


def read(tree: str, path: str) -> str:
    return (TREES / tree / path).read_text()


def test_file_nr_with_systemd_file_max() -> None:
    handles = procfs.parse_file_nr(read("hotsos-kubernetes", "proc/sys/fs/file-nr"))
    assert handles == procfs.FileHandles(allocated=2112, max=9223372036854775807)


def test_loadavg() -> None:
    load = procfs.parse_loadavg(read("procfs-testdata", "proc/loadavg"))
    assert load == procfs.LoadAvg(0.02, 0.04, 0.05, runnable=1, tasks=497)


def test_meminfo_in_bytes_without_memavailable() -> None:
    meminfo = procfs.parse_meminfo(read("procfs-testdata", "proc/meminfo"))
    assert meminfo["MemTotal"] == 15666184 * 1024
    assert "MemAvailable" not in meminfo  # a pre-3.14 kernel: absent, not zero


def test_meminfo_of_a_modern_kernel() -> None:
    meminfo = procfs.parse_meminfo(read("hotsos-kubernetes", "proc/meminfo"))
    assert meminfo["MemAvailable"] == 2775844 * 1024
    assert meminfo["Committed_AS"] > meminfo["CommitLimit"]


def test_pressure_cpu_without_full_line() -> None:
    pressure = procfs.parse_pressure(read("procfs-testdata", "proc/pressure/cpu"))
    assert set(pressure) == {"some"}
    assert pressure["some"] == procfs.Pressure(0.10, 2.00, 3.85, total_seconds=15e-6)


def test_pressure_io_some_and_full() -> None:
    pressure = procfs.parse_pressure(read("node-exporter-fixtures", "proc/pressure/io"))
    assert pressure["full"].total_seconds == pytest.approx(159.229614)
    assert pressure["some"].avg10 == pytest.approx(0.18)


def test_limits_with_kernel_padding_and_unlimited() -> None:
    limits = procfs.parse_limits(read("hotsos-kubernetes", "proc/35149/limits"))
    assert limits["Max open files"] == procfs.Rlimit(1048576, 1048576)
    assert limits["Max processes"] == procfs.Rlimit(None, None)


def test_limits_with_trailing_spaces_stripped() -> None:
    limits = procfs.parse_limits(read("procfs-testdata", "proc/26231/limits"))
    assert limits["Max open files"] == procfs.Rlimit(2048, 4096)
    assert limits["Max nice priority"] == procfs.Rlimit(0, 0)


def test_mounts() -> None:
    mounts = procfs.parse_mounts(read("node-exporter-fixtures", "proc/mounts"))
    assert len(mounts) == 30
    assert mounts[0] == procfs.Mount("rootfs", "/", "rootfs", ("rw",))
    assert not mounts[0].read_only
    cgroup = next(m for m in mounts if m.mountpoint == "/sys/fs/cgroup")
    assert cgroup.read_only
    assert cgroup.options[:2] == ("ro", "nosuid")


def test_mount_with_escaped_space() -> None:
    (mount,) = procfs.parse_mounts("/dev/sdb1 /srv/mail\\040spool ext4 rw 0 0\n")
    assert mount.mountpoint == "/srv/mail spool"


def test_mount_without_options_is_not_read_only() -> None:
    (mount,) = procfs.parse_mounts("/dev/sdb1 /srv ext4\n")
    assert mount.options == ()
    assert not mount.read_only


def test_cpu_list() -> None:
    assert procfs.parse_cpu_list("0-3,5,7-8\n") == 7
    assert procfs.parse_cpu_list("0\n") == 1


@pytest.mark.parametrize(
    ("parser", "text", "reason"),
    [
        (procfs.parse_file_nr, "2112 0\n", "three integers"),
        (procfs.parse_file_nr, "a b c\n", "three integers"),
        (procfs.parse_loadavg, "0.02 0.04 0.05 497 11947\n", "runnable/tasks"),
        (procfs.parse_loadavg, "x 0.04 0.05 1/497 11947\n", "non-numeric"),
        (procfs.parse_meminfo, "MemTotal: lots kB\n", "line 1"),
        (procfs.parse_meminfo, "SwapTotal: 0 kB\n", "no MemTotal"),
        (procfs.parse_pressure, "some avg10=0.1 total=5\n", "avg60"),
        (procfs.parse_pressure, "full avg10=0 avg60=0 avg300=0 total=0\n", "no 'some'"),
        (procfs.parse_limits, "Max open files 1024 4096 files\n", "header"),
        (procfs.parse_limits, "Limit                     Soft\nMax open files            1024\n", "soft and hard"),
        (procfs.parse_limits, "Limit  Soft Hard Units\nMax open files            many   4096\n", "bad limit"),
        (procfs.parse_mounts, "/dev/sda1 /\n", "line 1"),
        (procfs.parse_cpu_list, "0-a\n", "bad CPU list"),
        (procfs.parse_int, "\x00\x01garbage", "one integer"),
    ],
)
def test_malformed_input_is_refused_with_a_reason(parser: object, text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parser(text)  # type: ignore[operator]


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        # KEY=value, --option value, URL user info
        ("doveadm -o plugin/x=1 --password=hunter2", "doveadm -o plugin/x=1 --password=<redacted>"),
        ("tool --token abc DB_PASSWORD=x", "tool --token <redacted> DB_PASSWORD=<redacted>"),
        ("psql postgresql://root:pw@db/mail", "psql postgresql://<redacted>@db/mail"),
        ("tool PASSWORD:pw", "tool PASSWORD: <redacted>"),
        ("openssl req -passin pass:pw", "openssl req -passin <redacted>"),
        # headers: curl -H, wget --header=, a bearer token as an option
        ("curl -H Authorization:+Bearer+abc.def https://x", "curl -H Authorization: <redacted> https://x"),
        ("wget --header=Authorization:+Bearer+abc https://x", "wget --header=Authorization: <redacted> https://x"),
        ("curl -H X-Auth-Token:+abc https://x", "curl -H X-Auth-Token: <redacted> https://x"),
        ("curl --oauth2-bearer abc https://x", "curl --oauth2-bearer <redacted> https://x"),
        # user:password values
        ("curl -u admin:pw https://x", "curl -u admin:<redacted> https://x"),
        ("curl -uadmin:pw https://x", "curl -uadmin:<redacted> https://x"),
        ("curl --user=admin:pw https://x", "curl --user=admin:<redacted> https://x"),
        ("smbclient -U user%pw //h/s", "smbclient -U user%<redacted> //h/s"),
        # -p: a password unless a port, a path or an option
        ("mysql -u root -p hunter4 mail", "mysql -u root -p <redacted> mail"),
        ("doveadm pw -p hunter4", "doveadm pw -p <redacted>"),
        ("sshpass -p pw ssh host", "sshpass -p <redacted> ssh host"),
        ("ssh -p 22 host", "ssh -p 22 host"),
        ("mkdir -p /var/spool/x", "mkdir -p /var/spool/x"),
        # programs whose password option takes its value attached or next
        ("mysql -phunter5 mail", "mysql -p<redacted> mail"),
        ("/usr/bin/mysqldump -phunter5 mail", "/usr/bin/mysqldump -p<redacted> mail"),
        ("redis-cli -a pw ping", "redis-cli -a <redacted> ping"),
        ("ldapsearch -x -w pw -D cn=admin", "ldapsearch -x -w <redacted> -D cn=admin"),
        # positional passwords
        ("doveadm auth test user pw", "doveadm auth test user <redacted>"),
        ("doveadm -o x=1 auth login user@example.org pw", "doveadm -o x=1 auth login user@example.org <redacted>"),
        ("htpasswd -b /etc/htpasswd user pw", "htpasswd -b /etc/htpasswd user <redacted>"),
        ("htpasswd -nb user pw", "htpasswd -nb user <redacted>"),
        # what is no secret stays
        ("dovecot -F -c /etc/dovecot/dovecot.conf", "dovecot -F -c /etc/dovecot/dovecot.conf"),
        ("ps -u root", "ps -u root"),
        ("doveadm auth cache flush", "doveadm auth cache flush"),
    ],
)
def test_redaction_of_each_secret_form(argv: str, expected: str) -> None:
    """One form a row; "+" in `argv` stands for a space inside one argument."""
    args = [arg.replace("+", " ") for arg in argv.split()]
    assert " ".join(procfs.redact(args)) == expected
