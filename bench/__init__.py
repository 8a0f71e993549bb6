"""Benchmarks of the keystore site: `python bench/run.py --help`."""
