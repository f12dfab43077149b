"""Changes as data: the typed events collectors and their sources report, and "was X, now Y" as one line.

A collector does not decide what a change costs. It reports what changed (a UPS
went on battery, an array lost a member, the default route's link dropped) as an
Event with its subject, the state it is in now and the line on-call reads; the
agent's event policy (hostvigil.policy) decides what goes into the boot's history
and what asks for a crash snapshot, and the crash report decides from the fields,
never from the words of the message.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import Any, ClassVar, Generic, Literal, TypeVar

# lost: the subject has lost what it is for (power, its link, its data);
# critical: it is about to go down and take the host with it (a UPS battery low, forced shutdown);
# degraded: it runs without its redundancy (one PSU of two, a mirror with one disk);
# restored: it is back.
State = Literal["lost", "critical", "degraded", "restored"]
STATES: tuple[State, ...] = ("lost", "critical", "degraded", "restored")

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


@dataclass(frozen=True, kw_only=True)
class Event:
    """A change a collector saw. `initial`: the subject was already so when first seen (the agent started then)."""

    kind: ClassVar[str]

    subject: str
    state: State
    message: str
    initial: bool = False

    @property
    def snapshot_reason(self) -> str:
        """Why a snapshot taken for this event was taken: its message, unless the event says it shorter."""
        return self.message

    def record(self) -> dict[str, Any]:
        """The event as the boot's history keeps it: every field, the kind first."""
        return {"kind": self.kind, **asdict(self)}


@dataclass(frozen=True, kw_only=True)
class PowerEvent(Event):
    """The host's power: a UPS, its own mains and batteries, a server PSU.

    `on_battery`: while this lasts the host runs on a battery (its own or a UPS), so a
    loss that is still open when it goes down ran it down.
    """

    kind: ClassVar[str] = "power"

    source: Literal["ups", "power_supply", "psu"]
    on_battery: bool = False
    reason: str = ""  # for a snapshot, where it says more than the message ("imminent power loss: ...")

    @property
    def snapshot_reason(self) -> str:
        return self.reason or self.message


@dataclass(frozen=True, kw_only=True)
class HardwareEvent(Event):
    """Hardware that corrupts or stops the host: uncorrectable memory errors."""

    kind: ClassVar[str] = "hardware"


@dataclass(frozen=True, kw_only=True)
class StorageEvent(Event):
    """Storage losing redundancy or data: an md array, a controller's virtual or physical drive, a ZFS pool or vdev."""

    kind: ClassVar[str] = "storage"


@dataclass(frozen=True, kw_only=True)
class LinkEvent(Event):
    """A network interface losing or regaining its link; `default_route`: it carries a default route."""

    kind: ClassVar[str] = "network"

    default_route: bool = False
    losses: int = 1  # losses this event stands for (several can fall between two looks)


@dataclass(frozen=True, kw_only=True)
class KernelLogEvent(Event):
    """A critical kernel log event (oops, panic precursor, hung task, MCE) seen for the first time."""

    kind: ClassVar[str] = "kernel"


@dataclass(frozen=True, kw_only=True)
class MailEvent(Event):
    """The mail service as users meet it: an endpoint failing its probes (`service`: imap, lmtp, ...; `reason`: why,
    from the probe's reasons), or an expected mail daemon gone (`service` "")."""

    kind: ClassVar[str] = "mail"

    service: str = ""
    reason: str = ""


EVENT_TYPES: Mapping[str, type[Event]] = {
    cls.kind: cls for cls in (PowerEvent, HardwareEvent, StorageEvent, LinkEvent, KernelLogEvent, MailEvent)
}


@dataclass(frozen=True)
class Change(Generic[K, V]):
    """A key's value now and at the last look; `was` is None the first time the key is seen."""

    key: K
    was: V | None
    now: V

    @property
    def first(self) -> bool:
        return self.was is None


class Changes(Generic[K, V]):
    """What each key was at the last look, so that "was X, now Y" is one line in a collector.

    `update` takes this look's values and returns the keys whose value differs (new
    keys included, with was None). A key absent from a look keeps its last value
    unless `forget` says otherwise: an array that is briefly unreadable and comes
    back degraded still counts as a change.
    """

    def __init__(self) -> None:
        self._last: dict[K, V] = {}
        self.looked = False  # at least one look was taken

    def update(self, values: Mapping[K, V], *, forget: bool = False) -> list[Change[K, V]]:
        changes = [Change(key, self._last.get(key), value) for key, value in values.items()
                   if key not in self._last or self._last[key] != value]
        self._last = dict(values) if forget else {**self._last, **values}
        self.looked = True
        return changes

    def get(self, key: K) -> V | None:
        return self._last.get(key)

    def __iter__(self) -> Iterator[K]:
        return iter(self._last)
