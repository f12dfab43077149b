"""What discovery and saturation read: listening sockets, Cyrus's configuration, doveadm's service status."""

from __future__ import annotations

import pytest

from hostvigil.collectors.mail.parse_cyrus import CyrusService, parse_cyrus_conf, parse_imapd_conf
from hostvigil.collectors.mail.parse_dovecot import DovecotService, parse_service_status
from hostvigil.collectors.mail.parse_sockets import (
    Listener,
    loopback_for,
    parse_tcp_listeners,
    parse_unix_listeners,
)
from tests.conftest import FIXTURES

MAIL = FIXTURES / "mail"


def test_listening_tcp_sockets_of_a_real_dovecot_on_its_standard_ports() -> None:
    v4 = parse_tcp_listeners((MAIL / "sockets/dovecot-std-ports__net_tcp").read_text(), "little")
    v6 = parse_tcp_listeners((MAIL / "sockets/dovecot-std-ports__net_tcp6").read_text(), "little")
    assert sorted(listener.port for listener in v4) == [24, 110, 143, 993, 995]
    assert {listener.address for listener in v6} == {"::"}
    assert all(listener.on_all_ipv4 for listener in v4)
    assert all(listener.on_all_ipv6 for listener in v6)


def test_listening_rows_only_and_addresses_in_host_byte_order() -> None:
    v4 = parse_tcp_listeners((MAIL / "sockets/jc__net_tcp").read_text(), "little")
    assert v4 == [Listener("127.0.0.53", 53), Listener("127.0.0.1", 35303), Listener("127.0.0.1", 631)]
    v6 = parse_tcp_listeners((MAIL / "sockets/jc__net_tcp6").read_text(), "little")
    assert v6 == [Listener("::", 22)]  # seven TIME_WAIT rows left out
    assert parse_tcp_listeners("header\n   0: 0100007F:0019 00000000:0000 0A\n", "big") == [Listener("1.0.0.127", 25)]


def test_rows_that_do_not_parse_are_skipped_not_fatal() -> None:
    text = ("  sl  local_address ...\n"
            "   0: 0100007F:ZZZZ 00000000:0000 0A\n"
            "   1: 0100:0019 00000000:0000 0A\n"
            "   2: 0100007F:0019 00000000:0000 0A\n"
            "garbage\n")
    assert parse_tcp_listeners(text, "little") == [Listener("127.0.0.1", 25)]


def test_listening_unix_stream_sockets_with_a_path() -> None:
    paths = parse_unix_listeners((MAIL / "sockets/dovecot-std-ports__net_unix").read_text())
    assert "/tmp/cap/run/lmtp" in paths
    assert all(path.startswith("/") for path in paths)
    unix = ("Num       RefCount Protocol Flags    Type St Inode Path\n"
            "0: 00000002 00000000 00010000 0001 01 1 /run/dovecot/lmtp\n"
            "0: 00000002 00000000 00010000 0001 01 2 @/org/kernel/abstract\n"
            "0: 00000002 00000000 00000000 0002 01 3 /run/systemd/notify\n"
            "0: 00000003 00000000 00000000 0001 03 4 /run/dbus/system_bus_socket\n"
            "0: 00000002 00000000 00010000 0005 01 5 /run/udev/control\n"
            "0: 00000003 00000000 00000000 0001 03 6\n")
    assert parse_unix_listeners(unix) == ["/run/dovecot/lmtp"]


@pytest.mark.parametrize(
    ("address", "connect_to"),
    [("0.0.0.0", "127.0.0.1"), ("::", "::1"), ("192.0.2.25", "192.0.2.25"),  # noqa: S104 - as the kernel lists it
     ("::ffff:192.0.2.25", "192.0.2.25"),
     ("2001:db8::25", "2001:db8::25")],
)
def test_where_to_connect_to_a_listener(address: str, connect_to: str) -> None:
    assert loopback_for(address) == connect_to


def test_debian_cyrus_conf_services() -> None:
    services = {s.name: s for s in parse_cyrus_conf((MAIL / "cyrus/debian-3.6.1__cyrus.conf").read_text())}
    assert set(services) == {"imap", "pop3", "nntp", "http", "lmtpunix", "sieve", "notify"}  # commented ones left out
    assert services["lmtpunix"] == CyrusService("lmtpunix", ("lmtpd",), "/run/cyrus/socket/lmtp", 20, 0)
    assert services["imap"].argv == ("imapd", "-U", "30")
    assert (services["notify"].maxchild, services["notify"].prefork) == (None, 1)
    imapd = parse_imapd_conf((MAIL / "cyrus/debian-3.6.1__imapd.conf").read_text())
    assert imapd["lmtpsocket"] == "/run/cyrus/socket/lmtp"
    assert imapd["configdirectory"] == "/var/lib/cyrus"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('SERVICES {\n  imap cmd="imapd listen="imap"\n}\n', "line 2: service imap lacks cmd= or listen="),
        ("SERVICES {\n  imap listen=imap\n}\n", "line 2: service imap lacks cmd="),
        ('SERVICES {\n  imap cmd="imapd" listen="imap" maxchild=lots\n}\n', "maxchild='lots' is not a number"),
        ('SERVICES {\n  "imap" cmd="imapd"\n}\n', "line 2: not an entry"),
        # fuzzing found it: shlex took 664 ms over a cmd of 170,000 characters
        ('SERVICES {\n  imap cmd=' + "A" * 5000 + ' listen="imap"\n}\n', "line 2: longer than 4096 characters"),
    ],
)
def test_bad_cyrus_conf_lines_are_named(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_cyrus_conf(text)


def test_a_hash_inside_quotes_is_not_a_comment() -> None:
    (service,) = parse_cyrus_conf('SERVICES {\n imap cmd="imapd -C /etc/#cyrus/imapd.conf" listen="imap" # x\n}\n')
    assert service.argv == ("imapd", "-C", "/etc/#cyrus/imapd.conf")


def test_real_doveadm_service_status() -> None:
    services = {s.name: s for s in parse_service_status(
        (MAIL / "dovecot/doveadm-2.3.19.1__service-status.tab").read_text())}
    assert len(services) == 28
    assert services["imap-login"] == DovecotService("imap-login", 0, 0, 100, 1, False)
    assert services["imap"].process_limit == 1024
    assert {name for name, s in services.items() if s.processes} == {"stats", "log", "config", "anvil"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty output"),
        ("name\tprocess_count\nimap\t1\n", "no process_limit, listen_pending column"),
        ("name\tprocess_count\tprocess_limit\tlisten_pending\nimap\t1\t2\n", "3 fields where the header has 4"),
        ("name\tprocess_count\tprocess_limit\tlisten_pending\nimap\tmany\t2\tn\n", "not a number"),
    ],
)
def test_bad_doveadm_output_is_named(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_service_status(text)
