"""Multi-line kernel reports (oops, BUG, hung task, lockups, OOM, MCE...) assembled from classified lines.

No I/O and no metrics. Reports are framed the way ABRT frames them (abrt/abrt:src/lib/kernel.c)
and fingerprinted like its duphash: the first six reliable stack functions, so the same crash seen
twice counts as one. The lines come classified one at a time by parse.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from hostvigil.checksums import sha1
from hostvigil.collectors.kernel.parse import CRITICAL, MULTILINE, Match, classify, split_prefix

MAX_FUNCTIONS = 6  # ABRT/satyr koops duphash: the first six frames
# fields["cause"] of a panic the hardware caused: the kernel's machine-check handler panicked ("Fatal machine
# check", "Machine check from unknown source"), or a machine check is reported within the panic.
MACHINE_CHECK = "machine_check"
HEAD_LINES = 40  # ABRT: a start line with no backtrace within 40 lines is a report of its own
INTERLEAVED_LINES = 10  # events of other kinds amid a report before it is taken as over (a flood never pauses)
_DEVICE_FIELDS = ("device", "interface", "vdev", "pool", "controller", "zone")
_CUT_HERE = "------------[ cut here ]------------"
# A WARN message may replace the class of a warning that has no stack yet, but these never are WARN messages.
_NOT_WARN_MESSAGES = frozenset({"warning", "panic", "oom_kill", "hung_task", "oops", "general_protection", "mce"})
# A frame: x86 "[<addr>] ? func+0x1/0x2 [module]", powerpc "[sp] [addr] .func+0x1/0x2", s390 "([<addr>] func+...)"
_ADDRESS = r"(?:\(?\[<[0-9a-f]+>\]\s*|\[[0-9a-f]{8,16}\] \[[0-9a-f]{8,16}\] )"
_FRAME = re.compile(
    rf"\s*(?:<{{1,2}}/?\w+>{{1,2}}\s*)*{_ADDRESS}?(?P<unreliable>\? )?"
    r"(?P<func>[\w.$]+)\+0x[0-9a-f]+/0x[0-9a-f]+(?: \[(?P<module>\w+)\])?"
)
_RIP = re.compile(
    r"\s*(?:RIP: [0-9a-f]{4}:(?:\[<[0-9a-f]+>\]\s+\[<[0-9a-f]+>\]\s+)?|(?:RIP\s+|IP: )\[<[0-9a-f]+>\]\s+"
    r"|EIP: (?:[0-9a-f]{4}:)?(?:\[<[0-9a-f]+>\] )?|EIP is at |pc : |PC is at |NIP \[[0-9a-f]+\] "
    r"|Krnl PSW : [0-9a-f]+ [0-9a-f]+ \()"
    r"(?P<func>[\w.$]+)\+0x[0-9a-f]+/0x[0-9a-f]+(?: \[(?P<module>\w+)\])?"
)
_TASK = re.compile(r"\s*(?:CPU: \d+ (?:UID: \d+ )?PID: (?P<pid>\d+) Comm: |Pid: (?P<oldpid>\d+), comm: )(?P<comm>.+?)"
                   r"(?: (?:Not tainted|Tainted:|Kdump: )|$)")
# Lines of a report after its Call Trace: frames, registers, markers (ABRT ends a report at anything else).
_STRUCTURAL = re.compile(
    rf"\s*(?:(?:<{{1,2}}/?\w+>{{1,2}}\s*)*{_ADDRESS}?(?:\? )?[\w.$]+\+0x[0-9a-f]+/0x[0-9a-f]+"
    r"|<{1,2}/?\w+>{1,2}\s*$"
    r"|(?:RIP|RSP|RAX|RBX|RCX|RDX|RSI|RDI|RBP|R\d\d|FS|GS|CS|DS|ES|CR\d|DR\d|EIP|ESP|EAX|EBX|ECX|EDX|ESI|EDI|EBP"
    r"|PKRU|pc|lr|sp|pstate|x\d+|NIP|LR|REGS|MSR|SOFTE|CFAR|DAR|GPR\d\d|r\d+|fp|ip|psr|Krnl GPRS|Krnl Code"
    r"|Krnl PSW|Last Breaking-Event-Address)\s*[:\[]"
    r"|(?:Call [Tt]race:|Code: |Modules linked in:|Hardware name: |Workqueue: |Kernel Offset: |Stack:"
    r"|Faulting instruction address|PACATMSCRATCH|PC is at |LR is at |task: [0-9a-f]|Flags: |Control: "
    r"|Instruction dump:|Exception stack|irq event stamp:|hardirqs last|softirqs last|note: |Tainted: |CPU: \d"
    r"|Pid: \d)"
    r"|Not tainted |---\[ end |RIP\s+\[<|RSP <|(?:[0-9a-f]{8,16} )+[0-9a-f]{8,16}\s*$"
    r"|(?:\[[0-9a-f]{8,16}\] ){2}0x[0-9a-f]+ \(unreliable\)|[0-9a-f]{4}: [0-9a-f ]+$)"
)
_STACK_START = re.compile(rf"\s*(?:Call [Tt]race:|(?:<{{1,2}}/?\w+>{{1,2}}\s*)*{_ADDRESS}?(?:\? )?"
                          r"[\w.$]+\+0x[0-9a-f]+/0x[0-9a-f]+)")
_CALL_TRACE = re.compile(r"\s*Call [Tt]race:")
# Reports whose header comes before their task line: a frame between the two is another CPU's, printed amid it.
_INTERLEAVING = frozenset({"oops", "general_protection", "bug"})
_CONTINUATION = {
    "mce": re.compile(r".*\[Hardware Error\]|(?:CPU \d+: )?Bank \d+: |(?:TSC|ADDR|MISC|PROCESSOR) "),
    "rcu_stall": re.compile(r"\s*(?:rcu: |\(detected by |Sending NMI |NMI backtrace |Task dump for )"),
}
_OOM_TASK = re.compile(r"\s*\[\s*\d+\]\s+\d+\s+\d+\s")
_COLLAPSE = re.compile(r"[0-9][0-9a-fA-Fx]*")  # a number, hex or not, from its first digit


@dataclass(frozen=True)
class KernelEvent:
    cls: str
    message: str  # the classifying line
    usec: int | None  # printk time of that line; None for text without it
    comm: str | None
    pid: int | None
    module: str | None  # from a kernel-mode RIP, else the first reliable frame with [module]
    functions: tuple[str, ...]  # RIP function, then Call Trace frames; "? " frames skipped; at most 6
    faulting: str | None  # the function the CPU was in (RIP, pc, NIP, PSW): where an oops or lockup happened
    fingerprint: str  # 16 hex digits; equal for the same crash (stack) or the same line bar numbers
    device: str | None
    fields: dict[str, str]
    lines: tuple[str, ...]  # the event's text, at most max_lines


def is_critical(event: KernelEvent) -> bool:
    """Whether the event warrants a crash snapshot now; corrected memory errors (EDAC CE) do not."""
    return event.cls in CRITICAL or (event.cls == "edac" and event.fields.get("severity") == "UE")


@dataclass
class _Pending:
    """A multi-line report being assembled."""

    cls: str
    fields: dict[str, str]
    message: str
    usec: int | None
    lines: list[str]
    has_stack: bool = False  # a Call Trace or frame was seen: from now on unrelated lines end the report
    own_task: bool = False  # its task (CPU/PID/Comm), RIP or Call Trace line was seen: frames before are another CPU's
    cut_here: bool = False  # started by "cut here"; the WARNING/BUG header is still to come
    open_headline: bool = False  # a warning whose message line (NETDEV WATCHDOG, hard LOCKUP) may name the class
    headerless: bool = False  # a stack dump under no line we know: dump_stack(), page allocation failure
    victim_lines: list[str] = field(default_factory=list)  # OOM victim lines past max_lines, kept anyway
    interleaved: int = 0  # single-line events printed amid this report

    def adopt(self, match: Match, message: str, usec: int | None) -> None:
        self.cls, self.message, self.usec = match.cls, message, usec
        self.fields = {**self.fields, **match.fields}


class EventAssembler:
    """Turns a stream of normalized messages into events.

    Single-line classes come out at once. A multi-line report absorbs its own lines (CPU/PID/Comm,
    registers, Call Trace, Modules linked in, OOM task list...) until "---[ end", a new report, an
    unclassified line after its stack (ABRT's rule), HEAD_LINES lines without a stack, or max_lines.

    Related starts merge. "BUG: kernel NULL pointer dereference" then "Oops:" is one event of class
    oops: the Oops line says the task died, the BUG line (kept as the message) says why. "invoked
    oom-killer" .. "Killed process" is one oom_kill event named after the victim. "cut here" waits
    for its WARN message or WARNING/BUG header, and a warning's message line (NETDEV WATCHDOG, hard
    LOCKUP) gives the warning its class. A panic after an oops is a separate panic event. A stack
    dump under no known line (a "CPU: .. PID: .. Comm:" line, then a Call Trace) is a warning: it
    is how dump_stack() and page allocation failures look, which are not crashes. A single-line
    class printed in the middle of a report (another CPU's I/O error) is an event of its own and
    does not end the report, printk interleaving whole lines from all CPUs; INTERLEAVED_LINES of
    them do, as a flood of I/O errors would otherwise hold a report back until the flood ends.
    """

    def __init__(self, max_lines: int = 80) -> None:
        self.max_lines = max_lines
        self._pending: _Pending | None = None
        self._rip: dict[str, str] = {}  # a RIP line outside any report: x86 repeats the oops's after its end marker

    @property
    def pending(self) -> bool:
        """A multi-line event is in progress; the caller flushes it after ~0.25 s of quiet."""
        return self._pending is not None

    def flush(self) -> list[KernelEvent]:
        """Finish the event in progress now."""
        pending, self._pending = self._pending, None
        if pending is None:
            return []
        if pending.headerless and not pending.has_stack:
            return []
        if pending.message.startswith(_CUT_HERE):  # no header came: the first line after "cut here" says most
            if len(pending.lines) == 1:
                return []
            pending.message = pending.lines[1]
        lines = pending.lines[: self.max_lines - len(pending.victim_lines)] + pending.victim_lines
        return [_event(pending.cls, pending.message, pending.usec, pending.fields, lines)]

    def feed(self, message: str, usec: int | None = None) -> list[KernelEvent]:
        """Events completed by this line: none, one, or two (a finished report and a new single-line event)."""
        pending = self._pending
        if pending is None:
            return self._start(message, usec)
        if message.lstrip().startswith("---[ end "):
            pending.lines.append(message)
            return self.flush()
        if message.startswith(_CUT_HERE):
            return self.flush() + self._start(message, usec)
        if pending.cls == "oom_kill":
            return self._feed_oom(pending, message, usec)
        return self._feed_report(pending, message, usec)

    def _feed_report(self, pending: _Pending, message: str, usec: int | None) -> list[KernelEvent]:
        continuation = _CONTINUATION.get(pending.cls)
        if _STRUCTURAL.match(message) or (continuation is not None and continuation.match(message)):
            if not message.lstrip().startswith("Hardware name"):
                pending.open_headline = False  # before 3.12 the WARN message came after "Hardware name"
            if _TASK.match(message) or _RIP.match(message) or _CALL_TRACE.match(message):
                pending.own_task = True
            if _STACK_START.match(message) and (pending.own_task or not _INTERLEAVING.intersection({pending.cls})):
                pending.has_stack = True
            return self._absorb(pending, message)
        match = classify(message)
        if match is None:  # ends a report past its stack, but is no event either
            strict = pending.has_stack or pending.cls == "mce" or len(pending.lines) >= HEAD_LINES
            return self.flush() if strict else self._absorb(pending, message)
        if not pending.has_stack and self._merge(pending, match, message, usec):
            return self._absorb(pending, message)
        return self._unrelated(pending, match, message, usec)

    def _unrelated(self, pending: _Pending, match: Match, message: str, usec: int | None) -> list[KernelEvent]:
        """A classified line that is not part of the report in progress."""
        if match.cls in MULTILINE:
            return self.flush() + self._start(message, usec, match)
        event = _event(match.cls, message, usec, match.fields, [message])
        pending.interleaved += 1
        return [*self.flush(), event] if pending.interleaved >= INTERLEAVED_LINES else [event]

    @staticmethod
    def _merge(pending: _Pending, match: Match, message: str, usec: int | None) -> bool:
        """Fold a classified line into the report before its stack, if it belongs there."""
        header = match.cls in ("warning", "bug")
        if pending.cut_here:
            if pending.message.startswith(_CUT_HERE) and match.cls not in ("panic", "oom_kill", "hung_task"):
                pending.adopt(match, message, usec)  # the WARN message or the header itself
                pending.cut_here, pending.open_headline = not header, match.cls == "warning"
                return True
            if header:  # the header after a WARN message that already named the class
                pending.fields = {**match.fields, **pending.fields}
                pending.cut_here = False
                return True
            return False
        if pending.open_headline and match.cls not in _NOT_WARN_MESSAGES:
            pending.adopt(match, message, usec)
            pending.open_headline = False
            return True
        unable = pending.cls == "oops" and "count" not in pending.fields  # "Unable to handle kernel ...", no "Oops:"
        if (pending.cls == "bug" or unable) and (match.cls == "oops" or (
                match.cls == "bug" and "assertion" in pending.fields and "location" in match.fields)):
            pending.cls = match.cls  # BUG + Oops is an oops; VERIFY + "PANIC at" stays a bug
            pending.fields = {**match.fields, **pending.fields}
            return True
        return False

    def _start(self, message: str, usec: int | None, match: Match | None = None) -> list[KernelEvent]:
        if message.startswith(_CUT_HERE):
            self._pending = _Pending("warning", {}, message, usec, [message], cut_here=True)
            return []
        match = match or classify(message)
        if match is None:
            if rip := _RIP.match(message):
                self._rip = {"function": rip["func"].lstrip(".")} | ({"module": rip["module"]} if rip["module"] else {})
            if _TASK.match(message):  # "CPU: 1 PID: 4465 Comm: insmod ...": a stack dump follows
                self._pending = _Pending("warning", {}, message, usec, [message], headerless=True)
            return []
        if match.cls not in MULTILINE:
            return [_event(match.cls, message, usec, match.fields, [message])]
        fields = dict(match.fields)
        if match.cls == "panic":  # "Fatal exception" right after the repeated RIP of the oops it ends
            fields = {**self._rip, **fields}
        self._rip = {}
        self._pending = _Pending(match.cls, fields, message, usec, [message],
                                 open_headline=match.cls == "warning")
        return self.flush() if "Killed process" in message else []

    def _absorb(self, pending: _Pending, message: str) -> list[KernelEvent]:
        pending.lines.append(message)
        return self.flush() if len(pending.lines) >= self.max_lines else []

    def _feed_oom(self, pending: _Pending, message: str, usec: int | None) -> list[KernelEvent]:
        """An OOM report runs from "invoked oom-killer" to "Killed process", the task list included."""
        full = len(pending.lines) >= self.max_lines
        if _OOM_TASK.match(message):
            if not full:
                pending.lines.append(message)
            return []
        match = classify(message)
        if match is None:
            if full:
                return self.flush()
            pending.lines.append(message)
            return []
        if match.cls != "oom_kill" or "invoker" in match.fields:
            return self._unrelated(pending, match, message, usec)
        pending.fields = {**pending.fields, **match.fields}  # the victim: summary, "Kill", "Killed"
        (pending.victim_lines if full else pending.lines).append(message)
        if "Killed process" not in message:
            return []
        pending.message, pending.usec = message, usec  # says more than "invoked oom-killer"
        return self.flush()


def events_from_text(text: str) -> list[KernelEvent]:
    """All events of a whole log (kern.log, dmesg, pstore dmesg.txt, vmcore-dmesg.txt), for crash evidence."""
    assembler = EventAssembler()
    events = []
    for line in text.splitlines():
        events += assembler.feed(*split_prefix(line))
    return events + assembler.flush()


def _event(cls: str, message: str, usec: int | None, fields: dict[str, str], lines: list[str]) -> KernelEvent:
    """The culprit, stack and fingerprint of a finished event."""
    comm, pid, module = fields.get("comm"), fields.get("pid"), fields.get("module")
    functions: list[str] = []
    faulting = None
    if len(lines) > 1:  # a single line has no stack: floods of I/O errors skip the search
        comm, pid, module, faulting, functions = _stack(cls, lines, comm, pid, module)
    device = next((fields[key] for key in _DEVICE_FIELDS if key in fields), None)
    if functions:
        identity = [cls, *functions]
    else:  # the line itself, numbers collapsed but the device kept whole (sda1 and sda2 differ)
        text = message.replace(device, "\0") if device else message
        identity = [cls, device or "", _COLLAPSE.sub("#", text)]
    if cls == "panic" and _machine_check(lines):
        fields = {**fields, "cause": MACHINE_CHECK}
    return KernelEvent(
        cls=cls, message=message, usec=usec, comm=comm, pid=_pid(pid), module=module,
        functions=tuple(functions), faulting=faulting or fields.get("function"), device=device,
        fingerprint=sha1("\n".join(identity).encode()).hexdigest()[:16],
        fields=fields, lines=tuple(lines),
    )


def _pid(text: str | None) -> int | None:
    """A pid as a line printed it; None for none, or for digits no pid has (int() refuses thousands of them)."""
    return int(text) if text is not None and len(text) <= 10 else None


def _stack(
    cls: str, lines: list[str], comm: str | None, pid: str | None, module: str | None
) -> tuple[str | None, str | None, str | None, str | None, list[str]]:
    """(comm, pid, module, faulting function, functions) from a report's lines: the task line, the RIP and the
    reliable frames."""
    functions: list[str] = []
    rip = rip_module = frame_module = None
    own = cls not in _INTERLEAVING  # frames before an oops's own RIP or Call Trace are another CPU's
    for line in lines:
        own = own or _RIP.match(line) is not None or _CALL_TRACE.match(line) is not None
        if comm is None and cls != "oom_kill" and (task := _TASK.match(line)):
            comm, pid = task.group("comm"), task.group("pid") or task.group("oldpid")
        if rip is None and (m := _RIP.match(line)):
            rip, rip_module = m.group("func").lstrip("."), m.group("module")  # ".func": a powerpc ELFv1 name
            functions.insert(0, rip)  # the faulting function, wherever the kernel printed its RIP
        elif own and (m := _FRAME.match(line)) and not m.group("unreliable"):
            functions.append(m.group("func").lstrip("."))
            frame_module = frame_module or m.group("module")
    functions = [f for i, f in enumerate(functions) if i == 0 or f != functions[i - 1]][:MAX_FUNCTIONS]
    return comm, pid, rip_module or frame_module or module, rip, functions


def _machine_check(lines: list[str]) -> bool:
    """A panic the hardware caused: the machine-check handler's own ("Fatal machine check"), or one that reports
    a machine check within it."""
    return any("machine check" in line.lower() for line in lines)
