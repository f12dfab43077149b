"""A real NUT server for tests: Debian's upsd and dummy-ups driver, on a free port, torn down by the test.

The dummy-ups driver serves a `.dev` file ("name: value" lines, as upsc prints them)
and re-reads it when its mtime changes, in whole seconds: write_dev() moves the mtime
on by a second so that two edits in one second are both seen. upsd and the driver run
in the foreground as children of the test, with config and state in a temp dir
(NUT_CONFPATH, NUT_STATEPATH, NUT_ALTPIDPATH).
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import FIXTURES, free_port, require_tool

NUT_LIB = Path("/lib/nut")
DEV_FIXTURE = FIXTURES / "ups" / "telegraf__upsd_CyberPowerSystems_CP900EPFCLCD__variables.dev"
UPS = "dummy"


def _missing(message: str) -> None:
    if os.environ.get("HOSTVIGIL_REQUIRE_INTEGRATION") == "1":
        pytest.fail(message)
    pytest.skip(message)


class NutServer:
    """upsd on 127.0.0.1:port serving one dummy-ups UPS named "dummy" from `dev`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.conf = root / "conf"
        self.state = root / "state"
        self.dev = root / "dummy.dev"
        self.port = free_port()
        self.ca_file: Path | None = None  # the CA that signed upsd's certificate, after enable_tls()
        self.env = os.environ | {
            "NUT_CONFPATH": str(self.conf), "NUT_STATEPATH": str(self.state), "NUT_ALTPIDPATH": str(self.state),
        }
        self.driver: subprocess.Popen[bytes] | None = None
        self.upsd: subprocess.Popen[bytes] | None = None
        self._upsd_conf: list[str] = []
        self._uid, self._gid = pwd.getpwnam("nut").pw_uid, grp.getgrnam("nut").gr_gid

    # -- config ---------------------------------------------------------------------

    def configure(self, dev_text: str, *, upsd_conf: list[str] | None = None) -> None:
        self.conf.mkdir(parents=True, exist_ok=True)
        self.state.mkdir(exist_ok=True)
        # The nut user reads the config and the .dev file and writes the driver's socket into the state dir.
        _own(self.state, self._uid, self._gid, 0o770)
        _own(self.root, 0, self._gid, 0o750)
        self.write_dev(dev_text)
        self._write("ups.conf", f'[{UPS}]\n  driver = dummy-ups\n  port = {self.dev}\n  desc = "hostvigil test UPS"\n')
        self._write("upsd.users", "[monitor]\n  password = monitor-secret\n  upsmon secondary\n")
        self._write("nut.conf", "MODE=standalone\n")
        self._upsd_conf = upsd_conf or []
        self._write_upsd_conf()

    def _write_upsd_conf(self) -> None:
        lines = [f"LISTEN 127.0.0.1 {self.port}", *self._upsd_conf]
        self._write("upsd.conf", "\n".join(lines) + "\n")

    def _write(self, name: str, text: str) -> None:
        path = self.conf / name
        path.write_text(text)
        _own(path, 0, self._gid, 0o640)

    def write_dev(self, text: str) -> None:
        """Replace the .dev file; its mtime moves on by at least a second so that the driver re-reads it."""
        before = self.dev.stat().st_mtime_ns if self.dev.exists() else 0
        self.dev.write_text(text)
        _own(self.dev, 0, self._gid, 0o640)
        mtime = max(self.dev.stat().st_mtime_ns, before + 1_000_000_000)
        os.utime(self.dev, ns=(mtime, mtime))

    def set_vars(self, **changes: str) -> str:
        """The .dev text with variables replaced (ups_status="OB LB" sets ups.status); written, and returned."""
        lines = self.dev.read_text().splitlines()
        wanted = {name.replace("_", "."): value for name, value in changes.items()}
        out = []
        for line in lines:
            name = line.partition(":")[0]
            out.append(f"{name}: {wanted.pop(name)}" if name in wanted else line)
        out += [f"{name}: {value}" for name, value in wanted.items()]
        text = "\n".join(out) + "\n"
        self.write_dev(text)
        return text

    def enable_tls(self) -> Path:
        """A CA and a server certificate for 127.0.0.1 in an NSS database for upsd (CERTPATH/CERTIDENT).

        Debian builds upsd with Mozilla NSS, not OpenSSL: the key and certificate go
        into an NSS database with certutil and pk12util (libnss3-tools).
        """
        certutil, pk12util, openssl = require_tool("certutil"), require_tool("pk12util"), require_tool("openssl")
        tls = self.root / "tls"
        db = tls / "nssdb"
        db.mkdir(parents=True)

        def run(*argv: str) -> None:
            subprocess.run(argv, check=True, capture_output=True, timeout=60, cwd=tls)

        run(openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
            "-days", "2", "-subj", "/CN=hostvigil test CA")
        run(openssl, "req", "-newkey", "rsa:2048", "-nodes", "-keyout", "upsd.key", "-out", "upsd.csr",
            "-subj", "/CN=localhost")
        (tls / "ext.cnf").write_text(
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
            "keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"
        )
        run(openssl, "x509", "-req", "-in", "upsd.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "upsd.pem", "-days", "2", "-extfile", "ext.cnf")
        run(openssl, "pkcs12", "-export", "-in", "upsd.pem", "-inkey", "upsd.key", "-certfile", "ca.pem",
            "-name", "upsd", "-out", "upsd.p12", "-passout", "pass:p12")
        run(certutil, "-N", "-d", f"sql:{db}", "--empty-password")
        run(pk12util, "-i", "upsd.p12", "-d", f"sql:{db}", "-W", "p12")
        _own(tls, 0, self._gid, 0o750)
        _own(db, 0, self._gid, 0o750)
        for path in db.iterdir():
            _own(path, 0, self._gid, 0o640)
        self._upsd_conf += [f"CERTPATH {db}", 'CERTIDENT "upsd" ""']
        self._write_upsd_conf()
        self.ca_file = tls / "ca.pem"
        return self.ca_file

    # -- processes ------------------------------------------------------------------

    def start(self) -> None:
        self.start_driver()
        self.start_upsd()

    def start_driver(self) -> None:
        self.driver = subprocess.Popen(
            [str(NUT_LIB / "dummy-ups"), "-a", UPS, "-u", "nut", "-F"], env=self.env,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        socket_path = self.state / f"dummy-ups-{UPS}"
        self._wait(socket_path.exists, "dummy-ups did not create its socket", self.driver)

    def start_upsd(self) -> None:
        self.upsd = subprocess.Popen(
            [str(NUT_LIB / "upsd"), "-u", "nut", "-F"], env=self.env,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        self._wait(lambda: self.get("ups.status") not in (None, "WAIT"), "upsd did not serve the UPS", self.upsd)

    def stop_driver(self, sig: int = signal.SIGTERM) -> None:
        _stop(self.driver, sig)
        self.driver = None

    def stop_upsd(self) -> None:
        _stop(self.upsd, signal.SIGTERM)
        self.upsd = None

    def stop(self) -> None:
        if self.driver is not None and self.driver.poll() is None:
            os.kill(self.driver.pid, signal.SIGCONT)  # a test may have stopped it
        self.stop_upsd()
        self.stop_driver()

    def _wait(self, ready: Callable[[], bool], message: str, proc: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + 15
        while not ready():
            assert proc.poll() is None, f"{message}: exited with {proc.returncode}"
            assert time.monotonic() < deadline, message
            time.sleep(0.05)

    # -- talking to upsd --------------------------------------------------------------

    def get(self, name: str) -> str | None:
        """A variable's value as upsd serves it now (None if upsd refuses or is not there); our own tiny client."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=2) as sock:
                sock.sendall(f"GET VAR {UPS} {name}\n".encode())
                reply = sock.makefile("rb").readline().decode()
        except OSError:
            return None
        prefix = f"VAR {UPS} {name} "
        return reply.strip()[len(prefix) + 1:-1] if reply.startswith(prefix) else None

    def wait_for(self, name: str, value: str, timeout: float = 10) -> float:
        """Seconds until upsd serves `value` for `name`."""
        start = time.monotonic()
        while self.get(name) != value:
            assert time.monotonic() - start < timeout, f"upsd did not serve {name}={value!r} within {timeout}s"
            time.sleep(0.05)
        return time.monotonic() - start


def _own(path: Path, uid: int, gid: int, mode: int) -> None:
    """root:nut 0640 for config, as NUT wants it; group access is the point (the daemons run as nut)."""
    os.chown(path, uid, gid)
    os.chmod(path, mode)


def _stop(proc: subprocess.Popen[bytes] | None, sig: int) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextlib.contextmanager
def running_upsd() -> Iterator[NutServer]:
    """A configured, not yet started NUT server, stopped and removed at the end.

    Its files live in a directory of their own under /tmp, not in pytest's tmp_path:
    the driver reads the .dev file as the nut user, who cannot enter pytest's 0700 directories.
    """
    if os.geteuid() != 0:
        _missing("the NUT test server needs root (upsd and the driver drop to the nut user)")
    require_tool("upsdrvctl")  # nut-server
    for program in ("upsd", "dummy-ups"):
        if not (NUT_LIB / program).exists():
            _missing(f"{NUT_LIB / program} is missing (Debian package nut-server)")
    root = Path(tempfile.mkdtemp(prefix="hostvigil-nut-"))
    server = NutServer(root)
    try:
        server.configure(DEV_FIXTURE.read_text())
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def nut_server() -> Iterator[NutServer]:
    """A configured NUT server for one test to change (configure(), enable_tls()) and then start()."""
    with running_upsd() as server:
        yield server


@pytest.fixture
def upsd() -> Iterator[NutServer]:
    """A running NUT server for one test: dummy-ups on the CyberPower fixture, upsd in front of it."""
    with running_upsd() as server:
        server.start()
        yield server


@pytest.fixture(scope="module")
def shared_upsd() -> Iterator[NutServer]:
    """A running NUT server shared by a module's tests, which must leave it as they found it (starting one
    takes upsd and the driver two seconds)."""
    with running_upsd() as server:
        server.start()
        yield server
