"""The BMC over IPMI (FreeIPMI or ipmitool): power supplies and redundancy, sensors, the System Event Log."""
