"""Real Dovecot and Postfix for the mail tests, each an instance of its own with the faults the probes must see.

Each server owns a temp dir under /tmp (not pytest's: the servers' own users, mail,
dovenull and postfix, must enter it) with its config, state, queue and log, listens on
free ports on 127.0.0.1 only, runs as a child of the test, and is always torn down by
the fixture that made it. Two instances never share a file, a port or a process.

Dovecot 2.3 runs in the foreground (`dovecot -F -c CONF`) in a process group of its
own, so that stop() can kill the whole tree however a fault left it (a stopped process
ignores SIGTERM; Dovecot's own shutdown takes over a second). As root it runs as
Debian installs it (logins as dovenull, auth as dovecot, mail as mail); as any other
user every service runs as that user, without chroot. One user, "probe" ("secret"),
comes from a passwd-file, so an unknown LMTP recipient is really refused.

The login services run one long-lived process each (service_count 0, process_limit 1,
process_min_avail 1). That is what makes never_greet() possible: new connections
queue in the kernel on the one listening socket while its only process is stopped.
It also keeps those processes' connections to auth open, so that stop_auth() stops
logins and LMTP lookups but not greetings. (With Debian's default, a process per
connection, a stopped auth means no greeting at all.)

Postfix 3.7 needs root (its daemons drop to the postfix user and its queue is owned by
it). It runs with `postfix -c DIR start-fg`, which keeps the master a descendant of
the test: here PID 1 reaps no orphans, so a daemonised master that exits would stay a
zombie and "is the master gone" could not be told. Queue, data directory, log file and
syslog name are its own; outbound mail is relayed to 127.0.0.1:9, where nothing
listens, so it lands in the deferred queue.

Every fault can be undone (restore()); fixtures that share an instance between tests
restore it after each test and check that it serves again.
"""

from __future__ import annotations

import contextlib
import errno
import grp
import os
import pwd
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import free_port, require_tool
from tests.mail.certs import Certs, Pair, make_certs

USER = "probe"
PASSWORD = "secret"  # noqa: S105 - the test user's, in the test passwd-file
MAIL_DOMAIN = "mail.test"
REMOTE_RECIPIENT = "someone@remote.test"
DOVECOT_LIB = Path("/usr/lib/dovecot")
# Which Debian package brings each Dovecot program the harness needs.
DOVECOT_PROGRAMS = {"imap": "dovecot-imapd", "pop3": "dovecot-pop3d", "lmtp": "dovecot-lmtpd"}
LOGIN_SERVICES = {"imap": "imap-login", "pop3": "pop3-login"}
START_TIMEOUT = 15.0
HUGE_QUEUE_MINFREE = 10**15  # a petabyte: more than any queue filesystem has free


class FaultUnavailable(Exception):
    """A fault that this machine cannot make (no root, mount refused); tests skip on it."""


def missing(message: str) -> None:
    """Skip for a missing component, or fail in CI (HOSTVIGIL_REQUIRE_INTEGRATION=1)."""
    if os.environ.get("HOSTVIGIL_REQUIRE_INTEGRATION") == "1":
        pytest.fail(message)
    pytest.skip(message)


def wait_until(ready: Callable[[], bool], message: str, timeout: float = START_TIMEOUT) -> None:
    """Poll `ready` until it holds; AssertionError with `message` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise AssertionError(f"{message} (waited {timeout:g}s)")
        time.sleep(0.02)


# -- tiny clients, for readiness and for knowing that a change took effect ------------------


def read_reply(sock: socket.socket, limit: int = 65536) -> str:
    """One SMTP/LMTP reply, all its lines ("250-a", "250 b"), joined by newlines; "" if the peer closed."""
    lines: list[str] = []
    buffer = b""
    while len(buffer) < limit:
        chunk = sock.recv(1)  # byte by byte: the reply must not swallow what follows it (a TLS handshake)
        if not chunk:
            break
        buffer += chunk
        if chunk == b"\n":
            line = buffer.decode("utf-8", "replace").rstrip("\r\n")
            lines.append(line)
            buffer = b""
            if line[3:4] != "-":
                break
    return "\n".join(lines)


def read_line(sock: socket.socket, limit: int = 65536) -> str:
    """One CRLF-terminated line (IMAP/POP3), without the line end; "" if the peer closed."""
    buffer = b""
    while len(buffer) < limit:
        chunk = sock.recv(1)
        if not chunk:
            break
        buffer += chunk
        if chunk == b"\n":
            break
    return buffer.decode("utf-8", "replace").rstrip("\r\n")


def greeting(port: int, timeout: float = 2.0) -> str | None:
    """The first line a server on 127.0.0.1:port sends; None if it refuses, closes or stays silent."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            return read_line(sock) or None
    except OSError:
        return None


def accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def served_cert(port: int, starttls: str | None = None, timeout: float = 2.0) -> bytes | None:
    """DER of the certificate on 127.0.0.1:port (implicit TLS, or after "imap"/"pop3"/"smtp" STARTTLS)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            if starttls is not None:
                start_tls(sock, starttls)
            with context.wrap_socket(sock) as tls:
                return tls.getpeercert(binary_form=True)
    except (OSError, AssertionError):
        return None


def start_tls(sock: socket.socket, protocol: str) -> None:
    """Greeting and STARTTLS on a plain connection, ready for the TLS handshake; AssertionError if refused."""
    if protocol == "imap":
        assert read_line(sock).startswith("* OK")
        sock.sendall(b"s1 STARTTLS\r\n")
        reply = read_line(sock)
        assert reply.startswith("s1 OK"), reply
    elif protocol == "pop3":
        assert read_line(sock).startswith("+OK")
        sock.sendall(b"STLS\r\n")
        reply = read_line(sock)
        assert reply.startswith("+OK"), reply
    elif protocol in ("smtp", "lmtp"):
        assert read_reply(sock).startswith("220")
        sock.sendall(b"EHLO client.test\r\n" if protocol == "smtp" else b"LHLO client.test\r\n")
        assert read_reply(sock).startswith("250")
        sock.sendall(b"STARTTLS\r\n")
        reply = read_reply(sock)
        assert reply.startswith("220"), reply
    else:
        raise ValueError(f"no STARTTLS for protocol {protocol!r}")


def pem_to_der(path: Path) -> bytes:
    """The first certificate of a PEM file, DER-encoded."""
    text = path.read_text()
    begin, end = "-----BEGIN CERTIFICATE-----", "-----END CERTIFICATE-----"
    return ssl.PEM_cert_to_DER_cert(text[text.index(begin):text.index(end) + len(end)] + "\n")


# -- processes --------------------------------------------------------------------------------


def _stat(pid: int) -> tuple[str, str, int, int] | None:
    """(comm, state, ppid, pgid) of a process, None if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    comm = raw[raw.index("(") + 1:raw.rindex(")")]
    fields = raw[raw.rindex(")") + 2:].split()
    return comm, fields[0], int(fields[1]), int(fields[2])


def alive(pid: int) -> bool:
    """True while the process exists and is not a zombie (here PID 1 reaps no orphans)."""
    info = _stat(pid)
    return info is not None and info[1] not in ("Z", "X")


def process_tree(root: int) -> dict[int, str]:
    """{pid: comm} of `root` and all its living descendants."""
    parents: dict[int, tuple[str, int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            info = _stat(int(entry.name))
            if info is not None and info[1] not in ("Z", "X"):
                parents[int(entry.name)] = (info[0], info[2])
    tree: dict[int, str] = {}
    if root in parents:
        tree[root] = parents[root][0]
    grew = True
    while grew:
        grew = False
        for pid, (comm, ppid) in parents.items():
            if ppid in tree and pid not in tree:
                tree[pid] = comm
                grew = True
    return tree


def _group(pgid: int) -> list[int]:
    """Living processes of a process group."""
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            info = _stat(int(entry.name))
            if info is not None and info[3] == pgid and info[1] not in ("Z", "X"):
                members.append(int(entry.name))
    return members


def _signal(pids: list[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def _wait_state(pids: list[int], stopped: bool) -> None:
    def done() -> bool:
        states = [_stat(pid) for pid in pids]
        return all(info is None or (info[1] == "T") == stopped for info in states)

    wait_until(done, f"processes {pids} did not {'stop' if stopped else 'continue'}", timeout=5)


def _run(argv: list[str], timeout: float = 30) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if result.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} exited {result.returncode}: {result.stderr.strip()}")
    return result


def _write_settled(path: Path, text: str) -> None:
    """Write a Postfix config file dated 10 s ago: every Postfix program re-reads, in 300 ms naps, a file
    changed within the last second (lest it read one half written), which made each start and reload 2 s."""
    path.write_text(text)
    settled = time.time() - 10
    os.utime(path, (settled, settled))


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# -- Dovecot ----------------------------------------------------------------------------------


class _Master:
    """What the Dovecot and Postfix harnesses share: a master run in the foreground as a child of the test (this
    machine's PID 1 reaps no orphans, so a daemonised master could not be told gone from a zombie), waited for
    until it serves, and started again on new ports when another test took one of them meanwhile."""

    name: str
    root: Path
    output: Path  # what the master prints before its log is open
    process: subprocess.Popen[bytes] | None
    new_session = False  # the master in a session and process group of its own, to be killed whole

    def _command(self) -> list[str]:
        raise NotImplementedError

    def _log_file(self) -> Path:
        raise NotImplementedError

    def _answers(self) -> bool:
        raise NotImplementedError

    def _halt(self) -> None:
        raise NotImplementedError

    def _pick_ports(self) -> None:
        raise NotImplementedError

    def write_config(self) -> None:
        raise NotImplementedError

    def start(self) -> None:
        """Start the master and wait until every service answers; new ports if one was taken meanwhile."""
        for attempt in range(3):
            with self.output.open("wb") as out:
                self.process = subprocess.Popen(
                    self._command(), stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                    start_new_session=self.new_session, cwd=self.root,
                )
            try:
                self.wait_ready()
            except AssertionError:
                said = self.output.read_text(errors="replace") + _tail(self._log_file())
                self._halt()
                if "Address already in use" in said and attempt < 2:
                    self._pick_ports()
                    self.write_config()
                    continue
                raise
            return

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        """Until every service of the master answers."""
        wait_until(self._serves, f"{self.name} did not serve; log: {_tail(self._log_file(), 5)}", timeout)

    def _serves(self) -> bool:
        if self.process is None:
            raise AssertionError(f"{self.name} is not started")
        if self.process.poll() is not None:
            raise AssertionError(
                f"{self.name} exited with {self.process.returncode}: "
                f"{self.output.read_text(errors='replace').strip()} {_tail(self._log_file(), 5)}"
            )
        return self._answers()


class DovecotServer(_Master):
    """Dovecot 2.3 serving IMAP, POP3 and LMTP for one user, "probe", on free ports of 127.0.0.1."""

    name = "dovecot"
    new_session = True

    def __init__(self, root: Path, certs: Certs) -> None:
        self.root = root
        self.certs = certs
        self.cert: Pair = certs.good
        self.config = root / "dovecot.conf"
        self.passwd = root / "passwd"
        self.base_dir = root / "run"
        self.state_dir = root / "state"
        self.log = root / "dovecot.log"
        self.output = root / "dovecot.out"  # what the master prints before its log is open
        self.home = root / "home" / USER
        self.maildir = self.home / "Maildir"
        self.lmtp_socket = root / "lmtp.sock"
        self.instance_name = f"hv-{root.name}"
        self.user, self.password = USER, PASSWORD
        self.unprivileged = os.geteuid() != 0
        if self.unprivileged:
            self.mail_uid, self.mail_gid = os.geteuid(), os.getegid()
            self.run_as = pwd.getpwuid(self.mail_uid).pw_name
            self.run_group = grp.getgrgid(self.mail_gid).gr_name
        else:
            entry = pwd.getpwnam("mail")
            self.mail_uid, self.mail_gid = entry.pw_uid, entry.pw_gid
            self.run_as, self.run_group = "mail", grp.getgrgid(entry.pw_gid).gr_name
        self.process: subprocess.Popen[bytes] | None = None
        self._pick_ports()
        self._undo: list[tuple[str, Callable[[], None]]] = []
        self._stopped: dict[str, list[int]] = {}

    def _pick_ports(self) -> None:
        self.imap_port, self.imaps_port = free_port(), free_port()
        self.pop3_port, self.pop3s_port = free_port(), free_port()
        self.lmtp_port, self.stats_port = free_port(), free_port()

    @property
    def master_pid(self) -> int | None:
        return self.process.pid if self.process is not None and self.process.poll() is None else None

    # -- config -------------------------------------------------------------------------

    def configure(self) -> None:
        """Write the config, the passwd-file and the probe user's Maildir."""
        self.root.chmod(0o755)  # the mail, dovenull and dovecot users go through it
        for path in (self.base_dir, self.state_dir, self.maildir / "cur", self.maildir / "new", self.maildir / "tmp"):
            path.mkdir(parents=True, exist_ok=True)
        for path in (self.home, self.maildir, *(self.maildir / sub for sub in ("cur", "new", "tmp"))):
            os.chown(path, self.mail_uid, self.mail_gid)
            path.chmod(0o700)
        # passwd-file: user:password:uid:gid:gecos:home:shell:extra; auth (user dovecot) reads it.
        self.passwd.write_text(f"{USER}:{{PLAIN}}{PASSWORD}:{self.mail_uid}:{self.mail_gid}::{self.home}::\n")
        self.passwd.chmod(0o644)
        self.write_config()

    def write_config(self) -> None:
        self.config.write_text(self._config_text())
        self.config.chmod(0o644)

    def _config_text(self) -> str:
        login = "  service_count = 0\n  process_limit = 1\n  process_min_avail = 1\n"
        text = f"""\
# hostvigil test instance {self.instance_name}; start: dovecot -F -c {self.config}
base_dir = {self.base_dir}
state_dir = {self.state_dir}
instance_name = {self.instance_name}
log_path = {self.log}
protocols = imap pop3 lmtp
listen = 127.0.0.1
ssl = yes
ssl_cert = <{self.cert.cert}
ssl_key = <{self.cert.key}
disable_plaintext_auth = no
auth_mechanisms = plain login
# LMTP looks recipients up as user@domain; the passwd-file knows the bare name.
auth_username_format = %Ln
passdb {{
  driver = passwd-file
  args = scheme=PLAIN {self.passwd}
}}
userdb {{
  driver = passwd-file
  args = {self.passwd}
}}
mail_location = maildir:~/Maildir
first_valid_uid = {self.mail_uid}
service imap-login {{
  inet_listener imap {{
    port = {self.imap_port}
  }}
  inet_listener imaps {{
    port = {self.imaps_port}
    ssl = yes
  }}
{login}}}
service pop3-login {{
  inet_listener pop3 {{
    port = {self.pop3_port}
  }}
  inet_listener pop3s {{
    port = {self.pop3s_port}
    ssl = yes
  }}
{login}}}
service lmtp {{
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {self.lmtp_port}
  }}
  unix_listener {self.lmtp_socket} {{
    mode = 0666
  }}
}}
service doveadm {{
  unix_listener doveadm-server {{
    mode = 0666
  }}
}}
service stats {{
  inet_listener http {{
    port = {self.stats_port}
  }}
  unix_listener stats-reader {{
    mode = 0666
  }}
}}
metric auth_success {{
  filter = event=auth_request_finished AND success=yes
}}
metric auth_failures {{
  filter = event=auth_request_finished AND NOT success=yes
}}
metric imap_command {{
  filter = event=imap_command_finished
  group_by = cmd_name tagged_reply_state
}}
metric mail_delivery {{
  filter = event=mail_delivery_finished
  group_by = duration:exponential:1:5:10
}}
"""
        if self.unprivileged:
            # Not root: the master cannot change users, so every service runs as the invoking user, and a
            # chroot is impossible.
            text += f"""\
default_internal_user = {self.run_as}
default_internal_group = {self.run_group}
default_login_user = {self.run_as}
service anvil {{
  chroot =
}}
service imap-login {{
  chroot =
}}
service pop3-login {{
  chroot =
}}
service auth-worker {{
  user = $default_internal_user
}}
"""
        return text

    # -- processes ----------------------------------------------------------------------

    def _command(self) -> list[str]:
        return [require_tool("dovecot"), "-F", "-c", str(self.config)]

    def _log_file(self) -> Path:
        return self.log

    def _halt(self) -> None:
        self._kill()

    def _answers(self) -> bool:
        """IMAP, POP3 and LMTP greet, the TLS ports and the LMTP socket accept."""
        imap, pop3, lmtp = greeting(self.imap_port), greeting(self.pop3_port), greeting(self.lmtp_port)
        return (
            imap is not None and imap.startswith("* OK")
            and pop3 is not None and pop3.startswith("+OK")
            and lmtp is not None and lmtp.startswith("220")
            and accepts(self.imaps_port) and accepts(self.pop3s_port)
            and self.lmtp_socket.is_socket()
        )

    def processes(self) -> dict[int, str]:
        """{pid: name} of the master and every process under it ("imap-login", "auth", "lmtp", ...)."""
        return process_tree(self.master_pid) if self.master_pid is not None else {}

    def pids(self, name: str) -> list[int]:
        """Pids of this instance's processes called `name` ("auth", "imap-login", "config", ...)."""
        return sorted(pid for pid, comm in self.processes().items() if comm == name)

    def reload(self) -> None:
        """`dovecot -c CONF reload`, then wait until a new config process and new login processes serve."""
        before = {pid for name in ("config", *LOGIN_SERVICES.values()) for pid in self.pids(name)}
        _run([require_tool("dovecot"), "-c", str(self.config), "reload"])

        def renewed() -> bool:
            return all(
                set(self.pids(name)) - before for name in ("config", *LOGIN_SERVICES.values())
            ) and self._serves()

        wait_until(renewed, f"dovecot did not come back after reload; log: {_tail(self.log, 5)}")

    def use_cert(self, pair: Pair) -> None:
        """Serve `pair` on every TLS port and STARTTLS from now on (config rewritten, reloaded); restore()
        goes back to certs.good."""
        self.cert = pair
        self.write_config()
        self.reload()
        wanted = pem_to_der(pair.cert)
        wait_until(
            lambda: served_cert(self.imaps_port) == wanted and served_cert(self.pop3s_port) == wanted,
            f"dovecot does not serve {pair.cert} after reload",
        )
        self._undo = [(name, undo) for name, undo in self._undo if name != "cert"]
        if pair != self.certs.good:
            self._undo.append(("cert", lambda: self.use_cert(self.certs.good)))

    def stop(self) -> None:
        """Kill the whole process tree, whatever state it is in, and undo the faults that outlive it (the
        mount, the Maildir's permissions)."""
        try:
            self._kill()
        finally:
            kept = [(name, undo) for name, undo in self._undo if name in ("mount", "mailbox")]
            self._undo = kept
            self.restore(check=False)

    def _kill(self) -> None:
        if self.process is None:
            return
        tree = list(process_tree(self.process.pid))
        # The master leads its own process group; its children never leave it. SIGKILL works on stopped
        # processes too, and nothing here needs a clean shutdown.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        _signal(tree, signal.SIGKILL)
        self.process.wait(10)
        group = self.process.pid
        wait_until(lambda: not any(alive(pid) for pid in [*tree, *_group(group)]),
                   f"dovecot processes {tree} survived SIGKILL", timeout=10)
        self.process = None
        self._stopped.clear()

    # -- faults -------------------------------------------------------------------------

    def restore(self, check: bool = True) -> None:
        """Undo every fault still in place, newest first; with `check`, wait until the server serves again."""
        errors = []
        while self._undo:
            _name, undo = self._undo.pop()
            try:
                undo()
            except Exception as error:  # noqa: BLE001 - undo the rest, then report
                errors.append(error)
        if errors:
            raise errors[0]
        if check and self.process is not None:
            self.wait_ready()

    def never_greet(self, service: str) -> None:
        """Stop the login process of "imap" or "pop3": TCP (and the TLS port) still accept, nothing is sent."""
        if service not in LOGIN_SERVICES:
            raise ValueError(f"never_greet: service {service!r} is not one of {sorted(LOGIN_SERVICES)}")
        if service in self._stopped:
            return
        pids = self.pids(LOGIN_SERVICES[service])
        assert pids, f"no {LOGIN_SERVICES[service]} process to stop"
        _signal(pids, signal.SIGSTOP)
        _wait_state(pids, stopped=True)
        self._stopped[service] = pids
        self._undo.append((service, lambda: self.resume(service)))

    def resume(self, service: str | None = None) -> None:
        """Let a never_greet() service (or all of them) go on; the connections that waited get their greeting."""
        for name in [service] if service is not None else list(LOGIN_SERVICES):
            pids = self._stopped.pop(name, [])
            _signal(pids, signal.SIGCONT)
            _wait_state(pids, stopped=False)
            self._undo = [(n, u) for n, u in self._undo if n != name]

    def stop_auth(self) -> None:
        """SIGSTOP the auth process: greetings and CAPABILITY still answer, LOGIN/PASS and LMTP RCPT hang."""
        if "auth" in self._stopped:
            return
        pids = self.pids("auth")
        assert pids, "no auth process to stop"
        _signal(pids, signal.SIGSTOP)
        _wait_state(pids, stopped=True)
        self._stopped["auth"] = pids
        self._undo.append(("auth", self.resume_auth))

    def resume_auth(self) -> None:
        pids = self._stopped.pop("auth", [])
        _signal(pids, signal.SIGCONT)
        _wait_state(pids, stopped=False)
        self._undo = [(n, u) for n, u in self._undo if n != "auth"]

    def break_mailbox(self) -> None:
        """Take every permission from the probe user's Maildir: logins work, opening INBOX fails."""
        self.maildir.chmod(0o000)
        self._undo.append(("mailbox", lambda: self.maildir.chmod(0o700)))

    def fill_mail_fs(self, size_kb: int = 256) -> None:
        """Mount a small tmpfs over the probe user's home and fill it (root only): nothing more can be saved."""
        if self.unprivileged:
            raise FaultUnavailable("a full mail filesystem needs root: it mounts a tmpfs over the probe user's home")
        mount = require_tool("mount")
        result = subprocess.run(
            [mount, "-t", "tmpfs", "-o", f"size={size_kb}k,mode=0700,uid={self.mail_uid},gid={self.mail_gid}",
             f"hostvigil-{self.instance_name}", str(self.home)],
            capture_output=True, text=True, timeout=30, check=False,
        )
        if result.returncode != 0:
            raise FaultUnavailable(f"cannot mount a tmpfs here: {result.stderr.strip()}")
        self._undo.append(("mount", self._unmount_home))
        for sub in ("cur", "new", "tmp"):
            (self.maildir / sub).mkdir(parents=True)
        for path in (self.maildir, *(self.maildir / sub for sub in ("cur", "new", "tmp"))):
            os.chown(path, self.mail_uid, self.mail_gid)
        # root's file, so that the mail user cannot free the space
        with (self.home / "filler").open("wb") as filler:
            try:
                while True:
                    filler.write(b"\0" * 65536)
                    filler.flush()
            except OSError as error:
                if error.errno != errno.ENOSPC:
                    raise

    def _unmount_home(self) -> None:
        umount = require_tool("umount")
        if subprocess.run([umount, str(self.home)], capture_output=True, timeout=30, check=False).returncode:
            # A mail process of a session still open sits in it: detach the tmpfs anyway (new sessions see the
            # home again; that one keeps the full one until it ends).
            _run([umount, "--lazy", str(self.home)])


# -- Postfix ----------------------------------------------------------------------------------

_MASTER_CF = """\
# hostvigil test instance: no chroot anywhere, smtpd on {smtp_port} takes {smtpd_limit} clients at a time
127.0.0.1:{smtp_port} inet n - n - {smtpd_limit} smtpd
127.0.0.1:{submission_port} inet n - n - - smtpd
  -o syslog_name={syslog_name}/submission
  -o smtpd_tls_security_level=encrypt
pickup unix n - n 60 1 pickup
cleanup unix n - n - 0 cleanup
qmgr unix n - n 300 1 qmgr
tlsmgr unix - - n 1000? 1 tlsmgr
rewrite unix - - n - - trivial-rewrite
bounce unix - - n - 0 bounce
defer unix - - n - 0 bounce
trace unix - - n - 0 bounce
verify unix - - n - 1 verify
flush unix n - n 1000? 0 flush
proxymap unix - - n - - proxymap
proxywrite unix - - n - 1 proxymap
smtp unix - - n - - smtp
relay unix - - n - - smtp
showq unix n - n - - showq
error unix - - n - - error
retry unix - - n - - error
discard unix - - n - - discard
local unix - n n - - local
virtual unix - n n - - virtual
lmtp unix - - n - - lmtp
anvil unix - - n - 1 anvil
scache unix - - n - 1 scache
postlog unix-dgram n - n - 1 postlogd
"""

QUEUES = ("maildrop", "incoming", "active", "deferred", "hold", "corrupt")
# smtpd processes smtp_port may run (master.cf maxproc): few, so that a test can hold them all, and more than
# one, so that the smtpd a probe leaves idle is not the service at its limit.
SMTPD_LIMIT = 4


class PostfixServer(_Master):
    """Postfix 3.7 with its own config dir and queue: smtpd on smtp_port (SMTPD_LIMIT clients at a time) and a
    submission service (STARTTLS required) on submission_port, both on 127.0.0.1."""

    name = "postfix"

    def __init__(self, root: Path, certs: Certs, dovecot: DovecotServer | None = None) -> None:
        self.root = root
        self.certs = certs
        self.dovecot = dovecot
        self.config_dir = root / "etc"
        self.queue_directory = root / "spool"
        self.data_directory = root / "data"
        self.mail_spool = root / "mail"  # local(8) mailboxes, when no Dovecot takes the mail
        self.maillog = root / "maillog"
        self.output = root / "postfix.out"
        self.syslog_name = f"postfix-{root.name}"
        self.queue_minfree = 0
        self.process: subprocess.Popen[bytes] | None = None
        self._pick_ports()
        self._held: list[socket.socket] = []
        self._undo: list[Callable[[], None]] = []

    def _pick_ports(self) -> None:
        self.smtp_port, self.submission_port = free_port(), free_port()

    @property
    def master_pid(self) -> int | None:
        """The master's pid from its pid file, while it runs."""
        try:
            pid = int((self.queue_directory / "pid" / "master.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        return pid if alive(pid) else None

    def configure(self) -> None:
        self.root.chmod(0o755)
        self.config_dir.mkdir(parents=True, exist_ok=True)
        self.queue_directory.mkdir(exist_ok=True)  # `postfix start` makes what is under it, not the directory
        self.data_directory.mkdir(exist_ok=True)
        shutil.chown(self.data_directory, "postfix")
        self.mail_spool.mkdir(exist_ok=True)
        self.mail_spool.chmod(0o1777)
        self.write_config()

    def write_config(self) -> None:
        transport = (
            f"mailbox_transport = lmtp:inet:127.0.0.1:{self.dovecot.lmtp_port}\n" if self.dovecot is not None else ""
        )
        _write_settled(self.config_dir / "main.cf", f"""\
compatibility_level = 3.6
queue_directory = {self.queue_directory}
data_directory = {self.data_directory}
mail_owner = postfix
setgid_group = postdrop
syslog_name = {self.syslog_name}
maillog_file = {self.maillog}
maillog_file_prefixes = {self.root}
myhostname = {MAIL_DOMAIN}
mydomain = test
myorigin = {MAIL_DOMAIN}
mydestination = {MAIL_DOMAIN}, localhost
inet_interfaces = loopback-only
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
alias_maps =
alias_database =
local_recipient_maps =
forward_path =
mail_spool_directory = {self.mail_spool}
biff = no
smtpd_banner = $myhostname ESMTP
smtpd_tls_cert_file = {self.certs.good.cert}
smtpd_tls_key_file = {self.certs.good.key}
smtpd_tls_security_level = may
# park outbound mail: relay to a port where nothing listens, so it lands in the deferred queue
relayhost = [127.0.0.1]:9
queue_minfree = {self.queue_minfree}
{transport}""")
        _write_settled(self.config_dir / "master.cf", _MASTER_CF.format(
            smtp_port=self.smtp_port, submission_port=self.submission_port, syslog_name=self.syslog_name,
            smtpd_limit=SMTPD_LIMIT,
        ))

    def _postfix(self, *args: str) -> subprocess.CompletedProcess[str]:
        return _run([require_tool("postfix"), "-c", str(self.config_dir), *args])

    def _command(self) -> list[str]:
        return [require_tool("postfix"), "-c", str(self.config_dir), "start-fg"]

    def _log_file(self) -> Path:
        return self.maillog

    def _halt(self) -> None:
        self.stop()

    def _answers(self) -> bool:
        smtp, submission = greeting(self.smtp_port), greeting(self.submission_port)
        return (
            self.master_pid is not None and smtp is not None and smtp.startswith("220")
            and submission is not None and submission.startswith("220")
        )

    def stop(self) -> None:
        """`postfix -c DIR stop`, and wait until the master and all its children are gone."""
        self.release_smtpd()
        self._undo.clear()
        if self.process is None:
            return
        master = self.master_pid
        tree = list(process_tree(master)) if master is not None else []
        if master is not None:
            subprocess.run([require_tool("postfix"), "-c", str(self.config_dir), "stop"],
                           capture_output=True, timeout=30, check=False)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            if master is not None:  # the master leads its own session and process group
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(master, signal.SIGKILL)
            self.process.kill()
            self.process.wait(10)
        wait_until(lambda: not any(alive(pid) for pid in tree), f"postfix processes {tree} outlived the master", 10)
        self.process = None

    def reload(self) -> None:
        """`postfix -c DIR reload`: new smtpd processes read the new main.cf (callers poll for the effect)."""
        self._postfix("reload")

    # -- queue ----------------------------------------------------------------------------

    def queue_ids(self, queue: str = "deferred") -> set[str]:
        """Queue ids of the messages in one queue directory (deferred, active, incoming, hold, ...)."""
        top = self.queue_directory / queue
        return {path.name for path in top.rglob("*") if path.is_file()} if top.is_dir() else set()

    @contextlib.contextmanager
    def session(self) -> Iterator[ssl.SSLSocket]:
        """An SMTP session on the submission port, after EHLO, STARTTLS (verified) and EHLO again: the
        harness's own way in, so that it never waits behind a client that holds smtp_port's smtpd processes."""
        context = ssl.create_default_context(cafile=str(self.certs.ca_file))
        with socket.create_connection(("127.0.0.1", self.submission_port), timeout=10) as sock:
            start_tls(sock, "smtp")
            with context.wrap_socket(sock, server_hostname="localhost") as tls:
                tls.sendall(b"EHLO client.test\r\n")
                reply = read_reply(tls)
                assert reply.startswith("250"), reply
                yield tls
                with contextlib.suppress(OSError):
                    tls.sendall(b"QUIT\r\n")
                    read_reply(tls)

    def submit(self, recipients: list[str], count: int = 1, sender: str = f"probe-sender@{MAIL_DOMAIN}") -> list[str]:
        """`count` messages to `recipients`, in one submission session; their queue ids."""
        ids = []
        with self.session() as tls:
            for number in range(count):
                tls.sendall(f"MAIL FROM:<{sender}>\r\n".encode())
                reply = read_reply(tls)
                assert reply.startswith("250"), reply
                for recipient in recipients:
                    tls.sendall(f"RCPT TO:<{recipient}>\r\n".encode())
                    reply = read_reply(tls)
                    assert reply.startswith("250"), reply
                tls.sendall(b"DATA\r\n")
                reply = read_reply(tls)
                assert reply.startswith("354"), reply
                tls.sendall(f"Subject: hostvigil test {number}\r\n\r\nmessage {number}\r\n.\r\n".encode())
                reply = read_reply(tls)
                match = re.match(r"250 2\.0\.0 Ok: queued as (\w+)", reply)
                assert match, reply
                ids.append(match.group(1))
        return ids

    def defer(self, count: int, timeout: float = 20) -> list[str]:
        """`count` messages to a remote recipient, waited for until all sit in the deferred queue."""
        ids = self.submit([REMOTE_RECIPIENT], count)
        wait_until(lambda: set(ids) <= self.queue_ids("deferred"),
                   f"messages {ids} did not reach the deferred queue; log: {_tail(self.maillog, 5)}", timeout)
        return ids

    def clear_queue(self) -> None:
        """Delete every queued message (`postsuper -d ALL`)."""
        _run([require_tool("postsuper"), "-c", str(self.config_dir), "-d", "ALL"])
        wait_until(lambda: not any(self.queue_ids(queue) for queue in QUEUES), "the queue did not empty", 10)

    # -- faults -----------------------------------------------------------------------------

    def restore(self, check: bool = True) -> None:
        """Undo every fault still in place, newest first; with `check`, wait until it serves again."""
        errors = []
        while self._undo:
            try:
                self._undo.pop()()
            except Exception as error:  # noqa: BLE001 - undo the rest, then report
                errors.append(error)
        if errors:
            raise errors[0]
        if check and self.process is not None:
            self.wait_ready()

    def hold_smtpd(self) -> None:
        """Take every smtpd process of smtp_port (SMTPD_LIMIT clients greeted, then idle): the next client is
        accepted by TCP and never greeted until release_smtpd()."""
        if not self._held:
            self._undo.append(self.release_smtpd)
        while len(self._held) < SMTPD_LIMIT:
            sock = socket.create_connection(("127.0.0.1", self.smtp_port), timeout=10)
            self._held.append(sock)
            reply = read_reply(sock)
            assert reply.startswith("220"), reply

    def release_smtpd(self) -> None:
        for sock in self._held:
            with contextlib.suppress(OSError):
                sock.sendall(b"QUIT\r\n")
            sock.close()
        self._held.clear()
        self._undo = [undo for undo in self._undo if undo != self.release_smtpd]

    def _mail_from_reply(self) -> str:
        with self.session() as tls:
            tls.sendall(f"MAIL FROM:<probe-sender@{MAIL_DOMAIN}>\r\n".encode())
            return read_reply(tls)

    def set_queue_minfree(self, nbytes: int = HUGE_QUEUE_MINFREE) -> None:
        """queue_minfree = nbytes, and reload; waits until smtpd answers MAIL FROM accordingly: 452 4.3.1 when
        the queue's filesystem has less free space than that (the default: a petabyte). restore() sets 0."""
        stat = os.statvfs(self.queue_directory)
        code = "452" if stat.f_bavail * stat.f_frsize < nbytes else "250"
        self.queue_minfree = nbytes
        self.write_config()
        self.reload()
        wait_until(lambda: self._mail_from_reply().startswith(code),
                   f"smtpd did not answer MAIL FROM with {code} after queue_minfree = {nbytes}")
        if nbytes and self._reset_minfree not in self._undo:
            self._undo.append(self._reset_minfree)

    def _reset_minfree(self) -> None:
        self._undo = [undo for undo in self._undo if undo != self._reset_minfree]
        self.set_queue_minfree(0)


# -- context managers and fixtures ---------------------------------------------------------------


def _check_dovecot() -> None:
    require_tool("dovecot")
    for program, package in DOVECOT_PROGRAMS.items():
        if not (DOVECOT_LIB / program).exists():
            missing(f"{DOVECOT_LIB / program} is missing (Debian package {package})")


@contextlib.contextmanager
def running_dovecot(certs: Certs) -> Iterator[DovecotServer]:
    """A started Dovecot in a temp dir of its own, killed and removed at the end."""
    _check_dovecot()
    root = Path(tempfile.mkdtemp(prefix="hostvigil-dovecot-"))
    server = DovecotServer(root, certs)
    try:
        server.configure()
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def running_postfix(certs: Certs, dovecot: DovecotServer | None = None) -> Iterator[PostfixServer]:
    """A started Postfix in a temp dir of its own (root only; skips otherwise), stopped and removed at the end.
    With `dovecot`, local mail goes to its LMTP port."""
    if os.geteuid() != 0:
        pytest.skip("Postfix needs root: its daemons switch to the postfix user, which owns the queue")
    require_tool("postfix")
    root = Path(tempfile.mkdtemp(prefix="hostvigil-postfix-"))
    server = PostfixServer(root, certs, dovecot)
    try:
        server.configure()
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def mail_certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    """The test CA and its good, expired, wrong-name and self-signed certificates (tests.mail.certs)."""
    return make_certs(tmp_path_factory.mktemp("mail-certs"))


@pytest.fixture
def dovecot(mail_certs: Certs) -> Iterator[DovecotServer]:
    """A running Dovecot of this test's own, for faults that leave it unusable."""
    with running_dovecot(mail_certs) as server:
        yield server


@pytest.fixture(scope="module")
def _module_dovecot(mail_certs: Certs) -> Iterator[DovecotServer]:
    with running_dovecot(mail_certs) as server:
        yield server


@pytest.fixture
def shared_dovecot(_module_dovecot: DovecotServer) -> Iterator[DovecotServer]:
    """A running Dovecot shared by a module's tests; restored (faults undone, good certificate) after each."""
    yield _module_dovecot
    _module_dovecot.restore()


@pytest.fixture
def postfix(mail_certs: Certs) -> Iterator[PostfixServer]:
    """A running Postfix of this test's own, delivering nowhere but its deferred queue (root only)."""
    with running_postfix(mail_certs) as server:
        yield server


@pytest.fixture(scope="module")
def _module_postfix(mail_certs: Certs) -> Iterator[PostfixServer]:
    with running_postfix(mail_certs) as server:
        yield server


@pytest.fixture
def shared_postfix(_module_postfix: PostfixServer) -> Iterator[PostfixServer]:
    """A running Postfix shared by a module's tests; restored and its queue emptied after each."""
    yield _module_postfix
    _module_postfix.restore()
    _module_postfix.clear_queue()
