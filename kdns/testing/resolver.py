"""`pod_resolver`: resolve names in this process as a pod in a namespace would, through a
kdns test server (dnspython's override of the socket module's resolver). No pytest here.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kdns.testing.server import KdnsServer


@contextlib.contextmanager
def pod_resolver(server: KdnsServer, namespace: str | None = None, *, timeout: float = 2.0) -> Iterator[Any]:
    """Resolve names in this process as a pod in `namespace` (default: the server's) would,
    through `server`.

    `socket.getaddrinfo`, `gethostbyname` and friends go to the kdns server with a pod's
    search list (`<ns>.svc.<zone> svc.<zone> <zone>`, ndots:5), using dnspython's
    `override_system_resolver`. No root, no port 53, nothing outside the process changes.

    As a pod's resolver reads its /etc/hosts before DNS, the names of this machine's
    /etc/hosts (read when the block starts) and its own host name resolve as the machine
    resolves them; every other name goes to kdns.
    Nested, the inner one applies inside its block and the outer one again after it.
    """
    import dns.name
    import dns.resolver

    if namespace is None:
        namespace = server.namespace
    before = {name: getattr(socket, name) for name in _SOCKET_FUNCTIONS}

    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = [server.host]
    resolver.port = server.port
    zone = server.zone
    resolver.search = [dns.name.from_text(s) for s in (f"{namespace}.svc.{zone}", f"svc.{zone}", zone)]
    resolver.ndots = 5
    resolver.use_search_by_default = True
    resolver.timeout = resolver.lifetime = timeout
    dns.resolver.override_system_resolver(resolver)
    overridden = {name: getattr(socket, name) for name in ("getaddrinfo", "gethostbyname", "gethostbyname_ex")}
    local = _local_names()
    socket.getaddrinfo = _pod_getaddrinfo(overridden["getaddrinfo"], local)
    socket.gethostbyname = _local_first(overridden["gethostbyname"], _ORIGINAL["gethostbyname"], local)
    socket.gethostbyname_ex = _local_first(overridden["gethostbyname_ex"], _ORIGINAL["gethostbyname_ex"], local)
    _ACTIVE.append(resolver)
    try:
        yield resolver
    finally:
        _ACTIVE.remove(resolver)
        if _ACTIVE:  # an outer pod_resolver: its resolver again, and its functions
            dns.resolver.override_system_resolver(_ACTIVE[-1])
        else:
            dns.resolver.restore_system_resolver()
        for name, function in before.items():
            setattr(socket, name, function)


# The functions dnspython's override_system_resolver replaces, and the pod_resolvers in force.
_SOCKET_FUNCTIONS = ("getaddrinfo", "getnameinfo", "getfqdn", "gethostbyname", "gethostbyname_ex", "gethostbyaddr")
_ACTIVE: list[Any] = []


# What a pod's /etc/hosts (written by the kubelet) answers before DNS is asked, whatever the
# machine's holds: the loopback names. The kubelet also writes the pod's own name there.
_LOCAL_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"}
_ORIGINAL = {name: getattr(socket, name) for name in ("getaddrinfo", "gethostbyname", "gethostbyname_ex")}
HOSTS_FILE = "/etc/hosts"
HOSTS_MAX_BYTES = 1 << 20  # a larger /etc/hosts is not read (its names then go to kdns)


def _local_names(path: str = HOSTS_FILE) -> frozenset[str]:
    """The names the system resolver answers from `path` and the machine's own name: those a
    pod's resolver would find in its /etc/hosts rather than ask DNS for."""
    from kdns import files, hosts

    found = set(_LOCAL_NAMES)
    try:
        text = files.decode(files.read_regular(path, HOSTS_MAX_BYTES, "the /etc/hosts limit")[0])
        found.update(name for entry in hosts.parse_hosts(text, path).entries for name in entry.names)
    except (OSError, ValueError, files.FileError):
        pass  # no usable /etc/hosts: only the loopback names and the host name
    found.add(socket.gethostname().rstrip(".").lower())
    return frozenset(found)


def _host_text(host) -> str | None:
    if isinstance(host, (bytes, bytearray)):  # trio passes IDNA-encoded bytes
        return bytes(host).decode("idna")
    return host


def _pod_getaddrinfo(dns_getaddrinfo, local: frozenset[str]):
    def getaddrinfo(host, port, family=0, type=0, proto=0, flags=0):
        host = _host_text(host)
        if host is None or host.rstrip(".").lower() in local:
            return _ORIGINAL["getaddrinfo"](host, port, family, type, proto, flags)
        # dnspython rejects the flags that only tune the system resolver's results
        # (aiohttp's default resolver passes AI_ADDRCONFIG).
        flags &= ~(getattr(socket, "AI_ADDRCONFIG", 0) | getattr(socket, "AI_V4MAPPED", 0) | getattr(socket, "AI_ALL", 0))
        return dns_getaddrinfo(host, port, family, type, proto, flags)

    return getaddrinfo


def _local_first(dns_function, original, local: frozenset[str]):
    def resolve(host):
        host = _host_text(host)
        if host.rstrip(".").lower() in local:
            return original(host)
        return dns_function(host)

    return resolve
