"""Property-based proofs that actorq's leases cannot lie, on every backend and event loop."""
