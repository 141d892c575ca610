"""Load benchmarks (`make bench`): never part of the test run. See bench/run.py."""
