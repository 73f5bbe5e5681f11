"""Who may ask what, and how often: the recursion allow list and response rate limiting.

* `RecursionAcl`: names kdns would forward (recursion) are only forwarded for clients inside
  the allowed ranges; others get REFUSED (or, for an ExternalName, our CNAME alone). An open
  forwarder is an amplifier for anyone on the Internet.
* `RateLimiter`: BIND-style response rate limiting, simplified: a token bucket per client
  prefix (IPv4 /24, IPv6 /56, as BIND's defaults), refilled at `rate` per second with a
  burst of one second's worth. Over the limit a response is dropped, except every `slip`-th,
  which goes out truncated (TC, no records): a real client retries over TCP, which a spoofed
  source cannot, so a flood from one prefix cannot crowd out the others. UDP only.

Both are pure (the clock is a parameter) and bounded in memory.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict

SEND, DROP, SLIP = 0, 1, 2
MAX_PREFIXES = 100_000  # buckets kept; the least recently seen go first


class RecursionAcl:
    def __init__(self, networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]) -> None:
        self.networks = tuple(networks)
        self._seen: dict[str, bool] = {}
        # The same ranges for the C loop (kdns/_udpbatch.c), which replays replies made from the
        # forwarding cache only to clients inside them: 18 bytes each (family 4 or 6, prefix
        # length, the network address in 16 bytes); None when everyone is allowed.
        self.packed: bytes | None = None
        if self.networks:
            self.packed = b"".join(
                bytes((n.version, n.prefixlen)) + n.network_address.packed.ljust(16, b"\0") for n in self.networks
            )

    def allows(self, client: str | None) -> bool:
        if not self.networks or client is None:
            return True
        verdict = self._seen.get(client)
        if verdict is None:
            try:
                address = ipaddress.ip_address(client.split("%", 1)[0])
            except ValueError:
                return False
            verdict = any(address in network for network in self.networks)
            if len(self._seen) >= MAX_PREFIXES:
                self._seen.clear()
            self._seen[client] = verdict
        return verdict


class RateLimiter:
    def __init__(self, rate: float, slip: int) -> None:
        self.rate = rate
        self.burst = max(1.0, rate)
        self.slip = slip
        self._buckets: OrderedDict[str, list[float]] = OrderedDict()  # prefix -> [tokens, time, held back]
        self.dropped = 0
        self.slipped = 0

    @staticmethod
    def prefix(client: str) -> str:
        if ":" not in client:
            return client.rsplit(".", 1)[0]  # the /24
        try:
            return str(ipaddress.ip_network(f"{client.split('%', 1)[0]}/56", strict=False).network_address)
        except ValueError:
            return client

    def check(self, client: str, now: float) -> int:
        """SEND, DROP or SLIP for one response to `client` at time `now`."""
        key = self.prefix(client)
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= MAX_PREFIXES:
                self._buckets.popitem(last=False)
            bucket = self._buckets[key] = [self.burst, now, 0]
        else:
            self._buckets.move_to_end(key)
            bucket[0] = min(self.burst, bucket[0] + (now - bucket[1]) * self.rate)
            bucket[1] = now
        if bucket[0] >= 1.0:
            bucket[0] -= 1.0
            return SEND
        bucket[2] += 1
        if self.slip and bucket[2] % self.slip == 0:
            self.slipped += 1
            return SLIP
        self.dropped += 1
        return DROP
