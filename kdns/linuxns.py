"""Linux namespaces for `kdns exec`, with the standard library only (ctypes and netlink).

`enter(user=...)` moves the calling process into new mount and network namespaces, and a new
user namespace when it is not root: there it keeps its own uid and gid (mapped to
themselves), with the capabilities a namespace's creator has inside it until it execs a
program, so that it can then bring the loopback interface up (`loopback_up`), give it a pod's
address (`add_addresses`), make private address ranges local (`add_local_routes`),
bind-mount files (`bind_file`) and bind port 53.
What it execs afterwards runs as the same user, without those capabilities.

Every failure is a `NamespaceError` whose message is one line naming the step and the reason.
Only the calling thread's process is changed: call `enter` before any thread starts (the
kernel refuses a new user namespace to a process with several threads).
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import ipaddress
import os
import socket
import struct
from pathlib import Path

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 0x40000

SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1
IFREQ = "16sH22x"  # struct ifreq: the name, then ifr_flags in a 24-byte union

# rtnetlink (linux/netlink.h, linux/rtnetlink.h, linux/if_addr.h)
RTM_NEWADDR, RTM_NEWROUTE, NLMSG_ERROR = 20, 24, 2
NLM_F_REQUEST, NLM_F_ACK, NLM_F_EXCL, NLM_F_CREATE = 0x1, 0x4, 0x200, 0x400
RT_TABLE_LOCAL, RTPROT_BOOT, RT_SCOPE_HOST, RTN_LOCAL = 255, 3, 254, 2
RTA_DST, RTA_OIF = 1, 4
IFA_ADDRESS, IFA_LOCAL, IFA_F_NODAD, RT_SCOPE_UNIVERSE = 1, 2, 0x02, 0
NETLINK_TIMEOUT = 2.0  # seconds for the kernel's acknowledgement


class NamespaceError(Exception):
    """A namespace could not be set up; the message is one line saying which step and why."""


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _failed(step: str) -> NamespaceError:
    code = ctypes.get_errno()
    why = " (the limit user.max_user_namespaces is reached, or 0)" if code == errno.ENOSPC else ""
    return NamespaceError(f"{step}: {os.strerror(code)}{why}")


def enter(*, user: bool) -> None:
    """Unshare the mount and network namespaces (and the user namespace when `user`), map
    this process's uid and gid to themselves in the new user namespace, and make every
    mount private, so that nothing mounted here is seen outside."""
    uid, gid = os.geteuid(), os.getegid()
    flags = CLONE_NEWNS | CLONE_NEWNET | (CLONE_NEWUSER if user else 0)
    what = "user, mount and network" if user else "mount and network"
    if _libc().unshare(flags) != 0:
        error = _failed(f"unshare({what} namespaces)")
        if ctypes.get_errno() == errno.EINVAL and user:
            error = NamespaceError(f"unshare({what} namespaces): refused to a process with threads (a bug of kdns exec)")
        raise error
    if user:
        try:
            Path("/proc/self/setgroups").write_text("deny")
            Path("/proc/self/uid_map").write_text(f"{uid} {uid} 1\n")
            Path("/proc/self/gid_map").write_text(f"{gid} {gid} 1\n")
        except OSError as exc:
            raise NamespaceError(f"mapping uid {uid} in the user namespace: {exc.strerror}") from None
    if _libc().mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None) != 0:
        raise _failed("making the mounts private")


def bind_file(source: str, target: str) -> None:
    """Bind-mount the file `source` over `target` (a symlink is followed to its file)."""
    if _libc().mount(os.fsencode(source), os.fsencode(target), None, MS_BIND, None) != 0:
        raise _failed(f"bind-mounting over {target}")


def loopback_up() -> None:
    """Bring `lo` up: 127.0.0.1 and ::1 answer from then on."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            flags = struct.unpack(IFREQ, fcntl.ioctl(sock, SIOCGIFFLAGS, struct.pack(IFREQ, b"lo", 0)))[1]
            fcntl.ioctl(sock, SIOCSIFFLAGS, struct.pack(IFREQ, b"lo", flags | IFF_UP))
        except OSError as exc:
            raise NamespaceError(f"bringing the loopback interface up: {exc.strerror}") from None


def add_local_routes(networks: list[str]) -> None:
    """Make every address of these networks local (`ip route add local NET dev lo`): a
    server listening on 0.0.0.0 or on one of them answers connections to any of them."""
    index = socket.if_nametoindex("lo")
    requests = []
    for text in networks:
        net = ipaddress.ip_network(text)
        body = struct.pack("=BBBBBBBBI", _family(net.version), net.prefixlen, 0, 0, RT_TABLE_LOCAL, RTPROT_BOOT,
                           RT_SCOPE_HOST, RTN_LOCAL, 0)
        body += _attribute(RTA_DST, net.network_address.packed) + _attribute(RTA_OIF, struct.pack("=i", index))
        requests.append((f"making {net} local", RTM_NEWROUTE, body))
    _netlink(requests)


def add_addresses(addresses: list[str]) -> None:
    """Give `lo` these addresses too (`ip addr add ADDRESS dev lo`), host routes each: a
    process inside then has an address that is not a loopback one, as a pod has, so that
    getaddrinfo's AI_ADDRCONFIG asks for A (and AAAA) records at all."""
    index = socket.if_nametoindex("lo")
    requests = []
    for text in addresses:
        ip = ipaddress.ip_address(text)
        body = struct.pack("=BBBBI", _family(ip.version), ip.max_prefixlen, IFA_F_NODAD, RT_SCOPE_UNIVERSE, index)
        body += _attribute(IFA_LOCAL, ip.packed) + _attribute(IFA_ADDRESS, ip.packed)
        requests.append((f"adding the address {ip}", RTM_NEWADDR, body))
    _netlink(requests)


def _netlink(requests: list[tuple[str, int, bytes]]) -> None:
    """Send each (what, message type, body) to the kernel's routing socket; NamespaceError
    naming `what` for the first the kernel refuses."""
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE) as sock:
        sock.settimeout(NETLINK_TIMEOUT)
        sock.bind((0, 0))
        for seq, (what, kind, body) in enumerate(requests, 1):
            flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL
            sock.send(struct.pack("=IHHII", 16 + len(body), kind, flags, seq, 0) + body)
            try:
                reply = sock.recv(65536)
            except OSError as exc:
                raise NamespaceError(f"{what}: {exc.strerror or 'no answer from the kernel'}") from None
            answer = struct.unpack_from("=H", reply, 4)[0]
            code = -struct.unpack_from("=i", reply, 16)[0] if answer == NLMSG_ERROR and len(reply) >= 20 else 0
            if code:
                raise NamespaceError(f"{what}: {os.strerror(code)}")


def _family(version: int) -> int:
    return socket.AF_INET6 if version == 6 else socket.AF_INET


def _attribute(kind: int, data: bytes) -> bytes:
    length = 4 + len(data)
    return struct.pack("=HH", length, kind) + data + b"\0" * (-length % 4)
