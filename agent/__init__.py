"""hostvigil: host-health agent for mail hosts."""

__version__ = "0.1.0"
