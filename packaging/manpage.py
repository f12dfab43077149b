"""hostvigil.1 from the CLI's own argparse help, so the man page never drifts from `hostvigil --help`.

Run with the built package importable (debian/rules sets PYTHONPATH); the roff goes to stdout.
"""

from __future__ import annotations

import argparse
import datetime
import sys

from hostvigil import __version__
from hostvigil.cli import _parser


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("-", "\\-").replace("\n.", "\n\\&.")


def main() -> None:
    parser = _parser()
    date = datetime.date.today().isoformat()
    out = [f'.TH HOSTVIGIL 1 "{date}" "hostvigil {__version__}" "User Commands"', ".SH NAME",
           "hostvigil \\- " + _escape(parser.description or ""), ".SH SYNOPSIS", _escape(parser.format_usage().strip())]
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    out.append(".SH COMMANDS")
    for name, command in sub.choices.items():
        out += [".SS " + _escape(name), ".nf", _escape(command.format_help().strip()), ".fi"]
    out += [".SH FILES", ".TP", "/etc/hostvigil/hostvigil.toml", "the configuration (a conffile)", ".TP",
            "/var/lib/hostvigil", "snapshots, crash reports and the boot history", ".TP",
            "/usr/share/hostvigil/prometheus", "alert rules and their promtool tests", ".SH SIGNALS",
            "SIGTERM and SIGINT stop the agent in order; SIGHUP reads the configuration again."]
    sys.stdout.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
