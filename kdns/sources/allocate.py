"""ClusterIPs for Services written without one, as the API server would assign them.

Manifests written for `kubectl apply` usually leave `spec.clusterIP` out; in a cluster the
API server picks one from the service CIDR. kdns does the same so such a Service resolves:
the address is derived from a hash of namespace/name (stable across restarts and reloads),
skipping addresses already handed out. Allocation stays away from the first /24 of the
range (10.96.0.0/24, fd00:10:96::/120), where hand-written addresses such as 10.96.0.10
usually live.
"""

from __future__ import annotations

import hashlib
import ipaddress

V4_RANGE = ipaddress.ip_network("10.96.0.0/12")  # kubeadm's default service CIDR
V6_RANGE = ipaddress.ip_network("fd00:10:96::/112")  # kind's default IPv6 service CIDR
_SKIP = 256  # the first /24 (or 256 addresses) is left to hand-written addresses


class ClusterIPAllocator:
    def __init__(self) -> None:
        self._given: dict[tuple[str, str, int], str] = {}
        self._used: set[str] = set()

    def reserve(self, ips: tuple[str, ...]) -> None:
        """Addresses written in manifests: never hand them out."""
        self._used.update(ips)

    def __call__(self, namespace: str, name: str, families: tuple[int, ...]) -> tuple[str, ...]:
        return tuple(self._one(namespace, name, family) for family in families)

    def _one(self, namespace: str, name: str, family: int) -> str:
        key = (namespace, name, family)
        if key in self._given:
            return self._given[key]
        network = V4_RANGE if family == 4 else V6_RANGE
        size = network.num_addresses - _SKIP - 1  # keep the broadcast-like last address out
        digest = hashlib.sha256(f"{namespace}/{name}".encode()).digest()
        start = int.from_bytes(digest[:8], "big") % size
        for step in range(size):
            ip = str(network.network_address + _SKIP + (start + step) % size)
            if ip not in self._used:
                self._used.add(ip)
                self._given[key] = ip
                return ip
        raise RuntimeError(f"service range {network} is full")  # pragma: no cover - 1M addresses
