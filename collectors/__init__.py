"""Collectors, one module per subsystem (the list is in registry.py), and their pure parsers (parse_*.py)."""
