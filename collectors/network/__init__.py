"""Network interfaces and the stack above them: link and carrier changes, NIC errors, bonds, softnet, TCP."""
