"""Keras' own metric test-suite, run against Tally's HTTP API (see plugin.py)."""
