"""Running runs: the engine (one run, its step read top to bottom), the hooks it calls, its state and
checkpoints, and the executors that run many (a local worker pool, a cluster)."""
