"""The one source kdns follows, chosen from the configuration: the API server (`--kubeconfig`,
`--apiserver`, in-cluster), manifest files (`--manifests`, else the bundled demo cluster), or
nothing at all (kdns.testing gives its objects in-process).

`Source` checks what can be checked before anything runs (the label selector, the API
configuration, the manifests, read once here), and raises `SourceError` with one line saying
what is wrong. The server then asks it what the index must wait for (`names`), runs it
(`run`, sending batches of events) and reports on it (`stats`, `describe`).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import trio

from kdns.config import ServeConfig
from kdns.model import ROUTE_KINDS, WEB_KINDS, Event, Kind, ObjectKey, Synced
from kdns.options import PodsMode
from kdns.sources.hosts import HostsError, HostsFiles, watch_hosts
from kdns.sources.manifests import ManifestError, ManifestSet, watch_manifests
from kdns.sources.select import Scope, SelectorError, parse_selector

MANIFESTS = "manifests"  # the source name the index waits for when objects come from files


class SourceError(Exception):
    """The source cannot be used; the message is one line saying why."""


def demo_cluster() -> Path:
    """The bundled demo cluster (config/demo-cluster.yaml in the source tree)."""
    return Path(str(resources.files("kdns") / "data" / "demo-cluster.yaml"))


class Source:
    def __init__(self, config: ServeConfig, *, memory: bool = False):
        """`memory`: no source at all (kdns.testing)."""
        try:
            labels = parse_selector(config.labels) if config.labels else None
        except SelectorError as exc:
            raise SourceError(f"--labels: {exc}") from None
        self.scope = Scope(config.namespaces, labels, config.endpoint_pod_names)
        self.kinds = [Kind.NAMESPACE, Kind.SERVICE] + ([Kind.ENDPOINT_SLICE] if config.endpoints else [])  # (--no-endpoints)
        if config.dns.pods is PodsMode.VERIFIED or config.dns.autopath:
            self.kinds.append(Kind.POD)
        if config.dns.ingress_hosts:
            self.kinds += [Kind.INGRESS_CLASS, Kind.INGRESS]
        if config.dns.gateway_hosts:
            self.kinds += [Kind.GATEWAY, *ROUTE_KINDS]
        self.api = config.api
        self.memory = memory
        self.manifests: ManifestSet | None = None
        self.cluster = None
        self.names: list[str] = []  # what must deliver its initial state before the index is synced
        # Hosts data (`--hosts` files, a Corefile's hosts), read beside whichever source (ready at
        # start); kept even when there is none, for a reloaded Corefile that brings some.
        self.hosts = HostsFiles(config.hosts_files, config.dns.all_zones)
        if config.api is not None:
            from kdns.sources.kubernetes import ApiSourceError, ClusterWatch, client_configuration

            try:
                client_configuration(config.api)  # a bad kubeconfig is a start-up error
            except ApiSourceError as exc:
                raise SourceError(str(exc)) from None
            self.cluster = ClusterWatch(config.api, self.kinds, self.scope)
            self.names = [kind.value for kind in self.kinds]
        elif not memory:
            unread = frozenset(kind for kind in (*WEB_KINDS, Kind.ENDPOINT_SLICE) if kind not in self.kinds)  # (their options are off)
            self.manifests = ManifestSet(config.manifests or (str(demo_cluster()),), self.scope, config.manifest_max_bytes, unread)
            self.names = [MANIFESTS]

    def initial(self) -> list[Event]:
        """What is known at once: the hosts files and the manifests, read now (SourceError
        if one is broken)."""
        try:
            events = self.hosts.load()
        except HostsError as exc:
            raise SourceError(str(exc)) from None
        if self.manifests is None:
            return events
        try:
            return [*events, *self.manifests.load(), Synced(MANIFESTS)]
        except ManifestError as exc:
            raise SourceError(str(exc)) from None

    async def run(self, send: trio.MemorySendChannel, reload_interval: float) -> None:
        """Send batches of events until cancelled (files: re-read when they change)."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch_hosts, self.hosts, send, reload_interval)
            if self.manifests is not None:
                nursery.start_soon(watch_manifests, self.manifests, send, reload_interval)
            elif self.cluster is not None:
                nursery.start_soon(self.cluster.run, send)

    def join(self, timeout: float) -> None:
        """After `run` ended: wait for the API source's worker threads (blocking)."""
        if self.cluster is not None:
            self.cluster.join(timeout)

    def stats(self) -> dict[str, tuple[int, int, float | None]]:
        """Per resource: (complete lists, watches restarted, when last heard of), for metrics."""
        if self.cluster is not None:
            return self.cluster.stats()
        if self.manifests is not None:
            return {MANIFESTS: (1 + self.manifests.reads, 0, self.manifests.last_change)}
        return {}

    def locate(self, key: ObjectKey) -> str | None:
        """Where the object with this key comes from (`file:line`, `resourceVersion N`, a
        hosts file's path), for `kdns explain`; None when unknown."""
        if key[0] is Kind.HOSTS:
            return key[2]
        if self.manifests is not None:
            return self.manifests.locate(key)
        if self.cluster is not None:
            return self.cluster.locate(key)
        return None

    def describe(self) -> str:
        if self.memory:
            return "objects given in-process"
        if self.api is not None:
            return self.api.describe()
        return ", ".join(map(str, self.manifests.paths)) if self.manifests else ""
