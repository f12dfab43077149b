"""Pure parser for `doveadm -f tab service status`: each Dovecot service's processes against its limits.

Dovecot's master keeps, per service, process_count (processes running),
process_avail (those of them that can take another client: a login process in
its performance mode serves up to client_limit clients at once), process_limit,
client_limit and listen_pending ("y" while connections wait in the listen queue
because no process can take them: every process is full and the limit reached).
listen_pending is the signal that comes before "the proxies time out
connections"; process_count against process_limit, with none available, says how
near it is.
The tab format is a header line of field names, then a line per service; fields
are found by name, so a Dovecot that adds or reorders columns reads the same.
"""

from __future__ import annotations

from dataclasses import dataclass

_NEEDED = ("name", "process_count", "process_limit", "listen_pending")


@dataclass(frozen=True)
class DovecotService:
    name: str
    processes: int
    available: int | None  # processes that can take another client (process_avail); None from an older doveadm
    process_limit: int
    client_limit: int | None
    listen_pending: bool


def parse_service_status(text: str) -> list[DovecotService]:
    """The services in `doveadm -f tab service status` output; ValueError naming what is missing or malformed."""
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise ValueError("doveadm service status: empty output")
    header = lines[0].split("\t")
    missing = [name for name in _NEEDED if name not in header]
    if missing:
        raise ValueError(f"doveadm service status: no {', '.join(missing)} column (header {lines[0][:120]!r})")
    at: dict[str, int] = {}
    for index, name in enumerate(header):  # the first of a name twice, as header.index() finds it (in linear time)
        at.setdefault(name, index)
    services = []
    for line in lines[1:]:
        fields = line.split("\t")
        if len(fields) != len(header):
            raise ValueError(f"doveadm service status: {len(fields)} fields where the header has {len(header)}: "
                             f"{line[:120]!r}")
        try:
            client_limit = int(fields[at["client_limit"]]) if "client_limit" in at else None
            available = int(fields[at["process_avail"]]) if "process_avail" in at else None
            services.append(DovecotService(
                fields[at["name"]], int(fields[at["process_count"]]), available, int(fields[at["process_limit"]]),
                client_limit, fields[at["listen_pending"]] == "y",
            ))
        except ValueError:
            raise ValueError(f"doveadm service status: a count that is not a number: {line[:120]!r}") from None
    return services
