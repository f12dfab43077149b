"""Reading one upsd: LIST UPS and LIST VAR on one connection, kept open by a poller between reads.

In the daemon each server has a poller, a source thread that keeps its connection
(and its STARTTLS session) open and reads every interval, as upsmon does: a
connection out of step with upsd (a timeout, garbage) is dropped and opened again
after the source's backoff, while an ERR from upsd (unknown UPS, driver not
connected, data stale) costs only that UPS. A change of a UPS's status runs the
collector at once. Without the daemon (`hostvigil collect`), the collector reads
each server once per run with `read_once`, on a connection of its own.

The poller counts the failed reads of each UPS by reason, in the daemon and without.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from hostvigil.collectors.ups import nut_client
from hostvigil.collectors.ups.nut_client import REASONS, NutClient, NutError, Reason
from hostvigil.collectors.ups.parse import UpsVariables
from hostvigil.sources import Source

Server = tuple[str, int]


@dataclass(frozen=True)
class Target:
    """A UPS to read: its series' label, its name on upsd, and the server."""

    label: str
    ups: str
    host: str
    port: int


@dataclass(frozen=True)
class Settings:
    """How to talk to upsd: STARTTLS mode, the CA to verify it with, and the optional USERNAME/PASSWORD."""

    tls: str
    ca_file: str | None
    username: str | None
    password: str | None


@dataclass
class ServerRead:
    """What one read of a server found: a reading or an error per UPS, or why the server could not be listed."""

    readings: dict[str, UpsVariables] = field(default_factory=dict)  # label -> variables
    errors: dict[str, NutError] = field(default_factory=dict)  # label -> why it could not be read
    listed: list[Target] | None = None  # LIST UPS, when the server was listed and answered
    list_error: NutError | None = None


def read(client: NutClient, server: Server, targets: Sequence[Target] | None) -> ServerRead:
    """LIST UPS when `targets` is None, then LIST VAR of each UPS, on one connection."""
    result = ServerRead()
    if targets is None:
        try:
            targets = result.listed = [Target(e.name, e.name, *server) for e in client.list_ups()]
        except NutError as exc:
            result.list_error = exc
            return result
    for target in targets:
        try:
            result.readings[target.label] = client.list_var(target.ups)
        except NutError as exc:
            result.errors[target.label] = exc
    return result


def failed(error: NutError, targets: Sequence[Target] | None) -> ServerRead:
    """A read that did not get to ask: every UPS has the error."""
    return ServerRead(errors={target.label: error for target in targets or ()}, list_error=error)


class UpsPoller(Source):
    """One server's reads: kept open and repeated in the daemon, one at a time elsewhere. Thread-safe."""

    retrying = "connecting again"
    log_failures = False  # the collector notes each UPS's error once, and counts them
    max_retry = 60.0  # an upsd that refuses or is gone is asked at most once a minute, after a doubling backoff

    def __init__(
        self, server: Server, targets: Sequence[Target] | None, settings: Settings, *, interval: float,
        timeout: float, changed: Callable[[], None] = lambda: None,
    ) -> None:
        """`targets` None: every UPS the server lists. `changed` is called when a UPS's status changed."""
        super().__init__(f"ups-{server[0]}:{server[1]}")
        self.server = server
        self.targets = list(targets) if targets is not None else None
        self.settings = settings
        self.interval = interval
        self.timeout = timeout
        self.changed = changed
        self.latest: ServerRead | None = None
        self.read_at: float | None = None  # time.monotonic() of the latest read
        self.listed: list[Target] | None = None  # the UPSes the server listed last
        self.first_read = threading.Event()  # set once a read ended, counted or not
        self.failures: dict[str, dict[Reason, int]] = {}  # label -> reason -> failed reads
        self._status: dict[str, tuple[str, ...] | None] = {}
        self._lock = threading.Lock()

    def read_once(self, deadline: float) -> ServerRead:
        """One read on a connection of its own, done by `deadline` (time.monotonic()); the caller counts it once it
        takes it (`count`), or counts a timeout instead when it ends too late (`timed_out`)."""
        timeout = max(0.05, deadline - time.monotonic())
        try:
            client = self._connect(timeout, deadline)
        except NutError as exc:
            return failed(exc, self.known())
        with client:
            return read(client, self.server, self.targets)

    def timed_out(self, error: NutError) -> ServerRead:
        """A read the caller gave up on at its deadline: kept and counted as such."""
        return self.count(self.keep(failed(error, self.known())))

    def count(self, result: ServerRead) -> ServerRead:
        """Count the failed reads of a read that was kept (`keep` gives a failed listing's UPSes its error)."""
        with self._lock:
            for label, error in result.errors.items():
                self.failures.setdefault(label, dict.fromkeys(REASONS, 0))[error.reason] += 1
        return result

    def known(self) -> list[Target] | None:
        """The UPSes this server is read for: the configured ones, else those it listed last (None: never listed)."""
        with self._lock:
            return list(self.targets) if self.targets is not None else self.listed

    def run(self) -> None:
        try:
            client = self._connect(self.timeout, None)
        except NutError as exc:
            self.count(self.keep(failed(exc, self.known())))
            raise
        with client:
            self.running()
            while not self.stopping.is_set():
                self.count(self.keep(read(client, self.server, self.targets)))
                if client.failure is not None:
                    raise client.failure  # out of step with upsd: connect again
                self.stopping.wait(self.interval)

    def _connect(self, timeout: float, deadline: float | None) -> NutClient:
        host, port = self.server
        settings = self.settings
        return nut_client.connect(
            host, port, timeout=timeout, tls=settings.tls, ca_file=settings.ca_file, username=settings.username,
            password=settings.password, deadline=deadline,
        )

    def keep(self, result: ServerRead) -> ServerRead:
        """Make `result` the latest read (a failed listing: the UPSes listed before have its error), and call
        `changed` when a UPS's status changed."""
        with self._lock:
            if result.listed is not None:
                self.listed = result.listed
            elif result.list_error is not None and self.listed:
                result.errors = {target.label: result.list_error for target in self.listed}
            status = {label: variables.status for label, variables in result.readings.items()}
            changed = any(label in self._status and self._status[label] != words for label, words in status.items())
            self._status.update(status)
            self.latest, self.read_at = result, time.monotonic()
        self.first_read.set()
        if changed:
            self.changed()
        return result
