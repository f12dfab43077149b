"""The `hostvigil` command: run, collect, snapshot, report, check-config.

Exit status 2 means bad usage or a bad config file, with one line saying
which file, which key and why.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from hostvigil import __version__
from hostvigil.config import DEFAULT_PATH, Config, ConfigError, load, parse_listen
from hostvigil.control import SOCKET_NAME, lock_holder
from hostvigil.control import request as control_request
from hostvigil.daemon import Agent, build_scheduler, state_dir, state_dir_candidates, wanted_collectors, web_config
from hostvigil.durable import write_atomically
from hostvigil.footprint import one_heap
from hostvigil.forensics.boots import read_boot_id
from hostvigil.forensics.service import Forensics, ReportStore
from hostvigil.forensics.snapshots import MAX_MANUAL_REASON, printable
from hostvigil.logs import setup as setup_logging
from hostvigil.registry import REGISTRY
from hostvigil.scheduler import Scheduler
from hostvigil.signals import Signals

log = logging.getLogger("hostvigil")

EXIT_USAGE = 2
EXIT_NO_AGENT = 3  # `hostvigil status`: no agent running or reachable here (2 is a usage or config error)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # First of all (hostvigil.__main__ installs them earlier still): a stop asked for while the config loads or the
    # agent is built is kept, not lost.
    signals = Signals.install() if args.command == "run" else None
    if getattr(args, "listen", None):
        try:
            parse_listen(args.listen)
        except ValueError as exc:
            print(f"hostvigil: --listen: {exc}", file=sys.stderr)
            return EXIT_USAGE
    try:
        config = load(args.config, REGISTRY)
        if getattr(args, "web_config_file", None):
            config = dataclasses.replace(config, web_config_file=args.web_config_file)
        if args.command in ("run", "check-config") and config.web_config_file:
            web_config(config.web_config_file)
        _check_collector_names(getattr(args, "collector", None) or ())
    except ConfigError as exc:
        for problem in exc.problems:  # every problem of the file, one line each
            print(f"hostvigil: config error: {problem}", file=sys.stderr)
        return EXIT_USAGE
    setup_logging(config.log_level)
    commands: dict[str, Callable[[], int]] = {
        "run": lambda: _run(config, args.listen or config.listen, signals, lambda: _reload(args)),
        "check-config": lambda: _check_config(config),
        "collect": lambda: _collect(config, args.collector or (), args.output),
        "snapshot": lambda: _snapshot(config, args.reason),
        "report": lambda: _report(config, args.id, args.list, args.json, args.timeline),
        "status": lambda: _status(config, args.json),
    }
    try:
        status = commands[args.command]()
        sys.stdout.flush()  # here, not at exit, so that a reader gone away is handled below
    except BrokenPipeError:  # `hostvigil report --json | head`: the reader has what it wanted
        # Python would report the pipe again when it flushes stdout at exit: point stdout at nothing first.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return status


def _reload(args: argparse.Namespace) -> Config:
    """The config as `run` read it at start, read again (SIGHUP): the same file and the same overrides."""
    config = load(args.config, REGISTRY)
    if args.web_config_file:
        config = dataclasses.replace(config, web_config_file=args.web_config_file)
    if args.listen:
        config = dataclasses.replace(config, listen=args.listen)
    return config


def _run(config: Config, listen: str, signals: Signals | None, reload: Callable[[], Config]) -> int:
    one_heap()  # before the agent starts a thread
    try:
        return Agent(config, listen, signals, reload).run()
    except OSError as exc:  # the message names the address or directory; the errno number adds nothing
        log.error("cannot start: %s", exc.strerror if exc.filename is None and exc.strerror else exc)
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

    snapshot = sub.add_parser(
        "snapshot",
        help="write a crash snapshot now: through the running agent's control socket, here only if no agent runs",
    )
    snapshot.add_argument("--config", type=Path, help=config_help)
    snapshot.add_argument(
        "--reason", default="manual",
        help="why, kept in the snapshot (printable, at most 200 characters; default: manual)",
    )

    report = sub.add_parser(
        "report", help="show the report of the latest unclean reboot, or of ID",
        description="Exit status: 0 when a report was shown or listed, 1 when there is none (or ID matches none).",
    )
    report.add_argument("--config", type=Path, help=config_help)
    report.add_argument("id", nargs="?", help="report (previous boot) id or a unique prefix of it")
    report.add_argument("--list", action="store_true", help="list all reports, newest first")
    report.add_argument("--json", action="store_true", help="the report (with --list: every report) as JSON")
    report.add_argument("--timeline", action="store_true",
                        help="also show every event the sources recorded, oldest first, with source and time")

    status = sub.add_parser(
        "status", help="what the running agent sees: problems, collectors, crash evidence, the last crash",
        description="Asked of the running agent over its control socket (its user or root). Exit status: 0 all "
                    "well, 1 a problem or a failing collector, 2 a usage or config error, 3 no agent running or "
                    "reachable here.",
    )
    status.add_argument("--config", type=Path, help=config_help)
    status.add_argument("--json", action="store_true", help="as JSON, for scripts")

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
    try:
        directory: Path | None = state_dir(config)
    except OSError as exc:  # the kernel event counts then start anew at each run; the exposition is still written
        log.warning("textfile mode without a state directory: %s", exc)
        directory = None
    scheduler = _one_shot_scheduler(config, wanted_collectors(config, only, daemon=False), directory)
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


def _one_shot_scheduler(config: Config, names: Sequence[str], directory: Path | None) -> Scheduler:
    """A scheduler for one round in this process (textfile mode, a snapshot without an agent): its collectors are
    told so instead of being started."""
    scheduler = build_scheduler(config, names)
    for job in scheduler.jobs.values():
        job.collector.one_shot(directory)
    return scheduler


def _snapshot(config: Config, reason: str) -> int:
    """Through the running agent (it has the kernel event tail), over its control socket; here only when no agent
    holds the state directory. An agent that cannot be reached or refuses is an error, never a silent fall-back."""
    try:
        found = _running_agent(config)
    except OSError as exc:
        log.error("no snapshot taken: cannot tell whether an agent is running: %s", exc)
        return 1
    if found is None:
        return _snapshot_here(config, reason)
    directory, pid = found
    sock = directory / SOCKET_NAME
    agent = f"pid {pid}" if pid else "pid not known yet"
    try:
        reply = control_request(sock, {"command": "snapshot", "reason": reason})
    except (OSError, ValueError) as exc:
        log.error(
            "no snapshot taken: an agent (%s) holds %s, but its control socket %s cannot be reached: %s",
            agent, directory, sock, (exc.strerror if isinstance(exc, OSError) else None) or exc,
        )
        return 1
    if not reply["ok"]:
        log.error("no snapshot taken: the agent (pid %s) at %s refused: %s", reply.get("pid", pid), sock,
                  reply.get("error"))
        return 1
    print(f"through the agent (pid {reply.get('pid', pid)}) at {sock}: {reply.get('path')}")
    return 0


def _status(config: Config, as_json: bool) -> int:
    """The running agent's own view (hostvigil.status), over its control socket."""
    try:
        found = _running_agent(config)
    except OSError as exc:
        log.error("cannot tell whether an agent is running: %s", exc)
        return EXIT_NO_AGENT
    if found is None:
        print("hostvigil: no agent is running here (no state directory of this config is held)", file=sys.stderr)
        return EXIT_NO_AGENT
    directory, pid = found
    try:
        reply = control_request(directory / SOCKET_NAME, {"command": "status"})
    except (OSError, ValueError) as exc:
        log.error("the agent (pid %s) holds %s, but its control socket cannot be reached: %s", pid or "not known yet",
                  directory, (exc.strerror if isinstance(exc, OSError) else None) or exc)
        return EXIT_NO_AGENT
    if not reply.get("ok"):
        log.error("the agent (pid %s) refused: %s", reply.get("pid", pid), reply.get("error"))
        return EXIT_NO_AGENT
    found_status = reply["status"]
    from hostvigil import status as agent_status  # noqa: PLC0415 - what `run` does not need is not loaded

    print(json.dumps(found_status, indent=1) if as_json else agent_status.text(agent_status.from_dict(found_status)),
          end="\n" if as_json else "")
    return 0 if found_status["healthy"] else 1


def _running_agent(config: Config) -> tuple[Path, int] | None:
    """The state directory an agent holds, and its pid; None when no directory this config could use is held.
    OSError when one cannot be looked into (another user's): its agent may be running."""
    unreadable = []
    for directory in state_dir_candidates(config):
        try:
            pid = lock_holder(directory)
        except FileNotFoundError:
            continue
        except OSError as exc:
            unreadable.append(f"{directory}: {exc.strerror or exc} (its agent answers its own user and root only)")
            continue
        if pid is not None:
            return directory, pid
    if unreadable:
        raise OSError("; ".join(unreadable))
    return None


def _snapshot_here(config: Config, reason: str) -> int:
    try:
        directory = state_dir(config)
        boot_id = read_boot_id(config.paths.proc)
    except OSError as exc:
        log.error("cannot take a snapshot: %s", exc)
        return 1
    scheduler = _one_shot_scheduler(config, wanted_collectors(config, daemon=False), directory)
    scheduler.run_round()
    collectors = {name: job.collector for name, job in scheduler.jobs.items()}
    forensics = Forensics(
        config, state_dir=directory, boot_id=boot_id, collectors=collectors, states=scheduler.cache.states
    )
    path = forensics.snapshotter.write_now("manual", printable(reason, MAX_MANUAL_REASON))
    if path is None:
        return 1
    print(f"no agent running here; wrote {path}")
    return 0


def _report(config: Config, report_id: str | None, listing: bool, as_json: bool, timeline: bool) -> int:
    from hostvigil.forensics import report as crashreport  # noqa: PLC0415 - what `run` does not need

    try:
        reports = ReportStore(state_dir(config))
    except OSError as exc:
        log.error("cannot read reports: %s", exc)
        return 1
    if listing:
        items = list(reports.all())
        if as_json:
            print(json.dumps(items, indent=1))
        else:
            for item in items:
                print(crashreport.list_line(item))
        if not items:
            print("hostvigil: no crash report yet", file=sys.stderr)
        return 0 if items else 1
    found = reports.find(report_id) if report_id else next(iter(reports.all()), None)
    if found is None:
        missing = f"{report_id} (or the prefix is not unique)" if report_id else "yet"
        print(f"hostvigil: no crash report {missing}", file=sys.stderr)
        return 1
    shown = json.dumps(found, indent=1) + "\n" if as_json else crashreport.render(found, timeline=timeline)
    print(shown, end="")
    return 0
