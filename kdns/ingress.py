"""What one Ingress makes its hosts resolve to (`--ingress-hosts`). Pure.

**Hosts**: spec.rules[].host, spec.tls[].hosts and the names of external-dns's hostname
annotation (external-dns's `ingress-hostname-source` annotation limits them to the first two,
`defined-hosts-only`, or to the annotation, `annotation-only`). `*.example.com` stands for any
one label there, as the Ingress rule matches it. A host inside a zone kdns is authoritative for
(the cluster zones, the external zones, the reverse zones) or that is no host name is skipped,
with a warning naming the Ingress.

**Class**: spec.ingressClassName, else the legacy kubernetes.io/ingress.class annotation,
else the IngressClass marked default (when exactly one is); an Ingress may have none.
With `--ingress-class`, only Ingresses of those classes count.

**Target**, the first that gives something:

1. external-dns's target annotation: its addresses (A/AAAA); with none, its first name (a CNAME);
2. status.loadBalancer.ingress[]: its addresses, else its first hostname (loopback addresses
   and `localhost` were left out on arrival: kind's ingress-nginx publishes `localhost`);
3. the ClusterIP(s) of the class's controller Service: `--ingress-controller CLASS=NS/SVC`
   (the class's own, else `*`); failing that, for a class whose IngressClass exists, the one
   Service with a ClusterIP and port 80 that carries the IngressClass's
   app.kubernetes.io/instance label value (else its app.kubernetes.io/name), as Helm charts
   label both (ingress-nginx's admission Service serves 443 only, so it is not a candidate).
   Two or more candidates: none is chosen, and a warning names them.

An Ingress with no target contributes nothing: its hosts stay ordinary outside names
(forwarded, or as `--outside-names` says), and a warning says why, once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from kdns import codes, names
from kdns.config import DnsConfig
from kdns.external import address_rrsets
from kdns.model import Ingress, IngressClass, Kind, ObjectKey, Rrset, Service, ServiceType, describe
from kdns.records import SvcKey
from kdns.sources.convert_web import APP_INSTANCE, is_host

RANK_WEB = 2  # Ingress and route hosts: after the external zones' names, before hosts files and record()


@dataclass(frozen=True, slots=True)
class Controller:
    """The Service an ingress class's traffic goes to, and how it was found (for the log)."""

    service: SvcKey | None
    addresses: tuple[str, ...]
    how: str  # "--ingress-controller nginx=ingress-nginx/ingress-nginx-controller", "discovered ..."; "" none


NO_CONTROLLER = Controller(None, (), "")


@dataclass(slots=True)
class Claims:
    hosts: dict[str, tuple[Rrset, ...]]
    origins: tuple[ObjectKey, ...]  # the objects the records come from, beside the claimant
    warnings: list[str]


def class_of(ing: Ingress, classes: Mapping[str, IngressClass]) -> str:
    """The class an Ingress belongs to ("" for none)."""
    if ing.class_name:
        return ing.class_name
    defaults = [cls.name for cls in classes.values() if cls.default]
    return defaults[0] if len(defaults) == 1 else ""


def counts(class_name: str, config: DnsConfig) -> bool:
    """Whether an Ingress of this class counts (`--ingress-class`)."""
    return not config.ingress_classes or class_name in config.ingress_classes


def controller(class_name: str, config: DnsConfig, classes: Mapping[str, IngressClass],
               apps: Mapping[SvcKey, tuple[str, str]], service: Callable[[SvcKey], Service | None]) -> tuple[Controller, str]:
    """The controller Service of a class, and a warning when it cannot be told ("" if none).
    `apps`: the candidate Services and their (app.kubernetes.io/instance, .../name) labels."""
    explicit = {cls: (ns, name) for cls, ns, name in config.ingress_controllers}
    given = explicit.get(class_name) if class_name else None
    chosen = class_name if given else "*"
    given = given or explicit.get("*")
    if given is not None:
        how = f"--ingress-controller {chosen}={given[0]}/{given[1]}"
        return Controller(given, _cluster_ips(service(given)), how), ""
    cls = classes.get(class_name) if class_name else None
    if cls is None or not cls.app:
        return NO_CONTROLLER, ""
    key, value = cls.app
    position = 0 if key == APP_INSTANCE else 1
    found = sorted(svc for svc, app in apps.items() if app[position] == value)
    if len(found) == 1:
        how = f"discovered: the Service serving port 80 labelled {key}={value} like IngressClass {class_name}"
        return Controller(found[0], _cluster_ips(service(found[0])), how), ""
    if not found:
        return NO_CONTROLLER, ""
    listed = ", ".join(f"{ns}/{name}" for ns, name in found)
    return NO_CONTROLLER, (f"IngressClass {class_name}: {len(found)} Services serving port 80 are labelled {key}={value} "
                           f"({listed}); say which is the controller with --ingress-controller {class_name}=NAMESPACE/SERVICE")


def _cluster_ips(svc: Service | None) -> tuple[str, ...]:
    return svc.cluster_ips if svc is not None and svc.type is ServiceType.CLUSTER_IP else ()


def claims(ing: Ingress, class_name: str, ctl: Controller, config: DnsConfig) -> Claims:
    """The records of an Ingress's hosts (none without a target), with warnings."""
    out = Claims({}, (), [])
    subject = describe(ing.key)
    hosts = []
    for host in ing.hosts:
        if not is_host(host):
            out.warnings.append(f"{subject}: host {host!r} is not a host name; skipped")
        elif config.zone_of(host) is not None:
            out.warnings.append(f"{subject}: host {host} lies in {config.zone_of(host)}, a zone kdns answers from "
                                f"Services; skipped")
        else:
            hosts.append(host)
    if not hosts:
        return out
    ips, cname, origins = target(ing, ctl)
    if not ips and not cname:
        where = f"class {class_name}" if class_name else "an Ingress without a class"
        out.warnings.append(f"{subject}: no target for {', '.join(hosts)} (no external-dns target annotation, no "
                            f"load-balancer address but loopback or localhost, no controller Service for {where}): "
                            f"not answered")
        return out
    out.origins = origins
    for host in hosts:
        out.hosts[host] = records(host, ips, cname, config.ttl)
    return out


def target(ing: Ingress, ctl: Controller) -> tuple[tuple[str, ...], str, tuple[ObjectKey, ...]]:
    """(addresses, CNAME target or "", the objects they come from) by the rules above."""
    ips = tuple(t for t in ing.targets if names.canonical_ip(t) is not None)
    if ing.targets:
        return ips, "" if ips else next(t for t in ing.targets if names.canonical_ip(t) is None), ()
    if ing.lb_ips or ing.lb_hostnames:
        return ing.lb_ips, "" if ing.lb_ips else ing.lb_hostnames[0], ()
    if ctl.addresses and ctl.service is not None:
        return ctl.addresses, "", ((Kind.SERVICE, *ctl.service),)
    return (), "", ()


def records(name: str, ips: tuple[str, ...], cname: str, ttl: int) -> tuple[Rrset, ...]:
    if ips:
        return address_rrsets(name, ips, ttl)
    return (Rrset(name, codes.CNAME, ttl, (cname,)),)
