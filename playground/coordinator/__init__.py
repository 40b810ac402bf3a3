"""The coordination node: ZooKeeper's role in the embedded cluster (leader election, durable keys)."""
