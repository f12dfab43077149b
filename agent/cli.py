"""The `hostvigil` command: run, collect, check-config.

Exit status 2 means bad usage or a bad config file, with one line saying
which file, which key and why.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from hostvigil import __version__
from hostvigil.agent import Agent, build_scheduler
from hostvigil.collectors import REGISTRY
from hostvigil.config import DEFAULT_PATH, Config, ConfigError, load, parse_listen
from hostvigil.durable import write_atomically
from hostvigil.logs import setup as setup_logging

log = logging.getLogger("hostvigil")

EXIT_USAGE = 2


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        config = load(args.config, REGISTRY)
        if getattr(args, "listen", None):
            parse_listen(args.listen)
        _check_collector_names(getattr(args, "collector", None) or ())
    except ConfigError as exc:
        print(f"hostvigil: config error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ValueError as exc:
        print(f"hostvigil: --listen: {exc}", file=sys.stderr)
        return EXIT_USAGE
    setup_logging(config.log_level)
    command: str = args.command
    if command == "check-config":
        return _check_config(config)
    if command == "collect":
        return _collect(config, args.collector or (), args.output)
    try:
        return Agent(config, args.listen or config.listen).run()
    except OSError as exc:
        log.error("cannot start: %s", exc)  # noqa: TRY400 - the reason is the message; no traceback
        return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hostvigil", description="Host-health agent for mail hosts, exporting Prometheus metrics."
    )
    parser.add_argument("--version", action="version", version=f"hostvigil {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    config_help = f"config file (default {DEFAULT_PATH}; built-in defaults if it does not exist)"

    run = sub.add_parser("run", help="run the agent and serve /metrics")
    run.add_argument("--config", type=Path, help=config_help)
    run.add_argument("--listen", metavar="ADDR:PORT", help="listen address (overrides [agent] listen)")

    collect = sub.add_parser("collect", help="run one collection round and print or write the exposition")
    collect.add_argument("--config", type=Path, help=config_help)
    collect.add_argument(
        "--collector", action="append", metavar="NAME",
        help="only this collector (repeatable; default: the enabled ones)",
    )
    collect.add_argument(
        "--output", type=Path, metavar="FILE", help="write atomically to FILE (e.g. node_exporter's textfile directory)"
    )

    check = sub.add_parser("check-config", help="validate the config file and exit")
    check.add_argument("--config", type=Path, help=config_help)
    return parser


def _check_collector_names(names: Sequence[str]) -> None:
    unknown = sorted(set(names) - set(REGISTRY))
    if unknown:
        known = ", ".join(REGISTRY)
        raise ConfigError("--collector", "", f"unknown collector {', '.join(unknown)} (known: {known})")


def _check_config(config: Config) -> int:
    enabled = [name for name, c in config.collectors.items() if c.enabled]
    print(f"{config.source}: OK; listen {config.listen}; collectors: {', '.join(enabled) or 'none'}")
    return 0


def _collect(config: Config, only: Sequence[str], output: Path | None) -> int:
    scheduler = build_scheduler(config, only)
    scheduler.run_round()
    body, _ = scheduler.cache.render()
    if output is None:
        sys.stdout.buffer.write(body)
        sys.stdout.flush()
    else:
        try:
            write_atomically(output, body)
        except OSError as exc:
            log.error("cannot write %s: %s", output, exc.strerror)  # noqa: TRY400
            return 1
    failed = [s.name for s in scheduler.cache.states().values() if s.success is False and s.available]
    return 1 if failed else 0
