"""Kernel events as a crash report's timeline: their times, culprits, the lines worth quoting, what a panic names.

No I/O. A crash log's events (parse_reports.KernelEvent) become TimelineEvents with a
wall time where the log's clock is known, how long the log went on after each, and the
few lines that say what happened; the whole text stays with them for the JSON.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from hostvigil.collector import TimelineEvent
from hostvigil.collectors.kernel.parse import classify, split_prefix
from hostvigil.collectors.kernel.parse_reports import MACHINE_CHECK, KernelEvent

QUOTE_LINES = 12  # of one event in the report
FRAMES = 6  # reliable call-trace frames quoted
KEEP_FIRST, KEEP_LAST = 20, 180  # events of one log on the timeline: how it began, and how it ended
_LEFT_OUT = {"link_up"}  # a link coming back says nothing of how a boot ended

# A panic whose own message names the condition the kernel was told to panic on (kernel/hung_task.c,
# kernel/watchdog.c, kernel/rcu/tree_stall.h, mm/oom_kill.c, mm/page_alloc.c, arch/x86/kernel/cpu/mce/core.c,
# arch/x86/kernel/nmi.c, drivers/acpi/apei/ghes.c): the condition is the cause, the panic is how it ended.
_CONDITIONS = (
    ("hung_system", re.compile(r"hung_task: blocked tasks|softlockup: hung tasks|[Hh]ard LOCKUP|RCU Stall"
                               r"|rcu_(?:sched|preempt|bh) (?:self-)?detected stalls?")),
    ("oom", re.compile(r"Out of memory|panic_on_oom|System is deadlocked on memory|out of memory")),
    ("hardware", re.compile(r"[Mm]achine [Cc]heck|MCE|Fatal hardware error|[Hh]ardware [Ee]rror"
                            r"|Not all CPUs entered broadcast exception handler|NMI|Uncorrect(?:able|ed) .*error")),
)
# Lines that say nothing to on-call: registers, code bytes, stack words, module lists, markers.
_NOISE = re.compile(
    r"\s*(?:$|Modules linked in:|Code: |Stack:|Instruction dump:|Hardware name:|Kernel Offset:|---\[ end "
    r"|irq event stamp:|hardirqs last|softirqs last|note: |Workqueue: |Mem-Info:|Tasks state |\"echo 0 > "
    r"|Dumping ftrace buffer:|\(ftrace buffer empty\)|Rebooting in \d+ seconds|Tainted: \["
    r"|<{1,2}/?\w+>{1,2}\s*$|(?:[0-9a-fx]{8,16}[ ,]*)+$|[0-9a-f]{4}: [0-9a-f ]+$|(?:\[[0-9a-f]+\] ){2}0x"
    r"|\[\s*pid\s*\]|\[\s*\d+\]\s+\d+\s+\d+\s"
    r"|(?:RSP|RAX|RBX|RCX|RDX|RSI|RDI|RBP|R\d\d|FS|GS|CS|DS|ES|CR\d|DR\d|EAX|EBX|ECX|EDX|ESI|EDI|EBP|ESP"
    r"|PKRU|ORIG_RAX|sp|pstate|x\d+|GPR\d+|MSR|CTR|XER|CFAR|DAR|DSISR|SOFTE|TRAP|IRQMASK|PACATMSCRATCH|REGS"
    r"|Krnl GPRS|Krnl Code|Last Breaking-Event-Address|NIP|LR|r\d+|fp|ip|psr|Flags|Control|PACATMSCRATCH)\s*[:\[])"
)
# Where an event's own stack starts: its call trace, or the line naming the faulting function. Frames before it
# are another CPU's, printed amid it.
_OWN_STACK = re.compile(r"\s*(?:Call [Tt]race:|Backtrace:|RIP: |EIP: |NIP \[|pc : |PC is at |Krnl PSW )")
_USER_RIP = re.compile(r"\s*RIP: 0033:")
_FRAME = re.compile(r"\s*\(?(?:<{1,2}/?\w+>{1,2}\s*)*(?:\[<?[0-9a-f]+>?\]\s*){0,2}(?P<unreliable>\? )?"
                    r"\.?(?P<func>[\w.$]+)\+0x[0-9a-f]+/0x[0-9a-f]+")
# What a blocked task's stack passes through on its way to sleep: the frames after them say what it waited on.
_WAITING = frozenset({
    "__schedule", "schedule", "schedule_timeout", "io_schedule", "io_schedule_timeout", "schedule_preempt_disabled",
    "__switch_to", "__switch_to_asm", "context_switch", "bit_wait_io", "bit_wait", "__wait_on_bit",
    "out_of_line_wait_on_bit", "__wait_on_bit_lock", "wait_for_completion", "__wait_for_common",
    "wait_for_common", "do_wait_for_common", "rwsem_down_write_slowpath", "rwsem_down_read_slowpath",
    "__mutex_lock", "__mutex_lock_slowpath", "mutex_lock", "folio_wait_bit_common", "wait_on_page_bit_common",
})
# The frames that print a report (dump_stack, panic, die): they say how it was printed, not what happened.
_PRINTING = frozenset({
    "dump_stack", "dump_stack_lvl", "show_stack", "dump_backtrace", "show_trace_log_lvl", "panic", "nmi_panic",
    "vpanic", "__warn", "warn_slowpath_fmt", "report_bug", "die", "oops_end", "__die", "check_panic_on_oom",
})
_JBD2 = re.compile(r"jbd2/(?P<device>[\w.!:-]+?)-\d+$")  # the journal thread of a filesystem: jbd2/sda1-8
# "Tainted: G           O E ----V-------   3.10.0-229.el7.x86_64 #1": Red Hat kernels add their own taint field
_RELEASE = re.compile(r"(?:Not tainted|Tainted: [A-Z -]*?)\s*(?P<release>\d+\.\d+[\w.+~-]*) #|Linux version (?P<v>\S+)")


def timeline(
    events: Sequence[KernelEvent], source: str, where: str, *, clock: float | None, end_usec: int | None
) -> list[TimelineEvent]:
    """A log's events in order, repeats in a row folded; `clock` is the wall time of printk time 0 where it is
    known, `end_usec` the printk time the log reached (how long it went on after each event)."""
    folded: list[tuple[KernelEvent, int, int | None]] = []  # event, count, printk time of its last repeat
    for event in events:
        if event.cls in _LEFT_OUT:
            continue
        if folded and (folded[-1][0].cls, folded[-1][0].fingerprint) == (event.cls, event.fingerprint):
            first, count, _ = folded[-1]
            folded[-1] = (first, count + 1, event.usec)
        else:
            folded.append((event, 1, event.usec))
    if len(folded) > KEEP_FIRST + KEEP_LAST:
        folded = folded[:KEEP_FIRST] + folded[-KEEP_LAST:]
    return [_entry(event, count, last, (source, where), (clock, end_usec)) for event, count, last in folded]


def _entry(event: KernelEvent, count: int, last: int | None, seen: tuple[str, str],
           clocks: tuple[float | None, int | None]) -> TimelineEvent:
    (source, where), (clock, end_usec) = seen, clocks
    uptime = event.usec / 1e6 if event.usec is not None else None
    return TimelineEvent(
        cls=event.cls, message=event.message, source=source, where=where,
        time=clock + uptime if clock is not None and uptime is not None else None,
        uptime=uptime,
        after=(end_usec - last) / 1e6 if end_usec is not None and last is not None else None,
        count=count, culprit=culprit(event), quote=key_lines(event.cls, event.lines), lines=list(event.lines),
        fingerprint=event.fingerprint, condition=panic_condition(event) if event.cls == "panic" else None,
    )


def culprit(event: KernelEvent) -> dict[str, str]:
    """Who and where: the process, the faulting function and its module, the CPU, bank, DIMM or device."""
    found = {"comm": event.comm, "pid": str(event.pid) if event.pid is not None else None,
             "function": event.faulting, "module": event.module, "device": event.device,
             **{key: event.fields.get(key) for key in ("cpu", "bank", "location", "invoker")}}
    if event.cls == "hung_task":
        found["waiting_in"] = next((f for f in event.functions if f not in _WAITING), None)
        if event.comm and (jbd2 := _JBD2.match(event.comm)):
            found["device"] = jbd2["device"].replace("!", "/")  # the kernel writes "/" in a name as "!"
    return {key: value for key, value in found.items() if value}


def key_lines(cls: str, lines: Sequence[str]) -> list[str]:
    """The lines of an event that say what happened, who, and the first reliable frames of its call trace.

    Registers, code bytes, stack words, module lists and an OOM report's memory and task tables are left out
    (the whole text stays in the JSON); so are the frames a blocked task sleeps in, to reach those that say why.
    """
    if cls == "oom_kill":
        return [line for line in lines if classify(line) is not None or line.lstrip().startswith("CPU: ")][
            :QUOTE_LINES]
    quoted: list[str] = []
    frames = 0
    own = False
    for line in lines:
        if _NOISE.match(line) or _USER_RIP.match(line):
            continue
        if frame := _FRAME.match(line):
            if (not own or frame["unreliable"] or frames >= FRAMES or frame["func"] in _PRINTING
                    or (cls == "hung_task" and frame["func"] in _WAITING)):
                continue
            frames += 1
        elif _OWN_STACK.match(line):
            own = True
            if frames >= FRAMES:
                continue
        quoted.append(line.strip() if frame else line)
        if len(quoted) == QUOTE_LINES:
            break
    return quoted


def panic_condition(event: KernelEvent) -> str | None:
    """The cause a panic names itself (hung_system, oom, hardware), None for a panic that names none (a fatal
    exception after an oops, a test, init killed): then what came before it says why."""
    if event.fields.get("cause") == MACHINE_CHECK:
        return "hardware"
    reason = event.fields.get("reason", event.message)
    return next((cause for cause, pattern in _CONDITIONS if pattern.search(reason)), None)


def log_end(lines: Iterable[str]) -> int | None:
    """The last printk time in a log (its lines in order), in microseconds."""
    end = None
    for line in lines:
        usec = split_prefix(line)[1]
        if usec is not None:
            end = usec
    return end


def kernel_release(text: str) -> str | None:
    """The release of the kernel that wrote a log ("5.15.0-136-generic"), from a task or version line."""
    found = None
    for match in _RELEASE.finditer(text):
        found = match["release"] or match["v"]
    return found
