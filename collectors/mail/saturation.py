"""Mail services' processes against their limits: the signal that comes before "the proxies time out connections".

Dovecot says it itself (`doveadm service status`: processes, those with room for
another client, the limit, connections waiting in the listen queue). Postfix's and
Cyrus's processes serve one client each and are counted under their master: a
Postfix daemon by the "-n NAME -t TYPE" its master passes against master.cf's
maxproc (or default_process_limit), a Cyrus one by its command line against
cyrus.conf's maxchild (services sharing one command line are counted together).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator, Sequence

from hostvigil.collector import CollectorError, Context, Sample
from hostvigil.collectors.mail.daemons import DaemonProcesses
from hostvigil.collectors.mail.metrics import SERVICE_AVAILABLE, SERVICE_LIMIT, SERVICE_PENDING, SERVICE_PROCESSES
from hostvigil.collectors.mail.parse_cyrus import parse_cyrus_conf
from hostvigil.collectors.mail.parse_dovecot import parse_service_status
from hostvigil.collectors.mail.parse_postfix import MainCf, MasterService

# Dovecot's services that serve users; the others (config, log, anvil, ...) are the master's own helpers.
_DOVECOT_SERVICES = frozenset({"imap", "pop3", "lmtp", "submission", "managesieve", "auth", "auth-worker",
                               "imap-hibernate", "indexer-worker"})


def dovecot(ctx: Context, config: str) -> Iterator[Sample]:
    """From `doveadm service status`, of the Dovecot that `config` (or its own default) configures."""
    argv = ["doveadm", "-f", "tab", *(("-c", config) if config else ()), "service", "status"]
    result = ctx.runner.run(argv, timeout=min(5.0, ctx.remaining()))
    if not result.ok:
        raise CollectorError(result.describe())
    for service in parse_service_status(result.stdout.decode(errors="replace")):
        if service.name in _DOVECOT_SERVICES or service.name.endswith("-login"):
            yield SERVICE_PROCESSES(service.processes, "dovecot", service.name)
            if service.available is not None:
                yield SERVICE_AVAILABLE(service.available, "dovecot", service.name)
            yield SERVICE_LIMIT(service.process_limit, "dovecot", service.name)
            yield SERVICE_PENDING(service.listen_pending, "dovecot", service.name)


def postfix(main: MainCf, master: Sequence[MasterService], processes: DaemonProcesses) -> Iterator[Sample]:
    """Each inet service's processes under the masters found, against maxproc or default_process_limit."""
    mains = {p.pid for p in processes.mains}
    running = [_postfix_service(p.argv) for p in processes.children if p.ppid in mains]
    for service in master:
        if service.type != "inet":
            continue
        yield SERVICE_PROCESSES(running.count((service.name, service.type)), "postfix", service.name)
        limit = service.process_limit(main)
        if limit:
            yield SERVICE_LIMIT(limit, "postfix", service.name)


def cyrus(ctx: Context, cyrus_conf: str, processes: DaemonProcesses) -> Iterator[Sample]:
    """Each SERVICES entry of `cyrus_conf`'s processes under the masters found, against maxchild."""
    path = ctx.rootfs(cyrus_conf)
    text = ctx.read(path)
    if text is None:
        raise CollectorError(f"{path}: not found")
    for service in parse_cyrus_conf(text):
        yield SERVICE_PROCESSES(sum(1 for p in processes.children if p.argv == service.argv), "cyrus", service.name)
        if service.maxchild:
            yield SERVICE_LIMIT(service.maxchild, "cyrus", service.name)


def _postfix_service(argv: Sequence[str]) -> tuple[str, str]:
    """(service name, type) of a Postfix daemon from the "-n NAME -t TYPE" its master passes (no -n: the command)."""
    name, kind = os.path.basename(argv[0]) if argv else "", ""
    for flag, value in itertools.pairwise(argv):
        if flag == "-n":
            name = value
        elif flag == "-t":
            kind = value
    return name, kind
