"""`kdns serve --workers N`: N processes answering on the same ports, one per core.

The first process (the one started) binds the listen addresses with SO_REUSEPORT, then starts
N-1 copies of itself (`kdns serve --worker`, the same options) that bind the very ports it
got (port 0 included); the kernel spreads queries over the sockets by their address and port.
Each process keeps its own copy of the cluster (its own watch on the API, its own manifest
reads), its own upstream cache and statistics: there is nothing to share on the serving path.
Health, readiness and metrics are the first process's only (the workers serve no HTTP).

The first process passes SIGTERM, SIGHUP and SIGINT on to the workers, so they lameduck,
reload and stop with it; a worker that dies is started again after a pause. Workers get
SIGTERM from the kernel if the first process dies without a word (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import argparse
import ctypes
import logging
import os
import signal
import subprocess
import sys

import trio

from kdns.options import OPTIONS
from kdns.serve.listeners import Bound

log = logging.getLogger("kdns.workers")

RESTART_PAUSE = 1.0  # seconds before a worker that died is started again
STOP_GRACE = 5.0  # after the lameduck period, how long a worker may take to exit before SIGKILL
_PR_SET_PDEATHSIG = 1


def worker_argv(args: argparse.Namespace, bound: list[Bound]) -> list[str]:
    """The command line of a worker: the options given to this process (the config file
    too), except those each worker gets a value of its own for (`per_worker` in
    kdns.options): --listen (the addresses bound here, with their real ports), --workers and
    the HTTP endpoints (the first process's alone). As flags, these override the config
    file on every reload too."""
    argv = [sys.executable, "-m", "kdns", "serve", "--worker"]
    if getattr(args, "config", None):
        argv += ["--config", args.config]
    if getattr(args, "corefile", None):
        argv += ["--corefile", args.corefile]
        if args.corefile_dns_port is not None:
            argv += ["--corefile-dns-port", str(args.corefile_dns_port)]
        if args.corefile_ignore_unknown:
            argv.append("--corefile-ignore-unknown")
    for option in OPTIONS:
        name = option.name.replace("-", "_")
        if option.per_worker or not hasattr(args, name):
            continue
        value = getattr(args, name)
        if option.kind is bool:
            argv.append(f"--{option.name}" if value else f"--no-{option.name}")
        elif option.repeat:
            for item in value:
                argv += [f"--{option.name}", str(item)]
        else:
            argv += [f"--{option.name}", str(value)]
    own = {
        "listen": [str(address) for address in dict.fromkeys(b.address for b in bound)],
        "workers": ["1"],
        "health": ["off"],
        "ready": ["off"],
        "metrics": ["off"],
        "explain": ["off"],
    }
    for option in OPTIONS:
        if option.per_worker:
            for value in own[option.name]:  # (a KeyError here: a new per-worker option needs its value)
                argv += [f"--{option.name}", value]
    return argv


def _prctl():
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # not Linux
        return None


_PRCTL = _prctl()  # looked up here, not in the forked child (no dlopen between fork and exec)


def die_with_parent() -> None:
    """In a worker, before exec: SIGTERM when the thread that started it (the first
    process's main thread) ends. Without prctl the signals `Workers.signal` passes on still
    reach the workers."""
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


class Workers:
    """The N-1 worker processes of a `--workers N` kdns, kept running until cancelled."""

    def __init__(self, count: int, lameduck: float):
        self.argv: list[str] = []  # set by `run`, once the first process knows its ports
        self.count = count
        self.lameduck = lameduck
        self.processes: dict[int, subprocess.Popen] = {}  # worker number -> its running process
        self.restarts = 0
        self.stopping = False

    def signal(self, signum: int) -> None:
        """Pass a signal on to every running worker."""
        if signum in (signal.SIGTERM, signal.SIGINT):
            self.stopping = True
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signum)

    async def run(self, argv: list[str], *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Start the workers with `argv` (`worker_argv`) and keep them running until cancelled."""
        self.argv = argv
        async with trio.open_nursery() as nursery:
            for number in range(1, self.count + 1):
                await nursery.start(self._keep_running, number)
            task_status.started()

    async def _keep_running(self, number: int, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        started = False
        while True:
            # Started from this (the main) thread, not a worker thread as trio's open_process
            # would: PR_SET_PDEATHSIG fires when the thread that started the child ends. (Popen
            # returns once the child is exec'd; preexec_fn only calls prctl, looked up before.)
            process = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, preexec_fn=die_with_parent)  # noqa: ASYNC220, PLW1509
            self.processes[number] = process
            log.info("started worker %d (pid %d)", number, process.pid)
            if not started:
                task_status.started()
                started = True
            try:
                status = await _wait(process)
            except trio.Cancelled:
                with trio.CancelScope(shield=True):
                    await self._stop(process)
                raise
            if self.stopping:
                return
            self.restarts += 1
            log.error("worker %d (pid %d) exited with status %s; starting it again in %gs", number, process.pid, status, RESTART_PAUSE)
            await trio.sleep(RESTART_PAUSE)

    async def _stop(self, process: subprocess.Popen) -> None:
        """Let a worker finish its lameduck period (it got SIGTERM with us), then make sure."""
        if process.poll() is None and not self.stopping:
            process.send_signal(signal.SIGTERM)
        with trio.move_on_after(self.lameduck + STOP_GRACE):
            await _wait(process)
            return
        log.warning("worker pid %d did not exit; killing it", process.pid)
        process.kill()
        await _wait(process)


async def _wait(process: subprocess.Popen) -> int:
    """Its exit status, waiting without blocking trio (a pidfd; polling where there is none)."""
    try:
        pidfd = os.pidfd_open(process.pid)
    except (AttributeError, OSError):  # not Linux 5.3+, or the process is gone already
        while process.poll() is None:  # noqa: ASYNC110 - without a pidfd, polling is all there is
            await trio.sleep(0.1)
        return process.returncode
    try:
        await trio.lowlevel.wait_readable(pidfd)
    finally:
        os.close(pidfd)
    return process.wait()
