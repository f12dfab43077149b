"""Hardware monitoring (hwmon): temperatures, fans, voltages, currents, power, alarms; CPU thermal throttling."""
