"""The `hostvigil` command: run, collect, snapshot, report, check-config.

Exit status 2 means bad usage or a bad config file, with one line saying
which file, which key and why.
"""

from __future__ import annotations

import argparse
import dataclasses
import http.client
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from urllib.parse import urlencode

from hostvigil import __version__
from hostvigil.config import DEFAULT_PATH, Config, ConfigError, load, parse_listen
from hostvigil.daemon import Agent, build_scheduler, state_dir, wanted_collectors
from hostvigil.durable import write_atomically
from hostvigil.forensics import report as crashreport
from hostvigil.forensics.boots import read_boot_id
from hostvigil.forensics.service import Forensics, ReportStore
from hostvigil.logs import setup as setup_logging
from hostvigil.registry import REGISTRY
from hostvigil.webconfig import load as load_web_config

log = logging.getLogger("hostvigil")

EXIT_USAGE = 2


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        config = load(args.config, REGISTRY)
        if getattr(args, "listen", None):
            parse_listen(args.listen)
        if getattr(args, "web_config_file", None):
            config = dataclasses.replace(config, web_config_file=args.web_config_file)
        if args.command in ("run", "check-config") and config.web_config_file:
            load_web_config(config.web_config_file)
        _check_collector_names(getattr(args, "collector", None) or ())
    except ConfigError as exc:
        print(f"hostvigil: config error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ValueError as exc:
        print(f"hostvigil: --listen: {exc}", file=sys.stderr)
        return EXIT_USAGE
    setup_logging(config.log_level)
    commands: dict[str, Callable[[], int]] = {
        "run": lambda: _run(config, args.listen or config.listen),
        "check-config": lambda: _check_config(config),
        "collect": lambda: _collect(config, args.collector or (), args.output),
        "snapshot": lambda: _snapshot(config, args.reason),
        "report": lambda: _report(config, args.id, args.list, args.json),
    }
    return commands[args.command]()


def _run(config: Config, listen: str) -> int:
    try:
        return Agent(config, listen).run()
    except OSError as exc:
        log.error("cannot start: %s", exc)
        return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hostvigil", description="Host-health agent for mail hosts, exporting Prometheus metrics."
    )
    parser.add_argument("--version", action="version", version=f"hostvigil {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    config_help = f"config file (default {DEFAULT_PATH}; built-in defaults if it does not exist)"
    web_config_help = "exporter toolkit web config (YAML: TLS, basic auth); overrides [agent] web_config_file"

    run = sub.add_parser("run", help="run the agent and serve /metrics")
    run.add_argument("--config", type=Path, help=config_help)
    run.add_argument("--listen", metavar="ADDR:PORT", help="listen address (overrides [agent] listen)")
    run.add_argument("--web-config-file", type=Path, metavar="FILE", help=web_config_help)

    collect = sub.add_parser("collect", help="run one collection round and print or write the exposition")
    collect.add_argument("--config", type=Path, help=config_help)
    collect.add_argument(
        "--collector", action="append", metavar="NAME",
        help="only this collector (repeatable; default: the enabled ones)",
    )
    collect.add_argument(
        "--output", type=Path, metavar="FILE", help="write atomically to FILE (e.g. node_exporter's textfile directory)"
    )

    snapshot = sub.add_parser("snapshot", help="write a crash snapshot now (through the running agent if there is one)")
    snapshot.add_argument("--config", type=Path, help=config_help)
    snapshot.add_argument("--reason", default="manual", help="why, kept in the snapshot (default: manual)")

    report = sub.add_parser("report", help="show the report of the latest unclean reboot, or of ID")
    report.add_argument("--config", type=Path, help=config_help)
    report.add_argument("id", nargs="?", help="report (previous boot) id or a unique prefix of it")
    report.add_argument("--list", action="store_true", help="list all reports, newest first")
    report.add_argument("--json", action="store_true", help="the report as JSON")

    check = sub.add_parser("check-config", help="validate the config file and exit")
    check.add_argument("--config", type=Path, help=config_help)
    check.add_argument("--web-config-file", type=Path, metavar="FILE", help=web_config_help)
    return parser


def _check_collector_names(names: Sequence[str]) -> None:
    unknown = sorted(set(names) - set(REGISTRY))
    if unknown:
        known = ", ".join(REGISTRY)
        raise ConfigError("--collector", "", f"unknown collector {', '.join(unknown)} (known: {known})")


def _check_config(config: Config) -> int:
    enabled = [name for name, c in config.collectors.items() if c.enabled]
    web = f"; web config {config.web_config_file} OK" if config.web_config_file else ""
    print(f"{config.source}: OK; listen {config.listen}{web}; collectors: {', '.join(enabled) or 'none'}")
    return 0


def _collect(config: Config, only: Sequence[str], output: Path | None) -> int:
    scheduler = build_scheduler(config, wanted_collectors(config, only, daemon=False))
    scheduler.run_round()
    body, _ = scheduler.cache.render()
    if output is None:
        sys.stdout.buffer.write(body)
        sys.stdout.flush()
    else:
        try:
            write_atomically(output, body)
        except OSError as exc:
            log.error("cannot write %s: %s", output, exc.strerror)
            return 1
    failed = [s.name for s in scheduler.cache.states().values() if s.success is False and s.available]
    return 1 if failed else 0


def _snapshot(config: Config, reason: str) -> int:
    """Ask the running agent (it has the kernel event tail); without one, take a snapshot here."""
    host, port = parse_listen(config.listen)
    host = "127.0.0.1" if host in ("", "0.0.0.0") else "::1" if host == "::" else host  # noqa: S104 - a wildcard to map
    try:
        conn = http.client.HTTPConnection(host, port, timeout=30)
        conn.request("POST", "/-/snapshot?" + urlencode({"reason": reason}))
        response = conn.getresponse()
        body = response.read().decode(errors="replace").strip()
        conn.close()
    except OSError:
        return _snapshot_here(config, reason)
    if response.status != 200:
        log.error("the agent on %s:%d did not write a snapshot: %s", host, port, body)
        return 1
    print(body)
    return 0


def _snapshot_here(config: Config, reason: str) -> int:
    try:
        directory = state_dir(config)
        boot_id = read_boot_id(config.paths.proc)
    except OSError as exc:
        log.error("cannot take a snapshot: %s", exc)
        return 1
    scheduler = build_scheduler(config, wanted_collectors(config, daemon=False))
    scheduler.run_round()
    collectors = {name: job.collector for name, job in scheduler.jobs.items()}
    forensics = Forensics(
        config, state_dir=directory, boot_id=boot_id, collectors=collectors, states=scheduler.cache.states
    )
    path = forensics.snapshotter.write_now("manual", reason)
    if path is None:
        return 1
    print(path)
    return 0


def _report(config: Config, report_id: str | None, listing: bool, as_json: bool) -> int:
    try:
        reports = ReportStore(state_dir(config))
    except OSError as exc:
        log.error("cannot read reports: %s", exc)
        return 1
    if listing:
        for item in reports.all():
            print(f"{item['id']}  {crashreport.iso(item['last_seen_alive'])}  {item['cause']}")
        return 0
    found = reports.find(report_id) if report_id else next(iter(reports.all()), None)
    if found is None:
        missing = f"{report_id} (or the prefix is not unique)" if report_id else "yet"
        print(f"hostvigil: no crash report {missing}", file=sys.stderr)
        return 1
    print(json.dumps(found, indent=1) if as_json else crashreport.render(found), end="" if not as_json else "\n")
    return 0
