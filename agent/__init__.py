"""hostvigil: host-health agent for mail hosts.

This package is the daemon (config, registry, scheduler, event policy, exposition,
forensics, CLI) and, beneath it, the ground floor the collectors build on: collector,
runner, durable, events, sources and procfs. hostvigil.collectors holds the subsystems.
"""

__version__ = "0.1.0"
