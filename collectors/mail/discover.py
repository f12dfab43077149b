"""Where a mail host serves, found without being told: its listening sockets and what its configuration names.

The LMTP destinations Postfix's and Cyrus's configurations name come first, then the
sockets this host listens on: TCP on the standard mail ports (probed over the
loopback of their family; [::] beside 0.0.0.0 is the same daemon, probed once over
IPv4) and stream unix sockets whose name says LMTP. The first to name an endpoint
says how it was found (its `found`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from hostvigil.collector import Context
from hostvigil.collectors.mail.parse import SERVICES, Endpoint, apply_settings, parse_url
from hostvigil.collectors.mail.parse_cyrus import parse_cyrus_conf, parse_imapd_conf
from hostvigil.collectors.mail.parse_sockets import loopback_for, parse_tcp_listeners, parse_unix_listeners

_PORTS = {service.port: name for name, service in SERVICES.items()}


def discover(
    ctx: Context, postfix_lmtp: Sequence[str], cyrus: tuple[str | None, str | None], defaults: Mapping[str, Any],
    host_name: str = "",
) -> list[Endpoint]:
    """The endpoints this host serves: `postfix_lmtp` (the LMTP URLs Postfix delivers to), those Cyrus's cyrus.conf
    and imapd.conf (their texts, or None) name, then the listening sockets. A listening socket is reached over the
    loopback, so its certificate is checked for tls_name, else `host_name` (the name this host's mail is for, as
    mail_name() finds it); a destination a configuration names is checked for the host it names."""
    found: dict[str, Endpoint] = {}

    def add(endpoint: Endpoint) -> None:
        found.setdefault(endpoint.label, endpoint)

    for url in postfix_lmtp:
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
            continue
        add(Endpoint(service, host=loopback_for(listener.address), port=listener.port, found="listening"))
    for path in ctx.parse(ctx.proc("net/unix"), parse_unix_listeners) or []:
        if "lmtp" in os.path.basename(path):
            add(Endpoint("lmtp", path=path, found="listening"))
    name = defaults.get("tls_name") or host_name
    return [apply_settings(e, defaults, {"tls_name": name} if name and e.found == "listening" and not e.path else {})
            for e in found.values()]


def mail_name(ctx: Context, myhostname: str | None) -> str:
    """The name this host's mail certificates are for: Postfix's myhostname where main.cf sets it, else
    /etc/mailname (Debian's name of the host's mail), else "" (the address is checked)."""
    if myhostname:
        return myhostname
    return (ctx.read(ctx.rootfs("/etc/mailname"), 256) or "").strip()
