"""The mail collector on real Dovecot, Postfix and Cyrus, each fault reproduced on the real server.

Every test runs the collector as the daemon runs it: started (its prober probes on its
own thread, every PROBE_INTERVAL), then run again and again as the scheduler would, its
events weighed by the event policy. A fault must show within two probe intervals with
its reason; where it lasts fail_after probes it must be an event that asks for a
snapshot holding the probe's transcript; and the alerts that fire on the series it
exported (tests/alerting.py: promtool, on the very samples) must be the matching ones
and no others. Removing the fault must bring the endpoint back.
"""

from __future__ import annotations

import logging
import os
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from hostvigil.collector import Context, Paths, Sample, Services
from hostvigil.collectors.mail.collect import MailCollector
from hostvigil.collectors.mail.discover import discover, mail_name
from hostvigil.collectors.mail.parse import check_settings
from hostvigil.collectors.mail.parse_postfix import lmtp_destinations, parse_main_cf, parse_master_cf
from hostvigil.events import MailEvent
from hostvigil.runner import CommandRunner
from tests import test_conformance
from tests.alerting import firing
from tests.conftest import (
    FIXTURES,
    RecordingHooks,
    fixture_paths,
    refused_config,
    require_tool,
    run_collector,
    run_with,
    values,
)
from tests.mail.certs import Certs
from tests.mail.cyrus import CyrusServer
from tests.mail.servers import MAIL_DOMAIN, SMTPD_LIMIT, USER, DovecotServer, PostfixServer, running_postfix

pytestmark = pytest.mark.integration

PROBE_INTERVAL = 1.0
STEP_TIMEOUT = 1.0
MAIL = FIXTURES / "mail"
root_only = pytest.mark.skipif(os.geteuid() != 0, reason="Postfix runs only as root (it switches to user postfix)")


class Watched:
    """A started mail collector, run as the scheduler runs it, its events weighed by the policy."""

    def __init__(self, options: Mapping[str, Any], tmp_path: Path) -> None:
        self.collector = MailCollector({n: o.default for n, o in MailCollector.options.items()} | dict(options))
        MailCollector.validate(self.collector.config)
        self.hooks = RecordingHooks()
        self.noted: dict[str, str] = {}
        self.collector.start(Services(Paths(), tmp_path, "boot"))
        self.samples: list[Sample] = []

    def run(self) -> dict[tuple[str, tuple[str, ...]], float]:
        self.samples = run_with(self.collector, Paths(), self.hooks, self.noted)
        return values(self.samples)

    def until(self, check: Callable[[dict[tuple[str, tuple[str, ...]], float]], bool], what: str,
              timeout: float = 2 * PROBE_INTERVAL + STEP_TIMEOUT + 0.5) -> dict[tuple[str, tuple[str, ...]], float]:
        """Run until `check` holds on the samples; fail naming `what` after `timeout` (by default two probe
        intervals and a step's deadline: the promise made for every fault)."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.run()
            if check(found):
                return found
            if time.monotonic() > deadline:
                failing = {k: v for k, v in found.items() if k[0] == "hostvigil_mail_probe_failing" and v}
                raise AssertionError(f"{what}: not within {timeout:.1f}s; failing: {failing}")
            time.sleep(0.1)

    def lost(self, endpoints: Mapping[str, str]) -> None:
        """After fail_after failures in a row, each endpoint's failure is a MailEvent in the boot's history, with
        its reason, and a snapshot was asked for naming it."""
        fail_after = self.collector.config["fail_after"]

        def lost() -> set[tuple[str, str]]:
            events = self.hooks.recorded
            return {(e.subject, e.reason) for e in events if isinstance(e, MailEvent) and e.state == "lost"}

        # The count is read from the probes as they stand, the event is raised by the run that sees the change: an
        # endpoint whose second failure lands between the two is reported one run later, so both are waited for.
        self.until(lambda f: all(f[("hostvigil_mail_probe_failures_in_a_row", (_service(e), e))] >= fail_after
                                 for e in endpoints) and lost() >= set(endpoints.items()),
                   f"{fail_after} failures in a row, each reported lost", timeout=fail_after * 2 + 3)
        reasons = " ".join(reason for _, reason, _ in self.hooks.snapshots)
        assert all(endpoint in reasons for endpoint in endpoints), reasons

    def stop(self) -> None:
        self.collector.stop()


def _service(endpoint: str) -> str:
    return endpoint.split(":", 1)[0]


@pytest.fixture
def watch(tmp_path: Path) -> Iterator[Callable[..., Watched]]:
    started: list[Watched] = []

    def start(**options: Any) -> Watched:
        watched = Watched({"probe_interval": PROBE_INTERVAL, "probe_timeout": STEP_TIMEOUT} | options, tmp_path)
        started.append(watched)
        return watched

    yield start
    for watched in started:
        watched.stop()


def password_file(tmp_path: Path, password: str) -> str:
    path = tmp_path / "probe.password"
    path.write_text(password + "\n")
    return str(path)


def dovecot_endpoints(server: DovecotServer) -> list[str]:
    return [f"imap://127.0.0.1:{server.imap_port}", f"imaps://127.0.0.1:{server.imaps_port}",
            f"pop3://127.0.0.1:{server.pop3_port}", f"pop3s://127.0.0.1:{server.pop3s_port}",
            f"lmtp://127.0.0.1:{server.lmtp_port}", f"lmtp://{server.lmtp_socket}"]


def dovecot_options(server: DovecotServer, tmp_path: Path, **more: Any) -> dict[str, Any]:
    return {
        "endpoints": dovecot_endpoints(server), "user": USER, "password_file": password_file(tmp_path, server.password),
        "rcpt": f"{USER}@{MAIL_DOMAIN}", "ca_file": str(server.certs.ca_file), "daemons": ["dovecot"],
        "dovecot_config": str(server.config), "log_file": str(server.log), "postfix_config": str(tmp_path / "none"),
    } | more


def up(found: Mapping[tuple[str, tuple[str, ...]], float], endpoint: str) -> float | None:
    return next((v for (name, labels), v in found.items() if name == "hostvigil_mail_probe_up" and
                 labels[1] == endpoint), None)


def reason_of(found: Mapping[tuple[str, tuple[str, ...]], float], endpoint: str) -> str | None:
    return next((labels[2] for (name, labels), v in found.items()
                 if name == "hostvigil_mail_probe_failing" and labels[1] == endpoint and v), None)


def all_up(found: Mapping[tuple[str, tuple[str, ...]], float], endpoints: list[str]) -> bool:
    return all(up(found, endpoint) == 1 for endpoint in endpoints)


def failing_with(endpoints: Mapping[str, str]) -> Callable[[dict[tuple[str, tuple[str, ...]], float]], bool]:
    return lambda found: all(reason_of(found, endpoint) == reason for endpoint, reason in endpoints.items())


def fired(promtool: str, tmp_path: Path, watched: Watched, before: list[Sample] | None = None,
          minutes: int = 90) -> set[tuple[str, ...]]:
    """(alertname, the labels that tell what fired) of each mail alert on the samples of the last run, held for
    `minutes` (after `before`, held for 90)."""
    alerts = firing(promtool, tmp_path, watched.samples, group="hostvigil-mail", before=before or [],
                    minutes=minutes)
    return {(a["alertname"], *(a[k] for k in ("endpoint", "daemon", "queue", "reason", "service") if k in a))
            for a in alerts}


# -- the shape -----------------------------------------------------------------------------------------------


def test_declarations_follow_the_house_rules() -> None:
    test_conformance.test_collector_declarations(MailCollector)


@pytest.mark.parametrize(
    ("table", "line"),
    [
        ("endpoints = ['imapx://h']", 'collectors.mail: endpoints[0]: "imapx://h": unknown scheme'),
        ("user = 'probe'", 'collectors.mail: user "probe" needs password_file'),
        ("probe_interval = '5s'\nprobe_timeout = '10s'",
         "collectors.mail.probe_timeout: 10 s is longer than probe_interval (5 s)"),
        ("max_in_flight = 0", "collectors.mail.max_in_flight: 0 is below the least value, 1"),
        ("daemons = ['exim']", "collectors.mail.daemons: 'exim' is not one of dovecot, postfix, cyrus"),
        ("endpoints = [{ url = 'imaps://h', user = 'p', password_file = '/nonexistent/pw' }]",
         "collectors.mail: endpoints[0]: cannot read /nonexistent/pw: No such file or directory"),
    ],
)
def test_bad_options_are_refused_when_the_config_is_loaded(tmp_path: Path, table: str, line: str) -> None:
    problems = refused_config(tmp_path / "hostvigil.toml", f"[collectors.mail]\n{table}\n")
    assert [problem for problem in problems if line in problem], problems


def test_discovery_finds_what_a_host_listens_on_and_what_its_configuration_names(tmp_path: Path) -> None:
    """A real Dovecot's listeners on the standard ports ([::] beside 0.0.0.0 probed once), its LMTP socket, the LMTP
    destinations of mailcow's Postfix and Debian's Cyrus configuration."""
    proc = tmp_path / "proc" / "net"
    proc.mkdir(parents=True)
    for name in ("tcp", "tcp6", "unix"):
        (proc / name).write_bytes((MAIL / f"sockets/dovecot-std-ports__net_{name}").read_bytes())
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "mailname").write_text("mail.example.org\n")
    ctx = Context(fixture_paths(tmp_path), CommandRunner(), time.monotonic() + 10, logging.getLogger("test"))
    assert mail_name(ctx, "mx1.example.org") == "mx1.example.org"  # Postfix's myhostname first
    lmtp = [url for url, _ in lmtp_destinations(parse_main_cf((MAIL / "postfix/mailcow-main.cf").read_text()),
                                                parse_master_cf((MAIL / "postfix/mailcow-master.cf").read_text()))]
    cyrus = ((MAIL / "cyrus/debian-3.6.1__cyrus.conf").read_text(),
             (MAIL / "cyrus/debian-3.6.1__imapd.conf").read_text())
    found = {e.label: (e.found, e.tls_name)
             for e in discover(ctx, lmtp, cyrus, check_settings({}, ""), mail_name(ctx, None))}
    assert found == {
        "lmtp://dovecot:24": ("postfix", ""),
        "lmtp:///run/cyrus/socket/lmtp": ("cyrus", ""),
        "imap://127.0.0.1:143": ("listening", "mail.example.org"),
        "pop3://127.0.0.1:110": ("listening", "mail.example.org"),
        "lmtp://127.0.0.1:24": ("listening", "mail.example.org"),
        "imaps://127.0.0.1:993": ("listening", "mail.example.org"),
        "pop3s://127.0.0.1:995": ("listening", "mail.example.org"),
        "lmtp:///tmp/cap/run/lmtp": ("listening", ""),
    }


def test_outside_the_daemon_one_run_probes_once_and_waits(shared_dovecot: DovecotServer, tmp_path: Path) -> None:
    samples = values(run_collector(MailCollector, Paths(), **dovecot_options(shared_dovecot, tmp_path)))
    assert all_up(samples, dovecot_endpoints(shared_dovecot))


# -- Dovecot ----------------------------------------------------------------------------------------------------


def test_a_healthy_dovecot_is_up_at_every_step_and_no_alert_fires(
    shared_dovecot: DovecotServer, watch: Callable[..., Watched], tmp_path: Path, promtool: str,
) -> None:
    endpoints = dovecot_endpoints(shared_dovecot)
    watched = watch(**dovecot_options(shared_dovecot, tmp_path))
    found = watched.until(lambda f: all_up(f, endpoints), "every endpoint up")
    imap = ("imap", endpoints[0])
    assert [p for p in ("connect", "greeting", "capabilities", "tls", "login", "mailbox", "quit")
            if found.get(("hostvigil_mail_probe_phase_ok", (*imap, p))) == 1] == [
        "connect", "greeting", "capabilities", "tls", "login", "mailbox", "quit"]
    assert found[("hostvigil_mail_tls_cert_verified", imap)] == 1
    assert found[("hostvigil_mail_tls_cert_not_after_timestamp_seconds", imap)] > time.time() + 20 * 86400
    assert found[("hostvigil_mail_probe_phase_ok", ("lmtp", endpoints[5], "rcpt"))] == 1
    assert {labels[0]: v for (name, labels), v in found.items() if name == "hostvigil_mail_part_up"} == {
        "probes": 1, "daemons": 1, "saturation": 1, "log": 1}
    assert found[("hostvigil_mail_daemon_up", ("dovecot",))] == 1
    assert found[("hostvigil_mail_service_process_limit", ("dovecot", "imap"))] > 0
    assert watched.hooks.take() == ([], [])
    assert fired(promtool, tmp_path, watched) == set()


def test_a_server_that_accepts_and_never_greets(
    shared_dovecot: DovecotServer, watch: Callable[..., Watched], tmp_path: Path, promtool: str,
) -> None:
    imap, imaps = dovecot_endpoints(shared_dovecot)[:2]
    watched = watch(**dovecot_options(shared_dovecot, tmp_path, fail_after=2))
    watched.until(lambda f: all_up(f, [imap, imaps]), "up first")
    shared_dovecot.never_greet("imap")
    watched.until(failing_with({imap: "no_greeting", imaps: "timeout"}), "no greeting")
    # two failures in a row: an event in the boot's history and a snapshot holding the transcript
    watched.until(lambda f: f[("hostvigil_mail_probe_failures_in_a_row", ("imap", imap))] >= 2, "two failures")
    events, snapshots = watched.hooks.take()
    assert ("mail", f"imap {imap} failing 2 probes in a row: no_greeting at greeting: no answer in time") \
        in events
    assert snapshots
    assert {trigger for trigger, _, _ in snapshots} == {"event"}
    recorded = [e for e in watched.hooks.recorded if isinstance(e, MailEvent) and e.subject == imap]
    assert recorded[0].state == "lost"
    assert recorded[0].reason == "no_greeting"
    record = watched.collector.snapshot_extra()["probes"][imap]
    assert (record["up"], record["reason"], record["phase"]) == (False, "no_greeting", "greeting")
    assert record["transcript"] == [f"-- connected to {imap}",
                                    "-- failed at greeting: no_greeting: no answer in time"]
    assert fired(promtool, tmp_path, watched) >= {("MailServiceDown", imap, "imap"),
                                                   ("MailServiceDown", imaps, "imaps")}
    shared_dovecot.resume("imap")
    watched.until(lambda f: all_up(f, [imap, imaps]), "greeting again")
    assert ("mail", f"imap {imap} answers again") in watched.hooks.take()[0]


def test_auth_stopped_hangs_login_and_the_recipient(
    dovecot: DovecotServer, watch: Callable[..., Watched], tmp_path: Path, promtool: str,
) -> None:
    """Dovecot's auth process stopped: greetings are fine, LOGIN and LMTP's RCPT hang until their deadline."""
    imap, imaps, pop3, _, lmtp, lmtp_unix = dovecot_endpoints(dovecot)
    watched = watch(**dovecot_options(dovecot, tmp_path))
    watched.until(lambda f: all_up(f, [imap, lmtp]), "up first")
    dovecot.stop_auth()
    found = watched.until(failing_with({imap: "timeout", pop3: "timeout", lmtp: "timeout", lmtp_unix: "timeout"}),
                          "login and RCPT hanging")
    watched.lost({imap: "timeout", pop3: "timeout", lmtp: "timeout", lmtp_unix: "timeout"})
    assert found[("hostvigil_mail_probe_phase_ok", ("imap", imap, "login"))] == 0
    assert found[("hostvigil_mail_probe_phase_ok", ("imap", imap, "tls"))] == 1
    assert found[("hostvigil_mail_probe_phase_ok", ("lmtp", lmtp, "rcpt"))] == 0
    login_seconds = found[("hostvigil_mail_probe_phase_seconds", ("imap", imap, "login"))]
    assert login_seconds >= STEP_TIMEOUT - 0.05  # the phase waited its whole step, and is reported so
    assert ("MailServiceDown", imaps, "imaps") in fired(promtool, tmp_path, watched)
    dovecot.resume_auth()
    watched.until(lambda f: all_up(f, [imap, imaps, pop3, lmtp, lmtp_unix]), "logins again")


@pytest.mark.parametrize(
    "case",
    [("expired", "cert_expired", 1580515200.0), ("wrong_name", "cert_name_mismatch", None),
     ("self_signed", "cert_untrusted", None)],
)
def test_certificates_clients_refuse(
    shared_dovecot: DovecotServer, watch: Callable[..., Watched], tmp_path: Path, promtool: str,
    case: tuple[str, str, float | None],
) -> None:
    certificate, reason, not_after = case
    endpoints = dovecot_endpoints(shared_dovecot)
    imap, imaps, pop3, pop3s, lmtp, lmtp_unix = endpoints
    watched = watch(**dovecot_options(shared_dovecot, tmp_path))
    watched.until(lambda f: all_up(f, endpoints), "up first")
    shared_dovecot.use_cert(getattr(shared_dovecot.certs, certificate))
    # LMTP over TCP offers STARTTLS too; over its unix socket there is no TLS to fail
    found = watched.until(failing_with({imap: reason, imaps: reason, pop3: reason, pop3s: reason, lmtp: reason}),
                          reason)
    watched.lost({imap: reason, imaps: reason, pop3: reason, pop3s: reason, lmtp: reason})
    assert up(found, lmtp_unix) == 1
    labels = ("imaps", imaps)
    assert found[("hostvigil_mail_tls_cert_verified", labels)] == 0
    if not_after is not None:  # read from the certificate fetched again without verification
        assert found[("hostvigil_mail_tls_cert_not_after_timestamp_seconds", labels)] == not_after
    info = next(k[1] for k in found if k[0] == "hostvigil_mail_tls_cert_info" and k[1][1] == imaps)
    assert info[2:4] == (("CN=mail.other.example" if certificate == "wrong_name" else "CN=localhost"),
                         ("CN=localhost" if certificate == "self_signed" else "CN=hostvigil test CA"))
    assert fired(promtool, tmp_path, watched) == {("MailCertificateInvalid", e, reason, s)
                                                  for s, e in (("imap", imap), ("imaps", imaps), ("pop3", pop3),
                                                               ("pop3s", pop3s), ("lmtp", lmtp))}
    shared_dovecot.restore()  # the good certificate again
    watched.until(lambda f: all_up(f, [imap, imaps, pop3, pop3s, lmtp]), "trusted again")


def test_a_mailbox_that_cannot_be_opened_after_a_good_login(
    shared_dovecot: DovecotServer, watch: Callable[..., Watched], tmp_path: Path, promtool: str,
) -> None:
    endpoints = dovecot_endpoints(shared_dovecot)
    imap, imaps, pop3, pop3s, lmtp, _ = endpoints
    watched = watch(**dovecot_options(shared_dovecot, tmp_path))
    watched.until(lambda f: all_up(f, endpoints), "up first")
    shared_dovecot.break_mailbox()
    found = watched.until(failing_with(dict.fromkeys((imap, imaps, pop3, pop3s), "mailbox_failed")),
                          "EXAMINE and STAT refused")
    watched.lost(dict.fromkeys((imap, imaps, pop3, pop3s), "mailbox_failed"))
    assert found[("hostvigil_mail_probe_phase_ok", ("imap", imap, "login"))] == 1
    assert up(found, lmtp) == 1  # RCPT is still taken: only DATA would fail
    detail = watched.collector.snapshot_extra()["probes"][imap]["detail"]
    assert detail.startswith("EXAMINE: NO [SERVERBUG] Internal error occurred.")
    assert fired(promtool, tmp_path, watched) == {
        ("MailServiceRefusing", e, "mailbox_failed", s)
        for s, e in (("imap", imap), ("imaps", imaps), ("pop3", pop3), ("pop3s", pop3s))}
    shared_dovecot.restore()
    watched.until(lambda f: all_up(f, endpoints), "the mailbox opens again")


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small filesystem over the mail home needs root")
def test_a_full_mail_filesystem(
    dovecot: DovecotServer, watch: Callable[..., Watched], tmp_path: Path,
) -> None:
    imap = dovecot_endpoints(dovecot)[0]
    watched = watch(**dovecot_options(dovecot, tmp_path))
    watched.until(lambda f: up(f, imap) == 1, "up first")
    dovecot.fill_mail_fs()
    watched.until(failing_with({imap: "mailbox_failed"}), "SELECT refused on a full filesystem")
    watched.lost({imap: "mailbox_failed"})
    dovecot.restore()
    watched.until(lambda f: up(f, imap) == 1, "room again")


def test_lmtp_refusing_the_recipient(
    shared_dovecot: DovecotServer, watch: Callable[..., Watched], tmp_path: Path, promtool: str,
) -> None:
    """The test recipient's user gone from the user database: LMTP refuses it as unknown."""
    lmtp, lmtp_unix = dovecot_endpoints(shared_dovecot)[4:]
    # LMTP alone: the user's logins fail too, after Dovecot's auth_failure_delay, which is another test's fault
    watched = watch(**dovecot_options(shared_dovecot, tmp_path, endpoints=[lmtp, lmtp_unix]))
    watched.until(lambda f: all_up(f, [lmtp, lmtp_unix]), "up first")
    users = shared_dovecot.passwd.read_text()
    try:
        shared_dovecot.passwd.write_text("")  # Dovecot reads a passwd-file again when it changes
        watched.until(failing_with({lmtp: "rcpt_rejected", lmtp_unix: "rcpt_rejected"}), "RCPT refused")
        watched.lost({lmtp: "rcpt_rejected", lmtp_unix: "rcpt_rejected"})
        detail = watched.collector.snapshot_extra()["probes"][lmtp_unix]["detail"]
        rcpt = f"{USER}@{MAIL_DOMAIN}"
        assert detail == f"RCPT TO: 550 5.1.1 <{rcpt}> User doesn't exist: {rcpt}"
        assert fired(promtool, tmp_path, watched) == {("MailRecipientRejected", lmtp, "lmtp"),
                                                      ("MailRecipientRejected", lmtp_unix, "lmtp")}
    finally:
        shared_dovecot.passwd.write_text(users)
    watched.until(lambda f: all_up(f, [lmtp, lmtp_unix]), "the user back")


def test_a_daemon_that_stops_and_comes_back(
    dovecot: DovecotServer, watch: Callable[..., Watched], tmp_path: Path, promtool: str,
) -> None:
    imap = dovecot_endpoints(dovecot)[0]
    watched = watch(**dovecot_options(dovecot, tmp_path))
    watched.until(lambda f: up(f, imap) == 1, "up first")
    dovecot.stop()
    found = watched.until(lambda f: f.get(("hostvigil_mail_daemon_up", ("dovecot",))) == 0
                          and reason_of(f, imap) == "refused", "down")
    assert ("mail", "mail daemon dovecot: no master process running") in watched.hooks.take()[0]
    alerts = fired(promtool, tmp_path, watched)
    assert ("MailDaemonDown", "dovecot") in alerts
    assert ("MailServiceDown", imap, "imap") in alerts
    assert found[("hostvigil_mail_part_up", ("saturation",))] == 1  # nothing to ask doveadm: not a failure
    dovecot.start()
    found = watched.until(lambda f: up(f, imap) == 1 and f[("hostvigil_mail_daemon_up", ("dovecot",))] == 1, "back")
    assert found[("hostvigil_mail_daemon_restarts_total", ("dovecot",))] == 1
    assert ("mail", "mail daemon dovecot: running again") in watched.hooks.take()[0]


# -- Postfix ----------------------------------------------------------------------------------------------------


def postfix_options(server: PostfixServer, **more: Any) -> dict[str, Any]:
    return {
        "endpoints": [f"smtp://127.0.0.1:{server.smtp_port}", f"submission://127.0.0.1:{server.submission_port}"],
        "rcpt": f"{USER}@{MAIL_DOMAIN}", "ca_file": str(server.certs.ca_file), "daemons": ["postfix"],
        "postfix_config": str(server.config_dir), "log_file": str(server.maillog),
    } | more


@root_only
def test_a_healthy_postfix_and_its_empty_queues(
    shared_postfix: PostfixServer, watch: Callable[..., Watched], tmp_path: Path, promtool: str,
) -> None:
    smtp, submission = postfix_options(shared_postfix)["endpoints"]
    watched = watch(**postfix_options(shared_postfix))
    found = watched.until(lambda f: all_up(f, [smtp, submission]), "smtp and submission up")
    assert found[("hostvigil_mail_probe_phase_ok", ("submission", submission, "tls"))] == 1
    assert found[("hostvigil_mail_probe_phase_ok", ("smtp", smtp, "rcpt"))] == 1
    assert {labels[0]: v for (name, labels), v in found.items() if name == "hostvigil_mail_queue_messages"} == {
        queue: 0 for queue in ("maildrop", "incoming", "active", "deferred", "hold", "corrupt")}
    assert found[("hostvigil_mail_service_process_limit", ("postfix", f"127.0.0.1:{shared_postfix.smtp_port}"))] \
        == SMTPD_LIMIT
    assert found[("hostvigil_mail_daemon_up", ("postfix",))] == 1
    assert found[("hostvigil_mail_part_up", ("queues",))] == 1
    assert fired(promtool, tmp_path, watched) == set()


@root_only
def test_postfix_deferring_to_a_dead_next_hop(
    shared_postfix: PostfixServer, watch: Callable[..., Watched], tmp_path: Path, promtool: str,
) -> None:
    watched = watch(**postfix_options(shared_postfix))
    watched.until(lambda f: f.get(("hostvigil_mail_queue_messages", ("deferred",))) == 0, "an empty queue")
    healthy = watched.samples
    sent = time.time()
    shared_postfix.defer(60)
    found = watched.until(lambda f: f.get(("hostvigil_mail_queue_messages", ("deferred",))) == 60, "60 deferred",
                          timeout=10)
    age = found[("hostvigil_mail_queue_oldest_age_seconds", ("deferred",))]
    assert 0 <= age <= time.time() - sent + 1
    # 60 more deferred than 20 minutes before: the growth alert; none is an hour old yet
    assert fired(promtool, tmp_path, watched, before=healthy, minutes=20) == {("MailDeferredQueueGrowing", "deferred")}


@root_only
def test_postfix_with_every_smtpd_busy(
    shared_postfix: PostfixServer, watch: Callable[..., Watched], tmp_path: Path, promtool: str,
) -> None:
    smtp = postfix_options(shared_postfix)["endpoints"][0]
    service = f"127.0.0.1:{shared_postfix.smtp_port}"
    watched = watch(**postfix_options(shared_postfix))
    watched.until(lambda f: up(f, smtp) == 1, "up first")
    shared_postfix.hold_smtpd()
    found = watched.until(failing_with({smtp: "no_greeting"}), "no greeting while every smtpd is taken")
    watched.lost({smtp: "no_greeting"})
    assert found[("hostvigil_mail_service_processes", ("postfix", service))] == SMTPD_LIMIT
    assert fired(promtool, tmp_path, watched) == {("MailServiceDown", smtp, "smtp"),
                                                  ("MailServiceSaturated", "postfix", service)}
    shared_postfix.release_smtpd()
    watched.until(lambda f: up(f, smtp) == 1, "greeting again")


@root_only
def test_postfix_refusing_mail_for_want_of_queue_space(
    shared_postfix: PostfixServer, watch: Callable[..., Watched], tmp_path: Path, promtool: str,
) -> None:
    smtp, submission = postfix_options(shared_postfix)["endpoints"]
    watched = watch(**postfix_options(shared_postfix))
    watched.until(lambda f: all_up(f, [smtp, submission]), "up first")
    shared_postfix.set_queue_minfree()
    watched.until(failing_with({smtp: "sender_rejected", submission: "sender_rejected"}), "MAIL FROM refused")
    watched.lost({smtp: "sender_rejected", submission: "sender_rejected"})
    detail = watched.collector.snapshot_extra()["probes"][smtp]["detail"]
    assert detail == "MAIL FROM: 452 4.3.1 Insufficient system storage"
    assert fired(promtool, tmp_path, watched) == {("MailServiceRefusing", e, "sender_rejected", s)
                                                  for s, e in (("smtp", smtp), ("submission", submission))}
    shared_postfix.restore()
    watched.until(lambda f: all_up(f, [smtp, submission]), "taking mail again")


@root_only
def test_postfix_log_errors_are_counted(
    shared_postfix: PostfixServer, watch: Callable[..., Watched], tmp_path: Path, promtool: str,
) -> None:
    """Postfix's own warnings in its maillog_file; a fatal error is one its `postlog` writes as Postfix's daemons
    do, with the syslog_name of this instance."""
    watched = watch(**postfix_options(shared_postfix))
    watched.run()  # the log is read from its end: what is older is not news
    healthy = watched.samples
    shared_postfix.set_queue_minfree()  # "warning: not enough free space in mail queue" at the next MAIL FROM
    tag = f"{shared_postfix.syslog_name}/smtpd"
    subprocess.run([require_tool("postlog"), "-c", str(shared_postfix.config_dir), "-t", tag, "-p", "fatal",
                    "cannot load Certification Authority data"], check=True, timeout=30)
    found = watched.until(lambda f: f.get(("hostvigil_mail_log_lines_total", ("postfix", "fatal"))) == 1,
                          "the fatal line counted", timeout=10)
    assert found.get(("hostvigil_mail_log_lines_total", ("postfix", "warning")), 0) >= 1
    assert any("cannot load Certification Authority data" in line
               for line in watched.collector.snapshot_extra().get("log", []))
    assert ("MailLogFatalErrors", "postfix") in fired(promtool, tmp_path, watched, before=healthy, minutes=5)


@root_only
def test_a_dovecot_and_postfix_host_is_up_and_quiet(
    dovecot: DovecotServer, mail_certs: Certs, watch: Callable[..., Watched], tmp_path: Path, promtool: str,
) -> None:
    """The whole host as the issue puts it: Postfix delivering to Dovecot over LMTP, every endpoint of both probed,
    both daemons watched, Postfix's queues counted; everything up, and no mail alert fires. Postfix's LMTP
    destination is what discovery finds in its configuration."""
    with running_postfix(mail_certs, dovecot) as postfix:
        smtp, submission = postfix_options(postfix)["endpoints"]
        both = postfix_options(postfix) | {
            # the test account is Dovecot's: Postfix here offers no AUTH on submission
            "endpoints": [*dovecot_endpoints(dovecot), smtp, {"url": submission, "user": ""}],
            "user": USER, "password_file": password_file(tmp_path, dovecot.password),
            "daemons": ["dovecot", "postfix"], "dovecot_config": str(dovecot.config),
        }
        watched = watch(**both)
        found = watched.until(lambda f: all_up(f, [*dovecot_endpoints(dovecot), smtp, submission]),
                              "every endpoint up")
        assert found[("hostvigil_mail_daemon_up", ("dovecot",))] == 1
        assert found[("hostvigil_mail_daemon_up", ("postfix",))] == 1
        assert fired(promtool, tmp_path, watched) == set()
        lmtp = [url for url, _ in lmtp_destinations(parse_main_cf((postfix.config_dir / "main.cf").read_text()),
                                                    parse_master_cf((postfix.config_dir / "master.cf").read_text()))]
        ctx = Context(Paths(), CommandRunner(), time.monotonic() + 5, logging.getLogger("test"))
        discovered = {e.label: e.found for e in discover(ctx, lmtp, (None, None), check_settings({}, ""))}
        assert discovered[f"lmtp://127.0.0.1:{dovecot.lmtp_port}"] == "postfix"


# -- Cyrus ------------------------------------------------------------------------------------------------------


def cyrus_endpoints(server: CyrusServer) -> list[str]:
    ports = server.ports
    return [f"imap://127.0.0.1:{ports.imap}", f"imaps://127.0.0.1:{ports.imaps}", f"pop3://127.0.0.1:{ports.pop3}",
            f"lmtp://127.0.0.1:{ports.lmtp}", f"lmtp://{server.lmtp_socket}"]


def cyrus_options(server: CyrusServer, tmp_path: Path, **more: Any) -> dict[str, Any]:
    return {
        "endpoints": cyrus_endpoints(server), "user": server.user,
        "password_file": password_file(tmp_path, server.password), "rcpt": f"{server.user}@{MAIL_DOMAIN}",
        "ca_file": str(server.certs.ca_file), "daemons": ["cyrus"], "cyrus_config": str(server.cyrus_conf),
        "imapd_config": str(server.imapd_conf), "log_file": str(server.log), "postfix_config": str(tmp_path / "none"),
    } | more


def test_a_healthy_cyrus(shared_cyrus: CyrusServer, watch: Callable[..., Watched], tmp_path: Path,
                         promtool: str) -> None:
    endpoints = cyrus_endpoints(shared_cyrus)
    watched = watch(**cyrus_options(shared_cyrus, tmp_path))
    found = watched.until(lambda f: all_up(f, endpoints), "every endpoint up")
    assert found[("hostvigil_mail_daemon_up", ("cyrus",))] == 1
    assert found[("hostvigil_mail_service_process_limit", ("cyrus", "imaplimited"))] == 1
    assert fired(promtool, tmp_path, watched) == set()


def test_cyrus_with_a_corrupt_mailboxes_database(
    shared_cyrus: CyrusServer, watch: Callable[..., Watched], tmp_path: Path, promtool: str,
) -> None:
    """The seed outage: greeting, STARTTLS and LOGIN all fine, every greeting-level check green, and every mailbox
    refused: SELECT gets * BYE, POP3's PASS -ERR [SYS/PERM], LMTP's RCPT 421."""
    imap, imaps, pop3, lmtp, lmtp_unix = cyrus_endpoints(shared_cyrus)
    watched = watch(**cyrus_options(shared_cyrus, tmp_path))
    watched.until(lambda f: all_up(f, cyrus_endpoints(shared_cyrus)), "up first")
    healthy = watched.samples
    with shared_cyrus.corrupt_mailboxes_db():
        found = watched.until(failing_with({imap: "mailbox_failed", imaps: "mailbox_failed", pop3: "mailbox_failed",
                                            lmtp: "rcpt_rejected", lmtp_unix: "rcpt_rejected"}), "mailboxes refused")
        watched.lost({imap: "mailbox_failed", imaps: "mailbox_failed", pop3: "mailbox_failed",
                       lmtp: "rcpt_rejected", lmtp_unix: "rcpt_rejected"})
        for phase in ("greeting", "tls", "login"):
            assert found[("hostvigil_mail_probe_phase_ok", ("imap", imap, phase))] == 1
        probes = watched.collector.snapshot_extra()["probes"]
        assert probes[imap]["detail"] == "EXAMINE: * BYE Fatal error: can't read mailboxes file"
        assert probes[pop3]["detail"] == "PASS: -ERR [SYS/PERM] Fatal error: can't read mailboxes file"
        assert probes[lmtp]["detail"].startswith("RCPT TO: 421 4.3.0")
        found = watched.until(lambda f: f.get(("hostvigil_mail_log_lines_total", ("cyrus", "fatal")), 0) > 0,
                              "Cyrus's fatal errors counted")
        assert fired(promtool, tmp_path, watched, before=healthy, minutes=5) == {
            ("MailServiceRefusing", imap, "mailbox_failed", "imap"),
            ("MailServiceRefusing", imaps, "mailbox_failed", "imaps"),
            ("MailServiceRefusing", pop3, "mailbox_failed", "pop3"),
            ("MailRecipientRejected", lmtp, "lmtp"), ("MailRecipientRejected", lmtp_unix, "lmtp"),
            ("MailLogFatalErrors", "cyrus"),
        }
    watched.until(lambda f: all_up(f, cyrus_endpoints(shared_cyrus)), "back with the database")


def test_cyrus_whose_tls_key_it_cannot_read(
    shared_cyrus: CyrusServer, watch: Callable[..., Watched], tmp_path: Path, promtool: str,
) -> None:
    imap, imaps = cyrus_endpoints(shared_cyrus)[:2]
    watched = watch(**cyrus_options(shared_cyrus, tmp_path))
    watched.until(lambda f: all_up(f, [imap, imaps]), "up first")
    with shared_cyrus.unreadable_tls_key():
        watched.until(failing_with({imap: "tls_handshake", imaps: "tls_handshake"}), "TLS refused")
        watched.lost({imap: "tls_handshake", imaps: "tls_handshake"})
        assert watched.collector.snapshot_extra()["probes"][imap]["detail"] == "STARTTLS: NO Error initializing TLS"
        alerts = fired(promtool, tmp_path, watched)
    assert {("MailServiceRefusing", imap, "tls_handshake", "imap"),
            ("MailServiceRefusing", imaps, "tls_handshake", "imaps")} <= alerts
    watched.until(lambda f: all_up(f, [imap, imaps]), "TLS again")


def test_cyrus_with_its_mailboxes_database_locked(
    shared_cyrus: CyrusServer, watch: Callable[..., Watched], tmp_path: Path, promtool: str,
) -> None:
    """Another process holds a lock on mailboxes.db: a perfect login, then SELECT, PASS and RCPT hang."""
    imap, _, pop3, lmtp, _ = cyrus_endpoints(shared_cyrus)
    watched = watch(**cyrus_options(shared_cyrus, tmp_path))
    watched.until(lambda f: all_up(f, cyrus_endpoints(shared_cyrus)), "up first")
    with shared_cyrus.lock_mailboxes_db():
        found = watched.until(failing_with({imap: "timeout", pop3: "timeout", lmtp: "timeout"}), "hanging")
        watched.lost({imap: "timeout", pop3: "timeout", lmtp: "timeout"})
        assert found[("hostvigil_mail_probe_phase_ok", ("imap", imap, "login"))] == 1
        assert found[("hostvigil_mail_probe_phase_ok", ("imap", imap, "mailbox"))] == 0
        assert found[("hostvigil_mail_probe_phase_ok", ("pop3", pop3, "login"))] == 0
        assert found[("hostvigil_mail_probe_phase_ok", ("lmtp", lmtp, "rcpt"))] == 0
        assert ("MailServiceDown", imap, "imap") in fired(promtool, tmp_path, watched)
    watched.until(lambda f: all_up(f, cyrus_endpoints(shared_cyrus)), "the lock released")


def test_cyrus_service_at_its_maxchild(
    shared_cyrus: CyrusServer, watch: Callable[..., Watched], tmp_path: Path, promtool: str,
) -> None:
    limited = f"imap://127.0.0.1:{shared_cyrus.ports.imap_limited}"
    watched = watch(**cyrus_options(shared_cyrus, tmp_path, endpoints=[limited]))
    watched.until(lambda f: up(f, limited) == 1, "up first")
    with shared_cyrus.occupy_limited():
        found = watched.until(failing_with({limited: "no_greeting"}), "no greeting")
        watched.lost({limited: "no_greeting"})
        assert found[("hostvigil_mail_service_processes", ("cyrus", "imaplimited"))] == 1
        assert fired(promtool, tmp_path, watched) == {("MailServiceDown", limited, "imap"),
                                                      ("MailServiceSaturated", "cyrus", "imaplimited")}
    watched.until(lambda f: up(f, limited) == 1, "greeting again")


def test_cyrus_mailbox_whose_index_was_lost(
    shared_cyrus: CyrusServer, watch: Callable[..., Watched], tmp_path: Path,
) -> None:
    imap, _, _, lmtp, _ = cyrus_endpoints(shared_cyrus)
    watched = watch(**cyrus_options(shared_cyrus, tmp_path))
    watched.until(lambda f: all_up(f, [imap, lmtp]), "up first")
    with shared_cyrus.empty_index():
        watched.until(failing_with({imap: "mailbox_failed", lmtp: "rcpt_rejected"}), "metadata lost")
        watched.lost({imap: "mailbox_failed", lmtp: "rcpt_rejected"})
        probes = watched.collector.snapshot_extra()["probes"]
        assert probes[imap]["detail"] == "EXAMINE: NO System I/O error"
        assert probes[lmtp]["detail"].startswith("RCPT TO: 451 4.3.0 System I/O error")
    watched.until(lambda f: all_up(f, [imap, lmtp]), "the index back")
