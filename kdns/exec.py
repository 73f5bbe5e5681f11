"""`kdns exec [--namespace NS] [serve options] -- COMMAND [ARGS...]`: run COMMAND so that its
libc resolver (and any other reading /etc/resolv.conf) resolves names as a pod in NS would,
through kdns, in namespaces of its own.

How: this process unshares a network and a mount namespace (and a user namespace when it is
not root: no root needed where the kernel allows unprivileged user namespaces; kdns/linuxns.py),
brings the loopback interface up, makes the private address ranges local, bind-mounts a pod's
resolv.conf over /etc/resolv.conf (and an nsswitch.conf whose `hosts:` line is `files dns`),
starts kdns on 127.0.0.1:53 inside, then runs COMMAND there and exits with its status.

Why kdns runs inside the namespaces rather than outside with a socket passed in: one process,
no file descriptors to hand over, the same code path as root and as a user, and the closed
world follows from the network namespace itself: nothing kdns or COMMAND sends can leave it.
The price: kdns cannot follow a live cluster (--kubeconfig, --apiserver) or forward to an
upstream outside; `exec` serves manifests (or the demo cluster) only. docs/configuration.md
says what COMMAND can and cannot reach.

Exit status: COMMAND's (128 + N when a signal N ended it); 125 when kdns exec itself cannot
run (namespaces refused, a broken manifest), 126 when COMMAND cannot be executed, 127 when it
is not found, 2 for a command-line mistake.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import trio

from kdns import linuxns, names, observe, settings
from kdns.config import ConfigError, ServeConfig

if TYPE_CHECKING:
    from kdns.app import Server

log = logging.getLogger("kdns")

LISTEN = "127.0.0.1:53"  # where kdns answers inside the namespace
# Inside, every address of these is local: the command's own servers answer on them.
LOCAL_NETWORKS = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"]
# The command's own addresses inside, as a pod's (IPv4, then IPv6): without an address other
# than a loopback one, getaddrinfo with AI_ADDRCONFIG (glibc's default) asks nothing at all.
POD_ADDRESSES = ["10.244.0.2", "fd00:10:244::2"]
NSSWITCH = "/etc/nsswitch.conf"
RESOLV_CONF = "/etc/resolv.conf"
CANNOT_RUN, NOT_EXECUTABLE, NOT_FOUND = 125, 126, 127
REFUSED_OPTIONS = {  # option -> why kdns exec refuses it
    "listen": f"kdns exec answers on {LISTEN} inside the namespace",
    "workers": "kdns exec runs one kdns process",
    "kubeconfig": "the namespace has no network to reach an API server: give --manifests",
    "apiserver": "the namespace has no network to reach an API server: give --manifests",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--namespace", default="default", metavar="NS",
                        help="the Kubernetes namespace COMMAND resolves names from, as a pod there (default default)")
    settings.add_arguments(parser)
    parser.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- COMMAND [ARGS...]",
                        help="the command to run and its arguments, after --")


def main(args: argparse.Namespace) -> int:
    command = list(args.argv)
    if command[:1] == ["--"]:
        command = command[1:]
    if not command:
        return _error("no command given: kdns exec [--namespace NS] [serve options] -- COMMAND [ARGS...]", 2)
    if not names.is_label(args.namespace):
        return _error(f"--namespace: not a namespace name: {args.namespace!r}", 2)
    for option, why in REFUSED_OPTIONS.items():
        if hasattr(args, option):
            return _error(f"--{option} is not for kdns exec: {why}", 2)
    flags = argparse.Namespace(**{k: v for k, v in vars(args).items() if k not in ("command", "argv", "namespace")})
    flags.listen = [LISTEN]
    if not hasattr(flags, "log_level"):
        flags.log_level = "warning"  # COMMAND's output is what matters; kdns speaks up for problems only
    if not hasattr(flags, "lameduck"):
        flags.lameduck = 0.0
    if not hasattr(flags, "outside_names"):
        # Nothing outside the namespaces is reachable: a name no upstream can give is "not
        # found" (EAI_NONAME), as in a pod of a cluster that cannot reach it.
        flags.outside_names = "nxdomain"
    try:
        config = settings.build_config(flags, environ={})  # never KUBECONFIG: no API server is reachable
    except ConfigError as exc:
        return _error(str(exc), 2 if exc.flag is not None else CANNOT_RUN)
    if config.api is not None or config.workers > 1:
        return _error("the config file asks for an API server or --workers, which kdns exec cannot give", CANNOT_RUN)
    if "/" not in command[0] and shutil.which(command[0]) is None:
        return _error(f"{command[0]}: command not found", NOT_FOUND)
    observe.setup_logging(config.log_level, config.log_format)
    with tempfile.TemporaryDirectory(prefix="kdns-exec-") as tmp:
        try:
            _isolate(Path(tmp), args.namespace, config)
        except linuxns.NamespaceError as exc:
            return _error(f"cannot make the namespaces COMMAND runs in: {exc}{_hint()}", CANNOT_RUN)
        return _serve_and_run(config, command)


def resolv_conf(namespace: str, zone: str) -> str:
    """A pod's resolv.conf (as the kubelet writes it, ClusterFirst), naming kdns inside."""
    search = f"{namespace}.svc.{zone} svc.{zone} {zone}"
    return f"nameserver {LISTEN.rpartition(':')[0]}\nsearch {search}\noptions ndots:5\n"


def nsswitch_conf(text: str) -> str:
    """`text` (an nsswitch.conf) with `hosts: files dns`, as in a container image: no
    systemd-resolved, mDNS or other module answering names instead of the resolv.conf."""
    lines = [line for line in text.splitlines() if not line.strip().startswith("hosts:")]
    return "\n".join([*lines, "hosts: files dns"]) + "\n"


def _isolate(tmp: Path, namespace: str, config: ServeConfig) -> None:
    """Enter the namespaces; loopback up, private ranges local, a pod's resolv.conf."""
    if threading.active_count() > 1:
        raise linuxns.NamespaceError("threads are running already (a bug of kdns exec)")
    resolv = tmp / "resolv.conf"
    resolv.write_text(resolv_conf(namespace, config.dns.zones[0]))
    nsswitch = None
    if os.path.isfile(NSSWITCH):
        with open(NSSWITCH, encoding="utf-8", errors="replace") as f:
            text = f.read(1 << 20)
        if nsswitch_conf(text) != text:
            nsswitch = tmp / "nsswitch.conf"
            nsswitch.write_text(nsswitch_conf(text))
    if not os.path.exists(RESOLV_CONF):
        raise linuxns.NamespaceError(f"{RESOLV_CONF} does not exist here: there is nothing to mount a pod's one over")
    tried: list[str] = []
    for user in ([False, True] if os.geteuid() == 0 else [True]):
        try:
            linuxns.enter(user=user)
            break
        except linuxns.NamespaceError as exc:
            tried.append(str(exc))
    else:
        raise linuxns.NamespaceError("; ".join(tried))
    linuxns.loopback_up()
    linuxns.bind_file(str(resolv), RESOLV_CONF)
    if nsswitch is not None:
        linuxns.bind_file(str(nsswitch), NSSWITCH)
    linuxns.add_addresses(POD_ADDRESSES[:1])
    linuxns.add_local_routes(LOCAL_NETWORKS[:3])
    try:
        linuxns.add_addresses(POD_ADDRESSES[1:])
        linuxns.add_local_routes(LOCAL_NETWORKS[3:])
    except linuxns.NamespaceError as exc:  # IPv6 may be off in the kernel: IPv4 alone then
        log.warning("no IPv6 inside: %s", exc)


def _serve_and_run(config: ServeConfig, command: list[str]) -> int:
    from kdns.app import Server, StartupError

    try:
        server = Server(config)
    except StartupError as exc:
        return _error(str(exc), CANNOT_RUN)
    status = trio.run(_supervise, server, command)
    server.join()
    return status


async def _supervise(server: Server, command: list[str]) -> int:
    """kdns serving, COMMAND running; COMMAND's exit status once it ends. The signals to pass
    on are caught before COMMAND starts: none can end kdns exec instead."""
    with trio.open_signal_receiver(*PASSED_SIGNALS) as signals:
        async with trio.open_nursery() as nursery:
            await nursery.start(server.serve)
            try:
                process = await trio.lowlevel.open_process(command)
            except PermissionError as exc:
                nursery.cancel_scope.cancel()
                return _error(f"{command[0]}: {exc.strerror}", NOT_EXECUTABLE)
            except FileNotFoundError:
                nursery.cancel_scope.cancel()
                return _error(f"{command[0]}: command not found", NOT_FOUND)
            nursery.start_soon(_pass_signals, signals, process)
            code = await process.wait()
            nursery.cancel_scope.cancel()
    return 128 - code if code < 0 else code


# Passed on to COMMAND. SIGINT and SIGQUIT only when they did not come from the terminal:
# COMMAND, in the same foreground process group, has those already (Ctrl-C must not
# interrupt it twice).
PASSED_SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2, signal.SIGINT, signal.SIGQUIT)


async def _pass_signals(signals: AsyncIterator[int], process: trio.Process) -> None:
    async for signum in signals:
        if signum in (signal.SIGINT, signal.SIGQUIT) and _in_terminal_foreground():
            continue
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signum)


def _in_terminal_foreground() -> bool:
    try:
        return os.tcgetpgrp(sys.stdin.fileno()) == os.getpgrp()
    except (OSError, ValueError):
        return False


def _hint() -> str:
    if os.geteuid() == 0:
        return ""
    for path, value in (("/proc/sys/kernel/apparmor_restrict_unprivileged_userns", "1"),
                        ("/proc/sys/kernel/unprivileged_userns_clone", "0"), ("/proc/sys/user/max_user_namespaces", "0")):
        with contextlib.suppress(OSError):
            if Path(path).read_text().strip() == value:
                return f" ({path.removeprefix('/proc/sys/').replace('/', '.')} = {value}: unprivileged user namespaces are off; run as root)"
    return " (unprivileged user namespaces may be off here; run as root)"


def _error(message: str, status: int) -> int:
    print(f"kdns exec: {message}", file=sys.stderr)
    return status
