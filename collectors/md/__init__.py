"""Linux software RAID (md): array and member states, missing members, sync progress, mismatches."""
