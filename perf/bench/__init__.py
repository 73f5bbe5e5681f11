"""Helpers of perf/bench.py: the generated cluster and the dnslib peer."""
