"""The control socket: only the agent's user and root get an answer, every request is bounded, and a dead
agent's socket is replaced; the state directory's lock, which tells "no agent" from "an agent I cannot reach"."""

from __future__ import annotations

import json
import os
import pwd
import socket
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from hostvigil import control
from hostvigil.cli import main
from hostvigil.control import (
    SOCKET_NAME,
    ControlServer,
    Peer,
    Refused,
    StateDirError,
    StateDirLock,
    lock_holder,
    request,
)
from tests.conftest import run_as_nobody


class Handlers:
    """What the server was asked, and a command for each way a handler can end."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, int]] = []

    def commands(self) -> dict[str, control.Handler]:
        return {"echo": self.echo, "refuse": self.refuse, "crash": self.crash}

    def echo(self, req: Mapping[str, Any], peer: Peer) -> dict[str, Any]:
        self.asked.append((str(req.get("text")), peer.uid))
        return {"text": req.get("text"), "uid": peer.uid}

    def refuse(self, req: Mapping[str, Any], peer: Peer) -> dict[str, Any]:
        raise Refused("not now")

    def crash(self, req: Mapping[str, Any], peer: Peer) -> dict[str, Any]:
        raise RuntimeError("a bug")


@pytest.fixture
def state() -> Iterator[Path]:
    """A 0700 state directory of root's (or the test user's) under /tmp, short enough for a socket path."""
    path = Path(tempfile.mkdtemp(prefix="hv-"))
    try:
        yield path
    finally:
        for child in path.iterdir():
            child.unlink()
        path.rmdir()


@pytest.fixture
def served(state: Path) -> Iterator[tuple[ControlServer, Handlers]]:
    handlers = Handlers()
    server = ControlServer(state / SOCKET_NAME, handlers.commands())
    server.start()
    try:
        yield server, handlers
    finally:
        server.stop()


def raw(path: Path, data: bytes, shut: bool = False) -> dict[str, Any]:
    """Send `data` as it is and read the one reply line."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(str(path))
        sock.sendall(data)
        if shut:
            sock.shutdown(socket.SHUT_WR)
        reply = b""
        while not reply.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            reply += chunk
    return json.loads(reply) if reply else {}


def test_the_socket_is_private_and_answers_its_owner(served: tuple[ControlServer, Handlers]) -> None:
    server, _ = served
    assert oct(server.path.stat().st_mode & 0o777) == "0o600"
    assert server.path.stat().st_uid == os.geteuid()
    assert oct(server.path.parent.stat().st_mode & 0o777) == "0o700"
    reply = request(server.path, {"command": "echo", "text": "hello"})
    assert reply == {"ok": True, "pid": os.getpid(), "text": "hello", "uid": os.geteuid()}


def test_an_unprivileged_user_cannot_ask(served: tuple[ControlServer, Handlers]) -> None:
    """nobody cannot connect (socket 0600 in a 0700 directory); with both opened up by hand it can connect, and
    the agent still refuses it by its uid; and `hostvigil snapshot` as nobody takes no snapshot anywhere."""
    if os.geteuid() != 0:
        pytest.skip("acting as another user needs root")
    server, handlers = served

    def cannot_connect() -> None:
        with pytest.raises(PermissionError):
            request(server.path, {"command": "echo", "text": "from nobody"})

    run_as_nobody(cannot_connect)

    config = Path(tempfile.mkdtemp(prefix="hv-nobody-")) / "hostvigil.toml"
    config.write_text(f"[agent]\nstate_dir = '{server.path.parent}'\n")
    os.chmod(config.parent, 0o755)  # noqa: S103 - nobody reads the config
    os.chmod(config, 0o644)
    try:
        run_as_nobody(lambda: _assert_equal(main(["snapshot", "--config", str(config)]), 1))
    finally:
        config.unlink()
        config.parent.rmdir()

    # Both opened up by hand, as a mistake would: the agent still judges the peer by its uid.
    os.chmod(server.path.parent, 0o755)  # noqa: S103
    os.chmod(server.path, 0o666)  # noqa: S103

    def refused_by_uid() -> None:
        reply = request(server.path, {"command": "echo", "text": "from nobody"})
        assert reply["ok"] is False
        assert reply["error"] == "refused: only root may ask"

    run_as_nobody(refused_by_uid)
    assert handlers.asked == []
    assert not [p for p in server.path.parent.iterdir() if p.name != SOCKET_NAME]


def _assert_equal(got: object, expected: object) -> None:
    assert got == expected


def test_every_request_is_bounded_and_none_stops_the_server(
    served: tuple[ControlServer, Handlers], monkeypatch: pytest.MonkeyPatch
) -> None:
    server, handlers = served
    monkeypatch.setattr(control, "REQUEST_DEADLINE", 0.3)
    assert raw(server.path, b'{"command": "ec') == {
        "ok": False, "pid": os.getpid(), "error": "no complete request within 0.3 s"
    }
    assert raw(server.path, b"x" * 10_000)["error"] == "bad request: longer than 4096 bytes"
    assert raw(server.path, b"[" * 4000 + b"\n")["error"].startswith("bad request:")
    assert raw(server.path, b"\xff\xfe\n")["error"].startswith("bad request:")
    assert raw(server.path, b'["snapshot"]\n')["error"] == 'bad request: not a JSON object with a "command"'
    assert raw(server.path, b'{"command": "x"}', shut=True)["error"].startswith("bad request: the connection closed")
    unknown = raw(server.path, b'{"command": "reboot"}\n')
    assert unknown["error"] == "unknown command 'reboot' (known: crash, echo, refuse)"
    assert request(server.path, {"command": "refuse"}) == {"ok": False, "pid": os.getpid(), "error": "not now"}
    with pytest.raises(ValueError, match="closed before a complete line"):
        request(server.path, {"command": "crash"})
    assert request(server.path, {"command": "echo", "text": "still here"})["text"] == "still here"
    assert handlers.asked == [("still here", os.geteuid())]


def test_a_dead_agents_socket_is_replaced_and_removed_at_stop(state: Path) -> None:
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(state / SOCKET_NAME))
    stale.close()  # the file stays, as a killed agent leaves it
    with pytest.raises(ConnectionRefusedError):
        request(state / SOCKET_NAME, {"command": "echo"})
    server = ControlServer(state / SOCKET_NAME, Handlers().commands())
    server.start()
    try:
        assert request(state / SOCKET_NAME, {"command": "echo", "text": "new"})["text"] == "new"
    finally:
        server.stop()
    assert not (state / SOCKET_NAME).exists()


def test_a_socket_path_too_long_is_a_clear_error(state: Path) -> None:
    deep = state / ("d" * 100)
    deep.mkdir()
    try:
        for attempt in (lambda: ControlServer(deep / SOCKET_NAME, {}).start(),
                        lambda: request(deep / SOCKET_NAME, {"command": "echo"})):
            with pytest.raises(OSError, match=r"bytes long, more than the 107 a unix socket path may have: "
                                              r"choose a shorter \[agent\] state_dir"):
                attempt()
    finally:
        deep.rmdir()


def test_the_lock_refuses_a_second_holder_and_names_the_first(state: Path) -> None:
    assert lock_holder(state) is None  # never held
    first = StateDirLock(state)
    try:
        assert oct((state / "lock").stat().st_mode & 0o777) == "0o600"
        assert lock_holder(state) == os.getpid()
        with pytest.raises(StateDirError, match=rf"state directory {state} is in use by another agent "
                                                rf"\(pid {os.getpid()}, holding {state}/lock\)"):
            StateDirLock(state)
    finally:
        first.release()
    assert lock_holder(state) is None
    StateDirLock(state).release()
    with pytest.raises(FileNotFoundError):
        lock_holder(state / "missing")


def test_the_lock_cannot_be_looked_into_by_another_user(state: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("acting as another user needs root")
    lock = StateDirLock(state)
    os.chmod(state, 0o755)  # noqa: S103 - even where the directory can be entered, the lock file is 0600

    def cannot_tell() -> None:
        assert pwd.getpwuid(os.geteuid()).pw_name == "nobody"
        with pytest.raises(PermissionError):
            lock_holder(state)

    try:
        run_as_nobody(cannot_tell)
    finally:
        lock.release()
