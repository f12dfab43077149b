"""Collectors, one package per subsystem (collect.py, metrics.py, parse*.py); see README.md beside this file."""
