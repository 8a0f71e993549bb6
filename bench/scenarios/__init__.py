"""One module per scenario; each has `run(sizes) -> ScenarioResult` working on the configured
database, and SIZES for the full and the quick run."""
