"""Reports: pure functions of results/all_runs.csv (never the engine)."""
