"""Storage: volumes, replicas, snapshots and backups (the storage node's building blocks)."""
