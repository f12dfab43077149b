"""The kernel: its log followed live and classified, taint, its own counters, and crash readiness."""
