"""The hosts of Ingresses and Gateway routes, kept in kdns.tables beside the other names
outside the zones (`--ingress-hosts`, `--gateway-hosts`). Pure.

kdns.hostindex owns one `WebHosts` and calls `publish` in the same `apply` as the cluster
names, with the Services that changed: the records of a host are worked out once per change
of what they depend on, never per query. What depends on what:

* an Ingress: itself, the IngressClasses (its class may be the default one), and its class's
  controller Service (kdns.ingress);
* a route: itself, its Gateways (listeners, addresses), the Namespaces' labels (allowedRoutes
  selectors), and the Services made for its Gateways (kdns.gateway).

Each Ingress and each route is the claimant of its hosts (provenance: the claimant, then the
controller Service, or the Gateways and their Services). Every claim has the same rank, so
when two objects claim one host the first in (kind, namespace, name) order wins, whole, and
kdns.tables logs a warning naming both: GRPCRoute, then HTTPRoute, then Ingress, then TLSRoute.
A more specific host beats a wildcard at query time (kdns.answer_hosts).

Warnings about one object (hosts skipped, no target) are logged once, again only when they
change; before the first sync they wait for it (an Ingress listed before the Services has no
controller yet), and only those still true then are logged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from kdns import gateway as gw
from kdns import ingress
from kdns.config import DnsConfig
from kdns.model import (
    ROUTE_KINDS,
    Gateway,
    Ingress,
    IngressClass,
    Kind,
    KubeObject,
    Namespace,
    ObjectKey,
    Route,
    Rrset,
    Service,
    ServiceType,
)
from kdns.names import canonical_ip
from kdns.records import SvcKey
from kdns.tables import Claim, NameTables

log = logging.getLogger("kdns.index")

ServiceOf = Callable[[SvcKey], Service | None]


@dataclass(frozen=True, slots=True)
class Target:
    """Where a Gateway is reached: addresses, else names (the first is a CNAME's target)."""

    ips: tuple[str, ...] = ()
    names: tuple[str, ...] = ()
    origins: tuple[ObjectKey, ...] = ()


class WebHosts:
    def __init__(self, config: DnsConfig, tables: NameTables):
        self.config = config
        self.tables = tables
        self.ingresses: dict[ObjectKey, Ingress] = {}
        self.classes: dict[str, IngressClass] = {}
        self.gateways: dict[gw.GatewayKey, Gateway] = {}
        self.routes: dict[ObjectKey, Route] = {}
        self.namespaces: dict[str, Namespace] = {}
        self._labels: dict[str, tuple[tuple[str, str], ...]] = {}  # namespace -> its labels
        # What is to be worked out again at the next publish.
        self._dirty: set[ObjectKey] = set()  # Ingresses and routes
        self._dirty_gateways: set[gw.GatewayKey] = set()  # whose addresses may have changed
        self._changed_gateways: set[gw.GatewayKey] = set()  # whose objects changed
        self._classes_changed = False
        self._apps_changed = False
        self._namespaces_changed = False
        # Ingresses: the class each counts under, the controller of each class, candidates.
        self._class_of: dict[ObjectKey, str] = {}
        self._of_class: dict[str, set[ObjectKey]] = {}
        self._controllers: dict[str, ingress.Controller] = {}
        self._apps: dict[SvcKey, tuple[str, str]] = {}  # Services that may be a controller's
        self._announced: dict[str, SvcKey | None] = {}  # the controller last logged for each class
        # Routes: the Gateways each refers to, the routes of each Gateway, Gateways' Services.
        self._routes_of: dict[gw.GatewayKey, set[ObjectKey]] = {}
        self._parents: dict[ObjectKey, tuple[gw.GatewayKey, ...]] = {}
        self._targets: dict[gw.GatewayKey, Target] = {}
        self._services_of: dict[gw.GatewayKey, set[SvcKey]] = {}
        self._gateway_of: dict[SvcKey, gw.GatewayKey] = {}
        self._warned: dict[ObjectKey | str, tuple[str, ...]] = {}
        self._held: dict[ObjectKey | str, tuple[str, ...]] = {}  # warnings waiting for the first sync
        self._quiet = False

    @property
    def enabled(self) -> bool:
        return self.config.ingress_hosts or self.config.gateway_hosts

    def objects(self) -> list[KubeObject]:
        return [*self.classes.values(), *self.ingresses.values(), *self.gateways.values(), *self.routes.values()]

    # -- objects in ---------------------------------------------------------------------------

    def upsert(self, obj: KubeObject) -> None:
        if isinstance(obj, Ingress):
            if self.ingresses.get(obj.key) != obj:
                self.ingresses[obj.key] = obj
                self._dirty.add(obj.key)
        elif isinstance(obj, IngressClass):
            if self.classes.get(obj.name) != obj:
                self.classes[obj.name] = obj
                self._classes_changed = True
        elif isinstance(obj, Gateway):
            if self.gateways.get((obj.namespace, obj.name)) != obj:
                self.gateways[(obj.namespace, obj.name)] = obj
                self._changed_gateways.add((obj.namespace, obj.name))
        elif isinstance(obj, Route):
            if self.routes.get(obj.key) != obj:
                self.routes[obj.key] = obj
                self._dirty.add(obj.key)
        elif isinstance(obj, Namespace) and self.namespaces.get(obj.name) != obj:
            self.namespaces[obj.name] = obj
            self._namespace_labels(obj.name, obj.labels)

    def delete(self, key: ObjectKey) -> None:
        kind, namespace, name = key
        if kind is Kind.INGRESS and self.ingresses.pop(key, None) is not None:
            self._dirty.add(key)
        elif kind is Kind.INGRESS_CLASS and self.classes.pop(name, None) is not None:
            self._classes_changed = True
        elif kind is Kind.GATEWAY and self.gateways.pop((namespace, name), None) is not None:
            self._changed_gateways.add((namespace, name))
        elif kind in ROUTE_KINDS and self.routes.pop(key, None) is not None:
            self._dirty.add(key)
        elif kind is Kind.NAMESPACE and self.namespaces.pop(name, None) is not None:
            self._namespace_labels(name, None)

    def _namespace_labels(self, name: str, labels: tuple[tuple[str, str], ...] | None) -> None:
        if self._labels.get(name) != labels:
            if labels is None:
                self._labels.pop(name, None)
            else:
                self._labels[name] = labels
            self._namespaces_changed = True

    # -- into the tables ------------------------------------------------------------------------

    def publish(self, services: set[SvcKey], service: ServiceOf, *, synced: bool = True) -> None:
        """Work out again what changed since the last call (`services`: the Services that
        changed) and set the claims in the tables."""
        if not self.enabled:
            return
        self._quiet = not synced
        self._services(services, service)
        if self.config.ingress_hosts:
            self._ingresses(services, service)
        if self.config.gateway_hosts:
            self._gateways(service)
        for key in sorted(self._dirty):
            if key[0] is Kind.INGRESS:
                self._ingress(key, service)
            else:
                self._route(key)
        self._dirty.clear()
        if synced and self._held:
            held, self._held = self._held, {}
            for subject, warnings in held.items():
                self._warn(subject, list(warnings))

    def _services(self, services: set[SvcKey], service: ServiceOf) -> None:
        """Note which changed Services may be an ingress controller's or a Gateway's."""
        for key in services:
            svc = service(key)
            app = svc.app if svc is not None else ("", "")
            if app != ("", ""):
                if self._apps.get(key) != app:
                    self._apps[key] = app
                    self._apps_changed = True
            elif self._apps.pop(key, None) is not None:
                self._apps_changed = True
            made_for = svc.gateway if svc is not None else None
            before = self._gateway_of.get(key)
            if before is not None:
                self._dirty_gateways.add(before)
                if made_for != before:
                    self._services_of[before].discard(key)
                    if not self._services_of[before]:
                        del self._services_of[before]
                    del self._gateway_of[key]
            if made_for is not None:
                self._gateway_of[key] = made_for
                self._services_of.setdefault(made_for, set()).add(key)
                self._dirty_gateways.add(made_for)

    def _ingresses(self, services: set[SvcKey], service: ServiceOf) -> None:
        """Find the classes' controllers again where they may have changed; the Ingresses of
        a class whose controller changed are worked out again."""
        if self._classes_changed:  # (the default class, a class's labels)
            self._dirty.update(self.ingresses)
            self._controllers.clear()
            self._classes_changed = self._apps_changed = False
            return
        used = {ctl.service for ctl in self._controllers.values()} | {(ns, name) for _, ns, name in self.config.ingress_controllers}
        if not (self._apps_changed or services & used):
            return
        self._apps_changed = False
        for class_name, before in list(self._controllers.items()):
            now = self._controller(class_name, service, fresh=True)
            if now != before:
                self._dirty.update(self._of_class.get(class_name, ()))

    def _controller(self, class_name: str, service: ServiceOf, *, fresh: bool = False) -> ingress.Controller:
        found = None if fresh else self._controllers.get(class_name)
        if found is None:
            found, warning = ingress.controller(class_name, self.config, self.classes, self._apps, service)
            self._controllers[class_name] = found
            self._warn(f"class {class_name}", [warning] if warning else [])
            if found.service is not None and self._announced.get(class_name) != found.service:
                log.info("Ingress class %s: controller Service %s/%s (%s)", class_name or "(none)", *found.service, found.how)
            self._announced[class_name] = found.service
        return found

    def _ingress(self, key: ObjectKey, service: ServiceOf) -> None:
        before = self._class_of.pop(key, None)
        if before is not None:
            members = self._of_class.get(before)
            if members is not None:
                members.discard(key)
                if not members:
                    del self._of_class[before]
        ing = self.ingresses.get(key)
        if ing is None or not self.config.ingress_hosts:
            self._forget(key)
            return
        class_name = ingress.class_of(ing, self.classes)
        self._class_of[key] = class_name
        self._of_class.setdefault(class_name, set()).add(key)
        if not ingress.counts(class_name, self.config):
            self._forget(key)
            return
        out = ingress.claims(ing, class_name, self._controller(class_name, service), self.config)
        self._warn(key, out.warnings)
        self._set(key, {host: (ingress.RANK_WEB, rrsets, (key, *out.origins)) for host, rrsets in out.hosts.items()})

    def _gateways(self, service: ServiceOf) -> None:
        if self._namespaces_changed:
            self._dirty.update(self.routes)
            self._namespaces_changed = False
        for key in self._dirty_gateways | self._changed_gateways:
            target = self._target(key, service)
            if key in self._changed_gateways or target != self._targets.get(key):
                self._dirty.update(self._routes_of.get(key, ()))
            if target is None:
                self._targets.pop(key, None)
            else:
                self._targets[key] = target
        self._dirty_gateways.clear()
        self._changed_gateways.clear()

    def _target(self, key: gw.GatewayKey, service: ServiceOf) -> Target | None:
        gateway = self.gateways.get(key)
        if gateway is None:
            return None
        if gateway.targets:
            given = tuple(t for t in gateway.targets if canonical_ip(t) is not None)
            return Target(given, tuple(t for t in gateway.targets if canonical_ip(t) is None), (gateway.key,))
        if gateway.addresses or gateway.address_names:
            return Target(gateway.addresses, gateway.address_names, (gateway.key,))
        ips: list[str] = []
        origins: list[ObjectKey] = [gateway.key]
        for svc_key in sorted(self._services_of.get(key, ())):
            svc = service(svc_key)
            if svc is not None and svc.type is ServiceType.CLUSTER_IP and svc.cluster_ips:
                ips += svc.cluster_ips
                origins.append((Kind.SERVICE, *svc_key))
        return Target(tuple(dict.fromkeys(ips)), (), tuple(origins))

    def _route(self, key: ObjectKey) -> None:
        for parent in self._parents.pop(key, ()):
            members = self._routes_of.get(parent)
            if members is not None:
                members.discard(key)
                if not members:
                    del self._routes_of[parent]
        route = self.routes.get(key)
        if route is None or not self.config.gateway_hosts:
            self._forget(key)
            return
        parents = tuple(dict.fromkeys((ref.namespace, ref.name) for ref in route.parents))
        self._parents[key] = parents
        for parent in parents:
            self._routes_of.setdefault(parent, set()).add(key)
        claims: dict[str, Claim] = {}
        warnings = []
        for host, through in gw.route_hosts(route, self.gateways, self._labels).items():
            zone = self.config.zone_of(host)
            if zone is not None:
                warnings.append(f"{key[0]} {key[1]}/{key[2]}: host {host} lies in {zone}, a zone kdns answers from Services; skipped")
                continue
            targets = [self._targets[g] for g in through if g in self._targets]
            ips = tuple(dict.fromkeys(ip for t in targets for ip in t.ips))
            cname = "" if ips else next((name for t in targets for name in t.names), "")
            if not ips and not cname:
                warnings.append(f"{key[0]} {key[1]}/{key[2]}: no address for {host} (Gateway "
                                f"{', '.join(f'{ns}/{name}' for ns, name in through)} has no status.addresses and no "
                                f"Service made for it): not answered")
                continue
            records: tuple[Rrset, ...] = ingress.records(host, ips, cname, self.config.ttl)
            origins = tuple(dict.fromkeys(origin for t in targets for origin in t.origins))
            claims[host] = (ingress.RANK_WEB, records, (key, *origins), host.startswith("*."))
        self._warn(key, warnings)
        self._set(key, claims)

    def _set(self, key: ObjectKey, claims: dict[str, Claim]) -> None:
        self.tables.set(key, claims, {})

    def _forget(self, key: ObjectKey) -> None:
        self.tables.set(key, {}, {})
        self._warned.pop(key, None)
        self._held.pop(key, None)

    def _warn(self, key: ObjectKey | str, warnings: list[str]) -> None:
        """Log the warnings about one object that were not logged the last time."""
        if self._quiet:  # (the latest word about each object waits for the first sync)
            if warnings:
                self._held[key] = tuple(warnings)
            else:
                self._held.pop(key, None)
            return
        self._held.pop(key, None)  # (worked out again since: this is the latest word)
        before = self._warned.get(key, ())
        for warning in warnings:
            if warning not in before:
                log.warning("%s", warning)
        if warnings:
            self._warned[key] = tuple(warnings)
        else:
            self._warned.pop(key, None)
