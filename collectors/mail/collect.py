"""The mail service as users meet it: IMAP, POP3, SMTP and LMTP probed, Postfix's queues, the daemons, the mail log.

A host can run every mail process and still refuse every client: a TLS session
database corrupted at start, a mailboxes database Cyrus cannot read, a lock that
makes SELECT hang after a perfect login. So the endpoints are probed as a client
walks them (probe.py), on the prober's thread, each every probe_interval
(prober.py); this collector reads what they found, together with:

- Postfix's queues, counted under queue_directory with a bounded walk (queues.py),
  and the age of the oldest message in each;
- the mail daemons expected here (those installed, or those listed), their master
  processes, start times and restarts (daemons.py);
- saturation: login and worker processes against their limits (saturation.py), which
  fill up before "the proxies time out connections";
- the mail log's warnings, errors, fatals and panics per daemon (maillog.py), read
  with a byte budget so that a flood costs counts, never CPU.

Each part reads on its own: one that cannot (no permission on the queue directory,
no doveadm) is `part_up{part} 0` with its reason logged once, and the others go on.

With no endpoints listed, they are discovered (discover.py): the host's sockets
listening on the standard mail ports and the LMTP sockets it listens on or that
Postfix's and Cyrus's configuration name, each with how it was found. An endpoint
failing fail_after probes in a row is a MailEvent (lost), as is an expected daemon
gone; the snapshot it asks for holds the failing probes' transcripts, the daemons'
processes and open files (snapshot.py), the queues and the newest mail-log errors.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from hostvigil.collector import Collector, CollectorError, Context, Option, Sample, Services, readable_file
from hostvigil.collectors.mail import daemons as daemon_procs
from hostvigil.collectors.mail import saturation
from hostvigil.collectors.mail.discover import discover, mail_name
from hostvigil.collectors.mail.maillog import LogRead, MailJournal, MailLogFile
from hostvigil.collectors.mail.metrics import (
    CERT_INFO,
    CERT_NOT_AFTER,
    CERT_VERIFIED,
    DAEMON_PROCESSES,
    DAEMON_RESTARTS,
    DAEMON_STARTED,
    DAEMON_UP,
    ENDPOINT,
    FAILING,
    FAILURES,
    IN_A_ROW,
    LAST,
    LOG_LINES,
    LOG_SKIPPED,
    METRICS,
    PART_UP,
    PHASE_OK,
    PHASE_SECONDS,
    PROBES,
    QUEUE_MESSAGES,
    QUEUE_OLDEST,
    QUEUE_READABLE,
    UP,
)
from hostvigil.collectors.mail.outcome import REASONS, ProbeSettings
from hostvigil.collectors.mail.parse import (
    Endpoint,
    apply_settings,
    check_settings,
    parse_endpoints,
)
from hostvigil.collectors.mail.parse_cyrus import parse_imapd_conf
from hostvigil.collectors.mail.parse_log import DAEMONS as LOG_DAEMONS
from hostvigil.collectors.mail.parse_log import LEVELS as LOG_LEVELS
from hostvigil.collectors.mail.parse_postfix import (
    MainCf,
    MasterService,
    lmtp_destinations,
    parse_main_cf,
    parse_master_cf,
)
from hostvigil.collectors.mail.prober import EndpointView, MailProber
from hostvigil.collectors.mail.queues import QUEUES, walk_queues
from hostvigil.collectors.mail.snapshot import MailSnapshot, probe_record, processes
from hostvigil.events import Changes, MailEvent
from hostvigil.procfs import parse_btime

DOVECOT_CONF = "/etc/dovecot/dovecot.conf"  # where dovecot reads its configuration without -c
CYRUS_CONF = "/etc/cyrus.conf"
SYSLOG_MAIL_LOG = "/var/log/mail.log"
_REDISCOVER = 300.0  # seconds between two discoveries of the endpoints
_PASSWORD_BYTES = 4096
_LOG_KEPT = 20
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Postfix:
    """Postfix's configuration as read this run: main.cf, master.cf, and where its queues are."""

    main: MainCf
    master: list[MasterService]
    queue_directory: Path


class MailCollector(Collector):
    name = "mail"
    help = ("The mail service as users meet it: IMAP, POP3, SMTP and LMTP endpoints probed with TLS and "
            "certificates, Postfix's queues, the mail daemons and their limits, and mail-log errors.")
    interval = 15.0
    timeout = 10.0
    options: ClassVar[Mapping[str, Option]] = {
        "endpoints": Option(
            "list", [],
            'endpoints to probe, each a URL ("imaps://mail.example.com", "lmtp:///run/dovecot/lmtp") or a table '
            "{url = ..., <any setting below>}; none: discover them",
        ),
        "discover": Option("bool", True, "with no endpoints listed, probe those this host listens on"),
        "starttls": Option(
            "string", "auto", "auto (when offered), required, or off", choices=("auto", "required", "off")
        ),
        "tls_name": Option("string", "", "the name certificates must carry (default: the URL's host)"),
        "tls_verify": Option("bool", True, "verify certificates (chain and name); expiry is checked either way"),
        "ca_file": Option("string", "", "CA certificates to trust instead of the system's", check=readable_file),
        "user": Option("string", "", "a test account to log in with (IMAP, POP3, submission)"),
        "password_file": Option("string", "", "the file holding the test account's password", check=readable_file),
        "mail_from": Option("string", "", 'the sender for MAIL FROM ("": the null sender)'),
        "rcpt": Option("string", "", "a test recipient tried with RCPT TO over SMTP and LMTP (nothing is sent)"),
        "probe_interval": Option("duration", 15.0, "probe each endpoint this often"),
        "probe_timeout": Option(
            "duration", 5.0, "each step of a probe (greeting, login, ...) gets this long", at_most="probe_interval"
        ),
        "max_in_flight": Option("int", 4, "probes running at once, at most", minimum=1),
        "fail_after": Option("int", 2, "failed probes in a row before an endpoint counts as down (event)", minimum=1),
        "daemons": Option(
            "strings", [], "mail daemons expected here (dovecot, postfix, cyrus); none: installed",
            choices=tuple(daemon_procs.DAEMONS),
        ),
        "postfix_config": Option("string", "/etc/postfix", "Postfix's configuration directory"),
        "cyrus_config": Option("string", CYRUS_CONF, "Cyrus master's configuration"),
        "imapd_config": Option("string", "/etc/imapd.conf", "Cyrus's imapd.conf"),
        "dovecot_config": Option(
            "string", "", "dovecot.conf for doveadm -c (default: Dovecot's own)", check=readable_file
        ),
        "log_file": Option(
            "string", "auto", f'the syslog mail log, or "journal"; "auto": {SYSLOG_MAIL_LOG} where it exists, else '
                              "the journal",
        ),
    }
    metrics = METRICS

    def __init__(self, options: Mapping[str, Any]) -> None:
        super().__init__({name: options.get(name, option.default) for name, option in self.options.items()})
        self.prober: MailProber | None = None
        self._paths_proc = Path("/proc")
        self._defaults = check_settings(self.config, "")  # the collector-wide endpoint settings
        self._endpoints: list[Endpoint] | None = None
        self._discovered_at = 0.0
        self._failing: Changes[str, bool] = Changes()
        self._down: Changes[str, bool] = Changes()
        self._restarts = daemon_procs.Restarts()
        self._log: MailLogFile | MailJournal | None = None
        self._log_counts: dict[tuple[str, str], int] = {}
        self._log_skipped = 0
        self._log_newest: list[str] = []
        self._queues: dict[str, int] = {}
        self._daemon_pids: dict[str, list[int]] = {}
        self._lock = threading.Lock()

    @classmethod
    def validate(cls, options: Mapping[str, Any]) -> None:
        """Endpoints and their settings (each endpoint's own files readable too) are checked when the config is
        loaded; the options alone are checked by what they declare."""
        endpoints = parse_endpoints(options.get("endpoints", []), check_settings(options, ""))
        apply_settings(Endpoint("imap", host="localhost", port=143), check_settings(options, ""), {})
        for index, endpoint in enumerate(endpoints):
            try:
                readable_file(endpoint.password_file)
                readable_file(endpoint.ca_file)
            except ValueError as exc:
                raise ValueError(f"endpoints[{index}]: {exc}") from None

    def start(self, services: Services) -> None:
        self._paths_proc = services.paths.proc
        self.prober = self._prober(on_change=lambda: services.collect_now(self.name))
        services.sources.add(self.prober).start()

    def stop(self) -> None:
        if self.prober is not None:
            self.prober.stop()

    def _prober(self, on_change: Callable[[], None] = lambda: None) -> MailProber:
        interval = float(self.config["probe_interval"])
        settings = ProbeSettings(float(self.config["probe_timeout"]), interval, socket.gethostname() or "localhost")
        return MailProber(settings, interval, int(self.config["max_in_flight"]), _password, on_change)

    # -- a run ----------------------------------------------------------------------------------------------

    def collect(self, ctx: Context) -> Iterator[Sample | MailEvent]:
        postfix = self._postfix(ctx)
        yield from self._run_part(ctx, "probes", lambda: self._probes(ctx, postfix))
        if postfix is not None:
            yield from self._run_part(ctx, "queues", lambda: self._queue_samples(ctx, postfix))
        processes = daemon_procs.scan(ctx.paths.proc)
        expected = list(self.config["daemons"]) or daemon_procs.installed(ctx.paths.rootfs)
        found = daemon_procs.find(processes, expected, self._instances(ctx, postfix))
        yield from self._run_part(ctx, "daemons", lambda: self._daemons(ctx, found))
        yield from self._run_part(ctx, "saturation", lambda: self._saturation(ctx, found, postfix))
        yield from self._run_part(ctx, "log", lambda: self._mail_log(ctx, postfix))

    def _run_part(
        self, ctx: Context, part: str, run: Callable[[], Iterator[Sample | MailEvent]],
    ) -> Iterator[Sample | MailEvent]:
        """A part's samples and events, or part_up 0 and its reason logged once; never the other parts' loss."""
        try:
            items = list(run())
        except (CollectorError, OSError, ValueError) as exc:
            ctx.note_once(f"{part}:{exc}", f"mail {part}: {exc}")
            yield PART_UP(0, part)
            return
        yield PART_UP(1, part)
        yield from items

    def _instances(
        self, ctx: Context, postfix: Postfix | None,
    ) -> dict[str, Callable[[daemon_procs.Process], bool]]:
        """Which masters are the instances configured here: Dovecot's by its -c, Cyrus's by its -M, Postfix's by the
        PID in its queue directory (any, where that cannot be read)."""
        ours = {
            "dovecot": daemon_procs.configured_with("-c", self.config["dovecot_config"] or DOVECOT_CONF, DOVECOT_CONF),
            "cyrus": daemon_procs.configured_with("-M", self.config["cyrus_config"], CYRUS_CONF),
        }
        pid = _postfix_master(ctx, postfix) if postfix is not None else None
        if pid is not None:
            ours["postfix"] = lambda process: process.pid == pid
        return ours

    def _postfix(self, ctx: Context) -> Postfix | None:
        """Postfix's configuration, None where Postfix is not configured; a bad main.cf costs the queues part."""
        directory = ctx.rootfs(self.config["postfix_config"])
        try:
            main_text = ctx.read(directory / "main.cf")
            if main_text is None:
                return None
            main = parse_main_cf(main_text, source=str(directory / "main.cf"))
            master_text = ctx.read(directory / "master.cf") or ""
            master = parse_master_cf(master_text, source=str(directory / "master.cf"))
            queue_directory = ctx.rootfs(main.get("queue_directory") or "/var/spool/postfix")
        except (CollectorError, ValueError) as exc:
            ctx.note_once(f"postfix:{exc}", f"mail: Postfix's configuration: {exc}")
            return None
        return Postfix(main, master, queue_directory)

    # -- probes ---------------------------------------------------------------------------------------------

    def _probes(self, ctx: Context, postfix: Postfix | None) -> Iterator[Sample | MailEvent]:
        endpoints = self._endpoints_now(ctx, postfix)
        if not endpoints:
            raise CollectorError("nothing to probe: no endpoints listed and none found listening on this host")
        prober = self.prober
        if prober is None:  # `hostvigil collect`: one round, waited for until just before the run's deadline
            prober = self._prober()
            prober.probe_now(endpoints, ctx.deadline - 0.5)
        else:
            prober.set_endpoints(endpoints)
        views = prober.views()
        fail_after = int(self.config["fail_after"])
        for view in views:
            yield from _endpoint_samples(view)
        probed = {view.endpoint.label: view for view in views if view.last is not None}
        failing = {label: view.in_a_row >= fail_after for label, view in probed.items()}
        for change in self._failing.update(failing, forget=True):
            if change.now or not change.first:
                yield _endpoint_event(probed[change.key], change.now, initial=change.first)

    def _endpoints_now(self, ctx: Context, postfix: Postfix | None) -> list[Endpoint]:
        """The endpoints listed (parsed once: the config was checked when loaded), else those discovered, again
        every _REDISCOVER seconds."""
        if self.config["endpoints"] or not self.config["discover"]:
            if self._endpoints is None:
                self._endpoints = parse_endpoints(self.config["endpoints"], self._defaults)
            return self._endpoints
        now = time.monotonic()
        if self._endpoints is None or now - self._discovered_at >= _REDISCOVER:
            lmtp = [url for url, _ in lmtp_destinations(postfix.main, postfix.master)] if postfix else []
            myhostname = postfix.main.get("myhostname") if postfix and "myhostname" in postfix.main.params else None
            name = mail_name(ctx, myhostname)
            self._endpoints = discover(ctx, lmtp, self._cyrus_files(ctx), self._defaults, name)
            self._discovered_at = now
        return self._endpoints

    def _cyrus_files(self, ctx: Context) -> tuple[str | None, str | None]:
        return ctx.read(ctx.rootfs(self.config["cyrus_config"])), ctx.read(ctx.rootfs(self.config["imapd_config"]))

    # -- queues ---------------------------------------------------------------------------------------------

    def _queue_samples(self, ctx: Context, postfix: Postfix) -> Iterator[Sample]:
        queue_directory = postfix.queue_directory
        walk = walk_queues(queue_directory, ctx.deadline - 0.5)
        if len(walk.unreadable) == len(QUEUES):
            reasons = sorted(set(walk.unreadable.values()))
            raise CollectorError(f"{queue_directory}: {'; '.join(reasons)}")
        if walk.incomplete:
            ctx.note_once(f"queues:{walk.incomplete}", f"mail queues: {queue_directory}: walk stopped early: "
                                                       f"{walk.incomplete}; counts are lower bounds")
        now = time.time()
        counts = {}
        for queue in QUEUES:
            if queue in walk.unreadable:
                ctx.note_once(f"queue:{queue}:{walk.unreadable[queue]}",
                              f"mail queues: {queue_directory}/{queue}: {walk.unreadable[queue]}")
                yield QUEUE_READABLE(0, queue)
                continue
            stats = walk.queues.get(queue)
            if stats is None:
                continue  # not reached before the walk stopped
            yield QUEUE_READABLE(1, queue)
            yield QUEUE_MESSAGES(stats.messages, queue)
            counts[queue] = stats.messages
            if stats.oldest_arrival is not None:
                yield QUEUE_OLDEST(max(0.0, now - stats.oldest_arrival), queue)
        with self._lock:
            self._queues = counts

    # -- daemons ----------------------------------------------------------------------------------------------

    def _daemons(
        self, ctx: Context, found: Mapping[str, daemon_procs.DaemonProcesses],
    ) -> Iterator[Sample | MailEvent]:
        restarts = self._restarts.update(found)
        booted = ctx.parse(ctx.proc("stat"), parse_btime)
        for name, daemon in found.items():
            yield DAEMON_UP(1 if daemon.mains else 0, name)
            yield DAEMON_PROCESSES(len(daemon.mains) + len(daemon.children), name)
            yield DAEMON_RESTARTS(restarts[name], name)
            if daemon.mains and booted is not None:
                oldest = min(p.start_ticks for p in daemon.mains)
                yield DAEMON_STARTED(booted + oldest / CLOCK_TICKS, name)
        with self._lock:
            self._daemon_pids = {name: [p.pid for p in d.mains + d.children] for name, d in found.items()}
        for change in self._down.update({name: not d.mains for name, d in found.items()}, forget=True):
            if change.now or not change.first:
                yield MailEvent(
                    subject=f"daemon {change.key}", state="lost" if change.now else "restored", initial=change.first,
                    message=f"mail daemon {change.key}: no master process running" if change.now
                    else f"mail daemon {change.key}: running again",
                )

    # -- saturation ------------------------------------------------------------------------------------------

    def _saturation(
        self, ctx: Context, found: Mapping[str, daemon_procs.DaemonProcesses], postfix: Postfix | None,
    ) -> Iterator[Sample]:
        """Only of daemons that run: a stopped one is MailDaemonDown's news, not a saturation part failing."""
        if "dovecot" in found and found["dovecot"].mains:
            yield from saturation.dovecot(ctx, self.config["dovecot_config"])
        if "postfix" in found and postfix is not None and found["postfix"].mains:
            yield from saturation.postfix(postfix.main, postfix.master, found["postfix"])
        if "cyrus" in found and found["cyrus"].mains:
            yield from saturation.cyrus(ctx, self.config["cyrus_config"], found["cyrus"])

    # -- the mail log -----------------------------------------------------------------------------------------

    def _mail_log(self, ctx: Context, postfix: Postfix | None) -> Iterator[Sample]:
        if self._log is None:
            where = self.config["log_file"]
            if where == "auto":  # Debian 12 installs no syslog daemon: the journal is the mail log there
                where = SYSLOG_MAIL_LOG if ctx.rootfs(SYSLOG_MAIL_LOG).exists() else "journal"
            aliases = _log_aliases(postfix, self._cyrus_files(ctx)[1])
            self._log = (MailJournal(ctx.runner, aliases=aliases) if where == "journal"
                         else MailLogFile(ctx.rootfs(where), aliases=aliases))
        log = self._log
        read: LogRead = log.read(min(5.0, ctx.remaining())) if isinstance(log, MailJournal) else log.read()
        if read.error:
            raise CollectorError(read.error)
        with self._lock:
            for key, count in read.counts.items():
                self._log_counts[key] = self._log_counts.get(key, 0) + count
            self._log_skipped += read.skipped_bytes
            newest = [f"{line.time} {line.program}: {line.text}" for line in read.newest]
            self._log_newest = (self._log_newest + newest)[-_LOG_KEPT:]
            counts, skipped = dict(self._log_counts), self._log_skipped
        # Every family and level from the first run on, at 0: a counter that first appears at 1 shows no increase.
        for daemon, level in sorted({(d, lv) for d in LOG_DAEMONS for lv in LOG_LEVELS} | set(counts)):
            yield LOG_LINES(counts.get((daemon, level), 0), daemon, level)
        yield LOG_SKIPPED(skipped)

    # -- snapshots ---------------------------------------------------------------------------------------------

    def snapshot_extra(self) -> MailSnapshot:
        """The last probes (with the transcripts of failing ones), the daemons' processes and open files, the queues
        and the newest mail-log lines."""
        snapshot: MailSnapshot = {}
        if self.prober is not None:
            snapshot["probes"] = {view.endpoint.label: probe_record(view) for view in self.prober.views()}
        with self._lock:
            pids, queues, log = dict(self._daemon_pids), dict(self._queues), list(self._log_newest)
        if pids:
            snapshot["daemons"] = {name: processes(self._paths_proc, found) for name, found in pids.items()}
        if queues:
            snapshot["queues"] = queues
        if log:
            snapshot["log"] = log
        return snapshot


def _log_aliases(postfix: Postfix | None, imapd_conf: str | None) -> dict[str, str]:
    """Syslog tags this host's daemons log under besides their own names: Postfix's syslog_name, Cyrus's
    syslog_prefix."""
    aliases = {}
    if postfix is not None and (name := postfix.main.get("syslog_name")) and name.split("/")[0] != "postfix":
        aliases[name.split("/")[0]] = "postfix"
    if imapd_conf and (prefix := parse_imapd_conf(imapd_conf).get("syslog_prefix")):
        aliases[prefix] = "cyrus"
    return aliases


# -- probes ----------------------------------------------------------------------------------------------------


def _password(endpoint: Endpoint) -> str:
    """The test account's password: the first line of its file, read at each probe so that a new one is used."""
    try:
        with open(endpoint.password_file, "rb") as fh:
            data = fh.read(_PASSWORD_BYTES)
    except OSError as exc:
        raise ValueError(f"password_file {endpoint.password_file}: {exc.strerror}") from None
    password = data.decode(errors="replace").splitlines()[0] if data.strip() else ""
    if not password:
        raise ValueError(f"password_file {endpoint.password_file}: empty")
    return password


def _endpoint_samples(view: EndpointView) -> Iterator[Sample]:
    endpoint, last = view.endpoint, view.last
    labels = (endpoint.service, endpoint.label)
    yield ENDPOINT(1, *labels, endpoint.found)
    yield PROBES(view.probes, *labels)
    yield IN_A_ROW(view.in_a_row, *labels)
    for reason in REASONS:
        yield FAILURES(view.failures.get(reason, 0), *labels, reason)
    if last is None:
        return
    yield UP(last.up, *labels)
    yield LAST(last.finished, *labels)
    for reason in REASONS:
        yield FAILING(reason == last.reason, *labels, reason)
    for phase in last.phases:
        yield PHASE_SECONDS(phase.seconds, *labels, phase.phase)
        yield PHASE_OK(phase.ok, *labels, phase.phase)
    if last.tls is not None and last.tls.certificate is not None:
        certificate = last.tls.certificate
        yield CERT_NOT_AFTER(certificate.not_after, *labels)
        yield CERT_INFO(1, *labels, certificate.subject, certificate.issuer, last.tls.version)
        if last.tls.verified is not None:
            yield CERT_VERIFIED(last.tls.verified, *labels)


def _endpoint_event(view: EndpointView, failing: bool, *, initial: bool) -> MailEvent:
    endpoint, last = view.endpoint, view.last
    if not failing or last is None or last.up:
        return MailEvent(subject=endpoint.label, state="restored", service=endpoint.service,
                         message=f"{endpoint.service} {endpoint.label} answers again")
    return MailEvent(
        subject=endpoint.label, state="lost", initial=initial, service=endpoint.service, reason=last.reason,
        message=f"{endpoint.service} {endpoint.label} failing {view.in_a_row} probes in a row: {last.reason} at "
                f"{last.phase}: {last.detail}",
    )


def _postfix_master(ctx: Context, postfix: Postfix) -> int | None:
    """The PID of this configuration's master, from its queue directory's pid/master.pid; None where unreadable."""
    try:
        text = ctx.read(postfix.queue_directory / "pid" / "master.pid", 64)
    except CollectorError:
        return None
    return int(text.strip()) if text and text.strip().isdigit() else None


