"""What operators see: logs, /health, /ready, /metrics.

* Logs go to stderr, one line per event, as text or (`--log-format json`) one JSON object per
  line. Every record logged with a traceback counts as a panic (`coredns_panics_total`).
* The HTTP endpoints are a minimal HTTP/1.1 server on trio: GET (or HEAD) of a known path,
  one response, connection closed. Several endpoints may share an address.
* Metrics use CoreDNS's names and labels, so dashboards and coredns-mixin alerts keep working.
  Nothing is counted through prometheus_client on the hot path: listeners keep plain counters
  (`stats.QueryStats`) and a collector turns them into metric families at scrape time. A
  scrape does not hold up answering: the serving thread only copies the counters (bounded
  tables, C-level copies: `Snapshot`), and folding and formatting them happen in a worker
  thread (`metrics_body`).
"""

from __future__ import annotations

import inspect
import json
import logging
import platform
import sys
import time
import urllib.parse
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import NamedTuple

import trio
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from kdns import __version__, stats
from kdns.index import Index
from kdns.model import EndpointSlice, ServiceType

log = logging.getLogger("kdns.http")

HTTP_READ_TIMEOUT = 5.0  # to read a request
HTTP_SEND_TIMEOUT = 5.0  # to send the response (a client that does not read is dropped)
# Connections open at once on one HTTP listener; a connection beyond is closed at once, unread
# (probes and scrapes retry). Each holds at most MAX_REQUEST bytes and a response.
MAX_HTTP_CONNECTIONS = 64
MAX_REQUEST = 8192


# -- logs -------------------------------------------------------------------------------------


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line)


class PanicCounter(logging.Handler):
    """Counts the records logged with a traceback: kdns's equivalent of a recovered panic."""

    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info:
            self.count += 1


PANICS = PanicCounter()


def setup_logging(level: str, fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
        formatter.converter = time.gmtime
        handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    logging.getLogger("kdns").addHandler(PANICS)


# -- HTTP ------------------------------------------------------------------------------------

# () -> (status, content type, body), or an awaitable of it (a route with work to do off the loop)
Route = Callable[[], tuple[int, str, bytes] | Awaitable[tuple[int, str, bytes]]]


class QueryRoute(NamedTuple):
    """A route that reads the query string (`?name=...`): called with its parameters, at
    most 20 (the request is at most MAX_REQUEST bytes)."""

    handler: Callable[[dict[str, str]], tuple[int, str, bytes]]


REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 400: "Bad Request", 500: "Internal Server Error",
           503: "Service Unavailable"}


async def serve_http(listener: trio.SocketListener, routes: dict[str, Route], max_connections: int = MAX_HTTP_CONNECTIONS) -> None:
    open_now = 0

    async def handle(stream: trio.SocketStream) -> None:
        nonlocal open_now
        async with stream:
            if open_now >= max_connections:
                return  # closed unread: nothing a client sends grows what kdns holds
            open_now += 1
            try:
                await _http_exchange(stream, routes)
            except (trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError):
                pass
            finally:
                open_now -= 1

    await trio.serve_listeners(handle, [listener])


async def _http_exchange(stream: trio.SocketStream, routes: dict[str, Route]) -> None:
    data = b""
    with trio.fail_after(HTTP_READ_TIMEOUT):
        while b"\r\n\r\n" not in data and b"\n\n" not in data:
            chunk = await stream.receive_some(4096)
            if not chunk:
                return
            data += chunk
            if len(data) > MAX_REQUEST:
                break
    parts = data.split(b"\r\n", 1)[0].split()
    if len(parts) != 3 or not parts[2].startswith(b"HTTP/"):
        status, ctype, body = 400, "text/plain; charset=utf-8", b"bad request\n"
        method = b"GET"
    else:
        method, target, _, query = (parts[0], *parts[1].decode("latin-1").partition("?"))
        route = routes.get(target)
        if route is None:
            status, ctype, body = 404, "text/plain; charset=utf-8", b"not found\n"
        elif method not in (b"GET", b"HEAD"):
            status, ctype, body = 405, "text/plain; charset=utf-8", b"method not allowed\n"
        elif isinstance(route, QueryRoute):
            try:
                params: dict[str, str] | None = dict(urllib.parse.parse_qsl(query, max_num_fields=20))
            except ValueError:  # too many parameters
                params = None
            status, ctype, body = route.handler(params) if params is not None else (400, "text/plain; charset=utf-8", b"bad query\n")
        else:
            result = route()
            status, ctype, body = await result if inspect.isawaitable(result) else result
    head = (
        f"HTTP/1.1 {status} {REASONS.get(status, '')}\r\nContent-Type: {ctype}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    with trio.fail_after(HTTP_SEND_TIMEOUT):
        await stream.send_all(head + (body if method != b"HEAD" else b""))


# -- metrics ---------------------------------------------------------------------------------


def _histogram(counts: dict[int, int], bounds: tuple[float, ...]) -> list[tuple[str, float]]:
    """Cumulative buckets from counts per bucket index (index len(bounds) means +Inf)."""
    out: list[tuple[str, float]] = []
    total = 0
    for i, bound in enumerate(bounds):
        total += counts.get(i, 0)
        out.append((repr(float(bound)) if isinstance(bound, float) else str(bound), total))
    total += counts.get(len(bounds), 0)
    out.append(("+Inf", total))
    return out


class Collector:
    """Reads the server's counters at scrape time (see app.Server for what it exposes)."""

    def __init__(self, server) -> None:
        self.server = server

    def collect(self):
        server = self.server
        listeners = server.listener_stats()
        yield from self._dns(listeners)
        yield from self._cache(server.forwarder, listeners)
        yield from self._forward(server.forwarder)
        build = GaugeMetricFamily("coredns_build_info", "A metric with a constant '1' value labeled by version, revision, "
                                  "and goversion from which CoreDNS was built.", labels=["version", "revision", "goversion"])
        build.add_metric([__version__, "kdns", f"python{platform.python_version()}"], 1)
        yield build
        panics = CounterMetricFamily("coredns_panics", "A metrics that counts the number of panics.")
        panics.add_metric([], PANICS.count)
        yield panics
        yield from self._kubernetes(server)
        yield from self._tables(server)

    def _dns(self, listeners: list[stats.QueryStats]):
        requests = CounterMetricFamily("coredns_dns_requests", "Counter of DNS requests made per zone, protocol and family.",
                                       labels=["server", "zone", "view", "proto", "family", "type"])
        responses = CounterMetricFamily("coredns_dns_responses", "Counter of response status codes.",
                                        labels=["server", "zone", "view", "rcode", "plugin"])
        durations = HistogramMetricFamily("coredns_dns_request_duration_seconds", "Histogram of the time (in seconds) "
                                          "each request took.", labels=["server", "zone", "view", "type"])
        request_sizes = HistogramMetricFamily("coredns_dns_request_size_bytes", "Size of the EDNS0 UDP buffer in bytes "
                                              "(64K for TCP) per zone and protocol.", labels=["server", "zone", "view", "proto"])
        response_sizes = HistogramMetricFamily("coredns_dns_response_size_bytes", "Size of the returned response in bytes.",
                                               labels=["server", "zone", "view", "proto"])
        req_counts: defaultdict[tuple, int] = defaultdict(int)
        resp_counts: defaultdict[tuple, int] = defaultdict(int)
        dur: defaultdict[tuple, defaultdict[int, int]] = defaultdict(lambda: defaultdict(int))
        dur_sum: defaultdict[tuple, float] = defaultdict(float)
        reqsz: defaultdict[tuple, defaultdict[int, int]] = defaultdict(lambda: defaultdict(int))
        respsz: defaultdict[tuple, defaultdict[int, int]] = defaultdict(lambda: defaultdict(int))
        reqsz_sum: defaultdict[tuple, float] = defaultdict(float)
        respsz_sum: defaultdict[tuple, float] = defaultdict(float)
        for listener in listeners:
            sv, proto, family = listener.server, listener.proto, listener.family
            # Copies first (C-level, atomic): the tables are bounded, so this is quick.
            replayed, timed_requests = list(listener.counts.items()), list(listener.requests.items())
            quick = list(listener.quick.items())
            for key, n in replayed:  # (zone, type, rcode, request size bucket, response size bucket[, cache hit kind])
                if key is None:
                    continue
                zone, qtype, rcode, qbucket, rbucket = key[:5]
                req_counts[(sv, zone, proto, family, qtype)] += n
                resp_counts[(sv, zone, rcode)] += n
                dur[(sv, zone, qtype)][0] += n
                reqsz[(sv, zone, proto)][qbucket] += n
                respsz[(sv, zone, proto)][rbucket] += n
                qsize, rsize = stats.key_sizes(key)
                reqsz_sum[(sv, zone, proto)] += qsize * n
                respsz_sum[(sv, zone, proto)] += rsize * n
            # The time measured is per listener; share it out by zone and type in proportion.
            timed = (sum(n for _, n in timed_requests) + sum(n for _, n in quick)) or 1
            for key, n in quick:  # timed, in the first duration bucket; their bytes are in *_bytes
                zone, qtype, rcode, qbucket, rbucket = key[:5]
                req_counts[(sv, zone, proto, family, qtype)] += n
                resp_counts[(sv, zone, rcode)] += n
                dur[(sv, zone, qtype)][0] += n
                dur_sum[(sv, zone, qtype)] += listener.seconds * n / timed
                reqsz[(sv, zone, proto)][qbucket] += n
                respsz[(sv, zone, proto)][rbucket] += n
            for (zone, qtype, dbucket), n in timed_requests:
                req_counts[(sv, zone, proto, family, qtype)] += n
                dur[(sv, zone, qtype)][dbucket] += n
                dur_sum[(sv, zone, qtype)] += listener.seconds * n / timed
            for (zone, rcode), n in list(listener.responses.items()):
                resp_counts[(sv, zone, rcode)] += n
            for (zone, bucket), n in list(listener.request_sizes.items()):
                reqsz[(sv, zone, proto)][bucket] += n
            for (zone, bucket), n in list(listener.response_sizes.items()):
                respsz[(sv, zone, proto)][bucket] += n
            for zone, n in list(listener.request_bytes.items()):
                reqsz_sum[(sv, zone, proto)] += n
            for zone, n in list(listener.response_bytes.items()):
                respsz_sum[(sv, zone, proto)] += n
        for (sv, zone, proto, family, qtype), n in req_counts.items():
            requests.add_metric([sv, zone, "", proto, family, qtype], n)
        for (sv, zone, rcode), n in resp_counts.items():
            responses.add_metric([sv, zone, "", rcode, "kubernetes"], n)
        for (sv, zone, qtype), buckets in dur.items():
            durations.add_metric([sv, zone, "", qtype], _histogram(buckets, stats.DURATION_BUCKETS), dur_sum[(sv, zone, qtype)])
        for (sv, zone, proto), buckets in reqsz.items():
            request_sizes.add_metric([sv, zone, "", proto], _histogram(buckets, stats.SIZE_BUCKETS), reqsz_sum[(sv, zone, proto)])
        for (sv, zone, proto), buckets in respsz.items():
            response_sizes.add_metric([sv, zone, "", proto], _histogram(buckets, stats.SIZE_BUCKETS), respsz_sum[(sv, zone, proto)])
        yield from (requests, responses, durations, request_sizes, response_sizes)

    def _cache(self, forwarder, listeners: list[stats.QueryStats]):
        entries = GaugeMetricFamily("coredns_cache_entries", "The number of elements in the cache.", labels=["server", "type", "zones", "view"])
        hits = CounterMetricFamily("coredns_cache_hits", "The count of cache hits.", labels=["server", "type", "zones", "view"])
        misses = CounterMetricFamily("coredns_cache_misses", "The count of cache misses.", labels=["server", "zones", "view"])
        requests = CounterMetricFamily("coredns_cache_requests", "The count of cache requests.", labels=["server", "zones", "view"])
        if forwarder is not None:
            cache = forwarder.cache
            success, denial = cache.sizes()
            entries.add_metric(["dns://:53", "success", ".", ""], success)
            entries.add_metric(["dns://:53", "denial", ".", ""], denial)
            # Hits answered in Python, and the replays of replies made from the cache (their
            # statistics keys say which kind of hit they are: stats.forwarded_key).
            replayed = {"success": 0, "denial": 0}
            for listener in listeners:
                for key, n in list(listener.counts.items()):
                    if key is not None and len(key) > 5:
                        replayed[key[5]] += n
            hits.add_metric(["dns://:53", "success", ".", ""], cache.hits_success + replayed["success"])
            hits.add_metric(["dns://:53", "denial", ".", ""], cache.hits - cache.hits_success + replayed["denial"])
            misses.add_metric(["dns://:53", ".", ""], cache.misses)
            requests.add_metric(["dns://:53", ".", ""], cache.hits + cache.misses + replayed["success"] + replayed["denial"])
        yield from (entries, hits, misses, requests)

    def _tables(self, server):
        """What each bounded table holds (docs/operating.md lists the bounds)."""
        entries = GaugeMetricFamily("kdns_table_entries", "Entries held in each bounded table.", labels=["table"])
        size = GaugeMetricFamily("kdns_table_bytes", "Bytes each bounded table takes, as counted against its bound.",
                                 labels=["table"])
        responder = server.responder
        entries.add_metric(["answer_memo"], responder.memo_entries)
        size.add_metric(["answer_memo"], responder.memo_bytes)
        entries.add_metric(["replay"], responder.replay_entries)
        size.add_metric(["replay"], responder.replies_bytes)
        if server.forwarder is not None:
            entries.add_metric(["forward_cache"], len(server.forwarder.cache))
            size.add_metric(["forward_cache"], server.forwarder.cache.bytes)
        entries.add_metric(["query_stats"], sum(listener.keys() for listener in server.listener_stats()))
        yield from (entries, size)

    def _forward(self, forwarder):
        family = HistogramMetricFamily("coredns_proxy_request_duration_seconds", "Histogram of the time each request took.",
                                       labels=["proxy_name", "to", "rcode"])
        if forwarder is not None:
            for (to, rcode), (buckets, total) in list(forwarder.durations.items()):
                family.add_metric(["forward", to, rcode], _histogram(buckets, stats.DURATION_BUCKETS), total)
        yield family

    def _kubernetes(self, server):
        programming = HistogramMetricFamily(
            "coredns_kubernetes_dns_programming_duration_seconds",
            "Histogram of the time (in seconds) it took to program a dns instance.", labels=["service_kind"],
        )
        for kind, (buckets, total) in list(server.programming.histograms.items()):
            programming.add_metric([kind], _histogram(buckets, PROGRAMMING_BUCKETS), total)
        yield programming
        objects = GaugeMetricFamily("kdns_objects", "Kubernetes objects held, per kind.", labels=["kind"])
        for kind, n in server.index.counts().items():
            objects.add_metric([kind], n)
        yield objects
        synced = GaugeMetricFamily("kdns_synced", "1 once every source has delivered its initial state.")
        synced.add_metric([], 1 if server.synced else 0)
        yield synced
        relists = CounterMetricFamily("kdns_source_relists", "Complete lists of a resource (the first included).", labels=["resource"])
        restarts = CounterMetricFamily("kdns_source_watch_restarts", "Watches started again after one ended.", labels=["resource"])
        age = GaugeMetricFamily("kdns_source_seconds_since_last_event", "Seconds since the source last heard of an object (a list or a watch event).",
                                labels=["resource"])
        now = time.monotonic()
        for resource, (lists, watches, last) in server.source_stats().items():
            relists.add_metric([resource], lists)
            restarts.add_metric([resource], watches)
            if last is not None:
                age.add_metric([resource], now - last)
        yield from (relists, restarts, age)


# Time from an endpoint change to DNS: CoreDNS's buckets (1 ms doubling to ~1 hour).
PROGRAMMING_BUCKETS = tuple(0.001 * 2**i for i in range(20))


class ProgrammingLatency:
    """coredns_kubernetes_dns_programming_duration_seconds: from the EndpointSlice
    controller's trigger time to the moment the new answers are served."""

    def __init__(self) -> None:
        self.histograms: dict[str, tuple[dict[int, int], float]] = {}  # service kind -> (count per bucket, total seconds)

    def record(self, batch: list, index: Index, now: float) -> None:
        """After `batch` was applied to `index` and published at `now`."""
        for event in batch:
            obj = getattr(event, "obj", None)
            if not isinstance(obj, EndpointSlice) or obj.trigger_time is None:
                continue
            svc = index.service(obj.namespace, obj.service)
            if svc is None:
                continue
            kind = "headless_with_selector" if svc.type is ServiceType.HEADLESS else "cluster_ip"
            buckets, total = self.histograms.get(kind, ({}, 0.0))
            seconds = max(0.0, now - obj.trigger_time)
            bucket = programming_bucket(seconds)
            buckets[bucket] = buckets.get(bucket, 0) + 1
            self.histograms[kind] = (buckets, total + seconds)


def programming_bucket(seconds: float) -> int:
    for i, bound in enumerate(PROGRAMMING_BUCKETS):
        if seconds <= bound:
            return i
    return len(PROGRAMMING_BUCKETS)


class _Table:
    """A table's size, as `Snapshot.responder` and `Snapshot.forwarder.cache` give it."""

    def __init__(self, entries: int, size: int) -> None:
        self.entries, self.bytes = entries, size

    def __len__(self) -> int:
        return self.entries


class _CacheCopy(_Table):
    def __init__(self, cache) -> None:
        super().__init__(len(cache), cache.bytes)
        self._sizes = cache.sizes()
        self.hits, self.hits_success, self.misses = cache.hits, cache.hits_success, cache.misses

    def sizes(self) -> tuple[int, int]:
        return self._sizes


class _ForwarderCopy:
    def __init__(self, forwarder) -> None:
        self.cache = _CacheCopy(forwarder.cache)
        self.durations = {label: (dict(buckets), total) for label, (buckets, total) in list(forwarder.durations.items())}


class _ResponderCopy:
    def __init__(self, responder) -> None:
        self.memo_entries, self.memo_bytes = responder.memo_entries, responder.memo_bytes
        self.replay_entries, self.replies_bytes = responder.replay_entries, responder.replies_bytes


class Snapshot:
    """What a scrape reads from the server, copied in the serving thread (quick: every table
    is bounded, and the counters are copied by dict's C code), with the methods and attributes
    of the server that `Collector` uses."""

    def __init__(self, server) -> None:
        self._listeners = [listener.copy() for listener in server.listener_stats()]
        self.forwarder = _ForwarderCopy(server.forwarder) if server.forwarder is not None else None
        self.responder = _ResponderCopy(server.responder)
        self.programming = ProgrammingLatency()
        self.programming.histograms = {kind: (dict(b), t) for kind, (b, t) in list(server.programming.histograms.items())}
        self._objects = dict(server.index.counts())
        self.synced = server.synced
        self._sources = dict(server.source_stats())

    def listener_stats(self) -> list[stats.QueryStats]:
        return self._listeners

    def source_stats(self) -> dict:
        return self._sources

    @property
    def index(self) -> Snapshot:
        return self

    def counts(self) -> dict[str, int]:
        return self._objects


def metrics_text(server) -> bytes:
    """The /metrics body, all in the calling thread."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(Collector(server))
    return generate_latest(registry)


async def metrics_body(server) -> bytes:
    """The /metrics body: the counters copied here, folded and formatted in a worker thread."""
    snapshot = Snapshot(server)
    return await trio.to_thread.run_sync(metrics_text, snapshot)
