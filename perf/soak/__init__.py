"""Helpers of perf/soak.py: the churning cluster and its expected answers, the stub
upstream in a thread, and the bad inputs."""
