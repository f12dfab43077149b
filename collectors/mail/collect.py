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
- saturation: login and worker processes against their limits (Dovecot's doveadm
  service status, Postfix's master.cf maxproc, Cyrus's maxchild), which fill up before
  "the proxies time out connections";
- the mail log's warnings, errors, fatals and panics per daemon (maillog.py), read
  with a byte budget so that a flood costs counts, never CPU.

Each part reads on its own: one that cannot (no permission on the queue directory,
no doveadm) is `part_up{part} 0` with its reason logged once, and the others go on.

With no endpoints listed, they are discovered: the host's sockets listening on the
standard mail ports and the LMTP sockets it listens on or that Postfix's and Cyrus's
configuration name, each with how it was found. An endpoint failing fail_after probes
in a row is a MailEvent (lost), as is an expected daemon gone; the snapshot it asks
for holds the failing probes' transcripts, the daemons' processes and open files,
the queues and the newest mail-log errors.
"""

from __future__ import annotations

import itertools
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar, TypedDict

from hostvigil.collector import Collector, CollectorError, Context, Option, Sample, Services
from hostvigil.collectors.mail import daemons as daemon_procs
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
    SERVICE_AVAILABLE,
    SERVICE_LIMIT,
    SERVICE_PENDING,
    SERVICE_PROCESSES,
    UP,
)
from hostvigil.collectors.mail.parse import (
    SERVICES,
    Endpoint,
    apply_settings,
    check_settings,
    parse_endpoints,
    parse_url,
)
from hostvigil.collectors.mail.parse_cyrus import parse_cyrus_conf, parse_imapd_conf
from hostvigil.collectors.mail.parse_dovecot import parse_service_status
from hostvigil.collectors.mail.parse_log import DAEMONS as LOG_DAEMONS
from hostvigil.collectors.mail.parse_log import LEVELS as LOG_LEVELS
from hostvigil.collectors.mail.parse_postfix import (
    MainCf,
    MasterService,
    lmtp_destinations,
    parse_main_cf,
    parse_master_cf,
)
from hostvigil.collectors.mail.parse_sockets import loopback_for, parse_tcp_listeners, parse_unix_listeners
from hostvigil.collectors.mail.probe import REASONS, ProbeSettings
from hostvigil.collectors.mail.prober import EndpointView, MailProber
from hostvigil.collectors.mail.queues import QUEUES, walk_queues
from hostvigil.events import Changes, MailEvent
from hostvigil.procfs import parse_btime, parse_cmdline, parse_stat, redact

_PORTS = {service.port: name for name, service in SERVICES.items()}
DOVECOT_CONF = "/etc/dovecot/dovecot.conf"  # where dovecot reads its configuration without -c
CYRUS_CONF = "/etc/cyrus.conf"
SYSLOG_MAIL_LOG = "/var/log/mail.log"
_REDISCOVER = 300.0  # seconds between two discoveries of the endpoints
_PASSWORD_BYTES = 4096
_SNAPSHOT_TRANSCRIPT = 30  # lines of a failing probe's transcript a snapshot keeps
_SNAPSHOT_PROCESSES = 30  # per daemon
_SNAPSHOT_FILES = 20  # files listed per process (sockets and pipes are counted, not listed)
_LOG_KEPT = 20
# Dovecot's services that serve users; the others (config, log, anvil, ...) are the master's own helpers.
_DOVECOT_SERVICES = frozenset({"imap", "pop3", "lmtp", "submission", "managesieve", "auth", "auth-worker",
                               "imap-hibernate", "indexer-worker"})
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Postfix:
    """Postfix's configuration as read this run: main.cf, master.cf, and where its queues are."""

    main: MainCf
    master: list[MasterService]
    queue_directory: Path


class ProbeRecord(TypedDict):
    """An endpoint's last probe as a snapshot keeps it; the transcript only when it failed."""

    service: str
    up: bool
    reason: str
    phase: str
    detail: str
    finished: float
    failures_in_a_row: int
    transcript: list[str]


class DaemonRecord(TypedDict):
    pid: int
    ppid: int
    comm: str
    state: str
    cmdline: list[str]
    fds: int  # open file descriptors, -1 when /proc/PID/fd could not be read
    files: list[str]  # the files among them (paths), or why they could not be read


class MailSnapshot(TypedDict, total=False):
    """The mail collector's contribution to a crash snapshot."""

    probes: dict[str, ProbeRecord]  # endpoint label -> its last probe
    daemons: dict[str, list[DaemonRecord]]  # daemon -> its processes
    queues: dict[str, int]  # queue -> messages at the last walk
    log: list[str]  # the newest warning-or-worse mail-log lines


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
        "starttls": Option("string", "auto", "auto (when offered), required, or off"),
        "tls_name": Option("string", "", "the name certificates must carry (default: the URL's host)"),
        "tls_verify": Option("bool", True, "verify certificates (chain and name); expiry is checked either way"),
        "ca_file": Option("string", "", "CA certificates to trust instead of the system's"),
        "user": Option("string", "", "a test account to log in with (IMAP, POP3, submission)"),
        "password_file": Option("string", "", "the file holding the test account's password"),
        "mail_from": Option("string", "", 'the sender for MAIL FROM ("": the null sender)'),
        "rcpt": Option("string", "", "a test recipient tried with RCPT TO over SMTP and LMTP (nothing is sent)"),
        "probe_interval": Option("duration", 15.0, "probe each endpoint this often"),
        "probe_timeout": Option("duration", 5.0, "each step of a probe (greeting, login, ...) gets this long"),
        "max_in_flight": Option("int", 4, "probes running at once, at most"),
        "fail_after": Option("int", 2, "failed probes in a row before an endpoint counts as down (event)"),
        "daemons": Option("strings", [], "mail daemons expected here (dovecot, postfix, cyrus); none: installed"),
        "postfix_config": Option("string", "/etc/postfix", "Postfix's configuration directory"),
        "cyrus_config": Option("string", CYRUS_CONF, "Cyrus master's configuration"),
        "imapd_config": Option("string", "/etc/imapd.conf", "Cyrus's imapd.conf"),
        "dovecot_config": Option("string", "", "dovecot.conf for doveadm -c (default: Dovecot's own)"),
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
        self._endpoints: list[Endpoint] = []
        self._discovered_at = -_REDISCOVER
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
        """Endpoints, addresses and limits are checked when the config is loaded."""
        parse_endpoints(options.get("endpoints", []), check_settings(options, ""))
        apply_settings(Endpoint("imap", host="localhost", port=143), check_settings(options, ""), {})
        for key in ("max_in_flight", "fail_after"):
            if options.get(key, 1) < 1:
                raise ValueError(f"{key}: must be at least 1")
        if options.get("probe_timeout", 5.0) > options.get("probe_interval", 15.0):
            raise ValueError("probe_timeout: longer than probe_interval; a step must end before the next probe")
        unknown = sorted(set(options.get("daemons", [])) - set(daemon_procs.DAEMONS))
        if unknown:
            raise ValueError(f'daemons: "{unknown[0]}" is not one of {", ".join(daemon_procs.DAEMONS)}')

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
        failing = {view.endpoint.label: view.in_a_row >= fail_after for view in views if view.last is not None}
        for change in self._failing.update(failing, forget=True):
            view = next(v for v in views if v.endpoint.label == change.key)
            if change.now or not change.first:
                yield _endpoint_event(view, change.now, initial=change.first)

    def _endpoints_now(self, ctx: Context, postfix: Postfix | None) -> list[Endpoint]:
        configured = self.config["endpoints"]
        defaults = check_settings(self.config, "")
        if configured:
            return parse_endpoints(configured, defaults)
        if not self.config["discover"]:
            return []
        now = time.monotonic()
        if now - self._discovered_at >= _REDISCOVER or not self._endpoints:
            self._endpoints = discover(ctx, postfix, self._cyrus_files(ctx), defaults)
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
        if "dovecot" in found and found["dovecot"].mains:
            yield from self._dovecot_services(ctx)
        if "postfix" in found and postfix is not None and found["postfix"].mains:
            yield from _postfix_services(postfix, found["postfix"])
        if "cyrus" in found and found["cyrus"].mains:
            yield from self._cyrus_services(ctx, found["cyrus"])

    def _dovecot_services(self, ctx: Context) -> Iterator[Sample]:
        argv = ["doveadm", "-f", "tab"]
        if self.config["dovecot_config"]:
            argv += ["-c", self.config["dovecot_config"]]
        result = ctx.runner.run([*argv, "service", "status"], timeout=min(5.0, ctx.remaining()))
        if not result.ok:
            raise CollectorError(result.describe())
        for service in parse_service_status(result.stdout.decode(errors="replace")):
            if service.name in _DOVECOT_SERVICES or service.name.endswith("-login"):
                yield SERVICE_PROCESSES(service.processes, "dovecot", service.name)
                if service.available is not None:
                    yield SERVICE_AVAILABLE(service.available, "dovecot", service.name)
                yield SERVICE_LIMIT(service.process_limit, "dovecot", service.name)
                yield SERVICE_PENDING(service.listen_pending, "dovecot", service.name)

    def _cyrus_services(self, ctx: Context, cyrus: daemon_procs.DaemonProcesses) -> Iterator[Sample]:
        path = ctx.rootfs(self.config["cyrus_config"])
        text = ctx.read(path)
        if text is None:
            raise CollectorError(f"{path}: not found")
        for service in parse_cyrus_conf(text):
            running = sum(1 for p in cyrus.children if p.argv == service.argv)
            yield SERVICE_PROCESSES(running, "cyrus", service.name)
            if service.maxchild:
                yield SERVICE_LIMIT(service.maxchild, "cyrus", service.name)

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
            snapshot["probes"] = {view.endpoint.label: _probe_record(view) for view in self.prober.views()}
        with self._lock:
            pids, queues, log = dict(self._daemon_pids), dict(self._queues), list(self._log_newest)
        if pids:
            snapshot["daemons"] = {name: _processes(self._paths_proc, found) for name, found in pids.items()}
        if queues:
            snapshot["queues"] = queues
        if log:
            snapshot["log"] = log
        return snapshot


# -- discovery -------------------------------------------------------------------------------------------------


def discover(
    ctx: Context, postfix: Postfix | None, cyrus: tuple[str | None, str | None], defaults: Mapping[str, Any],
) -> list[Endpoint]:
    """The endpoints this host serves: the LMTP destinations Postfix and Cyrus name, then the sockets listening on a
    standard mail port or as an LMTP socket. The first to name an endpoint says how it was found. A listening
    socket is reached over the loopback, so its certificate is checked for tls_name, else Postfix's myhostname,
    else /etc/mailname; a destination a configuration names is checked for the host it names."""
    found: dict[str, Endpoint] = {}

    def add(endpoint: Endpoint) -> None:
        found.setdefault(endpoint.label, endpoint)

    if postfix is not None:
        for url, _where in lmtp_destinations(postfix.main, postfix.master):
            add(replace(parse_url(url), found="postfix"))
    cyrus_conf, imapd_conf = cyrus
    if cyrus_conf:
        for entry in parse_cyrus_conf(cyrus_conf):
            if entry.argv and os.path.basename(entry.argv[0]) == "lmtpd" and entry.listen.startswith("/"):
                add(Endpoint("lmtp", path=entry.listen, found="cyrus"))
    if imapd_conf and (socket_path := parse_imapd_conf(imapd_conf).get("lmtpsocket")):
        add(Endpoint("lmtp", path=socket_path, found="cyrus"))
    listeners = [listener for table in ("net/tcp", "net/tcp6")
                 for listener in ctx.parse(ctx.proc(table), parse_tcp_listeners) or []]
    all_v4 = {listener.port for listener in listeners if listener.on_all_ipv4}
    for listener in listeners:
        service = _PORTS.get(listener.port)
        if service is None or (listener.on_all_ipv6 and listener.port in all_v4):
            continue  # [::] beside 0.0.0.0 is the same daemon: probed once, over IPv4
        add(Endpoint(service, host=loopback_for(listener.address), port=listener.port, found="listening"))
    for path in ctx.parse(ctx.proc("net/unix"), parse_unix_listeners) or []:
        if "lmtp" in os.path.basename(path):
            add(Endpoint("lmtp", path=path, found="listening"))
    name = defaults.get("tls_name") or _mail_name(ctx, postfix)
    return [apply_settings(e, defaults, {"tls_name": name} if name and e.found == "listening" and not e.path else {})
            for e in found.values()]


def _mail_name(ctx: Context, postfix: Postfix | None) -> str:
    """The name this host's mail certificates are for: Postfix's myhostname where it is set, else /etc/mailname."""
    if postfix is not None and postfix.main.params.get("myhostname"):
        return postfix.main.get("myhostname") or ""
    return (ctx.read(ctx.rootfs("/etc/mailname"), 256) or "").strip()


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


def _probe_record(view: EndpointView) -> ProbeRecord:
    last = view.last_failure if view.in_a_row and view.last_failure else view.last
    if last is None:
        return ProbeRecord(service=view.endpoint.service, up=False, reason="", phase="", detail="not probed yet",
                           finished=0.0, failures_in_a_row=0, transcript=[])
    return ProbeRecord(
        service=view.endpoint.service, up=last.up, reason=last.reason, phase=last.phase, detail=last.detail,
        finished=last.finished, failures_in_a_row=view.in_a_row,
        transcript=[] if last.up else list(last.transcript[:_SNAPSHOT_TRANSCRIPT]),
    )


# -- saturation and processes ----------------------------------------------------------------------------------


def _postfix_services(postfix: Postfix, processes: daemon_procs.DaemonProcesses) -> Iterator[Sample]:
    """Each inet service's processes against its limit (maxproc, or default_process_limit)."""
    children = [p for p in processes.children if p.ppid in {m.pid for m in processes.mains}]
    for service in postfix.master:
        if service.type != "inet":
            continue
        running = sum(1 for p in children if _postfix_service(p.argv) == (service.name, service.type))
        yield SERVICE_PROCESSES(running, "postfix", service.name)
        limit = service.process_limit(postfix.main)
        if limit:
            yield SERVICE_LIMIT(limit, "postfix", service.name)


def _postfix_master(ctx: Context, postfix: Postfix) -> int | None:
    """The PID of this configuration's master, from its queue directory's pid/master.pid; None where unreadable."""
    try:
        text = ctx.read(postfix.queue_directory / "pid" / "master.pid", 64)
    except CollectorError:
        return None
    return int(text.strip()) if text and text.strip().isdigit() else None


def _postfix_service(argv: Sequence[str]) -> tuple[str, str]:
    """(service name, type) of a Postfix daemon from the "-n NAME -t TYPE" its master passes (no -n: the command)."""
    name, kind = os.path.basename(argv[0]) if argv else "", ""
    for flag, value in itertools.pairwise(argv):
        if flag == "-n":
            name = value
        elif flag == "-t":
            kind = value
    return name, kind


def _processes(proc: Path, pids: Sequence[int]) -> list[DaemonRecord]:
    """The daemon's processes as a snapshot keeps them: command line and open files, bounded."""
    records = []
    for pid in pids[:_SNAPSHOT_PROCESSES]:
        base = proc / str(pid)
        try:
            stat = parse_stat((base / "stat").read_text())
            with open(base / "cmdline", "rb") as fh:
                argv = parse_cmdline(fh.read(1024))
        except (OSError, ValueError):
            continue  # exited since the run
        fds, files = _open_files(base)
        records.append(DaemonRecord(pid=pid, ppid=stat.ppid, comm=stat.comm, state=stat.state,
                                    cmdline=redact(argv), fds=fds, files=files))
    return records


def _open_files(base: Path) -> tuple[int, list[str]]:
    """How many descriptors a process holds, and the paths of the files among them (the first few)."""
    try:
        entries = list(os.scandir(base / "fd"))
    except OSError as exc:
        return -1, [f"<{exc.strerror}>"]
    files: list[str] = []
    for entry in entries:
        try:
            target = os.readlink(entry.path)
        except OSError:
            continue
        if target.startswith("/") and target not in files:
            files.append(target)
            if len(files) == _SNAPSHOT_FILES:
                break
    return len(entries), files
