"""`KdnsServer`: the real kdns in a thread of its own, for other projects' tests.

It runs the same index, answer core and trio shell as `kdns serve`, with its own trio loop,
so it works the same from plain tests, pytest-trio tests, asyncio tests and scripts. It
listens on 127.0.0.1 (UDP and TCP, a free port) and starts with an empty cluster. Everything
that changes it (`apply`, `service`, `delete`, faults, `upstream`, `clear`) is done in its loop
before the call returns: the next query sees it. No pytest here (see kdns/testing/plugin.py).

Faults and the query log read names as the application writes them: "redis" stands for every
name a pod's search path makes of it (kdns/testing/match.py), in the server's `namespace`
unless a call says another.
"""

from __future__ import annotations

import ipaddress
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

from kdns.options import default
from kdns.testing.match import name_pattern
from kdns.testing.querylog import QueryLog
from kdns.testing.tap import Fault, TestTap, make_fault

if TYPE_CHECKING:
    import trio

    from kdns.app import Server
    from kdns.config import ServeConfig

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
    zone: str = DEFAULT_ZONE  # the zone of the server that declared it

    @property
    def fqdn(self) -> str:
        return f"{self.name}.{self.namespace}.svc.{self.zone}"


class KdnsServer:
    """An in-process kdns for tests. Use as a context manager, or `start()` / `stop()`.

    `namespace`: the pod namespace that short names in faults and `queries.for_name` are
    expanded with (and `pod_resolver`'s default). `strict`: leaving the `with` block (or the
    fixture's test) with a fault that changed no query is an AssertionError. `external_zone`:
    serve Services' external and load-balancer addresses under it (kdns serve's
    --external-zone), e.g. "k8s.example.org". The hosts of Ingresses and Gateway routes
    resolve, as with `kdns serve --ingress-hosts --gateway-hosts` (`ingress()`).
    """

    def __init__(self, *, zone: str = DEFAULT_ZONE, ttl: int = 5, pods: str = "insecure", host: str = "127.0.0.1",
                 namespace: str = "default", strict: bool = False,
                 external_zone: str | list[str] | tuple[str, ...] = ()):
        self.zone = zone.strip().rstrip(".").lower()
        self.namespace = namespace
        self.strict = strict
        self.external_zones = [external_zone] if isinstance(external_zone, str) else list(external_zone)
        # A closed world: a name outside the cluster that no `record()` gives is NXDOMAIN, as
        # in a pod whose cluster cannot reach it (`upstream()` opens the way out).
        self._ttl = ttl
        # Ingress and Gateway hosts resolve (`ingress()`, or Ingresses and routes `load()`ed).
        self._options = {"zone": [self.zone], "ttl": ttl, "pods": pods, "listen": [f"{host}:0"], "outside-names": "nxdomain",
                         "external-zone": self.external_zones, "ingress-hosts": True, "gateway-hosts": True}
        self._records: dict[str, dict[int, Any]] = {}  # name -> type -> its Rrset (record())
        self.queries = QueryLog(self.zone, namespace)  # every question received, in order (filled by the tap)
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._stop: trio.Event  # made in the server's thread; _server and _initial_config by start()
        self._server: Server
        self._initial_config: ServeConfig
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
            if isinstance(value, bool):
                argv.append(f"--{name}" if value else f"--no-{name}")
                continue
            for item in value if isinstance(value, list) else [value]:
                argv += [f"--{name}", str(item)]
        config = settings.build_config(settings.parse_flags(argv), environ={})
        self._server = Server(config, memory=True)
        self._initial_config = config  # what clear() goes back to
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

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self.stop()
        if self.strict and exc_type is None:
            self.assert_all_used()

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
        """Apply every object of a manifest file, a directory of them (.yaml, .yml, .json, one
        level deep), or YAML text. A str with a line break is YAML text; any other str, and
        a Path, is a path: FileNotFoundError if nothing is there. Files are read as `kdns
        serve --manifests` reads them: regular files only, within its default size limit."""
        from kdns.testing.manifests import read_objects

        self.apply(read_objects(path_or_yaml))

    def delete(self, kind: str, namespace: str, name: str) -> None:
        """Remove an object: `delete("Service", "default", "web")` (the namespace does not matter for a
        Namespace or an IngressClass)."""
        from kdns.model import Delete, Kind

        key = (Kind(kind), "" if kind in ("Namespace", "IngressClass") else namespace, name)
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
        type: str | None = None,  # the Service's spec.type, as in a manifest
        load_balancer_ip: str | list[str] | None = None,
        load_balancer_hostname: str | None = None,
        external_ips: list[str] | tuple[str, ...] = (),
        annotations: dict[str, str] | None = None,
    ) -> ServiceInfo:
        """Declare a Service and its EndpointSlice in one call.

        `ports`: port numbers, (name, port) or (name, port, protocol) tuples.
        `type`: "ClusterIP" (the default), "NodePort" or "LoadBalancer"; a load balancer's
        address (`load_balancer_ip`, one or a list, or `load_balancer_hostname`) goes in its
        status, as the cloud's controller would write it, and makes the type LoadBalancer.
        With `external_ips` (spec.externalIPs) they are what the external zone answers
        (`KdnsServer(external_zone=...)`). `annotations`: the Service's, e.g. external-dns's
        hostname.
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
        lb_ips = [load_balancer_ip] if isinstance(load_balancer_ip, str) else list(load_balancer_ip or ())
        ingress = [{"ip": ip} for ip in lb_ips] + ([{"hostname": load_balancer_hostname}] if load_balancer_hostname else [])
        if type is not None or ingress:
            spec["type"] = type or "LoadBalancer"
        if external_ips:
            spec["externalIPs"] = list(external_ips)
        service: dict[str, Any] = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": namespace},
                                   "spec": spec}
        if ingress:
            service["status"] = {"loadBalancer": {"ingress": ingress}}
        if annotations:
            service["metadata"]["annotations"] = dict(annotations)
        objects: list[dict[str, Any]] = [service]
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
            name, namespace, svc.cluster_ips[0] if svc and svc.cluster_ips else None, tuple(e["addresses"][0] for e in eps),
            self.zone,
        )

    def cluster_ip(self, name: str, namespace: str = "default") -> str | None:
        svc = self._call(lambda: self._live.index.service(namespace, name))
        return svc.cluster_ips[0] if svc and svc.cluster_ips else None

    def ingress(self, host: str | list[str] | tuple[str, ...], service: str | None = None, namespace: str = "default", *,
                port: int = 80, address: str | list[str] | tuple[str, ...] | None = None, ingress_class: str | None = None,
                name: str | None = None) -> str:
        """Declare an Ingress routing `host` (one or a list; `*.example.com` for any one label
        there) to `service` in `namespace`, and make the host resolve as in a cluster where
        kdns serves Ingress hosts, the ingress controller being the Service itself: a CNAME
        to `<service>.<namespace>.svc.<zone>`, whose ClusterIP follows. With `address` (an
        address, a list of them, or a name) the host resolves there instead, as to an
        ingress controller's load balancer. Declaring the same `name` (by default made from
        the first host, `shop-example-com`) again replaces the Ingress; `delete("Ingress",
        namespace, name)` removes it, and its host is an ordinary outside name again.
        Returns the Ingress's name."""
        from kdns.testing.manifests import ingress_manifest, ingress_name

        hosts = [host] if isinstance(host, str) else list(host)
        if not hosts:
            raise ValueError("an Ingress needs at least one host")
        if address is not None:
            targets = [address] if isinstance(address, str) else list(address)
        elif service is not None:
            targets = [f"{service}.{namespace}.svc.{self.zone}"]
        else:
            raise ValueError("say where the host goes: service=... (a Service's name) or address=...")
        name = name or ingress_name(hosts[0])
        self.apply(ingress_manifest(hosts, name, namespace, service, port, targets, ingress_class))
        return name

    # -- names outside the cluster ------------------------------------------------------

    def record(self, name: str, rtype: str, value: Any, ttl: int | None = None) -> None:
        """Answer `name` (outside the cluster) with these records of type `rtype`, ahead of any
        upstream: `record("api.stripe.com", "A", "127.0.0.9")`. `value` is one value or a
        list: addresses for A/AAAA, a name for CNAME/PTR/NS, text for TXT, "10 mail.example.com"
        for MX, "0 5 443 api.example.com" for SRV (tuples work too). It replaces the records
        of that name and type; `None` or `[]` removes them. `*.example.com` answers any one
        label there. PTR records go on reverse names (`9.0.0.127.in-addr.arpa`). `ttl`
        defaults to the server's. Raises ValueError for a value kdns cannot serve."""
        from kdns import static
        from kdns.model import Delete, Event, Kind, Upsert

        owner = static.owner_name(name)
        number = static.rtype_of(rtype)
        ours = next((z for z in (self.zone, *self.external_zones, "in-addr.arpa", "ip6.arpa") if _in_zone(owner, z)), None)
        if ours is not None and not (number == static.TYPES["PTR"] and static.reverse_claim(owner)):
            what = "PTR records of addresses" if ours.endswith(".arpa") else "the names of Services: use service()"
            raise ValueError(f"{owner} lies in {ours}, where kdns answers {what}")
        values = [] if value is None else value
        current = dict(self._records.get(owner, {}))
        if values == [] or values == ():
            current.pop(number, None)
        else:
            current[number] = static.rrset(owner, number, values, self._ttl if ttl is None else ttl)
        if not current:
            self._records.pop(owner, None)
            events: list[Event] = [Delete((Kind.RECORD, "", owner))]
        else:
            events = [Upsert(static.name_records(owner, current.values()))]
            self._records[owner] = current
        self._call(lambda: self._server.apply_now(events))

    # -- faults (kdns/testing/tap.py) ---------------------------------------------------------
    #
    # Each call adds a fault and returns it (`.hits` counts the queries it changed). `name` is
    # written as the application writes it (kdns/testing/match.py): "redis" matches every name
    # the search path makes of it in `namespace` (default: the server's), "redis." only
    # itself, "*.example.com" every name below. `qtype` limits it to one query type, `times`
    # to that many queries (then normal answers). The fault added last wins.

    def fail(self, name: str, rcode: str | int = "SERVFAIL", *, qtype: str | int | None = None, times: int | None = None,
             namespace: str | None = None) -> Fault:
        """Answer `name` with this rcode ("SERVFAIL", "NXDOMAIN", "REFUSED", a number) and no records."""
        return self.fault(name, "rcode", rcode, qtype=qtype, times=times, namespace=namespace)

    def delay(self, name: str, seconds: float, *, qtype: str | int | None = None, times: int | None = None,
              namespace: str | None = None) -> Fault:
        """Answer `name` normally, `seconds` late."""
        return self.fault(name, "delay", seconds, qtype=qtype, times=times, namespace=namespace)

    def truncate(self, name: str, *, qtype: str | int | None = None, times: int | None = None,
                 namespace: str | None = None) -> Fault:
        """Answer `name` with TC set and no records, over UDP and TCP alike (a client that
        retries over TCP gets TC again, so the name does not resolve while it lasts)."""
        return self.fault(name, "truncate", qtype=qtype, times=times, namespace=namespace)

    def drop(self, name: str, *, qtype: str | int | None = None, times: int | None = None,
             namespace: str | None = None) -> Fault:
        """Never answer `name`: the client times out."""
        return self.fault(name, "drop", qtype=qtype, times=times, namespace=namespace)

    def fault(self, name: str, kind: str, value: object = None, *, qtype: str | int | None = None,
              times: int | None = None, namespace: str | None = None) -> Fault:
        """The general form: `kind` is "rcode" (value: the rcode, default SERVFAIL), "delay"
        (value: seconds), "truncate" or "drop". Unknown kinds, rcodes and types are a
        ValueError listing the valid ones."""
        pattern = name_pattern(name, self.zone, namespace or self.namespace)
        fault = make_fault(kind, pattern, value, qtype=qtype, times=times)
        self._call(lambda: self._tap.faults.append(fault))
        return fault

    @property
    def faults(self) -> list[Fault]:
        """The faults in place, in the order added (those run out included)."""
        return list(self._tap.faults)

    def reset(self) -> None:
        """Remove every fault (the cluster and the recorded queries stay)."""
        self._call(lambda: self._tap.faults.clear())

    def assert_all_used(self) -> None:
        """AssertionError naming each fault that changed no query (a misspelt name, a path
        the code under test never took), with the names that were asked."""
        unused = [fault for fault in self._tap.faults if not fault.used]
        if unused:
            asked = sorted({f"{q.name} {q.type}" for q in list(self.queries)})
            raise AssertionError(
                f"{len(unused)} fault(s) changed no query: {', '.join(map(repr, unused))}; "
                f"names asked: {', '.join(asked[:20]) or 'none'}{' ...' if len(asked) > 20 else ''}"
            )

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


    # -- why a name gets its answer (kdns explain) ------------------------------------------------

    def explain(self, name: str, qtype: str = "A", *, namespace: str | None = None) -> Any:
        """What kdns answers for `name` and why, as `kdns explain` says it: a
        kdns.explain.Explanation (`.rcode`, `.answer`, `.records` with the objects behind each,
        `.negative`, `.nearest`; `.to_json()`; `kdns.explain.text(...)` for a person). A name
        without a final dot is walked down the search path of a pod in `namespace` (default:
        the server's), as glibc's resolver does (`.search`); end it with a dot to ask it as it is."""
        from kdns.explain import explain

        ns = self.namespace if namespace is None else namespace
        return self._call(lambda: explain(self._server.view(), name, qtype, None if name.endswith(".") else ns))



    def clear(self) -> None:
        """Back to the state of a fresh server, in place: no objects, no faults, no
        forwarding, an empty query log; addresses are handed out from the start again.
        For a server shared by several tests (a session-scoped fixture), between tests."""
        from kdns.model import Delete
        from kdns.sources.allocate import ClusterIPAllocator

        self._records.clear()

        def clear_now() -> None:
            self._tap.faults.clear()
            if self._server.config != self._initial_config:
                self._server.reconfigure(self._initial_config)
            # Every object held, the records of record() among them.
            self._server.apply_now([Delete(obj.key) for obj in self._server.index.objects()])

        self._call(clear_now)
        self._allocator = ClusterIPAllocator()
        self._endpoint_ips = iter(ENDPOINT_RANGE.hosts())
        self.queries.clear()


def _in_zone(name: str, zone: str) -> bool:
    return name == zone or name.endswith("." + zone)


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
