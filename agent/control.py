"""The agent's private side: its state directory kept 0700 and locked, and the control socket in it.

What changes the agent's state (a manual snapshot today) is asked over a unix
stream socket, `state_dir/control.sock`, never over the metrics port: the
socket is 0600 and in a 0700 directory, so only the agent's user and root can
connect, and the peer's uid (SO_PEERCRED) is checked again on every
connection in case a mode was loosened by hand. The protocol is one JSON
object a line: one request per connection, one reply, each bounded in size
and the request in time, served one connection at a time by one thread, since
its only clients are an operator and their scripts.

One agent per state directory: `state_dir/lock` is flock()ed for the agent's
life, with its pid inside, so a second agent is refused at start (it would
mark the boot clean under the first), and `hostvigil snapshot` can tell "no
agent here" (the lock is free) from "an agent I cannot reach" (it is held).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import selectors
import socket
import stat
import struct
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("hostvigil.control")

LOCK_NAME = "lock"
SOCKET_NAME = "control.sock"
MAX_REQUEST = 4096  # bytes of a request line: a command and a reason
MAX_REPLY = 65536
REQUEST_DEADLINE = 2.0  # seconds for a client to send its whole request
REPLY_TIMEOUT = 30.0  # seconds a client waits for the reply (a snapshot of a large host takes a moment)
SUN_PATH_MAX = 107  # bytes of a unix socket path (sun_path is 108, with its NUL)
LOCK_WAIT = 1.0  # a lock probe by `hostvigil snapshot` holds the lock for microseconds: wait that out at start
_UCRED = struct.Struct("3i")


class StateDirError(OSError):
    """A state directory the agent must not use: held by another agent, or open to others and not ours."""


class Refused(Exception):
    """A request the agent declines, with the reason the client is told."""


@dataclass(frozen=True)
class Peer:
    """Who is on the other end of a control connection, as the kernel says (SO_PEERCRED)."""

    pid: int
    uid: int
    gid: int


Handler = Callable[[Mapping[str, Any], Peer], Mapping[str, Any]]


def private_dir(path: Path) -> None:
    """`path` as a directory only its owner can enter, whatever the umask; an existing one of ours is tightened."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o700)
    info = path.stat()
    if info.st_mode & 0o077 and info.st_uid == os.geteuid():
        os.chmod(path, 0o700)


def keep_private(directory: Path) -> None:
    """The state directory holds crash evidence and the control socket: one open to group or others is tightened
    if it is ours, refused (StateDirError) if it is not."""
    info = directory.stat()
    mode = stat.S_IMODE(info.st_mode)
    if not mode & 0o077:
        return
    if info.st_uid != os.geteuid():
        raise StateDirError(
            f"state directory {directory} is open to others (mode {mode:04o}) and owned by uid {info.st_uid}, "
            f"not by this agent's uid {os.geteuid()}: refusing to keep crash evidence and the control socket there "
            f"(chown it to uid {os.geteuid()} or make it 0700)"
        )
    os.chmod(directory, 0o700)
    log.warning("state directory %s was open to others (mode %04o); tightened to 0700", directory, mode)


class StateDirLock:
    """The agent's hold on its state directory, from start to exit; StateDirError if another agent holds it."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / LOCK_NAME
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            os.fchmod(self._fd, 0o600)
            deadline = time.monotonic() + LOCK_WAIT
            while True:
                try:
                    fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise StateDirError(
                            f"state directory {directory} is in use by another agent ({_pid_text(_read_pid(self._fd))}"
                            f", holding {self.path}): one agent per state directory"
                        ) from None
                    time.sleep(0.05)
            # Fixed width, written in place: on a full disk this needs no new block once the file has one, and if
            # it cannot be written at all the lock still holds; only the pid shown to others is missing.
            try:
                os.pwrite(self._fd, f"{os.getpid():<10}\n".encode(), 0)
            except OSError as exc:
                log.warning("cannot write the pid into %s: %s", self.path, exc.strerror)
        except BaseException:
            os.close(self._fd)
            raise

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def lock_holder(directory: Path) -> int | None:
    """The pid of the agent holding `directory`'s lock (0 if it has not said yet); None when no agent holds it.
    OSError (e.g. permission denied) when that cannot be told."""
    try:
        fd = os.open(directory / LOCK_NAME, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        if not directory.is_dir():
            raise
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_pid(fd)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _read_pid(fd: int) -> int:
    try:
        return int(os.pread(fd, 32, 0).split()[0])
    except (OSError, ValueError, IndexError):
        return 0


def _pid_text(pid: int) -> str:
    return f"pid {pid}" if pid else "pid not known yet"


def check_socket_path(path: Path) -> None:
    """A path a unix socket can have; OSError naming it and the limit otherwise (the state directory's path is
    the user's to shorten)."""
    size = len(os.fsencode(path))
    if size > SUN_PATH_MAX:
        raise OSError(
            f"control socket {path} is {size} bytes long, more than the {SUN_PATH_MAX} a unix socket path may have: "
            "choose a shorter [agent] state_dir"
        )


class ControlServer:
    """The control socket, served by one thread from start() to stop().

    A reply is {"ok": true, "pid": PID, ...the handler's fields} or {"ok": false, "pid": PID, "error": TEXT}.
    """

    def __init__(self, path: Path, handlers: Mapping[str, Handler]) -> None:
        self.path = path
        self.handlers = handlers
        self._listener: socket.socket | None = None
        self._wake: tuple[int, int] | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Bind (replacing a dead agent's socket: the caller holds the state directory's lock) and serve."""
        check_socket_path(self.path)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
            listener.bind(str(self.path))
            # Before listen(): until then a connect is refused, and the directory is 0700 besides.
            os.chmod(self.path, 0o600)
            listener.listen(8)
        except BaseException:
            listener.close()
            raise
        self._listener = listener
        self._wake = os.pipe()
        self._thread = threading.Thread(target=self._serve, args=(listener, self._wake[0]), name="control", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop serving (a request being answered is finished first) and remove the socket."""
        if self._listener is None or self._wake is None or self._thread is None:
            return
        os.write(self._wake[1], b"x")
        self._thread.join(REPLY_TIMEOUT)
        self._listener.close()
        for fd in self._wake:
            os.close(fd)
        self._listener = self._wake = self._thread = None
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def _serve(self, listener: socket.socket, wake: int) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(listener, selectors.EVENT_READ)
            selector.register(wake, selectors.EVENT_READ)
            while True:
                ready = [key.fileobj for key, _ in selector.select()]
                if wake in ready:
                    return
                try:
                    conn, _ = listener.accept()
                except OSError:
                    continue
                with conn:
                    self._handle(conn)

    def _handle(self, conn: socket.socket) -> None:
        deadline = time.monotonic() + REQUEST_DEADLINE
        try:
            peer = Peer(*_UCRED.unpack(conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)))
            reply = self._answer(conn, deadline, peer)
            conn.settimeout(REQUEST_DEADLINE)
            conn.sendall(json.dumps({**reply, "pid": os.getpid()}).encode() + b"\n")
        except OSError as exc:  # the client went away or stalled: its loss
            log.debug("control connection: %s", exc)
        except Exception as exc:  # noqa: BLE001 - a handler's bug costs that request, never the control thread
            log.error("control request failed: %s: %s", type(exc).__name__, exc)

    def _answer(self, conn: socket.socket, deadline: float, peer: Peer) -> dict[str, Any]:
        try:
            request, handler = self._request(conn, deadline, peer)
            return {"ok": True, **handler(request, peer)}
        except Refused as exc:
            return {"ok": False, "error": str(exc)}

    def _request(self, conn: socket.socket, deadline: float, peer: Peer) -> tuple[dict[str, Any], Handler]:
        """The request and its handler; Refused saying what is wrong with the request or its sender."""
        # Read (bounded) before the peer is judged, so that every client gets a reply to read rather than a broken
        # pipe halfway through sending.
        try:
            line = read_line(conn, MAX_REQUEST, deadline)
        except TimeoutError:
            raise Refused(f"no complete request within {REQUEST_DEADLINE:g} s") from None
        except ValueError as exc:
            raise Refused(f"bad request: {exc}") from None
        if peer.uid not in (0, os.geteuid()):
            allowed = "root" if os.geteuid() == 0 else f"uid {os.geteuid()} (the agent's user) and root"
            log.warning(
                "control request from uid %d (pid %d) refused: only %s may ask", peer.uid, peer.pid, allowed,
                extra={"repeat_key": ("control refused", peer.uid)},
            )
            raise Refused(f"refused: only {allowed} may ask")
        try:
            request = json.loads(line)
        except (ValueError, RecursionError) as exc:  # RecursionError: JSON nested thousands deep
            raise Refused(f"bad request: {exc}") from None
        if not isinstance(request, dict) or not isinstance(request.get("command"), str):
            raise Refused('bad request: not a JSON object with a "command"')
        handler = self.handlers.get(request["command"])
        if handler is None:
            known = ", ".join(sorted(self.handlers))
            raise Refused(f"unknown command {request['command'][:40]!r} (known: {known})")
        return request, handler


def read_line(sock: socket.socket, limit: int, deadline: float) -> bytes:
    """One line from `sock` by `deadline`: TimeoutError when late, ValueError when longer than `limit` or cut off."""
    data = b""
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("timed out")
        sock.settimeout(remaining)
        chunk = sock.recv(limit + 1 - len(data))
        if not chunk:
            raise ValueError("the connection closed before a complete line")
        data += chunk
        line, newline, _ = data.partition(b"\n")
        if len(line) > limit:
            raise ValueError(f"longer than {limit} bytes")
        if newline:
            return line


def request(path: Path, message: Mapping[str, Any], timeout: float = REPLY_TIMEOUT) -> dict[str, Any]:
    """Ask the agent at `path`; its reply. OSError when it cannot be reached or does not answer in time,
    ValueError when what it answers is no reply."""
    check_socket_path(path)
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC) as sock:
        sock.settimeout(timeout)
        sock.connect(str(path))
        sock.sendall(json.dumps(message).encode() + b"\n")
        try:
            reply = json.loads(read_line(sock, MAX_REPLY, deadline))
        except RecursionError:
            raise ValueError("a reply nested too deep") from None
    if not isinstance(reply, dict) or not isinstance(reply.get("ok"), bool):
        raise ValueError(f"not a reply of the agent: {str(reply)[:200]}")  # noqa: TRY004 - bad input
    return reply
