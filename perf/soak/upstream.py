"""The stub upstream of testkit/stubdns.py, in a trio loop of its own thread.

The soak's other parts are threads, so every change to the stub (mode, stop, restart) is
made in the stub's own loop through `trio.from_thread`.
"""

from __future__ import annotations

import random
import socket
import threading

import trio

from testkit.stubdns import StubDNS


def fixed_port(host: str = "127.0.0.1") -> int:
    """A port free for UDP and TCP on `host`, below the kernel's ephemeral range: the stub gives
    it up while "stopped" and binds it again, and an ephemeral port could meanwhile be taken by
    any outgoing socket (kdns's own upstream queries among them)."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(10000, max(10001, low))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp, socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            try:
                udp.bind((host, port))
                tcp.bind((host, port))
            except OSError:
                continue
        return port
    raise RuntimeError(f"no free port for the stub upstream between 10000 and {low}")


class Upstream:
    def __init__(self, records: list[str]) -> None:
        self.stub = StubDNS(*records, port=fixed_port())
        self.port = 0
        self._token = None
        self._cancel: trio.CancelScope | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def start(self, timeout: float = 10.0) -> int:
        ready = threading.Event()

        async def main() -> None:
            self._token = trio.lowlevel.current_trio_token()
            async with trio.open_nursery() as nursery:
                self._cancel = nursery.cancel_scope
                self.port = await nursery.start(self.stub.serve)
                ready.set()

        def run() -> None:
            try:
                trio.run(main)
            except BaseException as exc:  # noqa: BLE001 - reported by start() or stop()
                self._error = exc
            finally:
                ready.set()

        self._thread = threading.Thread(target=run, name="stub-upstream", daemon=True)
        self._thread.start()
        if not ready.wait(timeout) or not self.port:
            raise RuntimeError(f"the stub upstream did not start: {self._error!r}")
        return self.port

    def _call(self, fn, *args) -> None:
        try:
            trio.from_thread.run_sync(fn, *args, trio_token=self._token)
        except trio.RunFinishedError:
            raise RuntimeError(f"the stub upstream's loop has ended: {self._error!r}") from self._error

    def set_mode(self, mode: str) -> None:
        self._call(setattr, self.stub, "mode", mode)

    def stop_listening(self) -> None:
        self._call(self.stub.stop)

    def restart(self) -> None:
        self._call(self.stub.restart)

    @property
    def queries(self) -> int:
        return len(self.stub.queries)

    def close(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            return
        try:
            self._call(self._cancel.cancel)
        except (trio.RunFinishedError, RuntimeError):
            pass
        self._thread.join(5)
