"""`KdnsServer`: the real kdns in a thread of its own, for other projects' tests.

It runs the same index, answer core and trio shell as `kdns serve`, with its own trio loop,
so it works the same from plain tests, pytest-trio tests, asyncio tests and scripts. It
listens on 127.0.0.1 (UDP and TCP, a free port) and starts with an empty cluster. Everything
that changes it (`apply`, `service`, `delete`, faults, `upstream`) is done in its loop before
the call returns: the next query sees it. No pytest here (see kdns/testing/plugin.py).
"""

from __future__ import annotations

import ipaddress
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

from kdns.codes import RCODES
from kdns.options import default
from kdns.testing.tap import Fault, Query, TestTap

if TYPE_CHECKING:  # imported where used: importing kdns.testing starts nothing
    import trio

    from kdns.app import Server

DEFAULT_ZONE = default("zone")[0]
START_TIMEOUT = 10.0
CALL_TIMEOUT = 10.0
ENDPOINT_RANGE = ipaddress.ip_network("10.244.0.0/16")


@dataclass(frozen=True)
class ServiceInfo:
    name: str
    namespace: str
    cluster_ip: str | None  # None for headless and ExternalName Services
    endpoints: tuple[str, ...]

    @property
    def fqdn(self) -> str:
        return f"{self.name}.{self.namespace}.svc.{DEFAULT_ZONE}"


class KdnsServer:
    """An in-process kdns for tests. Use as a context manager, or `start()` / `stop()`."""

    def __init__(self, *, zone: str = DEFAULT_ZONE, ttl: int = 5, pods: str = "insecure", host: str = "127.0.0.1"):
        self.zone = zone
        self._options = {"zone": [zone], "ttl": ttl, "pods": pods, "listen": [f"{host}:0"]}
        self.queries: list[Query] = []  # every question received, in order (filled by the tap)
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._stop: trio.Event | None = None
        self._server: Server | None = None
        self._endpoint_ips = iter(ENDPOINT_RANGE.hosts())
        self._tap = TestTap(self.queries)
        from kdns.sources.allocate import ClusterIPAllocator

        self._allocator = ClusterIPAllocator()
        self.host = host
        self.port = 0

    # -- life -----------------------------------------------------------------------------

    def start(self) -> Self:
        from kdns import settings
        from kdns.app import Server

        argv = []
        for name, value in self._options.items():
            for item in value if isinstance(value, list) else [value]:
                argv += [f"--{name}", str(item)]
        config = settings.build_config(settings.parse_flags(argv), environ={})
        self._server = Server(config, memory=True)
        self._thread = threading.Thread(target=self._run, name="kdns-test-server", daemon=True)
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT):
            raise RuntimeError("kdns did not start")
        if self._error is not None:
            raise RuntimeError(f"kdns did not start: {self._error}") from self._error
        return self

    def stop(self) -> None:
        if self._token is not None and self._stop is not None and self._thread is not None and self._thread.is_alive():
            self._token.run_sync_soon(self._stop.set)
            self._thread.join(START_TIMEOUT)
        self._token = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _run(self) -> None:
        import trio

        async def main() -> None:
            self._stop = trio.Event()
            async with trio.open_nursery() as nursery:
                bound = await nursery.start(self._live.serve)
                self.port = bound[0].address.port
                self._live.state.tap = self._tap
                self._token = trio.lowlevel.current_trio_token()
                self._ready.set()
                await self._stop.wait()
                nursery.cancel_scope.cancel()

        try:
            trio.run(main)
        except BaseException as exc:  # noqa: BLE001 - reported to the thread that waits for the start
            self._error = exc
            self._ready.set()

    @property
    def _live(self) -> Server:
        if self._server is None:
            raise RuntimeError("the kdns test server is not running")
        return self._server

    def _call(self, fn: Callable[[], Any]) -> Any:
        """Run `fn` in the server's trio thread and wait for it (safe from any thread, even
        one running another trio or asyncio loop: this only blocks briefly)."""
        if self._token is None:
            raise RuntimeError("the kdns test server is not running")
        done = threading.Event()
        box: dict[str, Any] = {}

        def call() -> None:
            try:
                box["value"] = fn()
            except BaseException as exc:  # noqa: BLE001 - handed back to the caller
                box["error"] = exc
            finally:
                done.set()

        self._token.run_sync_soon(call)
        if not done.wait(CALL_TIMEOUT):
            raise RuntimeError("the kdns test server did not respond")
        if "error" in box:
            raise box["error"]
        return box.get("value")

    # -- where it is ----------------------------------------------------------------------

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    # -- the cluster ----------------------------------------------------------------------

    def apply(self, manifest: dict | list[dict]) -> None:
        """Add or replace Kubernetes objects (dicts as in a manifest; a list, or `kind: List`)."""
        from kdns.model import Service, Upsert
        from kdns.sources import convert

        items = manifest if isinstance(manifest, list) else [manifest]
        flat: list[dict] = []
        for item in items:
            if isinstance(item, dict) and item.get("kind", "").endswith("List") and "items" in item:
                flat.extend(item["items"] or [])
            else:
                flat.append(item)
        events = []
        for item in flat:
            if convert.kind_of(item) is None:
                continue  # kinds DNS does not use
            obj = convert.convert(item, self._allocator)
            if obj is not None:
                if isinstance(obj, Service):
                    self._allocator.reserve(obj.cluster_ips)  # never hand out an address given by hand
                events.append(Upsert(obj))
        self._call(lambda: self._live.apply_now(events))

    def load(self, path_or_yaml: str | Path) -> None:
        """Apply every object of a manifest file or directory, or of YAML text."""
        import yaml

        text = None
        if isinstance(path_or_yaml, Path) or ("\n" not in str(path_or_yaml) and Path(str(path_or_yaml)).exists()):
            path = Path(path_or_yaml)
            files = sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml", ".json")) if path.is_dir() else [path]
            docs = [d for f in files for d in yaml.safe_load_all(f.read_text())]
        else:
            text = str(path_or_yaml)
            docs = list(yaml.safe_load_all(text))
        self.apply([d for d in docs if d])

    def delete(self, kind: str, namespace: str, name: str) -> None:
        """Remove an object: `delete("Service", "default", "web")` (namespace "" for a Namespace)."""
        from kdns.model import Delete, Kind

        key = (Kind(kind), "" if kind == "Namespace" else namespace, name)
        self._call(lambda: self._live.apply_now([Delete(key)]))

    def service(
        self,
        name: str,
        namespace: str = "default",
        *,
        cluster_ip: str | None = None,
        headless: bool = False,
        ports: list | tuple = (("http", 80),),
        endpoints: list | tuple | int | None = None,
        external_name: str | None = None,
    ) -> ServiceInfo:
        """Declare a Service and its EndpointSlice in one call.

        `ports`: port numbers, (name, port) or (name, port, protocol) tuples.
        `endpoints`: addresses, dicts with `ip` and optionally `hostname` and `ready`, or a
        number of endpoints to make up; a headless Service gets one made-up endpoint by
        default (without any, its name would not exist). ClusterIPs are allocated as an
        API server would when `cluster_ip` is None.
        """
        spec: dict[str, Any] = {"ports": [_port(p) for p in ports]}
        if external_name is not None:
            spec = {"type": "ExternalName", "externalName": external_name}
        elif headless:
            spec["clusterIP"] = "None"
        elif cluster_ip is not None:
            spec["clusterIP"] = cluster_ip
        objects: list[dict[str, Any]] = [{"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": namespace}, "spec": spec}]
        if endpoints is None:
            endpoints = 1 if headless else ()
        if isinstance(endpoints, int):
            endpoints = [str(next(self._endpoint_ips)) for _ in range(endpoints)]
        eps = [_endpoint(e) for e in endpoints]
        families: dict[int, list] = {4: [], 6: []}
        for ep in eps if external_name is None else ():
            families[6 if ":" in ep["addresses"][0] else 4].append(ep)
        for family, members in families.items():
            if not members:
                # Declared again with fewer families: the old slice of this family goes.
                self.delete("EndpointSlice", namespace, f"{name}-ipv{family}")
            else:
                objects.append({
                    "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                    "metadata": {"name": f"{name}-ipv{family}", "namespace": namespace,
                                 "labels": {"kubernetes.io/service-name": name}},
                    "addressType": f"IPv{family}", "endpoints": members,
                    "ports": [_port(p) for p in ports],
                })
        self.apply(objects)
        svc = self._call(lambda: self._live.index.service(namespace, name))
        return ServiceInfo(
            name, namespace, svc.cluster_ips[0] if svc and svc.cluster_ips else None, tuple(e["addresses"][0] for e in eps)
        )

    def cluster_ip(self, name: str, namespace: str = "default") -> str | None:
        svc = self._call(lambda: self._live.index.service(namespace, name))
        return svc.cluster_ips[0] if svc and svc.cluster_ips else None

    # -- faults ---------------------------------------------------------------------------

    def fail(self, name: str, rcode: str | int = "SERVFAIL") -> None:
        """Answer `name` with this rcode (e.g. "SERVFAIL", "REFUSED", 2) and no records."""
        codes = {text: number for number, text in RCODES.items()}
        self._fault(name, rcode=codes[rcode.upper()] if isinstance(rcode, str) else int(rcode))

    def delay(self, name: str, seconds: float) -> None:
        """Answer `name` normally, `seconds` late."""
        self._fault(name, delay=float(seconds))

    def truncate(self, name: str) -> None:
        """Answer `name` with TC set and no records (a client retries over TCP, and gets TC again)."""
        self._fault(name, truncate=True)

    def drop(self, name: str) -> None:
        """Never answer `name`: the client times out."""
        self._fault(name, drop=True)

    def reset(self) -> None:
        """Remove every fault (the cluster and the recorded queries stay)."""
        self._call(lambda: self._tap.faults.clear())

    def _fault(self, name: str, **what) -> None:
        key = name.rstrip(".").lower()  # the name exactly as queried (no search list applied)
        fault = Fault(**what)
        self._call(lambda: self._tap.faults.__setitem__(key, fault))

    # -- forwarding -----------------------------------------------------------------------

    def upstream(self, *servers: str, resolv_conf: str | None = None) -> None:
        """Forward names outside the cluster to these servers (HOST[:PORT]), or to the
        nameservers of `resolv_conf` (default: /etc/resolv.conf when no server is given).
        Off by default, so that tests never reach the outside by accident."""
        from kdns import upstream as up

        targets = [up.parse_upstream(s) for s in servers]
        if not targets:
            with open(resolv_conf or "/etc/resolv.conf", encoding="utf-8") as f:
                targets = [(ip, up.DEFAULT_PORT) for ip in up.parse_resolv_conf(f.read())]

        def switch() -> None:
            config = self._live.config
            self._live.reconfigure(replace(config, upstreams=tuple(targets), dns=replace(config.dns, forwarding=True)))

        self._call(switch)


def _port(spec) -> dict:
    if isinstance(spec, int):
        return {"port": spec, "protocol": "TCP"}
    if isinstance(spec, dict):
        return spec
    name, port, *rest = spec
    return {"name": name, "port": port, "protocol": (rest[0] if rest else "TCP").upper()}


def _endpoint(spec) -> dict:
    if isinstance(spec, str):
        return {"addresses": [spec], "conditions": {"ready": True}}
    out = {"addresses": [spec["ip"]], "conditions": {"ready": spec.get("ready", True)}}
    if spec.get("hostname"):
        out["hostname"] = spec["hostname"]
    return out
