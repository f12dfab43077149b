"""Every dashboard panel's queries answered by a real Prometheus scraping three real agents (tests/fleet.py).

The hosts differ as mail hosts do. mail1 has a degraded md array, a failing SMART disk, ZFS pools
(zpool's JSON), a MegaRAID controller, a Dell BMC, a bond, a real UPS (upsd, dummy-ups), a real
Dovecot, a kernel soft lockup written to /dev/kmsg, and it crashed (a kernel panic in pstore)
before its current boot; during the run its UPS goes on battery and its eth0 loses its carrier.
mail2 shares the UPS and has a scrubbed ZFS pool (zpool's text), an HP BMC, laptop batteries, a
real Postfix and a mail endpoint that refuses. mail3 is a VM with only kstat ZFS and no BMC or
disks to read. Every host reads this machine's own /proc where the captures have none (limits,
pressure, the mail daemons' processes). Prometheus
scrapes them with the shipped alert and recording rules, and every query of every panel runs
through its HTTP API with the dashboard's variables substituted. A panel answers, or is declared
empty on a healthy host (grafana/dashboards.py, EMPTY_ON_HEALTHY) with its reason, and then it
must answer here, where the fleet is not healthy. The same answers draw each dashboard's preview
(tests/grafana_preview.py) into the test's output; HOSTVIGIL_UPDATE_PREVIEWS=1 copies them to docs/ for the
README.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from grafana import dashboards
from grafana.dashboards import EMPTY_ON_HEALTHY
from tests.conftest import FIXTURES, free_port
from tests.fleet import BOOTS, JOB, RULES_DIR, FleetHost, Prometheus, tools, write_file
from tests.grafana_preview import draw
from tests.mail.certs import make_certs
from tests.mail.servers import USER, running_dovecot, running_postfix
from tests.ups.nut import running_upsd

ROOT = Path(__file__).parent.parent
GRAFANA = ROOT / "grafana"
DOCS = ROOT / "docs"
NETWORK = FIXTURES / "network"
SOFT_LOCKUP = "BUG: soft lockup - CPU#1 stuck for 23s! [kworker/1:2:3341]"

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="the fleet's upsd and Dovecot drop privileges, and a kernel event "
                                                 "is written to /dev/kmsg: needs root"),
]


def substitute(expr: str, instance: str) -> str:
    """The query as Grafana sends it for `instance` (a regex: one host, or several joined by |)."""
    return dashboards.substitute(expr, job=JOB, instance=instance)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    root = tmp_path_factory.mktemp("fleet")
    certs = make_certs(root / "certs")
    with running_upsd() as upsd, running_dovecot(certs) as dovecot, running_postfix(certs, dovecot) as postfix:
        upsd.start()
        password = root / "probe.password"
        password.write_text(dovecot.password + "\n")
        common = {"probe": {"gateway": False, "targets": ["127.0.0.1"]}, "smart": {"scan": False}}
        mail1 = FleetHost("mail1", root / "mail1", ["procfs-md", "node-exporter-sys", "edac-f17h", "net-procfs",
                                                     "node-exporter-net"], {
            **common,
            "smart": {"scan": False, "devices": ["/dev/sda", "/dev/sdb usbjmicron", "/dev/sdc", "/dev/nvme0"]},
            "ups": {"server": f"127.0.0.1:{upsd.port}"},
            "ipmi": {"tool": "freeipmi"},
            "mail": {
                "discover": False, "user": USER, "password_file": str(password), "ca_file": str(dovecot.certs.ca_file),
                "endpoints": [f"imap://127.0.0.1:{dovecot.imap_port}", f"imaps://127.0.0.1:{dovecot.imaps_port}",
                              f"pop3://127.0.0.1:{dovecot.pop3_port}", f"lmtp://127.0.0.1:{dovecot.lmtp_port}"],
                "rcpt": f"{USER}@mail.test", "daemons": ["dovecot"], "dovecot_config": str(dovecot.config),
                "log_file": str(dovecot.log), "postfix_config": str(root / "none"),
            },
        })
        mail2 = FleetHost("mail2", root / "mail2", ["procfs-testdata", "telegraf-temp-with_device_tag",
                                                     "procfs-sys-power", "net-hotsos-kubernetes"], {
            **common,
            "smart": {"scan": False, "devices": ["/dev/nvme1"]},
            "ups": {"server": f"127.0.0.1:{upsd.port}"},
            "ipmi": {"tool": "ipmitool"},
            "mail": {
                "discover": False, "daemons": ["postfix"], "ca_file": str(postfix.certs.ca_file),
                "rcpt": f"{USER}@mail.test", "postfix_config": str(postfix.config_dir),
                "log_file": str(postfix.maillog),
                "endpoints": [f"smtp://127.0.0.1:{postfix.smtp_port}", f"imap://127.0.0.1:{_closed_port()}"],
            },
        })
        mail3 = FleetHost("mail3", root / "mail3", ["hotsos-kubernetes", "telegraf-zfs-issue_17578", "net-vm"], {
            **common, "zfs": {"backend": "kstat"}, "ups": {"server": f"127.0.0.1:{_closed_port()}"},
            "mail": {"discover": False, "postfix_config": str(root / "none"), "log_file": str(root / "none.log")},
        })
        hosts = [mail1, mail2, mail3]
        for host, zpool, ipmi in ((mail1, "json", "freeipmi"), (mail2, "text_scrub", "ipmitool"), (mail3, "", "")):
            host.prepare(BOOTS[0])
            if zpool:
                tools(host.bin_dir, zpool=zpool, ipmi=ipmi)
        bonding = mail1.root / "host/proc/net/bonding"
        bonding.mkdir(parents=True, exist_ok=True)
        shutil.copy(NETWORK / "telegraf__bond_test.go__sampleTestAB", bonding / "bond0")
        (mail1.root / "host/dev/kmsg").symlink_to("/dev/kmsg")
        # mail1's previous boot ended in a kernel panic: the agent ran, the host died, the agent starts again.
        mail1.start()
        mail1.crash()
        prometheus = Prometheus(root, hosts, sorted(RULES_DIR.glob("*.yml")))
        try:
            for host in hosts:
                host.start()
            with open("/dev/kmsg", "w") as kmsg:
                kmsg.write(SOFT_LOCKUP + "\n")
            prometheus.start()
            prometheus.wait('hostvigil_crash_reports_total{cause="kernel_panic"} > 0')
            prometheus.wait('hostvigil_kernel_events_total{class="soft_lockup"} > 0')
            prometheus.wait('count(hostvigil_collector_success) >= 50')
            # Then the power goes (the UPS on battery), and mail1's eth0 loses its carrier once.
            upsd.set_vars(ups_status="OB DISCHRG")
            for name, value in (("carrier_down_count", 2), ("carrier_up_count", 2), ("carrier_changes", 4)):
                write_file(mail1.root / "host/sys/class/net/eth0" / name, f"{value}\n")
            prometheus.wait('hostvigil_ups_status{flag="OB"} == 1')
            prometheus.wait('increase(hostvigil_network_carrier_down_changes_total{instance="mail1"}[1m]) > 0')
            time.sleep(5)  # rates over a few scrapes, and the recording rules evaluated on them
            yield prometheus
        finally:
            prometheus.stop()
            for host in hosts:
                host.stop()


def _closed_port() -> int:
    return free_port()  # nothing listens there: connections are refused


def test_every_panel_answers_or_is_declared_empty_with_a_reason(fleet: Prometheus, tmp_path: Path) -> None:
    """A panel answers when one of its queries returns data, as Grafana then draws something. Each host-dashboard
    panel answers for mail1 or mail2, and for mail3 (a VM with little to show) too unless declared empty there with
    its reason; the fleet dashboard answers for the whole fleet."""
    panels, declared, failures = 0, set(), []
    for dashboard, title, exprs in dashboards.panels():
        panels += 1
        instances = ["mail1|mail2|mail3"] if dashboard == dashboards.FLEET_UID else ["mail1", "mail2", "mail3"]
        answered = []
        for instance in instances:
            for expr in exprs:
                query = substitute(expr, instance)
                try:
                    result = fleet.query(query)
                except (OSError, AssertionError) as exc:  # a query Prometheus refuses is a failure of its own
                    failures.append(f"{dashboard}: {title}: {query}: {exc}")
                    continue
                if result:
                    answered.append(instance)
                    break
        if not answered or answered == ["mail3"]:
            failures.append(f"{dashboard}: {title}: no data for {' nor '.join(instances[:2])}: {exprs}")
        elif dashboard != dashboards.FLEET_UID and "mail3" not in answered:
            if title in EMPTY_ON_HEALTHY:
                declared.add(f"{title}: {EMPTY_ON_HEALTHY[title]} (answers on {', '.join(answered)})")
            else:
                failures.append(f"{dashboard}: {title}: no data for mail3, and not declared empty: {exprs}")
    print(f"{panels} panels and annotations; empty on mail3 as declared: {len(declared)}")
    for line in sorted(declared):
        print("  " + line)
    assert not failures, "\n".join(failures)
    _previews(fleet, tmp_path)


def _previews(fleet: Prometheus, tmp_path: Path) -> None:
    end = time.time()
    for path in sorted(GRAFANA.glob("*.json")):
        dashboard = json.loads(path.read_text())
        instance = "mail1|mail2|mail3" if "fleet" in path.name else "mail1"
        out = draw(
            dashboard,
            lambda expr, i=instance: fleet.query(substitute(expr, i)),
            lambda expr, i=instance: fleet.query_range(substitute(expr, i), end - 120, end, 2),
            tmp_path / f"{path.stem}.png",
        )
        print(f"preview: {out}")
        if os.environ.get("HOSTVIGIL_UPDATE_PREVIEWS") == "1":  # the README's pictures, redrawn on request
            DOCS.mkdir(exist_ok=True)
            shutil.copy(out, DOCS / out.name)
