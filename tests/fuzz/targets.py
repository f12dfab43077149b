"""Every parser that reads what the host or a tool wrote, with the real samples it is fuzzed from and its contract.

A target is one parser (or a parser and what the collector does next with its result, where
that is where a bad value would surface). Its inputs are drawn from the real fixtures the
parser's own tests use (tests/fixtures/INDEX.md says where each came from), mutated by
tests.fuzz.mutate; where no fixture exists, the seed is this host's own /proc or /sys file
(real, if not fixed) or the example in the format's specification, named beside it. `raises`
is the parser's documented error: ValueError for most, nothing at all for those whose
docstring says they skip what they cannot read.
"""

from __future__ import annotations

import json
import math
import ssl
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from hostvigil import procfs, uevents
from hostvigil.collector import MetricSpec
from hostvigil.collectors.edac import parse as edac
from hostvigil.collectors.hwmon import parse as hwmon
from hostvigil.collectors.ipmi import parse as ipmi
from hostvigil.collectors.ipmi import parse_sel as ipmi_sel
from hostvigil.collectors.kernel import parse as kernel
from hostvigil.collectors.kernel import parse_crash as crash
from hostvigil.collectors.kernel import parse_reports as reports
from hostvigil.collectors.mail import parse as mail
from hostvigil.collectors.mail import parse_cert, parse_cyrus, parse_dovecot, parse_log, parse_postfix, parse_sockets
from hostvigil.collectors.mail import parse_queue_file as queue_file
from hostvigil.collectors.md import parse as md
from hostvigil.collectors.network import parse as network
from hostvigil.collectors.network import parse_route as route
from hostvigil.collectors.network import parse_rtnl as rtnl
from hostvigil.collectors.power_supply import parse as power_supply
from hostvigil.collectors.probe import parse as probe
from hostvigil.collectors.raid import parse as raid
from hostvigil.collectors.smart import parse as smart
from hostvigil.collectors.ups import parse as ups
from hostvigil.collectors.zfs import parse as zfs
from hostvigil.collectors.zfs import parse_json as zfs_json
from hostvigil.collectors.zfs import parse_status as zfs_status
from tests.conftest import FIXTURES, TREES
from tests.fuzz.mutate import NUMBERS, byte_strings, coin, file_maps, json_texts, mutate_text, pick, texts


@dataclass(frozen=True)
class Target:
    name: str
    inputs: st.SearchStrategy[tuple[Any, ...]]
    call: Callable[..., object]
    raises: tuple[type[Exception], ...] = (ValueError,)  # () when documented never to raise


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace")


def _files(folder: Path, pattern: str = "*") -> list[str]:
    return [_read(path) for path in sorted(folder.glob(pattern)) if path.is_file()]


def _live(*paths: str) -> list[str]:
    """This host's own files, where no fixture holds the format: real, though not fixed (seeds only)."""
    found = []
    for path in paths:
        try:
            found.append(Path(path).read_text(errors="replace"))
        except OSError:
            continue
    return found


def _live_bytes(*paths: str) -> list[bytes]:
    found = []
    for path in paths:
        try:
            found.append(Path(path).read_bytes())
        except OSError:
            continue
    return found


def _directory(folder: Path) -> dict[str, str]:
    """A sysfs directory's regular files (links followed) as {name: text}."""
    return {path.name: _read(path) for path in sorted(folder.iterdir()) if path.is_file()}


def _lines(samples: Sequence[str]) -> list[str]:
    return [line for sample in samples for line in sample.splitlines() if line.strip()]


def _one(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[tuple[Any, ...]]:
    return strategy.map(lambda value: (value,))


def _text(samples: Sequence[str]) -> st.SearchStrategy[tuple[Any, ...]]:
    return _one(texts(samples))


def _json(samples: Sequence[str]) -> st.SearchStrategy[tuple[Any, ...]]:
    return _one(json_texts(samples))


def _export_to_json(data: bytes) -> list[str]:
    """Entries of a journal export file (systemd's Journal Export Format) as `journalctl -o json` lines."""
    lines = []
    for entry in data.split(b"\n\n"):
        fields: dict[str, object] = {}
        at = 0
        while at < len(entry):
            end = entry.find(b"\n", at)
            end = len(entry) if end < 0 else end
            line = entry[at:end]
            if b"=" in line:
                key, _, value = line.partition(b"=")
                fields[key.decode()] = value.decode("utf-8", errors="replace")
                at = end + 1
            else:  # a binary field: its name, a newline, a 64-bit little-endian length, the data, a newline
                size = int.from_bytes(entry[end + 1 : end + 9], "little")
                fields[line.decode()] = list(entry[end + 9 : end + 9 + size])
                at = end + 10 + size
        if fields:
            lines.append(json.dumps(fields))
    return lines


# ---------------------------------------------------------------- seeds

PROC = {
    "int": [*_files(TREES / "node-exporter-fixtures/proc/sys/kernel"),
            *_files(TREES / "node-exporter-fixtures/proc/sys/net/netfilter"),
            *_live("/proc/sys/kernel/pid_max", "/proc/sys/kernel/threads-max")],
    "stat": _live("/proc/stat"),
    "file_nr": _files(TREES / "hotsos-kubernetes/proc/sys/fs", "file-nr"),
    "loadavg": [*_files(TREES / "procfs-testdata/proc", "loadavg"), *_live("/proc/loadavg")],
    "meminfo": [_read(path) for path in sorted(TREES.glob("*/proc/meminfo"))],
    "pressure": [_read(path) for path in sorted(TREES.glob("*/proc/pressure/*"))],
    "mounts": [*_files(TREES / "node-exporter-fixtures/proc", "mounts"), *_live("/proc/self/mounts")],
    "limits": [_read(path) for path in sorted(TREES.glob("*/proc/*/limits"))],
    "cpu_list": _live("/sys/devices/system/cpu/online", "/sys/devices/system/cpu/possible"),
    "pid_stat": _live("/proc/self/stat", "/proc/1/stat"),
}
CMDLINES = _live_bytes("/proc/self/cmdline", "/proc/1/cmdline")

EDAC = TREES / "edac-f17h/sys/devices/system/edac/mc/mc0"
EDAC_FILES = {name: text for name, text in _directory(EDAC).items() if name in (*edac.COUNT_FILES, "mc_name")}
EDAC_DIMMS = {folder.name: _directory(folder) for folder in sorted(EDAC.glob("rank*"))}


def _hwmon_sensors() -> list[tuple[str, dict[str, str]]]:
    sensors: dict[tuple[Path, str], dict[str, str]] = {}
    for chip in sorted(TREES.glob("*/sys/class/hwmon/hwmon*")):
        for path in sorted(chip.iterdir()):
            match = hwmon.SENSOR_FILE.match(path.name)
            if match and path.is_file():
                sensors.setdefault((chip, match["type"] + match["index"]), {})[match["attr"]] = _read(path)
    return [(name, files) for (_, name), files in sensors.items()]


HWMON = _hwmon_sensors()
IPMI = FIXTURES / "ipmi"
KERNEL = FIXTURES / "kernel"
CRASH = KERNEL / "crash"
# the crash texts short enough to mutate quickly (the 512 KiB vmcore-dmesg is read whole by its own tests)
KERNEL_LOGS = [text for text in (*_files(KERNEL, "hotsos__*"), *_files(CRASH / "reports"), *_files(CRASH / "oops"))
               if len(text) < 100_000]
PSTORE = [_read(path) for path in sorted(CRASH.glob("pstore/**/dmesg-erst-*"))]
JOURNAL_LINES = [json.dumps(entry) for entry in json.loads(_read(CRASH / "journal/corner-cases.json"))]
# Documentation/ABI/testing/dev-kmsg: the records of its examples, as one read() returns each.
KMSG = [
    b"7,160,424069,-;pci_root PNP0A03:00: host bridge window [io  0x0000-0x0cf7] (ignored)\n"
    b" SUBSYSTEM=acpi\n DEVICE=+acpi:PNP0A03:00\n",
    b"6,339,5140900,-;NET: Registered protocol family 10\n",
    b"30,340,5690716,-;udevd[80]: starting version 181\n",
    b"6,1234,5678901,-,caller=T123;text\n SUBSYSTEM=pci\n DEVICE=+pci:0000:00:1f.6\n",
]
# kdump-tools (debian/kdump-config.in) and kdump-utils (dracut/99kdumpbase/kdump.sh) directory layouts.
KDUMP = [
    ("202401021530", ["dmesg.202401021530", "dump.202401021530"]),
    ("202401021530", ["dump-incomplete"]),
    ("127.0.0.1-2024-01-02-15:30:00", ["vmcore-dmesg.txt", "vmcore"]),
    ("192.168.1.5-2024-01-02-15:30:00", ["vmcore-incomplete", "vmcore-dmesg-incomplete.txt"]),
]

MAIL = FIXTURES / "mail"
MAIL_LOGS = [_read(path) for path in sorted((MAIL / "log").iterdir()) if path.name != "journald.export"]
MAIL_JOURNAL = _export_to_json((MAIL / "log/journald.export").read_bytes())
SPOOL = [path.read_bytes() for path in sorted((MAIL / "postfix/spool").rglob("*")) if path.is_file()]
# Mozilla's roots as Debian's ca-certificates ships them: real DER certificates of every vintage.
CERTIFICATES = [
    ssl.PEM_cert_to_DER_cert(_read(path))
    for path in sorted(Path("/usr/share/ca-certificates/mozilla").glob("*.crt"))[:8]
]
# Replies as the RFCs print them in their examples: RFC 9051 section 8 (IMAP), RFC 1939 section 10 (POP3),
# RFC 5321 appendix D (SMTP).
IMAP = ["* OK IMAP4rev2 Service Ready", "a001 OK LOGIN completed", "* 172 EXISTS", "* FLAGS (\\Answered \\Flagged "
        "\\Deleted \\Seen \\Draft)", "* OK [UNSEEN 12] Message 12 is first unseen", "A142 OK [READ-WRITE] SELECT "
        "completed", "* CAPABILITY IMAP4rev2 STARTTLS AUTH=GSSAPI LOGINDISABLED", "* BYE IMAP4rev2 Server "
        "logging out", "a002 NO [AUTHENTICATIONFAILED] Authentication failed"]
POP3 = ["+OK POP3 server ready <1896.697170952@dbc.mtview.ca.us>", "+OK mrose's maildrop has 2 messages (320 "
        "octets)", "-ERR invalid password", "+OK dewey POP3 server signing off"]
SMTP = ["220 foo.com Simple Mail Transfer Service Ready", "250-foo.com greets bar.com", "250-8BITMIME",
        "250 HELP", "550 No such user here", "354 Start mail input; end with <CRLF>.<CRLF>"]
# The config forms the mail and probe collectors document (packaging/hostvigil.toml.example).
URLS = ["imap://mail.example.org", "imaps://mail.example.org:993", "pop3s://127.0.0.1", "smtp://[::1]:25",
        "submission://mail.example.org:587", "lmtp:///var/spool/postfix/private/dovecot-lmtp",
        "lmtp://127.0.0.1:24"]
PROBE_TARGETS = ["mx-relay.example.net", "tcp:smarthost.example.net:25", "192.0.2.53", "icmp:[2001:db8::1]"]

MD = FIXTURES / "md"
MDSTAT = [*_files(MD), _read(TREES / "procfs-md/proc/mdstat")]
MD_DIRS = [
    ({name: text for name, text in _directory(folder).items() if not name.startswith("rd")},
     {sub.name: _read(sub / "state") for sub in sorted(folder.glob("dev-*")) if (sub / "state").is_file()})
    for folder in sorted(TREES.glob("procfs-md/sys/block/md*/md"))
]

NETWORK = FIXTURES / "network"
NET_DEVICES = [
    (_directory(folder), _directory(folder / "statistics") if (folder / "statistics").is_dir() else {})
    for folder in sorted(TREES.glob("*/sys/class/net/*"))
]
# Datagrams this machine's kernel sent on a NETLINK_ROUTE socket (link changes, a dump, its end, an error), and
# the payloads of their link messages on their own, so that mutations reach the attributes more often.
RTNL = [path.read_bytes() for path in sorted(NETWORK.glob("*__rtnl_*.bin"))]
RTNL_LINKS = [message.payload for data in RTNL for message in rtnl.split_messages(data)
              if message.type in (rtnl.RTM_NEWLINK, rtnl.RTM_DELLINK)]
# Datagrams this machine's kernel sent on a NETLINK_KOBJECT_UEVENT socket.
UEVENTS = [path.read_bytes() for path in sorted((FIXTURES / "uevents").glob("*.bin"))]
POWER_SUPPLIES = [(folder.name, _directory(folder)) for folder in sorted(TREES.glob("*/sys/class/power_supply/*"))]

UPS = FIXTURES / "ups/upsd-2.8.0"
UPS_LINES = _lines(_files(UPS))
ZFS = FIXTURES / "zfs"
ZPOOL_STATUS = [*_files(ZFS, "*status*[!n]"), *_files(ZFS / "zfs-fuse", "status_*")]  # not the .json
ZPOOL_LIST = [*_files(ZFS, "openzfs__zpool-list.8__*.txt"), *_files(ZFS / "zfs-fuse", "list_*"),
              *_files(ZFS, "telegraf__zfs_*")]


# ---------------------------------------------------------------- composite inputs


@st.composite
def _named_files(draw: Callable[..., Any], samples: Sequence[tuple[str, Mapping[str, str]]]
                 ) -> tuple[str, dict[str, str]]:
    name, files = pick(draw, samples)
    if not coin(draw) and not coin(draw) and not coin(draw):
        name = mutate_text(draw, name)
    return name, draw(file_maps([files]))


@st.composite
def _edac(draw: Callable[..., Any]) -> tuple[str, dict[str, str], dict[str, dict[str, str]], dict[str, dict[str, str]]]:
    files, dimms = dict(EDAC_FILES), dict(EDAC_DIMMS)
    which = pick(draw, (0, 1, 2))
    if which == 0:
        files = draw(file_maps([files]))
    else:
        dimm = pick(draw, sorted(dimms))
        dimms[dimm] = draw(file_maps([dimms[dimm]]))
    # csrowN/ holds what rankN/ does under other names on older drivers; move the ranks there sometimes.
    csrows = {}
    if which == 2:
        csrows = {f"csrow{i}": {"ce_count": d.get("dimm_ce_count", ""), "ue_count": d.get("dimm_ue_count", "")}
                  for i, d in enumerate(dimms.values())}
    return "mc0", files, csrows, dimms


@st.composite
def _pair_of_maps(draw: Callable[..., Any], samples: Sequence[tuple[Mapping[str, str], Mapping[str, str]]]
                  ) -> tuple[dict[str, str], dict[str, str]]:
    first, second = pick(draw, samples)
    if coin(draw) or not second:
        return draw(file_maps([first])), dict(second)
    return dict(first), draw(file_maps([second]))


@st.composite
def _kdump(draw: Callable[..., Any]) -> tuple[str, list[str]]:
    directory, files = pick(draw, KDUMP)
    if coin(draw):
        directory = mutate_text(draw, directory)
    else:
        files = [mutate_text(draw, name) if coin(draw) else name for name in files]
    return directory, files


@st.composite
def _ups_list(draw: Callable[..., Any], samples: Sequence[str]) -> tuple[list[str], str]:
    lines = draw(texts(samples)).splitlines()
    return lines, pick(draw, ("dummy", "", "dummy ups", 'x"y'))


def _numbers() -> st.SearchStrategy[Any]:
    return st.one_of(st.integers(), st.floats(), st.sampled_from((10**400, -(10**400), 2**1024, math.inf, math.nan)))


# ---------------------------------------------------------------- calls that go one step past the parser


def _sel(parse: Callable[[str], ipmi_sel.SelLog]) -> Callable[[str], object]:
    def call(text: str) -> object:
        log = parse(text)
        return [(ipmi_sel.sel_timestamp(entry, clock), entry.kind)
                for entry in log.entries for clock in ("utc", "local")]
    return call


def _sensors(parse: Callable[[str], ipmi.SensorList]) -> Callable[[str], object]:
    def call(text: str) -> object:
        result = parse(text)
        return [(ipmi.psu_status(s.events), ipmi.redundancy_state(s.events),
                 ipmi.psu_status_from_bits(s.state_bits) if s.state_bits is not None else None)
                for s in result.sensors]
    return call


def _kernel_line(line: str) -> object:
    message, usec = kernel.split_prefix(line)
    return kernel.classify(message), kernel.suppressed_count(message), usec


def _power_supply(name: str, files: dict[str, str]) -> object:
    return power_supply.power_state([power_supply.parse_power_supply(name, files)])


def _postfix(main: str, master: str) -> object:
    return parse_postfix.lmtp_destinations(parse_postfix.parse_main_cf(main), parse_postfix.parse_master_cf(master))


def _queue_file(data: bytes) -> object:
    return list(queue_file.queue_file_records(data, whole_file=True)), queue_file.queue_file_arrival(data)


def _rtnl(data: bytes) -> object:
    """A datagram as the link watcher reads it: its messages split, link messages parsed, ends and errors read."""
    found: list[object] = []
    for message in rtnl.split_messages(data):
        if message.type in (rtnl.RTM_NEWLINK, rtnl.RTM_DELLINK):
            found.append(rtnl.parse_link(message))
        elif message.type in (rtnl.NLMSG_DONE, rtnl.NLMSG_ERROR):
            found.append(rtnl.parse_error(message))
    return found


def _rtnl_link(payload: bytes) -> object:
    return rtnl.parse_link(rtnl.Message(rtnl.RTM_NEWLINK, 0, 0, 0, payload))


def _ups_vars(lines: list[str], name: str) -> object:
    variables = ups.parse_var_list(lines, name)
    return ups.measurements(variables.values), variables.status


def _ups_line(line: str) -> object:
    return ups.parse_error(line), ups.number(line), ups.parse_status(line), ups.is_measurement(line)


def _metric(value: Any) -> object:
    return MetricSpec("hostvigil_fuzz", "gauge", "fuzz")(value)


def _zfs_numbers(text: str) -> object:
    return zfs.parse_count(text), zfs.parse_percent(text), zfs.parse_date(text), zfs.parse_duration(text)


def _zpool_list(text: str) -> object:
    return zfs.parse_list_text(text), zfs.parse_list_text(text, ("name", "size", "alloc", "free", "frag", "cap",
                                                                 "health"))


def _zfs_walk(pools: list[zfs.Pool]) -> Iterator[zfs.Vdev]:
    """As the collector walks the vdev tree (recursively): a tree too deep to walk fails here."""
    def walk(vdevs: tuple[zfs.Vdev, ...]) -> Iterator[zfs.Vdev]:
        for vdev in vdevs:
            yield vdev
            yield from walk(vdev.children)
    for pool in pools:
        yield from walk(pool.vdevs)


def _zpool_status(parse: Callable[[str], list[zfs.Pool]]) -> Callable[[str], object]:
    def call(text: str) -> object:
        pools = parse(text)
        return sum(1 for _ in _zfs_walk(pools)), [repr(pool) for pool in pools]
    return call


def _certificate(der: bytes) -> object:
    return parse_cert.parse_certificate(der)


TARGETS: tuple[Target, ...] = (
    # agent/procfs.py
    Target("procfs.parse_int", _text(PROC["int"]), procfs.parse_int),
    Target("procfs.parse_btime", _text(PROC["stat"]), procfs.parse_btime),
    Target("procfs.parse_file_nr", _text(PROC["file_nr"]), procfs.parse_file_nr),
    Target("procfs.parse_loadavg", _text(PROC["loadavg"]), procfs.parse_loadavg),
    Target("procfs.parse_meminfo", _text(PROC["meminfo"]), procfs.parse_meminfo),
    Target("procfs.parse_pressure", _text(PROC["pressure"]), procfs.parse_pressure),
    Target("procfs.parse_mounts", _text(PROC["mounts"]), procfs.parse_mounts),
    Target("procfs.parse_limits", _text(PROC["limits"]), procfs.parse_limits),
    Target("procfs.parse_cpu_list", _text(PROC["cpu_list"]), procfs.parse_cpu_list),
    Target("procfs.parse_stat", _text(PROC["pid_stat"]), procfs.parse_stat),
    Target("procfs.parse_cmdline", _one(byte_strings(CMDLINES)), procfs.parse_cmdline, ()),
    Target("collector.MetricSpec", _one(_numbers()), _metric, ()),
    # edac, hwmon, power_supply
    Target("edac.parse_controller", _edac(), edac.parse_controller),
    Target("hwmon.parse_sensor", _named_files(HWMON), hwmon.parse_sensor),
    Target("hwmon.chip_label", st.tuples(st.one_of(st.none(), texts(["/sys/devices/platform/coretemp.0"])),
                                          st.one_of(st.none(), texts(["coretemp", "nvme"])), texts(["hwmon0"])),
           hwmon.chip_label, ()),
    Target("power_supply.parse_power_supply", _named_files(POWER_SUPPLIES), _power_supply),
    # ipmi
    Target("ipmi.parse_freeipmi_sensors", _text([*_files(IPMI, "rubyipmi__*"), *_files(IPMI, "nut__*"),
                                                 *_files(IPMI, "linuxfabrik__ipmi-sensor*")]),
           _sensors(ipmi.parse_freeipmi_sensors)),
    Target("ipmi.parse_ipmitool_sdr", _text([*_files(IPMI, "telegraf__*sdr*"), *_files(IPMI, "telegraf__*Data*"),
                                             *_files(IPMI, "collegeboreal__*sdr*")]),
           _sensors(ipmi.parse_ipmitool_sdr)),
    Target("ipmi.parse_ipmitool_sensor", _text(_files(IPMI, "lovoo_*")), _sensors(ipmi.parse_ipmitool_sensor)),
    Target("ipmi.parse_ipmitool_sel", _text([*_files(IPMI, "collegeboreal__*sel*"), *_files(IPMI, "qumulo_*")]),
           _sel(ipmi_sel.parse_ipmitool_sel)),
    Target("ipmi.parse_ipmitool_sel_info", _text(_files(IPMI, "*sel_info*")), ipmi_sel.parse_ipmitool_sel_info),
    Target("ipmi.parse_freeipmi_sel",
           _text([*_files(IPMI, "ipmi_exporter__*"), *_files(IPMI, "linuxfabrik__ipmi-sel*")]),
           _sel(ipmi_sel.parse_freeipmi_sel)),
    # kernel
    Target("kernel.parse_record", _one(byte_strings(KMSG)), kernel.parse_record),
    Target("kernel.split_prefix+classify", _text(_lines(KERNEL_LOGS + PSTORE)), _kernel_line, ()),
    Target("kernel.events_from_text", _text(KERNEL_LOGS + PSTORE), reports.events_from_text, ()),
    Target("kernel.parse_pstore_name", _text([path.name for path in CRASH.glob("pstore/**/dmesg-erst-*")]),
           crash.parse_pstore_name),
    Target("kernel.parse_pstore_dmesg", _text(PSTORE), crash.parse_pstore_dmesg),
    Target("kernel.parse_systemd_pstore_dmesg", _text(_files(CRASH / "pstore", "**/dmesg.txt")),
           lambda text: crash.merge_pstore_parts(crash.parse_systemd_pstore_dmesg(text))),
    Target("kernel.parse_kdump_dir", _kdump(), crash.parse_kdump_dir, ()),
    Target("kernel.parse_journal_json", _one(st.one_of(json_texts(JOURNAL_LINES), texts(["\n".join(JOURNAL_LINES)]))),
           crash.parse_journal_json),
    Target("kernel.journal_storage", st.tuples(st.lists(texts(_files(CRASH / "journald")), max_size=3), st.booleans()),
           crash.journal_storage, ()),
    Target("kernel.decode_taint", _one(st.one_of(st.integers(), st.integers(0, 2**40))), crash.decode_taint),
    # mail
    Target("mail.parse_url", _text(URLS), mail.parse_url),
    Target("mail.parse_imap", _text(IMAP), mail.parse_imap),
    Target("mail.parse_pop3", _text(POP3), mail.parse_pop3),
    Target("mail.parse_smtp", _text(SMTP), mail.parse_smtp),
    Target("mail.parse_certificate", _one(byte_strings(CERTIFICATES)), _certificate),
    Target("mail.parse_cyrus_conf", _text(_files(MAIL / "cyrus", "*cyrus.conf")), parse_cyrus.parse_cyrus_conf),
    Target("mail.parse_imapd_conf", _text(_files(MAIL / "cyrus", "*imapd.conf")), parse_cyrus.parse_imapd_conf, ()),
    Target("mail.parse_service_status", _text(_files(MAIL / "dovecot")), parse_dovecot.parse_service_status),
    Target("mail.parse_line", _text(_lines(MAIL_LOGS)), parse_log.parse_line, ()),
    Target("mail.worth_parsing", _one(byte_strings([line.encode() for line in _lines(MAIL_LOGS)])),
           parse_log.worth_parsing, ()),
    Target("mail.parse_journal_entry", _json(MAIL_JOURNAL), parse_log.parse_journal_entry),
    Target("mail.sanitise", _text(_lines(MAIL_LOGS)), parse_log.sanitise, ()),
    Target("mail.parse_main_cf+master_cf", st.tuples(texts(_files(MAIL / "postfix", "*main.cf")),
                                                     texts(_files(MAIL / "postfix", "*master.cf"))), _postfix),
    Target("mail.queue_file", _one(byte_strings(SPOOL)), _queue_file),
    Target("mail.parse_tcp_listeners", st.tuples(texts(_files(MAIL / "sockets", "*tcp*")),
                                                 st.sampled_from(("little", "big"))),
           parse_sockets.parse_tcp_listeners, ()),
    Target("mail.parse_unix_listeners", _text(_files(MAIL / "sockets", "*unix")), parse_sockets.parse_unix_listeners,
           ()),
    # md
    Target("md.parse_mdstat", _text(MDSTAT), md.parse_mdstat),
    Target("md.parse_md_sysfs", _pair_of_maps(MD_DIRS), md.parse_md_sysfs),
    Target("md.parse_sync_completed", _text([files.get("sync_completed", "") for files, _ in MD_DIRS]),
           md.parse_sync_completed),
    # network
    Target("network.parse_bonding", _text(_files(NETWORK, "*bond*") + _files(NETWORK, "*BOND*")),
           network.parse_bonding),
    Target("network.parse_softnet", _text([_read(p) for p in sorted(TREES.glob("*/proc/net/softnet_stat"))]),
           network.parse_softnet),
    Target("network.parse_netstat", _text([_read(p) for p in sorted(TREES.glob("*/proc/net/*")) if p.name in
                                           ("netstat", "snmp")]), network.parse_netstat),
    Target("network.parse_netdev_sysfs", _pair_of_maps(NET_DEVICES), network.parse_netdev_sysfs),
    Target("network.parse_route",
           _text([*_files(NETWORK, "*_route"), *[_read(p) for p in sorted(TREES.glob("*/proc/net/route"))]]),
           route.parse_route),
    Target("network.rtnl_datagram", _one(byte_strings(RTNL)), _rtnl),
    Target("network.rtnl_parse_link", _one(byte_strings(RTNL_LINKS)), _rtnl_link),
    Target("uevents.parse_uevent", _one(byte_strings(UEVENTS)), uevents.parse_uevent, raises=()),
    Target("network.parse_ipv6_route", _text([_read(p) for p in sorted(TREES.glob("*/proc/net/ipv6_route"))]),
           route.parse_ipv6_route),
    # probe
    Target("probe.parse_target", _text(PROBE_TARGETS), probe.parse_target),
    # raid
    Target("raid.parse_controllers", _json(_files(FIXTURES / "raid", "*.json")), raid.parse_controllers),
    Target("raid.parse_drives", _json(_files(FIXTURES / "raid", "*.json")), raid.parse_drives),
    # smart
    Target("smart.parse_scan", _json(_files(FIXTURES / "smart", "*scan*")), smart.parse_scan),
    Target("smart.parse_report", _json(_files(FIXTURES / "smart", "*.json")), smart.parse_report),
    Target("smart.decode_exit_status", _one(st.integers()), smart.decode_exit_status),
    # ups
    Target("ups.split_words", _text(UPS_LINES), ups.split_words),
    Target("ups.parse_ok", _text(UPS_LINES), ups.parse_ok),
    Target("ups.parse_var", st.tuples(texts(UPS_LINES), st.sampled_from(("dummy", "ups")),
                                      st.one_of(st.none(), st.sampled_from(("ups.status", "battery.charge")))),
           ups.parse_var),
    Target("ups.parse_error+number+status", _text(UPS_LINES), _ups_line),
    Target("ups.parse_ups_list", _text(_files(UPS, "list-ups.txt")).map(lambda args: (args[0].splitlines(),)),
           ups.parse_ups_list),
    Target("ups.parse_var_list", _ups_list(_files(UPS, "list-var-*")), _ups_vars),
    Target("ups.measurements", _one(file_maps([dict(line.split(": ", 1) for line in _lines(_files(FIXTURES / "ups",
                                                                                                   "*.dev")))])),
           ups.measurements, ()),
    # zfs
    Target("zfs.parse_status_text", _text(ZPOOL_STATUS), _zpool_status(zfs_status.parse_status_text)),
    Target("zfs.parse_status_json", _json(_files(ZFS, "*status*.json")), _zpool_status(zfs_json.parse_status_json)),
    Target("zfs.parse_list_text", _text(ZPOOL_LIST), _zpool_list),
    Target("zfs.parse_list_json", _json(_files(ZFS, "*list*.json")), zfs_json.parse_list_json),
    Target("zfs.parse_kstat_state", _text(_files(ZFS, "*_state")), zfs.parse_kstat_state),
    Target("zfs.parse_count+percent+date+duration", _text([*NUMBERS, "1.53K", "48%", "Sun Nov 12 07:22:03 2023",
                                                           "1 days 02:00:00", "29h37m", "06:58:02"]),
           _zfs_numbers, ()),
)
