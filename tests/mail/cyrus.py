"""A real Cyrus IMAP 3.6 (Debian 12) on loopback for the mail tests, with the seed outage's faults on demand.

Debian's cyrus-common gives master, lmtpd and the tools; imapd, pop3d and promstatsd
come unpacked, not installed, from cyrus-imapd, cyrus-pop3d and cyrus-admin (cyrus-imapd
conflicts with dovecot-imapd, which the Dovecot tests need): tests/mail/fetch-cyrus.sh
puts them in /var/cache/hostvigil-tests/cyrus-x (HOSTVIGIL_CYRUS_X overrides). master
runs in the foreground as a child of the test, with config, lib and spool in a temp dir,
and drops to user cyrus: the harness needs root.

Cyrus logs only through syslog(3), which always writes to /dev/log, and this machine has
none. Rather than make one for the whole machine, master starts in a mount namespace of
its own (unshare -m) where an overlay over /dev adds a /dev/log symlink to a datagram
socket the harness reads on a thread: `log` is that sink's file, one line a message.

Two choices make the faults deterministic, and both change what a client sees, so they
are options. Every service runs its programs with `-U 1` (one connection a process, where
Cyrus's default is 250): each connection opens mailboxes.db, the TLS key and imapd.conf
anew, so a fault shows on the next connection instead of depending on which long-lived
process takes it (`uses=None` gives Cyrus's default, where a process that had mailboxes.db
open before it was corrupted fails differently). And no autocreate: with autocreate_quota
set, LOGIN itself reads mailboxes.db (to make a missing INBOX), so a lock on it hangs LOGIN
too; the admin creates user/probe at start instead. Faults are context managers that
undo themselves, restoring any bytes they replaced.
"""

from __future__ import annotations

import contextlib
import fcntl
import grp
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import free_port, require_tool
from tests.mail.certs import Certs, Pair, make_certs

CYRUS_BIN = Path("/usr/lib/cyrus/bin")  # cyrus-common
CYRUS_X = Path(os.environ.get("HOSTVIGIL_CYRUS_X", "/var/cache/hostvigil-tests/cyrus-x"))
USER = "probe"  # sasl_pwcheck_method alwaystrue: any password logs in
PASSWORD = "probe-secret"  # noqa: S105 - alwaystrue takes any password
START_TIMEOUT = 20.0
STOP_GRACE = 2.0


def _missing(message: str) -> None:
    if os.environ.get("HOSTVIGIL_REQUIRE_INTEGRATION") == "1":
        pytest.fail(message)
    pytest.skip(message)


@dataclass(frozen=True)
class CyrusPorts:
    """Loopback TCP ports of the instance's services."""

    imap: int  # plain IMAP with STARTTLS
    imaps: int  # IMAP over TLS from the first byte
    pop3: int  # plain POP3 with STLS
    lmtp: int  # LMTP, pre-authenticated (lmtpd -a)
    imap_limited: int  # plain IMAP with maxchild=1: one client at a time


# -- a small line client over raw sockets: what any monitoring probe sees ------------------


class Dialog:
    """One conversation with a server on loopback: lines out, lines in, every read bounded by a timeout.

    read_line() raises TimeoutError when nothing complete arrives in time and EOFError when
    the server closes; a TLS failure comes through as the ssl module raises it.
    """

    def __init__(self, sock: socket.socket, timeout: float) -> None:
        self.sock = sock
        self.timeout = timeout
        self._buffer = b""

    @classmethod
    def connect(cls, port: int, timeout: float = 5.0) -> Dialog:
        return cls(socket.create_connection(("127.0.0.1", port), timeout=timeout), timeout)

    @classmethod
    def connect_unix(cls, path: Path, timeout: float = 5.0) -> Dialog:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(str(path))
        except OSError:
            sock.close()
            raise
        return cls(sock, timeout)

    @classmethod
    def connect_tls(cls, port: int, context: ssl.SSLContext, timeout: float = 5.0) -> Dialog:
        sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        try:
            return cls(context.wrap_socket(sock, server_hostname="localhost"), timeout)
        except BaseException:
            sock.close()
            raise

    def __enter__(self) -> Dialog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def send_line(self, text: str) -> None:
        self.sock.sendall(text.encode() + b"\r\n")

    def read_line(self, timeout: float | None = None) -> str:
        """The next line without its CRLF."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no complete line within {timeout or self.timeout}s (have {self._buffer!r})")
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            if not data:
                raise EOFError(f"server closed the connection (after {self._buffer!r})")
            self._buffer += data
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.rstrip(b"\r").decode(errors="replace")

    def ask(self, text: str, timeout: float | None = None) -> str:
        """Send a line and read one."""
        self.send_line(text)
        return self.read_line(timeout)

    def imap(self, tag: str, command: str, timeout: float | None = None) -> list[str]:
        """An IMAP command's lines up to and including its tagged completion (the last line)."""
        self.send_line(f"{tag} {command}")
        lines = [self.read_line(timeout)]
        while not lines[-1].startswith(f"{tag} "):
            lines.append(self.read_line(timeout))
        return lines

    def smtp(self, command: str, timeout: float | None = None) -> list[str]:
        """An SMTP/LMTP command's reply lines ("250-..." continued up to "250 ...")."""
        self.send_line(command)
        lines = [self.read_line(timeout)]
        while len(lines[-1]) > 3 and lines[-1][3] == "-":
            lines.append(self.read_line(timeout))
        return lines

    def starttls(self, context: ssl.SSLContext) -> None:
        """Wrap the socket after the server has agreed to STARTTLS/STLS."""
        assert not self._buffer, f"plaintext left over before TLS: {self._buffer!r}"
        self.sock.settimeout(self.timeout)
        self.sock = context.wrap_socket(self.sock, server_hostname="localhost")

    def quiet_for(self, seconds: float) -> bool:
        """True if the server sends nothing and keeps the connection open for `seconds`."""
        try:
            line = self.read_line(seconds)
        except TimeoutError:
            return not self._buffer
        except EOFError:
            return False
        self._buffer = line.encode() + b"\r\n" + self._buffer  # unread: the caller may want it
        return False


def client_context(ca_file: Path | None) -> ssl.SSLContext:
    """A client TLS context: verifying against `ca_file`, or verifying nothing (to see any certificate)."""
    if ca_file is None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    return ssl.create_default_context(cafile=str(ca_file))


# -- the syslog sink --------------------------------------------------------------------


class _SyslogSink:
    """A datagram socket standing in for /dev/log, each message appended to `log` as a line."""

    def __init__(self, socket_path: Path, log: Path) -> None:
        self.log = log
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            self.sock.bind(str(socket_path))
            socket_path.chmod(0o666)  # syslog(3) in processes running as cyrus sends here
        except OSError:
            self.sock.close()
            raise
        self.sock.settimeout(0.1)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"cyrus-syslog {socket_path}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with self.log.open("ab", buffering=0) as out:
            while not self._stop.is_set():
                try:
                    message = self.sock.recv(65536)
                except TimeoutError:
                    continue
                except OSError:
                    return
                out.write(message.rstrip(b"\n") + b"\n")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


# -- the server ---------------------------------------------------------------------------


class CyrusServer:
    """master with imap (STARTTLS), imaps, pop3, lmtp (inet and unix) and a maxchild=1 imap on 127.0.0.1.

    Paths: `imapd_conf`, `cyrus_conf`, `configdirectory` (lib: mailboxes.db, the sockets),
    `partition` (the spool), `log` (everything Cyrus sent to syslog), `master_log` (master's
    stdout and stderr), `lmtp_socket`, `master_metrics`. The server certificate is a copy in
    `tls_cert`/`tls_key` (use_cert() replaces it), so faults on it never touch `certs`.
    User `probe` (any password) has an INBOX holding a message; `cyrus` (any password) is admin.

    promstatsd is off by default: it dies and is respawned ten times a second while
    mailboxes.db is unreadable, filling the log with lines no probe caused.
    """

    def __init__(
        self, root: Path, certs: Certs, *, uses: int | None = 1, autocreate: bool = False, promstatsd: bool = False
    ) -> None:
        self.root = root
        self.certs = certs
        self.imapd_conf = root / "imapd.conf"
        self.cyrus_conf = root / "cyrus.conf"
        self.configdirectory = root / "lib"
        self.partition = root / "spool"
        self.mailboxes_db = self.configdirectory / "mailboxes.db"
        self.lmtp_socket = self.configdirectory / "socket" / "lmtp"
        self.stats_dir = self.configdirectory / "stats"
        self.master_metrics = self.stats_dir / "master.txt"  # master's own Prometheus text (ready_workers, ...)
        self.metrics_report = self.stats_dir / "report.txt"  # promstatsd's, with promstatsd=True
        self.tls_cert = root / "tls" / "server.crt"
        self.tls_key = root / "tls" / "server.key"
        self.log = root / "syslog.log"
        self.master_log = root / "master.log"
        self.pid_file = root / "master.pid"
        self.ports = CyrusPorts(free_port(), free_port(), free_port(), free_port(), free_port())
        self.user, self.password = USER, PASSWORD
        self.syslog_prefix = f"hvcyrus{self.ports.imap}"
        self.promstatsd = promstatsd
        self.uses = uses
        self.autocreate = autocreate
        self.master: subprocess.Popen[bytes] | None = None
        self._sink: _SyslogSink | None = None
        self._uid, self._gid = pwd.getpwnam("cyrus").pw_uid, grp.getgrnam("mail").gr_gid
        self._services: dict[str, str] = {}

    @property
    def master_pid(self) -> int:
        assert self.master is not None, "Cyrus is not running"
        return self.master.pid

    # -- config ---------------------------------------------------------------------

    def configure(self) -> None:
        self.root.chmod(0o755)
        # As Debian's postinst lays out /var/lib/cyrus: without db/, every process logs a DBERROR at start.
        lib_dirs = [self.configdirectory / name for name in ("db", "log", "msg", "proc", "socket", "stats")]
        for directory in (self.configdirectory, *lib_dirs, self.partition, self.root / "sieve"):
            directory.mkdir(parents=True, exist_ok=True)
            os.chown(directory, self._uid, self._gid)
            directory.chmod(0o750)
        self.tls_cert.parent.mkdir(exist_ok=True)
        self.use_cert(self.certs.good, reload=False)
        lib = self.configdirectory
        settings = {
            "configdirectory": lib,
            "defaultpartition": "default",
            "partition-default": self.partition,
            "sievedir": self.root / "sieve",
            "admins": "cyrus",
            "allowplaintext": "yes",
            "sasl_pwcheck_method": "alwaystrue",
            "sasl_mech_list": "PLAIN LOGIN",
            "lmtp_downcase_rcpt": "yes",
            "tls_server_cert": self.tls_cert,
            "tls_server_key": self.tls_key,
            "lmtpsocket": self.lmtp_socket,
            "idlesocket": lib / "socket" / "idle",
            "notifysocket": lib / "socket" / "notify",
            "syslog_prefix": self.syslog_prefix,
            "prometheus_enabled": "yes",
            "prometheus_need_auth": "none",
            "prometheus_update_freq": "1s",
            "prometheus_stats_dir": self.stats_dir,
        }
        if self.autocreate:
            # INBOX made at first login or delivery; LOGIN then reads mailboxes.db (see __init__).
            settings |= {"autocreate_quota": "0", "autocreate_post": "1"}
        self.imapd_conf.write_text("".join(f"{key}: {value}\n" for key, value in settings.items()))
        x = CYRUS_X / "usr/lib/cyrus/bin"
        conf = f"-C {self.imapd_conf}" if self.uses is None else f"-U {self.uses} -C {self.imapd_conf}"
        self._services = {
            "imap": f'cmd="{x}/imapd {conf}" listen="127.0.0.1:{self.ports.imap}" prefork=0',
            "imaps": f'cmd="{x}/imapd -s {conf}" listen="127.0.0.1:{self.ports.imaps}" prefork=0',
            # -T (idle seconds before a preforked process exits; none are) tells its processes from imap's: a
            # service's processes are known by their command line.
            "imaplimited": f'cmd="{x}/imapd -T 30 {conf}" listen="127.0.0.1:{self.ports.imap_limited}" '
                           "prefork=0 maxchild=1",
            "pop3": f'cmd="{x}/pop3d {conf}" listen="127.0.0.1:{self.ports.pop3}" prefork=0',
            "lmtp": f'cmd="{CYRUS_BIN}/lmtpd -a {conf}" listen="127.0.0.1:{self.ports.lmtp}" prefork=0',
            "lmtpunix": f'cmd="{CYRUS_BIN}/lmtpd {conf}" listen="{self.lmtp_socket}" prefork=0',
        }
        self._write_cyrus_conf(self._services)

    def _write_cyrus_conf(self, services: dict[str, str]) -> None:
        daemons = f'  promstatsd cmd="{CYRUS_X}/usr/lib/cyrus/bin/promstatsd -C {self.imapd_conf}"\n'
        text = (
            "START {\n"
            f'  recover cmd="{CYRUS_BIN}/ctl_cyrusdb -r -C {self.imapd_conf}"\n'
            "}\nSERVICES {\n"
            + "".join(f"  {name} {spec}\n" for name, spec in services.items())
            + "}\nDAEMON {\n" + (daemons if self.promstatsd else "") + "}\n"
        )
        self.cyrus_conf.write_text(text)

    def use_cert(self, pair: Pair, *, reload: bool = True) -> None:
        """Serve `pair` from now on, as an operator would: copy it over the configured files, SIGHUP master."""
        for source, target in ((pair.cert, self.tls_cert), (pair.key, self.tls_key)):
            shutil.copyfile(source, target)
            target.chmod(0o644)  # test keys; unreadable_tls_key() takes this away
        if reload:
            self.reload()

    # -- processes ------------------------------------------------------------------

    def start(self) -> None:
        """master in its own mount namespace, then wait until user probe can SELECT INBOX."""
        sink = self.root / "syslog.sock"
        sink.unlink(missing_ok=True)  # a start after a stop
        self._sink = _SyslogSink(sink, self.log)
        overlay = self.root / "devlog"
        (overlay / "upper").mkdir(parents=True, exist_ok=True)
        (overlay / "work").mkdir(exist_ok=True)
        if not (overlay / "upper" / "log").is_symlink():
            (overlay / "upper" / "log").symlink_to(sink)
        master = [str(CYRUS_BIN / "master"), "-C", str(self.imapd_conf), "-M", str(self.cyrus_conf),
                  "-p", str(self.pid_file), "-L", str(self.master_log)]
        script = [
            "set -e",
            # An overlay over /dev hides the mounts under it (/dev/pts, /dev/shm): move them over the top.
            *(f"mkdir -p {shlex.quote(str(overlay / 'keep' / name))} && "
              f"mount --rbind /dev/{name} {shlex.quote(str(overlay / 'keep' / name))}" for name in _dev_submounts()),
            f"mount -t overlay hvcyrus-dev -o lowerdir=/dev,upperdir={overlay / 'upper'},workdir={overlay / 'work'}"
            " /dev",
            *(f"mount --move {shlex.quote(str(overlay / 'keep' / name))} /dev/{name}" for name in _dev_submounts()),
            "exec " + shlex.join(master),
        ]
        # unshare and sh exec: the child's pid is master's. A session of its own: stop() can kill the tree.
        self.master = subprocess.Popen(
            [require_tool("unshare"), "--mount", "--propagation", "private", "--", "/bin/sh", "-c",
             "\n".join(script)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
        )
        self._wait(self._greets, "master did not serve imap")
        self._wait(self.lmtp_socket.exists, f"master did not listen on {self.lmtp_socket}")
        if self._selects():
            return  # started again after stop()
        if not self.autocreate:
            self._create_inbox()
        self.deliver()  # with autocreate, the delivery makes the INBOX
        self._wait(self._selects, "user probe cannot SELECT INBOX")

    def _create_inbox(self) -> None:
        """user/probe made by the admin (cyrus, any password) over IMAP, as cyradm would."""
        with Dialog.connect(self.ports.imap) as dialog:
            dialog.read_line()
            assert dialog.imap("a", "LOGIN cyrus admin")[-1].startswith("a OK"), "admin LOGIN refused"
            created = dialog.imap("b", f"CREATE user/{self.user}")[-1]
            assert created.startswith("b OK"), f"CREATE user/{self.user}: {created}"

    def _greets(self) -> bool:
        try:
            with Dialog.connect(self.ports.imap, timeout=2) as dialog:
                return dialog.read_line().startswith("* OK")
        except (OSError, EOFError):
            return False

    def _selects(self) -> bool:
        with Dialog.connect(self.ports.imap) as dialog:
            dialog.read_line()
            dialog.imap("a", f"LOGIN {self.user} {self.password}")
            return dialog.imap("b", "SELECT INBOX")[-1].startswith("b OK")

    def _wait(self, ready: Callable[[], bool], message: str, timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            assert self.master is not None
            if self.master.poll() is not None:
                stderr = self.master.stderr.read().decode(errors="replace") if self.master.stderr else ""
                master_log = self.master_log.read_text(errors="replace") if self.master_log.exists() else ""
                raise AssertionError(f"{message}: master exited with {self.master.returncode}: {stderr}{master_log}")
            assert time.monotonic() < deadline, f"{message} within {timeout}s; log:\n{self.log_text()[-3000:]}"
            time.sleep(0.02)

    def reload(self) -> None:
        """SIGHUP master (re-read cyrus.conf, recycle idle service processes) and wait until it has."""
        mark = self.log_mark()
        os.kill(self.master_pid, signal.SIGHUP)
        self._wait(lambda: "Services reconfigured" in self.log_text(mark), "master did not reload", 10)

    def stop(self) -> None:
        """SIGTERM master, then SIGKILL whatever is left of its process group.

        master waits for its children after SIGTERM, and a child blocked on a lock (fcntl
        restarts after the signal) never ends: the grace period is short, the group is ours alone.
        """
        if self.master is not None:
            if self.master.poll() is None:
                self.master.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.master.wait(STOP_GRACE)
            group = self.master.pid
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGKILL)
            self.master.wait()
            deadline = time.monotonic() + 10
            while _group_alive(group):  # SIGKILL is delivered, not done: return once every member is dead
                assert time.monotonic() < deadline, f"processes of group {group} outlived SIGKILL"
                time.sleep(0.01)
            if self.master.stderr is not None:
                self.master.stderr.close()
            self.master = None
        if self._sink is not None:
            self._sink.close()
            self._sink = None

    # -- using it ---------------------------------------------------------------------

    def deliver(self, rcpt: str = USER, body: str = "hello from hostvigil's tests") -> list[str]:
        """One message over LMTP (inet); every reply line from the greeting to DATA's end, all asserted 2xx/3xx."""
        replies: list[str] = []
        with Dialog.connect(self.ports.lmtp) as lmtp:
            replies.append(lmtp.read_line())
            for command in ("LHLO localhost", "MAIL FROM:<monitor@localhost>", f"RCPT TO:<{rcpt}>", "DATA"):
                replies += lmtp.smtp(command)
                assert replies[-1][:1] in "23", f"LMTP {command!r}: {replies[-1]}"
            replies += lmtp.smtp(f"Subject: test\r\n\r\n{body}\r\n.")
            assert replies[-1].startswith("250"), f"LMTP delivery: {replies[-1]}"
            lmtp.smtp("QUIT")
        return replies

    def log_mark(self) -> int:
        """Where the log ends now: pass it as `since` to see only what comes after."""
        return self.log.stat().st_size if self.log.exists() else 0

    def log_text(self, since: int = 0) -> str:
        """What Cyrus has sent to syslog (from byte `since`), one message a line: "<PRI>date ident[pid]: text"."""
        if not self.log.exists():
            return ""
        with self.log.open("rb") as log:
            log.seek(since)
            return log.read().decode(errors="replace")

    def log_lines(self, severity_at_most: int = 7, since: int = 0) -> list[str]:
        """Syslog lines at `severity_at_most` or more severe (3: err and worse), by the <PRI> each carries."""
        out = []
        for line in self.log_text(since).splitlines():
            match = re.match(r"<(\d+)>", line)
            if match and int(match.group(1)) % 8 <= severity_at_most:
                out.append(line)
        return out

    def wait_for_log(self, pattern: str, since: int = 0, timeout: float = 10.0) -> str:
        """The first log line (from byte `since`) matching the regex `pattern`, waiting up to `timeout` seconds."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            for line in self.log_text(since).splitlines():
                if regex.search(line):
                    return line
            assert time.monotonic() < deadline, f"no log line matches {pattern!r} within {timeout}s"
            time.sleep(0.05)

    def inbox_index(self, user: str = USER) -> Path:
        """cyrus.index of `user`'s INBOX, where mbpath says it is."""
        out = self._as_cyrus(str(CYRUS_BIN / "mbpath"), "-C", str(self.imapd_conf), "-u", user)
        return Path(out.strip()) / "cyrus.index"

    def _as_cyrus(self, *argv: str) -> str:
        """A Cyrus tool as user cyrus (as root it would leave root-owned files that the server cannot open)."""
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=30, check=False, user=self._uid, group=self._gid,
            extra_groups=[],
        )
        assert done.returncode == 0, f"{argv}: exit {done.returncode}: {done.stderr}"
        return done.stdout

    # -- faults -----------------------------------------------------------------------

    @contextlib.contextmanager
    def corrupt_mailboxes_db(self) -> Iterator[None]:
        """mailboxes.db overwritten in place with 896 random bytes (`head -c 896 /dev/urandom >`); restored after."""
        saved = self.mailboxes_db.read_bytes()
        try:
            self.mailboxes_db.write_bytes(os.urandom(896))
            yield
        finally:
            self.mailboxes_db.write_bytes(saved)

    @contextlib.contextmanager
    def unreadable_tls_key(self) -> Iterator[None]:
        """The TLS key root-only (0600): user cyrus cannot read it."""
        self.tls_key.chmod(0o600)
        try:
            yield
        finally:
            self.tls_key.chmod(0o644)

    @contextlib.contextmanager
    def lock_mailboxes_db(self) -> Iterator[None]:
        """This process holds an exclusive lockf() lock on mailboxes.db, as a stuck Cyrus tool would."""
        fd = os.open(self.mailboxes_db, os.O_RDWR)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    @contextlib.contextmanager
    def occupy_limited(self) -> Iterator[Dialog]:
        """The maxchild=1 service's one process busy with a greeted connection held open (given to the caller)."""
        with Dialog.connect(self.ports.imap_limited) as dialog:
            greeting = dialog.read_line()
            assert greeting.startswith("* OK"), greeting
            yield dialog

    @contextlib.contextmanager
    def failing_service(self, name: str) -> Iterator[None]:
        """Service `name` re-pointed (cyrus.conf + SIGHUP) at /bin/false, which exits at once; put back after.

        Not a program that does not exist: master checks every cmd when it reads cyrus.conf
        and exits (status 78, "cannot find executable for service"), taking every service down.
        """
        services = dict(self._services)
        services[name] = re.sub(r'cmd="[^"]*"', 'cmd="/bin/false"', services[name])
        self._write_cyrus_conf(services)
        self.reload()
        try:
            yield
        finally:
            self._write_cyrus_conf(self._services)
            self.reload()

    @contextlib.contextmanager
    def empty_index(self, user: str = USER) -> Iterator[Path]:
        """`user`'s INBOX cyrus.index truncated to nothing (metadata lost); restored after. Yields its path."""
        index = self.inbox_index(user)
        saved = index.read_bytes()
        try:
            index.write_bytes(b"")
            yield index
        finally:
            index.write_bytes(saved)


def _group_alive(pgid: int) -> bool:
    """Whether a process not yet dead (zombies are dead) is in process group `pgid`."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rpartition(")")[2].split()
            except OSError:
                continue  # gone meanwhile
            if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
                return True
    return False


def _dev_submounts() -> list[str]:
    """Names of the mounts directly under /dev (pts, shm, ...), from this process's mountinfo."""
    names: list[str] = []
    with open("/proc/self/mountinfo") as mountinfo:
        for line in mountinfo:
            point = line.split()[4]
            if point.startswith("/dev/") and "/" not in point[5:] and point[5:] not in names:
                names.append(point[5:])
    return names


@contextlib.contextmanager
def running_cyrus(
    certs: Certs | None = None, *, uses: int | None = 1, autocreate: bool = False, promstatsd: bool = False
) -> Iterator[CyrusServer]:
    """A running Cyrus (see CyrusServer for the options), stopped and removed at the end; skips without root or
    Cyrus, fails instead under HOSTVIGIL_REQUIRE_INTEGRATION=1. `certs` defaults to a fresh set. Its files live
    under /tmp, not in pytest's 0700 tmp_path: user cyrus must reach them."""
    if os.geteuid() != 0:
        _missing("the Cyrus test server needs root (master drops to user cyrus; a private /dev/log needs mounts)")
    for program in (CYRUS_BIN / "master", CYRUS_BIN / "lmtpd"):
        if not program.exists():
            _missing(f"{program} is missing (Debian package cyrus-common; tests/mail/fetch-cyrus.sh installs it)")
    for name in ("imapd", "pop3d", "promstatsd"):
        if not (CYRUS_X / "usr/lib/cyrus/bin" / name).exists():
            _missing(f"{CYRUS_X}/usr/lib/cyrus/bin/{name} is missing (run tests/mail/fetch-cyrus.sh)")
    require_tool("unshare")
    root = Path(tempfile.mkdtemp(prefix="hostvigil-cyrus-"))
    server = CyrusServer(
        root, certs or make_certs(root / "certs"), uses=uses, autocreate=autocreate, promstatsd=promstatsd
    )
    try:
        server.configure()
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def cyrus() -> Iterator[CyrusServer]:
    """A running Cyrus for one test, which may leave it broken."""
    with running_cyrus() as server:
        yield server


@pytest.fixture(scope="module")
def shared_cyrus() -> Iterator[CyrusServer]:
    """A running Cyrus shared by a module's tests, which must leave it as they found it (faults undo themselves)."""
    with running_cyrus() as server:
        yield server
