"""Power supplies the kernel knows (/sys/class/power_supply): mains, batteries, UPSes; AC lost and restored."""
