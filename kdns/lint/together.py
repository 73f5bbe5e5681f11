"""The checks of `kdns lint` that look at the objects together: EndpointSlices that belong to
no Service of the files, headless Services without EndpointSlices or ready endpoints, Services
whose selector matches no Pod of the files (when the files hold Pods), one hostname on several
ready endpoints of a Service. `Facts` gathers what they need one object at a time, so that
`kdns serve` keeps that much of each file and not the objects. Pure.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from kdns import names
from kdns.lint.checks import API_VERSIONS, WARNING, Finding, Place, close, mapping, subject_of
from kdns.sources import convert


@dataclass(frozen=True, slots=True)
class ServiceFact:
    kind: str  # "ClusterIP", "Headless", "ExternalName"
    selector: dict[str, str] | None
    place: Place
    subject: str


@dataclass(frozen=True, slots=True)
class SliceFact:
    namespace: str
    service: str | None  # the kubernetes.io/service-name label
    family: str  # addressType
    ready: tuple[tuple[str, str], ...]  # (hostname, first address) of each ready endpoint with a hostname
    ready_count: int
    place: Place
    subject: str


@dataclass
class Facts:
    """What the checks of the objects together need, gathered one object at a time."""

    services: dict[tuple[str, str], ServiceFact] = field(default_factory=dict)
    slices: list[SliceFact] = field(default_factory=list)
    pods: dict[str, list[dict[str, str]]] = field(default_factory=dict)  # namespace -> the labels of its Pods

    @classmethod
    def merge(cls, parts: Iterable[Facts]) -> Facts:
        """The facts of several files together."""
        out = cls()
        for part in parts:
            out.services.update(part.services)
            out.slices += part.slices
            for namespace, pods in part.pods.items():
                out.pods.setdefault(namespace, []).extend(pods)
        return out

    def add(self, obj: dict[str, Any], place: Place) -> None:
        """Note what the cross checks need of one object (the others are ignored)."""
        kind, namespace, name = convert.identify(obj)
        if obj.get("apiVersion") != API_VERSIONS.get(kind):
            return
        subject = subject_of(obj)
        if kind == "Service":
            spec = mapping(obj.get("spec"))
            ips = spec.get("clusterIPs") if isinstance(spec.get("clusterIPs"), list) else [spec.get("clusterIP")]
            what = "ExternalName" if spec.get("type") == "ExternalName" else "Headless" if ips and ips[0] == "None" else "ClusterIP"
            selector = spec.get("selector") if isinstance(spec.get("selector"), dict) and spec.get("selector") else None
            self.services[(namespace, name)] = ServiceFact(what, selector, place, subject)
        elif kind == "EndpointSlice":
            meta = mapping(obj.get("metadata"))
            labels = mapping(meta.get("labels"))
            service = labels.get(convert.SERVICE_NAME_LABEL)
            endpoints = [ep for ep in obj.get("endpoints") or [] if isinstance(ep, dict)] if isinstance(obj.get("endpoints"), list) else []
            ready = [ep for ep in endpoints if mapping(ep.get("conditions")).get("ready") is not False]
            named = tuple((ep["hostname"], str((ep.get("addresses") or ["?"])[0])) for ep in ready
                          if isinstance(ep.get("hostname"), str) and ep["hostname"])
            self.slices.append(SliceFact(namespace, service if isinstance(service, str) else None, str(obj.get("addressType")),
                                         named, len(ready), place, subject))
        elif kind == "Pod":
            meta = mapping(obj.get("metadata"))
            labels = mapping(meta.get("labels"))
            self.pods.setdefault(namespace, []).append(labels)


def check_set(facts: Facts) -> list[Finding]:
    """The problems of the objects together."""
    out: list[Finding] = []
    slices_of: dict[tuple[str, str], list[SliceFact]] = {}
    for sl in facts.slices:
        if sl.service is None:
            if sl.family != "FQDN":
                out.append(sl.place.finding(WARNING, sl.subject, ("metadata", "labels"),
                                            f"no {convert.SERVICE_NAME_LABEL} label: this EndpointSlice belongs to no Service "
                                            "and kdns ignores it"))
            continue
        key = (sl.namespace, sl.service)
        if key in facts.services:
            slices_of.setdefault(key, []).append(sl)
            continue
        others = [name for (ns, name) in facts.services if ns == sl.namespace]
        meant = close(sl.service, others) if names.is_label(sl.service) else None
        hint = f" (did you mean {meant}?)" if meant else ""
        out.append(sl.place.finding(WARNING, sl.subject, ("metadata", "labels", convert.SERVICE_NAME_LABEL),
                                    f"belongs to no Service of these files: no Service {sl.namespace}/{sl.service}{hint}"))
    for key, svc in facts.services.items():
        members = slices_of.get(key, [])
        if svc.kind == "Headless":
            if not members:
                out.append(svc.place.finding(WARNING, svc.subject, (), "headless, and no EndpointSlice of these files belongs to it "
                                             f"(label {convert.SERVICE_NAME_LABEL}: {key[1]}): its names are NXDOMAIN"))
            elif not any(sl.ready_count for sl in members):
                out.append(svc.place.finding(WARNING, svc.subject, (), "headless, and none of its endpoints is ready: its names are "
                                             "NXDOMAIN"))
        if svc.selector is not None and facts.pods and not any(_selects(svc.selector, labels) for labels in facts.pods.get(key[0], [])):
            shown = ",".join(f"{k}={v}" for k, v in svc.selector.items())
            out.append(svc.place.finding(WARNING, svc.subject, ("spec", "selector"), f"selects no Pod of these files ({shown})"))
        out += _shared_hostnames(svc, members, key)
    return out


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def _shared_hostnames(svc: ServiceFact, members: list[SliceFact], key: tuple[str, str]) -> list[Finding]:
    """One hostname on several ready endpoints of a family: one name answers with all of them."""
    seen: dict[tuple[str, str], list[tuple[str, SliceFact]]] = {}
    for sl in members:
        for hostname, address in sl.ready:
            seen.setdefault((sl.family, hostname), []).append((address, sl))
    out = []
    for (_, hostname), users in sorted(seen.items(), key=lambda item: item[0]):
        addresses = dict.fromkeys(address for address, _ in users)  # one address in two slices (skew) is one endpoint
        if len(addresses) > 1:
            where = ", ".join(f"{address} ({sl.subject.split(' ', 1)[1]})" for address, sl in users)
            second = next(sl for address, sl in users if address != users[0][0])
            out.append(second.place.finding(WARNING, second.subject, ("endpoints",),
                                            f"hostname {hostname} is on {len(addresses)} ready endpoints of Service {key[0]}/{key[1]}: "
                                            f"{where}; {hostname}.{key[1]}.{key[0]}.svc answers with all of them"))
    return out
