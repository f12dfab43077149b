"""UPSes through NUT's upsd: status flags, battery, load, voltages, and the power events of an outage."""
