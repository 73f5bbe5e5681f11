"""kdns: Kubernetes cluster DNS, in Python."""

__version__ = "0.1.0"
