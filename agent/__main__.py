"""`python -m hostvigil` and the `hostvigil` script: the stop and reload handlers of `hostvigil run` come first.

The imports behind hostvigil.cli take about a quarter of a second; a SIGTERM or Ctrl-C in that window would
otherwise take the default action and end the agent without a word.
"""

from __future__ import annotations

import sys

from hostvigil.signals import Signals


def main() -> int:
    if sys.argv[1:2] == ["run"]:
        Signals.install_early()
    from hostvigil.cli import main as cli_main  # noqa: PLC0415 - after the handlers, on purpose

    return cli_main()


if __name__ == "__main__":
    sys.exit(main())
