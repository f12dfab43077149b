"""The one way collectors run external commands.

Every command gets a deadline, its own process group (killed whole on timeout),
LC_ALL=C, capped output, and its exit status returned as data: smartctl's and
zpool's exit codes carry facts, not just failure. A command left in D state
after SIGKILL cannot be reaped; it is remembered, and the same command is not
started again until it has gone, so a dying disk cannot pile up processes.

Output is what costs memory: a tool that prints 50 MB must not cost 50 MB. Each
pipe is read in chunks into a buffer capped at the caller's `limit` (stderr at
STDERR_LIMIT, far more than any error message); past the cap the rest is read
and dropped until the command ends, so it is neither blocked on a full pipe nor
killed before its exit status is known, and the result says `truncated`. A
caller that parses the output asks for the limit its tool can need and treats a
truncated result as an error: half a document is never parsed.
"""

from __future__ import annotations

import contextlib
import errno
import os
import selectors
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

DEFAULT_OUTPUT_LIMIT = 4 * 1024 * 1024
STDERR_LIMIT = 64 * 1024
_REAP_GRACE = 1.0  # seconds to wait for a killed group before calling it stuck
_CHUNK = 65536


@dataclass(frozen=True)
class CommandResult:
    """What a command did. `status` is None when it did not exit: it timed out, or was not run (`error` says why,
    and the flags say which: not installed, not permitted, or the same command still stuck from an earlier run)."""

    argv: tuple[str, ...]
    status: int | None
    stdout: bytes
    stderr: bytes
    duration: float
    timed_out: bool = False
    truncated: bool = False  # stdout went on past the limit: what is kept is its beginning only
    error: str = ""
    not_found: bool = False  # no such program
    permission_denied: bool = False  # the program could not be executed
    stuck: bool = False  # not started: its run from before is still in D state

    @property
    def ok(self) -> bool:
        return self.status == 0

    def describe(self) -> str:
        """One line for logs and errors: what ran and how it ended."""
        cmd = " ".join(self.argv)
        if self.error:
            return f"{cmd}: {self.error}"
        if self.timed_out:
            return f"{cmd}: no answer within {self.duration:.1f}s, killed"
        tail = self.stderr.decode(errors="replace").strip().splitlines()[-1:] or [""]
        return f"{cmd}: exit status {self.status}" + (f": {tail[0][:200]}" if tail[0] else "")


SYSTEM_BIN_DIRS = ("/usr/local/sbin", "/usr/sbin", "/sbin")


class CommandRunner:
    """Runs commands with deadlines; `bin_dirs` let tests point tools at recorded outputs."""

    def __init__(
        self,
        bin_dirs: Sequence[str] = (),
        output_limit: int = DEFAULT_OUTPUT_LIMIT,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.output_limit = output_limit
        inherited = os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin").split(os.pathsep)
        # The tools are admin tools in /usr/sbin and /sbin (smartctl, zpool, ipmi-sensors), off an ordinary user's
        # PATH: without these a user's run would say "not installed" of a tool that is.
        system = [directory for directory in SYSTEM_BIN_DIRS if directory not in inherited]
        path = os.pathsep.join([*bin_dirs, *inherited, *system])
        self._env = {"PATH": path, "LC_ALL": "C", "LANG": "C", **(env or {})}
        self._stuck: dict[tuple[str, ...], subprocess.Popen[bytes]] = {}
        self._lock = threading.Lock()

    def run(
        self, argv: Sequence[str], timeout: float, stdin: bytes = b"", *, limit: int | None = None
    ) -> CommandResult:
        """Run argv for at most `timeout` seconds, keeping at most `limit` bytes of its stdout (the runner's
        output_limit when None); never raises for the command's sake."""
        key = tuple(argv)
        start = time.monotonic()
        if self._still_stuck(key):
            return CommandResult(
                key, None, b"", b"", 0.0, error="previous run is still stuck, not started again", stuck=True
            )
        try:
            proc = subprocess.Popen(
                key,
                stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=self._env,
                start_new_session=True,
                close_fds=True,
            )
        except OSError as exc:
            return CommandResult(
                key, None, b"", b"", time.monotonic() - start, error=exc.strerror or str(exc),
                not_found=exc.errno == errno.ENOENT, permission_denied=exc.errno in (errno.EACCES, errno.EPERM),
            )
        deadline = start + timeout
        out_limit = self.output_limit if limit is None else limit
        out, err, truncated, timed_out = self._communicate(proc, stdin, deadline, out_limit)
        status: int | None = None
        if not timed_out:
            try:  # the pipes closed, but the process may linger past the deadline
                status = proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                timed_out = True
        if timed_out:
            self._kill(key, proc)
        return CommandResult(
            key, status, out, err, time.monotonic() - start, timed_out=timed_out, truncated=truncated
        )

    def stuck(self) -> list[tuple[str, ...]]:
        """Commands killed on timeout that have not gone away yet."""
        with self._lock:
            return [key for key in self._stuck if self._stuck[key].poll() is None]

    def kill_all(self) -> None:
        """At shutdown: kill what is still running (a D-state process leaves when it can)."""
        with self._lock:
            for proc in self._stuck.values():
                _killpg(proc)

    def _still_stuck(self, key: tuple[str, ...]) -> bool:
        with self._lock:
            proc = self._stuck.get(key)
            if proc is None:
                return False
            if proc.poll() is None:
                return True
            del self._stuck[key]
            return False

    def _communicate(
        self, proc: subprocess.Popen[bytes], stdin: bytes, deadline: float, out_limit: int
    ) -> tuple[bytes, bytes, bool, bool]:
        """Read both pipes until EOF or the deadline, keeping at most out_limit bytes of stdout and STDERR_LIMIT of
        stderr; `truncated` when stdout had more."""
        if proc.stdout is None or proc.stderr is None:
            raise RuntimeError("command started without output pipes")
        if proc.stdin is not None:
            with contextlib.suppress(BrokenPipeError):
                proc.stdin.write(stdin)
            proc.stdin.close()
        out_fd, err_fd = proc.stdout.fileno(), proc.stderr.fileno()
        buffers = {out_fd: bytearray(), err_fd: bytearray()}
        limits = {out_fd: out_limit, err_fd: STDERR_LIMIT}
        truncated = False
        with selectors.DefaultSelector() as sel:
            for pipe in (proc.stdout, proc.stderr):
                sel.register(pipe, selectors.EVENT_READ)
            while sel.get_map():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return bytes(buffers[out_fd]), bytes(buffers[err_fd]), truncated, True
                for key, _ in sel.select(remaining):
                    chunk = os.read(key.fd, _CHUNK)
                    if not chunk:
                        sel.unregister(key.fileobj)
                        continue
                    buf = buffers[key.fd]
                    room = limits[key.fd] - len(buf)
                    if key.fd == out_fd and len(chunk) > room:
                        truncated = True
                    if room > 0:
                        buf += chunk[:room]
        for pipe in (proc.stdout, proc.stderr):
            pipe.close()
        return bytes(buffers[out_fd]), bytes(buffers[err_fd]), truncated, False

    def _kill(self, key: tuple[str, ...], proc: subprocess.Popen[bytes]) -> None:
        _killpg(proc)
        try:
            proc.wait(_REAP_GRACE)
        except subprocess.TimeoutExpired:
            with self._lock:
                self._stuck[key] = proc
            return
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()


def _killpg(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
