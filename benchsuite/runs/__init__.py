"""What to run, before anything runs (no torch): a run's identity, matrices, equal-budget tuning,
sequential seeds, what seeds vary, and the papers' claims as data."""
