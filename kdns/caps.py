"""Binding port 53 without root: the CAP_NET_BIND_SERVICE capability (Linux).

CoreDNS's Deployments (kubeadm, kind, k3s, minikube, EKS) run their container as a non-root
user with `capabilities: {add: [NET_BIND_SERVICE], drop: [ALL]}` and
`allowPrivilegeEscalation: false`, and listen on port 53. A capability in the container's
bounding set does not survive the exec of a non-root process, unless the program file
carries it as a file capability. CoreDNS's image gives its binary `cap_net_bind_service=+ep`.

kdns's image gives the Python interpreter `cap_net_bind_service=+p` (`grant`, run by the
Dockerfile): permitted but not effective, so that

* where the container may have it (CoreDNS's manifests), the process starts with it
  permitted, and kdns makes it effective (`raise_bind_service`) before binding its sockets;
* where it may not (kdns's own manifests drop every capability and listen on 5353), the exec
  still works: a file capability with the effective bit would make the kernel refuse to run
  the interpreter at all (EPERM) when the capability is outside the bounding set.

`allowPrivilegeEscalation: false` (no_new_privs) lets a file capability through when the
capability is in the container's permitted set, which `capabilities.add` puts it in.

Shell tier: ctypes calls into libc's capget/capset; elsewhere than Linux nothing happens.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import struct
import sys

CAP_NET_BIND_SERVICE = 10
_VERSION_3 = 0x20080522  # _LINUX_CAPABILITY_VERSION_3: two 32-bit words per set
_VFS_REVISION_2 = 0x02000000  # the security.capability xattr layout (struct vfs_cap_data, revision 2)
XATTR = "security.capability"


class _Header(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _Data(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def _libc():
    if not sys.platform.startswith("linux"):
        return None
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _get() -> tuple[_Header, ctypes.Array] | None:
    libc = _libc()
    if libc is None:
        return None
    header, data = _Header(_VERSION_3, 0), (_Data * 2)()
    if libc.capget(ctypes.byref(header), data) != 0:
        return None
    return header, data


def has(cap: int, which: str = "effective") -> bool:
    """Whether this thread has `cap` in its effective (or permitted, inheritable) set."""
    got = _get()
    if got is None:
        return False
    return bool(getattr(got[1][cap // 32], which) & (1 << (cap % 32)))


def set_effective(cap: int, on: bool) -> bool:
    """Make `cap` effective (it must be permitted), or not; True when that worked."""
    libc, got = _libc(), _get()
    if libc is None or got is None:
        return False
    header, data = got
    word, bit = data[cap // 32], 1 << (cap % 32)
    if on and not word.permitted & bit:
        return False
    word.effective = (word.effective | bit) if on else (word.effective & ~bit)
    header.version, header.pid = _VERSION_3, 0
    return libc.capset(ctypes.byref(header), data) == 0


def raise_bind_service() -> bool:
    """Make CAP_NET_BIND_SERVICE effective when it is permitted (the image's file capability
    in a container allowed it). True when it is effective afterwards. Every thread started
    afterwards inherits it; call it before starting any."""
    return has(CAP_NET_BIND_SERVICE) or set_effective(CAP_NET_BIND_SERVICE, True)


def file_capability(cap: int = CAP_NET_BIND_SERVICE) -> bytes:
    """The security.capability value `cap_...=+p` (permitted, not effective, nothing inherited)."""
    low, high = (1 << cap, 0) if cap < 32 else (0, 1 << (cap - 32))
    return struct.pack("<5I", _VFS_REVISION_2, low, 0, high, 0)


def grant(path: str) -> None:
    """Give the program file `path` (symlinks followed) cap_net_bind_service=+p; needs
    CAP_SETFCAP (root at image build time)."""
    os.setxattr(os.path.realpath(path), XATTR, file_capability())


def main(argv: list[str]) -> int:
    """`python -m kdns.caps grant PATH`: what the Dockerfile runs on the interpreter."""
    if len(argv) != 2 or argv[0] != "grant":
        print("usage: python -m kdns.caps grant PATH", file=sys.stderr)
        return 2
    grant(argv[1])
    print(f"{os.path.realpath(argv[1])}: cap_net_bind_service=p")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
