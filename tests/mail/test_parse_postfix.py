"""Postfix's main.cf and master.cf, parsed: real files, and Postfix's own tools as the reference.

Where Postfix is installed, postconf(1) reads the same fixture files, and the parser must agree with it; the
exact expectations below were read off it too.
"""

from __future__ import annotations

import os
import random
import re
import subprocess
import time
from pathlib import Path

import pytest

from hostvigil.collectors.mail.parse_postfix import (
    DEFAULTS,
    MasterService,
    lmtp_destinations,
    parse_main_cf,
    parse_master_cf,
)
from tests.conftest import FIXTURES, require_tool

POSTFIX = FIXTURES / "mail" / "postfix"
MAIN_CFS = ("debian-main.cf", "mailcow-main.cf", "losmoges-reproducer-main.cf")
MASTER_CFS = ("debian-master.cf", "mailcow-master.cf")



def postconf(config: str, *args: str, tmp_path: Path, master: str = "", stderr: bool = False) -> str:
    """postconf's output (or its warnings) for a config dir holding `config` as main.cf, `master` as master.cf."""
    directory = tmp_path / "postconf"
    directory.mkdir(exist_ok=True)
    for name, text in (("main.cf", config), ("master.cf", master)):
        (directory / name).write_text(text)
        # Postfix waits for a file changed in the last second or so to settle (0.3 s per read here): back-date it.
        os.utime(directory / name, (time.time() - 60, time.time() - 60))
    result = subprocess.run([require_tool("postconf"), "-c", str(directory), *args], capture_output=True,
                            text=True, check=True, timeout=30)
    return result.stderr if stderr else result.stdout


def normalised(value: str) -> str:
    return " ".join(value.split())


# -- main.cf --------------------------------------------------------------------------------------------------


def test_debian_package_main_cf() -> None:
    main = parse_main_cf((POSTFIX / "debian-main.cf").read_text())
    assert main.params["smtpd_banner"] == "$myhostname ESMTP $mail_name (Debian/GNU)"
    assert main.params["compatibility_level"] == "3.6"
    assert main.params["relayhost"] == ""
    assert main.params["mynetworks"] == "127.0.0.0/8 [::ffff:127.0.0.0]/104 [::1]/128"
    assert main.get("default_transport") == "error"  # debconf "Local only"
    assert main.get("queue_directory") == "/var/spool/postfix"  # not in the file: the built-in default
    assert main.get("default_process_limit") == "100"
    assert main.get("no_such_parameter") is None
    assert "myorigin" in main.params
    assert "#myorigin" not in main.params


def test_continuations_keep_their_blanks_and_later_definitions_win() -> None:
    main = parse_main_cf((POSTFIX / "mailcow-main.cf").read_text())
    # readllines() drops the newline and keeps the continuation's leading blanks.
    assert main.params["smtpd_relay_restrictions"] == (
        "permit_mynetworks,  permit_sasl_authenticated,  defer_unauth_destination"
    )
    assert main.params["postscreen_dnsbl_sites"].endswith("zen.spamhaus.org=127.0.0.3*4  zen.spamhaus.org=127.0.0.2*3")
    assert main.get("smtpd_hard_error_limit") == "5"  # ${stress?1}${stress:5} with stress unset
    assert main.get("smtpd_tls_session_cache_database") == "btree:/var/lib/postfix/smtpd_scache"
    assert main.get("virtual_transport") == "lmtp:inet:dovecot:24"
    later = parse_main_cf("a = 1\nb = $a\na = 2\n")
    assert later.params == {"a": "2", "b": "$a"}
    assert later.get("b") == "2"


@pytest.mark.parametrize("name", MAIN_CFS)
def test_main_cf_parameters_agree_with_postconf(name: str, tmp_path: Path) -> None:
    """Every parameter and value as `postconf -n` reads the same file (postconf prints runs of blanks as one)."""
    text = (POSTFIX / name).read_text()
    output = postconf(text, "-n", tmp_path=tmp_path)
    theirs = dict(line.split(" = ", 1) if " = " in line else (line.rstrip(" ="), "") for line in output.splitlines())
    del theirs["config_directory"]  # what `postconf -c DIR` adds
    ours = {key: normalised(value) for key, value in parse_main_cf(text).params.items()}
    assert ours == {key: normalised(value) for key, value in theirs.items()}


SYNTAX = """\
  orphan = a continuation with nothing before it is dropped
a = one,
# a comment between the parts of a logical line
    two,
\t
   # an indented comment too
  three
b = x \r
c =
d=e=f
"""


def test_logical_lines_as_readllines_joins_them() -> None:
    assert parse_main_cf(SYNTAX).params == {"a": "one,    two,  three", "b": "x", "c": "", "d": "e=f"}


def test_logical_lines_agree_with_postconf(tmp_path: Path) -> None:
    """postconf names parameters it does not know with their raw values: "unused parameter: a=one,    two, ..."."""
    warnings = postconf(SYNTAX, "-n", tmp_path=tmp_path, stderr=True)
    unused = dict(re.findall(r"unused parameter: ([^=\n]+)=(.*)", warnings))
    assert unused == {"a": "one,    two,  three", "b": "x", "c": "", "d": "e=f"}
    assert "logical line must not start with whitespace" in warnings


# Each expression as smtpd_banner, with full = yes and empty = (nothing); the results are postconf -xh's.
EXPANSIONS = [
    ("${full?{Y}:{N}}", "Y"),
    ("${empty?{Y}:{N}}", "N"),
    ("${full?{Y}}", "Y"),
    ("${empty:{N}}", "N"),
    ("${full?Y}${full:N}", "Y"),
    ("${empty?Y}${empty:N}", "N"),
    ("${undefinedthing?Y}${undefinedthing:N}", "N"),
    ("${full ? {Y} : {N}}", "Y"),
    ("$$full-$(full)", "$full-yes"),
    ("${full?$full$empty}", "yes"),
    ("x$undefinedparam/y", "x/y"),
    ("${full?{x}:}", "x"),
    ("${empty?{x}:{y} }", "y"),
]


@pytest.mark.parametrize(("expression", "expected"), EXPANSIONS)
def test_macro_expansion(expression: str, expected: str) -> None:
    main = parse_main_cf(f"full = yes\nempty =\nsmtpd_banner = {expression}\n")
    assert main.get("smtpd_banner") == expected


@pytest.mark.parametrize(("expression", "expected"), EXPANSIONS)
def test_macro_expansion_agrees_with_postconf(expression: str, expected: str, tmp_path: Path) -> None:
    output = postconf(f"full = yes\nempty =\nsmtpd_banner = {expression}\n", "-xh", "smtpd_banner", tmp_path=tmp_path)
    assert output.rstrip("\n") == expected


@pytest.mark.parametrize(("text", "message"), [
    ("a = 1\nthis line has no equals sign\n", r"main\.cf line 2: missing '='"),
    ("a = 1\n\n  b = continued\nname with blanks = 3\n", r"line 4: missing '='"),
    ("= value\n", r"line 1: missing parameter name"),
])
def test_main_cf_lines_postfix_refuses(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_main_cf(text)


@pytest.mark.parametrize(("value", "message"), [
    ("$-x", "empty macro name"),
    ("a$", "empty macro name"),
    ("${full", "truncated macro reference"),
    ("${full==yes?{EQ}:{NE}}", "unsupported macro expression"),
    ("${full?{a}:{b}c}", "unexpected 'c'"),
    ("$loop1", "nest too deep"),
])
def test_bad_macros_name_the_parameter(value: str, message: str) -> None:
    main = parse_main_cf(f"full = yes\nloop1 = $loop2\nloop2 = $loop1\nsmtpd_banner = {value}\n")
    with pytest.raises(ValueError, match=f"main.cf parameter smtpd_banner: .*{message}"):
        main.get("smtpd_banner")


def test_exponential_definitions_are_bounded() -> None:
    """30 lines of "pN = $pN+1$pN+1" mean 2**30 references: refused in milliseconds, not expanded for hours."""
    chain = "".join(f"p{n} = $p{n + 1}$p{n + 1}\n" for n in range(30)) + "p30 = \n"
    started = time.monotonic()
    with pytest.raises(ValueError, match=r"main\.cf parameter p0: more than 10000 macro references"):
        parse_main_cf(chain).get("p0")
    assert time.monotonic() - started < 1
    wide = "".join(f"w{n} = $w{n + 1}$w{n + 1}\n" for n in range(30)) + "w30 = " + "x" * 1000 + "\n"
    with pytest.raises(ValueError, match="expands to more than 1048576 characters"):
        parse_main_cf(wide).get("w0")


def test_error_names_the_file_given() -> None:
    with pytest.raises(ValueError, match=r"^/etc/postfix-out/main\.cf line 1:"):
        parse_main_cf("oops\n", source="/etc/postfix-out/main.cf")


# -- master.cf ------------------------------------------------------------------------------------------------


def service(services: list[MasterService], name: str, kind: str) -> MasterService:
    return next(s for s in services if (s.name, s.type) == (name, kind))


def test_debian_package_master_cf() -> None:
    services = parse_master_cf((POSTFIX / "debian-master.cf").read_text())
    assert len(services) == 31
    smtpd = service(services, "smtp", "inet")
    assert (smtpd.private, smtpd.unprivileged, smtpd.chroot, smtpd.wakeup, smtpd.maxproc, smtpd.command) == (
        False, True, True, 0, None, "smtpd")
    pickup = service(services, "pickup", "unix")
    assert (pickup.wakeup, pickup.wakeup_conditional, pickup.maxproc) == (60, False, 1)
    tlsmgr = service(services, "tlsmgr", "unix")
    assert (tlsmgr.wakeup, tlsmgr.wakeup_conditional, tlsmgr.private) == (1000, True, True)
    assert service(services, "postlog", "unix-dgram").command == "postlogd"
    relay = service(services, "relay", "unix")
    assert dict(relay.overrides) == {"syslog_name": "postfix/$service_name"}
    maildrop = service(services, "maildrop", "unix")
    assert maildrop.args == ("flags=DRXhu", "user=vmail", "argv=/usr/bin/maildrop", "-d", "${recipient}")
    assert dict(maildrop.overrides) == {}  # "flags=" ends the daemon's options
    assert service(services, "lmtp", "unix").chroot is True
    main = parse_main_cf("")
    assert smtpd.process_limit(main) == 100
    assert smtpd.process_limit(parse_main_cf("default_process_limit = 7\n")) == 7
    assert service(services, "cleanup", "unix").process_limit(main) == 0  # no limit


def test_mailcow_master_cf() -> None:
    services = parse_master_cf((POSTFIX / "mailcow-master.cf").read_text())
    assert len(services) == 42
    screen = service(services, "smtp", "inet")
    assert (screen.command, screen.maxproc) == ("postscreen", 1)
    passed = service(services, "smtpd", "pass")
    assert passed.private is True
    assert dict(passed.overrides) == {
        "smtpd_helo_restrictions": "permit_mynetworks,reject_non_fqdn_helo_hostname", "smtpd_sasl_auth_enable": "no"}
    spawn = service(services, "127.0.0.1:10027", "inet")
    assert (spawn.unprivileged, spawn.maxproc, spawn.command) == (False, 0, "spawn")
    assert spawn.args == ("user=nobody", "argv=/usr/local/bin/whitelist_forwardinghosts.sh")
    assert service(services, "127.0.0.1:10026", "inet").overrides["content_filter"] == ""
    assert service(services, "watchdog_qmgr", "fifo").wakeup == 300
    assert service(services, "watchdog_rewrite", "unix").overrides["local_transport"] == "watchdog_discard"


@pytest.mark.parametrize("name", MASTER_CFS)
def test_master_cf_agrees_with_postconf(name: str, tmp_path: Path) -> None:
    """Each service's fields as `postconf -F` reads them ("-" there is the default here), and its -o overrides
    as `postconf -P` does."""
    text = (POSTFIX / name).read_text()
    fields: dict[tuple[str, str], dict[str, str]] = {}
    for line in postconf("", "-F", tmp_path=tmp_path, master=text).splitlines():
        key, value = line.split(" = ", 1) if " = " in line else (line.rstrip(" ="), "")
        name_, kind, field = key.rsplit("/", 2)
        fields.setdefault((name_, kind), {})[field] = value
    services = parse_master_cf(text)
    assert [(s.name, s.type) for s in services] == list(fields)
    for ours in services:
        theirs = fields[(ours.name, ours.type)]
        yes_no = {"y": True, "n": False}
        assert ours.private == yes_no.get(theirs["private"], ours.type != "inet")
        assert ours.unprivileged == yes_no.get(theirs["unprivileged"], True)
        assert ours.chroot == yes_no.get(theirs["chroot"], False)
        wakeup = theirs["wakeup"]
        assert (ours.wakeup, ours.wakeup_conditional) == (
            0 if wakeup == "-" else int(wakeup.rstrip("?")), wakeup.endswith("?"))
        assert ours.maxproc == (None if theirs["process_limit"] == "-" else int(theirs["process_limit"]))
        assert normalised(" ".join((ours.command, *ours.args))) == normalised(theirs["command"])
    overrides = {}
    for line in postconf("", "-P", tmp_path=tmp_path, master=text).splitlines():
        key, value = line.split(" = ", 1) if " = " in line else (line.rstrip(" ="), "")
        name_, kind, parameter = key.split("/", 2)
        overrides.setdefault((name_, kind), {})[parameter] = value
    assert {(s.name, s.type): dict(s.overrides) for s in services if s.overrides} == overrides


def test_braces_protect_blanks_and_the_last_definition_wins() -> None:
    services = parse_master_cf(
        "x unix - - n - - smtpd -o { smtpd_client_restrictions = permit_mynetworks, reject } { an argument }\n"
        "  -o{smtpd_banner=short}\n"
        "y unix - - n - 2 smtpd\n"
        "x unix - - n - 1 smtpd -o { a = b }\n"
    )
    assert [(s.name, s.maxproc, s.line) for s in services] == [("y", 2, 3), ("x", 1, 4)]
    first = parse_master_cf(
        "x unix - - n - - smtpd -o { smtpd_client_restrictions = permit_mynetworks, reject } { an argument }\n"
    )[0]
    assert first.args == ("-o", "smtpd_client_restrictions=permit_mynetworks, reject", "an argument")
    assert dict(first.overrides) == {"smtpd_client_restrictions": "permit_mynetworks, reject"}
    options = parse_master_cf("x unix - - n - - smtpd -v -n name -oa=1 -o b=2 -t unix arg -o c=3\n")[0]
    assert dict(options.overrides) == {"a": "1", "b": "2"}  # getopt() stops at "arg"


@pytest.mark.parametrize(("text", "message"), [
    ("smtp inet n - y - -\n", 'line 1: missing "command" field'),
    ("pickup unix n - n 60 1 pickup\nsmtp inet\n", 'line 2: missing "private" field'),
    ("smtp tcp n - y - - smtpd\n", "line 1: bad service type 'tcp'"),
    ("smtp inet y - y - - smtpd\n", "line 1: an inet service cannot be private"),
    ("smtp inet n yes y - - smtpd\n", "line 1: field unprivileged: bad value 'yes'"),
    ("qmgr unix n - n soon 1 qmgr\n", "line 1: bad wakeup time 'soon'"),
    ("qmgr unix n - n 300 one qmgr\n", "line 1: bad process limit 'one'"),
    ("x unix - - n - - smtpd -o { a = b\n", r"line 1: unbalanced '\{'"),
])
def test_master_cf_lines_postfix_refuses(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=f"^master\\.cf {message}"):
        parse_master_cf(text)


# -- LMTP destinations ----------------------------------------------------------------------------------------


def test_lmtp_destinations_of_real_configurations() -> None:
    mailcow = parse_main_cf((POSTFIX / "mailcow-main.cf").read_text())
    mailcow_master = parse_master_cf((POSTFIX / "mailcow-master.cf").read_text())
    assert lmtp_destinations(mailcow) == [("lmtp://dovecot:24", "virtual_transport")]
    assert lmtp_destinations(mailcow, mailcow_master) == [("lmtp://dovecot:24", "virtual_transport")]
    reproducer = parse_main_cf((POSTFIX / "losmoges-reproducer-main.cf").read_text())
    assert lmtp_destinations(reproducer) == [
        ("lmtp://dovecot:24", "mailbox_transport"), ("lmtp://dovecot:24", "virtual_transport")]
    debian = parse_main_cf((POSTFIX / "debian-main.cf").read_text())
    assert lmtp_destinations(debian, parse_master_cf((POSTFIX / "debian-master.cf").read_text())) == []


@pytest.mark.parametrize(("value", "urls"), [
    ("lmtp:unix:private/dovecot-lmtp", ["lmtp:///var/spool/postfix/private/dovecot-lmtp"]),
    ("lmtp:unix:/var/run/cyrus/socket/lmtp", ["lmtp:///var/run/cyrus/socket/lmtp"]),
    ("lmtp:inet:127.0.0.1:10024", ["lmtp://127.0.0.1:10024"]),
    ("lmtp:inet:localhost", ["lmtp://localhost:24"]),
    ("lmtp:inet:localhost:lmtp", ["lmtp://localhost:24"]),
    ("lmtp:inet:[ipv6:::1]:2424", ["lmtp://[::1]:2424"]),
    ("lmtp:[127.0.0.1]:2003", ["lmtp://127.0.0.1:2003"]),
    ("lmtp:[mail.example]", ["lmtp://mail.example:24"]),
    ("lmtp:dovecot", ["lmtp://dovecot:24"]),
    ("lmtp:inet:a:24, inet:b:25 unix:x", ["lmtp://a:24", "lmtp://b:25", "lmtp:///var/spool/postfix/x"]),
    ("lmtp", []),  # no nexthop: the recipient's domain, no server to name
    ("lmtp:", []),
    ("smtp:[127.0.0.1]:24", []),
    ("dovecot", []),  # a pipe(8) transport to dovecot-lda
])
def test_lmtp_nexthop_forms(value: str, urls: list[str]) -> None:
    main = parse_main_cf(f"mailbox_transport = {value}\n")
    assert lmtp_destinations(main) == [(url, "mailbox_transport") for url in urls]


def test_lmtp_destinations_follow_queue_directory_and_port_settings() -> None:
    main = parse_main_cf(
        "queue_directory = /srv/postfix\nlmtp_tcp_port = 2424\nsock = private/lmtp\n"
        "virtual_transport = lmtp:unix:$sock\nfallback_transport = lmtp:inet:imap.example\n"
    )
    assert lmtp_destinations(main) == [
        ("lmtp:///srv/postfix/private/lmtp", "virtual_transport"), ("lmtp://imap.example:2424", "fallback_transport")]


def test_lmtp_destinations_with_master_cf() -> None:
    main = parse_main_cf(
        "mailbox_transport = lmtp:unix:/var/run/cyrus/socket/lmtp\n"
        "virtual_transport = dovecot-lmtp:unix:private/dovecot-lmtp\n"
    )
    services = parse_master_cf(
        "lmtp unix - - y - - lmtp\n"
        "dovecot-lmtp unix - - n - - lmtp\n"
        "submission inet n - n - - smtpd -o content_filter=lmtp:inet:[127.0.0.1]:10024\n"
    )
    # Debian's master.cf runs lmtp chrooted: an absolute socket path is then under the queue directory.
    assert lmtp_destinations(main, services) == [
        ("lmtp:///var/spool/postfix/var/run/cyrus/socket/lmtp", "mailbox_transport"),
        ("lmtp:///var/spool/postfix/private/dovecot-lmtp", "virtual_transport"),
        ("lmtp://127.0.0.1:10024", "content_filter (master.cf submission/inet)"),
    ]
    assert lmtp_destinations(main) == [("lmtp:///var/run/cyrus/socket/lmtp", "mailbox_transport")]


@pytest.mark.parametrize("value", [
    "lmtp:inet:[::1", "lmtp:inet::24", "lmtp:unix:", "lmtp:inet:[::1]x", "lmtp:inet:host:imap2"])
def test_malformed_lmtp_destination_names_the_parameter(value: str) -> None:
    with pytest.raises(ValueError, match=r"^mailbox_transport = "):
        lmtp_destinations(parse_main_cf(f"mailbox_transport = {value}\n"))


def test_defaults_are_those_of_the_installed_postfix() -> None:
    """The built-in defaults this module relies on, against `postconf -d` where Postfix is installed."""
    names = sorted(set(DEFAULTS) - {"stress"})
    result = subprocess.run([require_tool("postconf"), "-d", *names], capture_output=True, text=True, check=True)
    theirs = dict(line.split(" = ", 1) if " = " in line else (line.rstrip(" ="), "")
                  for line in result.stdout.splitlines())
    assert {name: DEFAULTS[name] for name in names} == theirs


def test_main_cf_of_any_text_gives_a_value_error_at_worst() -> None:
    generator = random.Random(7)
    alphabet = "ab =$#{}()?:\t\n -"
    for _ in range(2000):
        text = "".join(generator.choice(alphabet) for _ in range(generator.randrange(60)))
        try:
            main = parse_main_cf(text)
            for name in main.params:
                main.get(name)
            parse_master_cf(text)
        except ValueError:
            pass
