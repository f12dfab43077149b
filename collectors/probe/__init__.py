"""Packet loss and round-trip times to chosen hosts and the default gateway, probed by the agent itself."""
