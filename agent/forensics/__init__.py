"""Crash forensics: the boot record, the flight recorder of snapshots, the evidence of a crash and its report."""
