"""ZFS pools through libzfs, zpool JSON or text, or the kstat state: pool and vdev state, errors, scans, space."""
