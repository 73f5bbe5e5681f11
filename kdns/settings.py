"""`kdns serve`'s configuration from the command line and a YAML config file.

The options are described once, in `kdns.options.OPTIONS` (re-exported here). From that
table `add_arguments` makes the flags, `load_file` reads and type-checks a file (unknown keys
are errors), `merge` lays the flags over the file over the defaults, and `build` checks every
value and makes the frozen `ServeConfig`; `build_config` does all of it for `kdns serve` (and for reloads).
Every problem is a `ConfigError` saying where the value came from, as data: the flag
(`--upstream`), or the key path in the file (`upstream[1]`, the second entry of the file's
`upstream` list) and the file.

(Longer than most modules: it is the one place every option's value is checked, and the
checks read best side by side.)
"""

from __future__ import annotations

import argparse
import ipaddress
import math
import os
from collections.abc import Mapping
from typing import Any

import yaml

from kdns import config, files, names, pool, upstream, wire
from kdns.config import ApiSource, CachePolicy, ConfigError, DnsConfig, HttpAddresses, ListenAddress, OutsideNames, PodsMode, ServeConfig
from kdns.options import BY_NAME, GROUPS, MAX_HOSTS_TTL, MAX_TTL, MAX_WORKERS, MAX_ZONE, OPTIONS, RESTART_ONLY, Option, default

__all__ = ["BY_NAME", "OPTIONS", "RESTART_ONLY", "Option", "Values", "add_arguments", "build", "build_config",
           "check_config_file", "check_file", "file_problems", "load_file", "merge", "parse_flags"]

NO_RESOLV_CONF = "none"  # --resolv-conf none: no resolv.conf, even in a pod
CONFIG_MAX_BYTES = files.MIB  # the largest config file read (config/kdns.yaml is 4 KB)
NOT_OPTIONS = ("command", "config", "print_address", "worker")  # attributes of a parsed command line, not options


class Values:
    """Option values with where each came from, for messages."""

    def __init__(self, values: dict[str, Any], from_file: set[str]):
        self.values = values
        self.from_file = from_file

    def __getitem__(self, name: str) -> Any:
        return self.values[name]

    def error(self, name: str, reason: str, index: int | None = None) -> ConfigError:
        """A ConfigError about option `name` (entry `index` of a list), said where it was given."""
        if name in self.from_file:
            key = name if index is None or not BY_NAME[name].repeat else f"{name}[{index}]"
            return ConfigError(reason, option=name, key=key)
        return ConfigError(reason, option=name, flag=f"--{name}")


# -- the command line ------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of `kdns serve`, one per option, defaults left out (so that the ones given
    can be told apart from the file's)."""
    parser.add_argument("--config", metavar="PATH", help="read options from this YAML file (config/kdns.yaml "
                        "documents every key); flags given here override it; reloaded on SIGHUP and when it changes")
    groups = {name: parser.add_argument_group(title) for name, title in GROUPS.items()}
    for option in OPTIONS:
        flag = f"--{option.name}"
        shown = option.default if option.default not in (None, []) else "none"
        help_text = f"{option.help} (default {shown})" if option.kind is not bool else option.help
        group = groups[option.group]
        if option.kind is bool:
            group.add_argument(flag, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS, help=help_text)
        elif option.repeat:
            group.add_argument(flag, action="append", default=argparse.SUPPRESS, metavar=option.metavar, help=help_text)
        else:
            group.add_argument(flag, type=option.kind, default=argparse.SUPPRESS, metavar=option.metavar,
                               choices=option.choices, help=help_text)


def parse_flags(argv: list[str]) -> argparse.Namespace:
    """`kdns serve`'s flags alone (for kdns.testing and scripts); exits as argparse does."""
    parser = argparse.ArgumentParser(prog="kdns serve")
    add_arguments(parser)
    return parser.parse_args(argv)


def build_config(args: argparse.Namespace, environ: Mapping[str, str] = os.environ) -> ServeConfig:
    """The ServeConfig of `kdns serve`: defaults, then the `--config` file (`args.config`),
    then the flags. A problem with a key of the file names the file too."""
    flags = argparse.Namespace(**{k: v for k, v in vars(args).items() if k not in NOT_OPTIONS})
    path = getattr(args, "config", None)
    file_values = load_file(path) if path else {}
    try:
        return build(merge(flags, file_values), environ)
    except ConfigError as exc:
        if path:
            raise exc.in_file(path) from None
        raise


def merge(flags: argparse.Namespace, file_values: Mapping[str, Any]) -> Values:
    """Defaults, then the file, then the flags."""
    given = {name.replace("_", "-"): value for name, value in vars(flags).items()}
    values, from_file = {}, set()
    for option in OPTIONS:
        if option.name in given:
            values[option.name] = given[option.name]
        elif file_values.get(option.name) is not None:  # a key with no value (null) means the default
            values[option.name] = file_values[option.name]
            from_file.add(option.name)
        else:
            values[option.name] = list(option.default) if isinstance(option.default, list) else option.default
    return Values(values, from_file)


# -- the config file --------------------------------------------------------------------------


def load_file(path: str) -> dict[str, Any]:
    """Read and type-check a config file; a ConfigError names the file and the key."""
    return check_file(_read(path), path)


def _read(path: str) -> Any:
    """The parsed YAML of a config file; ConfigError (naming the file) when it cannot be read."""
    text = ""
    try:
        text = files.decode(files.read_regular(path, CONFIG_MAX_BYTES, "config files")[0])
        return files.load_yaml(text, files.node_limit(CONFIG_MAX_BYTES))
    except files.FileError as exc:
        raise ConfigError(str(exc), file=path) from None
    except OSError as exc:
        raise ConfigError(exc.strerror or str(exc), file=path) from None
    except yaml.YAMLError as exc:
        raise ConfigError(files.yaml_problem(exc, text), file=path) from None
    except Exception as exc:  # noqa: BLE001 - PyYAML's constructors raise all sorts for values they refuse (`!!float 5z`)
        raise ConfigError(f"invalid YAML value: {type(exc).__name__}: {exc}", file=path) from None


def check_file(data: Any, path: str = "config") -> dict[str, Any]:
    problems = file_problems(data)
    if problems:
        raise problems[0].in_file(path)
    return dict(data or {})


def file_problems(data: Any) -> list[ConfigError]:
    """Every problem of a parsed config file, each with its key path."""
    if data is None:
        return []
    if not isinstance(data, dict):
        return [ConfigError("expected a mapping of option names to values")]
    problems = []
    for key, value in data.items():
        option = BY_NAME.get(key) if isinstance(key, str) else None
        if option is None:
            close = [o.name for o in OPTIONS if isinstance(key, str) and (key.replace("_", "-") == o.name or o.name.startswith(key))]
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            problems.append(ConfigError(f"unknown option{hint}", key=str(key)))
            continue
        if value is None:
            continue
        items = value if option.repeat else [value]
        if option.repeat and not isinstance(value, list):
            if isinstance(value, str):
                items = [value]
            else:
                problems.append(ConfigError(f"expected a list of {option.kind.__name__}, got {_show(value)}", option=key, key=key))
                continue
        for i, item in enumerate(items):
            where = f"{key}[{i}]" if option.repeat else key
            if not _is(item, option.kind):
                problems.append(ConfigError(f"expected {_article(option.kind)}, got {_show(item)}", option=key, key=where))
            elif option.choices and item not in option.choices:
                problems.append(ConfigError(f"must be one of {', '.join(option.choices)}, got {_show(item)}", option=key, key=where))
    return problems


def _is(value: Any, kind: type) -> bool:
    if kind is bool:
        return isinstance(value, bool)
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, str)


def _article(kind: type) -> str:
    return {bool: "true or false", int: "a whole number", float: "a number", str: "a string"}[kind]


def _show(value: Any) -> str:
    return repr(value) if isinstance(value, (str, int, float, bool)) else type(value).__name__


# -- from values to a ServeConfig ----------------------------------------------------------


def build(v: Values, environ: Mapping[str, str]) -> ServeConfig:
    """Check every value and make the ServeConfig (raises ConfigError naming the value)."""
    listen = [_listen(text, v, "listen", i) for i, text in enumerate(v["listen"])]
    if not listen:
        raise v.error("listen", "at least one address is needed")
    zones = _zones(v)
    external = _zones(v, "external-zone", taken=zones)
    api = _api_source(v, environ)
    pooled = _pool_options(v)
    upstreams, stubs, stub_options = _forwarding(v, zones + external, pooled, in_cluster=api is not None and api.in_cluster)
    defaults = _default_domains(v, zones + external, stubs)
    for option in OPTIONS:
        if option.kind is float and not math.isfinite(v[option.name]):
            raise v.error(option.name, f"must be a finite number, got {v[option.name]}")
    for name, low, high, unit in (("ttl", 0, MAX_TTL, " seconds"), ("external-ttl", 0, MAX_TTL, " seconds"),
                                  ("hosts-ttl", 1, MAX_HOSTS_TTL, " seconds"), ("workers", 1, MAX_WORKERS, "")):
        if not low <= v[name] <= high:
            raise v.error(name, f"must be between {low} and {high}{unit}, got {v[name]}")
    apex = v["external-apex"].strip().lower()
    if not names.is_label(apex):
        raise v.error("external-apex", f"not a DNS label (lowercase letters, digits and '-'): {v['external-apex']!r}")
    for name in ("cache-ttl", "cache-size", "upstream-timeout", "tcp-idle-timeout", "reload-interval",
                 "tcp-max-connections", "tcp-message-timeout", "tcp-max-queries", "manifest-max-bytes",
                 "cache-max-bytes", "tcp-max-per-client", "tcp-send-timeout"):
        if v[name] <= 0 and not (name == "cache-ttl" and v[name] == 0):
            raise v.error(name, f"must be more than 0, got {v[name]}")
    if not wire.MIN_UDP <= v["udp-max-size"] <= wire.MAX_UDP:
        raise v.error("udp-max-size", f"must be between {wire.MIN_UDP} and {wire.MAX_UDP} bytes, got {v['udp-max-size']}")
    for name in ("serve-stale", "startup-timeout", "lameduck", "rrl-rate", "rrl-slip", "upstream-max-concurrent",
                 "cache-min-ttl", "cache-denial-min-ttl", "cache-denial-ttl"):
        if v[name] < 0:
            raise v.error(name, f"must not be negative, got {v[name]}")
    namespaces = None
    if v["namespaces"]:
        namespaces = frozenset(ns.strip() for text in v["namespaces"] for ns in text.split(",") if ns.strip())
        bad = sorted(ns for ns in namespaces if not names.is_label(ns))
        if not namespaces or bad:
            raise v.error("namespaces", f"not namespace names: {', '.join(bad) or v['namespaces']!r}")
    recursion, transfer = _networks(v, "allow-recursion"), _networks(v, "allow-transfer")
    dns = DnsConfig(
        zones=zones,
        ttl=v["ttl"],
        pods=PodsMode(v["pods"]),
        ns_addresses=config.ns_addresses(tuple(listen)),
        forwarding=bool(upstreams),
        stub_domains=tuple(domain for domain, _ in stubs),
        except_zones=tuple((domain, f"--upstream-except {domain}") for domain, servers in stubs if not servers),
        default_domains=defaults,
        autopath=v["autopath"],
        external_zones=external,
        external_apex=apex,
        external_ttl=v["external-ttl"],
        external_headless=v["external-headless"],
        outside_names=OutsideNames(v["outside-names"]),
        ingress_hosts=v["ingress-hosts"],
        gateway_hosts=v["gateway-hosts"],
        ingress_controllers=_ingress_controllers(v),
        ingress_classes=_ingress_classes(v),
        ignore_empty_services=v["ignore-empty-services"],
        cluster_fallthrough=_domains(v, "cluster-fallthrough"),
        external_fallthrough=_domains(v, "external-fallthrough"),
        udp_max=v["udp-max-size"],
    )
    return ServeConfig(
        manifests=tuple(v["manifests"]),
        manifest_max_bytes=v["manifest-max-bytes"],
        api=api,
        listen=tuple(listen),
        dns=dns,
        namespaces=namespaces,
        labels=v["labels"],
        tcp_idle_timeout=v["tcp-idle-timeout"],
        reload_interval=v["reload-interval"],
        startup_timeout=v["startup-timeout"],
        upstreams=upstreams,
        hosts=tuple(dict.fromkeys(v["hosts"])),
        hosts_ttl=v["hosts-ttl"],
        hosts_reverse=v["hosts-reverse"],
        stub_domains=stubs,
        upstream_timeout=v["upstream-timeout"],
        cache_ttl=v["cache-ttl"],
        cache_size=v["cache-size"],
        cache_max_bytes=v["cache-max-bytes"],
        serve_stale=v["serve-stale"],
        lameduck=v["lameduck"],
        http=HttpAddresses(health=_http(v, "health"), ready=_http(v, "ready"), metrics=_http(v, "metrics"),
                           explain=_http(v, "explain")),
        allow_recursion=recursion,
        allow_transfer=transfer,
        rrl_rate=v["rrl-rate"],
        rrl_slip=v["rrl-slip"],
        tcp_max_connections=v["tcp-max-connections"],
        tcp_message_timeout=v["tcp-message-timeout"],
        tcp_max_queries=v["tcp-max-queries"],
        tcp_max_per_client=v["tcp-max-per-client"],
        tcp_send_timeout=v["tcp-send-timeout"],
        workers=v["workers"],
        log_level=v["log-level"],
        log_format=v["log-format"],
        log_queries=v["log-queries"],
        upstream_max_concurrent=v["upstream-max-concurrent"],
        upstream_options=pooled,
        stub_options=stub_options,
        default_domains=defaults,
        cache_policy=CachePolicy(_domains(v, "cache-zone") or (".",), _domains(v, "cache-disable-success"),
                                 _domains(v, "cache-disable-denial"), v["cache-min-ttl"], v["cache-denial-min-ttl"],
                                 v["cache-denial-ttl"]),
        endpoints=v["endpoints"],
        endpoint_pod_names=v["endpoint-pod-names"],
    )


def _networks(v: Values, name: str) -> tuple:
    """The address ranges (CIDR) of a repeatable option."""
    out = []
    for i, text in enumerate(v[name]):
        try:
            out.append(ipaddress.ip_network(text.strip(), strict=False))
        except ValueError:
            raise v.error(name, f"not an address range (CIDR): {text!r}", i) from None
    return tuple(out)


def _listen(text: str, v: Values, name: str, index: int | None = None) -> ListenAddress:
    """`127.0.0.1:5353`, `[::1]:5353`, `:5353` (every address of both families), `0.0.0.0:0`
    (port 0 picks a free port)."""
    host, sep, port_text = text.rpartition(":")
    if not sep:
        raise v.error(name, f"expected HOST:PORT or :PORT, got {text!r}", index)
    if not host:
        if not port_text.isdigit() or int(port_text) > 65535:
            raise v.error(name, f"not a port number: {port_text!r} in {text!r}", index)
        return ListenAddress("", int(port_text))
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise v.error(name, f"write an IPv6 address in brackets, as [{host}]:{port_text}", index)
    ip = names.canonical_ip(host)
    if ip is None:
        raise v.error(name, f"not an IP address: {host!r} in {text!r}", index)
    if not port_text.isdigit() or int(port_text) > 65535:
        raise v.error(name, f"not a port number: {port_text!r} in {text!r}", index)
    return ListenAddress(ip, int(port_text))


def _http(v: Values, name: str) -> ListenAddress | None:
    """`:8080` (every address of both families), `127.0.0.1:8080`, `[::1]:8080`; none or "off"
    for no endpoint."""
    text = v[name]
    if text in (None, "", "off"):
        return None
    return _listen(text, v, name)


def _zones(v: Values, option: str = "zone", taken: tuple[str, ...] = ()) -> tuple[str, ...]:
    """The zones of `option`: domain names short enough, none twice, none overlapping another or `taken`."""
    zones: list[str] = []
    for i, text in enumerate(v[option]):
        zone = text.strip().rstrip(".").lower()
        if not names.is_subdomain(zone):
            raise v.error(option, f"not a domain name: {text!r}", i)
        if len(zone) > MAX_ZONE:
            raise v.error(option, f"{len(zone)} characters, more than {MAX_ZONE}: the longest names Kubernetes "
                          f"allows below a zone (hostname.service.namespace.svc.ZONE) would not fit in a DNS name", i)
        if zone in names.REVERSE_ZONES or zone.endswith(("." + names.IN_ADDR_ARPA, "." + names.IP6_ARPA)):
            raise v.error(option, f"{text!r}: the reverse zones are always served", i)
        zones.append(zone)
    for i, zone in enumerate(zones):
        if zone in zones[:i]:
            raise v.error(option, f"{zone!r} given twice")
        for other in zones[:i] + list(taken):
            inner, outer = (zone, other) if len(zone) > len(other) else (other, zone)
            if inner == outer or inner.endswith("." + outer):
                where = "is served already" if inner == outer else f"lies inside {outer!r}"
                raise v.error(option, f"{inner!r} {where}: the zones must not overlap")
    return tuple(zones) or (default("zone") if option == "zone" else ())


def _domains(v: Values, option: str) -> tuple[str, ...]:
    """The domain names of `option` (fallthrough and cache zones): lowercase, no trailing dot,
    "." for every name; each once."""
    out: list[str] = []
    for i, text in enumerate(v[option]):
        zone = text.strip().lower()
        zone = zone if zone == "." else zone.rstrip(".")
        if zone != "." and not names.is_subdomain(zone):
            raise v.error(option, f"not a domain name: {text!r}", i)
        if zone not in out:
            out.append(zone)
    return tuple(out)


def _ingress_controllers(v: Values) -> tuple[tuple[str, str, str], ...]:
    """--ingress-controller CLASS=NAMESPACE/SERVICE, each class once ("*": every class)."""
    out: dict[str, tuple[str, str, str]] = {}
    for i, text in enumerate(v["ingress-controller"]):
        cls, sep, target = text.strip().partition("=")
        namespace, slash, service = target.partition("/")
        cls = cls.strip()
        if not sep or not slash or not (cls == "*" or names.is_subdomain(cls)):
            raise v.error("ingress-controller", f"expected CLASS=NAMESPACE/SERVICE (CLASS '*' for every class), got {text!r}", i)
        if not names.is_label(namespace.strip()) or not names.is_label(service.strip()):
            raise v.error("ingress-controller", f"not a namespace and a Service name: {target!r} in {text!r}", i)
        if cls in out:
            raise v.error("ingress-controller", f"class {cls!r} given twice", i)
        out[cls] = (cls, namespace.strip(), service.strip())
    return tuple(out.values())


def _ingress_classes(v: Values) -> tuple[str, ...]:
    classes = []
    for i, text in enumerate(v["ingress-class"]):
        if not names.is_subdomain(text.strip()):
            raise v.error("ingress-class", f"not an IngressClass name: {text!r}", i)
        classes.append(text.strip())
    return tuple(dict.fromkeys(classes))


def _pool_options(v: Values) -> pool.PoolOptions:
    """The default upstream group's options (upstream-policy, upstream-transport...)."""
    options = pool.PoolOptions(v["upstream-policy"], v["upstream-transport"], v["upstream-max-fails"],
                               v["upstream-health-check"], pool.normal_domain(v["upstream-health-domain"]),
                               v["upstream-health-recursion"])
    problem = options.problem()
    if problem:
        name = next(f"upstream-{key}" for key in pool.KEYS if problem.startswith(key))
        raise v.error(name, problem)
    return options


def _forwarding(v: Values, zones: tuple[str, ...], pooled: pool.PoolOptions, *, in_cluster: bool):
    """(default upstreams, stub domains, stub domains' options) from upstream, resolv-conf,
    stub-domain and upstream-except."""
    upstreams: list[tuple[str, int]] = []
    for i, text in enumerate(v["upstream"]):
        try:
            upstreams.append(upstream.parse_upstream(text))
        except ValueError as exc:
            raise v.error("upstream", str(exc), i) from None
    resolv_conf = v["resolv-conf"] or ("/etc/resolv.conf" if in_cluster and not upstreams else None)
    if resolv_conf == NO_RESOLV_CONF:  # `none`: no resolv.conf even in a pod (a Corefile without forward)
        resolv_conf = None
    if resolv_conf:
        try:
            with open(resolv_conf, encoding="utf-8") as f:
                servers = upstream.parse_resolv_conf(f.read())
        except OSError as exc:
            raise v.error("resolv-conf", f"{resolv_conf}: {exc.strerror}") from None
        if not servers:
            raise v.error("resolv-conf", f"{resolv_conf}: no nameserver lines")
        upstreams += [(ip, upstream.DEFAULT_PORT) for ip in servers]
    stubs: dict[str, list[tuple[str, int]]] = {}
    items: dict[str, tuple[int, tuple[str, ...]]] = {}  # domain -> (entry, its KEY=VALUE items)
    for i, text in enumerate(v["stub-domain"]):
        domain, sep, rest = text.partition("=")
        server, *more = rest.split(",")
        domain = domain.strip().rstrip(".").lower()
        if not sep or not names.is_subdomain(domain):
            raise v.error("stub-domain", f"expected DOMAIN=HOST[:PORT][,KEY=VALUE...], got {text!r}", i)
        if any(domain == z or domain.endswith("." + z) for z in zones + names.REVERSE_ZONES):
            raise v.error("stub-domain", f"{domain!r} lies inside a zone kdns serves itself", i)
        try:
            stubs.setdefault(domain, []).append(upstream.parse_upstream(server))
            pool.parse_items(more, pooled)
        except ValueError as exc:
            raise v.error("stub-domain", str(exc), i) from None
        if more:
            first = items.setdefault(domain, (i, tuple(more)))
            if sorted(first[1]) != sorted(more):
                raise v.error("stub-domain", f"{domain}: options {','.join(more)} differ from entry {first[0] + 1}'s "
                                             f"({','.join(first[1])}); a domain's upstreams share one set", i)
    options = tuple((d, pool.parse_items(items[d][1], pooled) if d in items else pooled) for d in stubs)
    for i, text in enumerate(v["upstream-except"]):
        domain = text.strip().rstrip(".").lower()
        if not names.is_subdomain(domain):
            raise v.error("upstream-except", f"not a domain name: {text!r}", i)
        if any(domain == z or domain.endswith("." + z) for z in zones + names.REVERSE_ZONES):
            raise v.error("upstream-except", f"{domain!r} lies inside a zone kdns serves itself", i)
        if stubs.get(domain):
            raise v.error("upstream-except", f"{domain} is also a stub-domain: forward its names or not", i)
        stubs[domain] = []
    return tuple(dict.fromkeys(upstreams)), tuple((d, tuple(s)) for d, s in stubs.items()), options


def _default_domains(v: Values, zones: tuple[str, ...], stubs) -> tuple[str, ...]:
    """--upstream-default: zones whose names go to the default upstreams, whatever they are."""
    out: list[str] = []
    routed = {domain for domain, _ in stubs}
    for i, text in enumerate(v["upstream-default"]):
        domain = text.strip().rstrip(".").lower()
        if not names.is_subdomain(domain):
            raise v.error("upstream-default", f"not a domain name: {text!r}", i)
        if any(domain == z or domain.endswith("." + z) for z in zones + names.REVERSE_ZONES):
            raise v.error("upstream-default", f"{domain!r} lies inside a zone kdns serves itself", i)
        if domain in routed:
            raise v.error("upstream-default", f"{domain} is also a stub-domain or upstream-except zone: give it one place", i)
        out.append(domain)
    return tuple(dict.fromkeys(out))


def _api_source(v: Values, environ: Mapping[str, str]) -> ApiSource | None:
    """The API source asked for; None means manifests (or the demo)."""
    if v["manifests"] and (v["kubeconfig"] or v["apiserver"] or v["in-cluster"]):
        raise v.error("manifests", "cannot be combined with kubeconfig, apiserver or in-cluster")
    if v["kubeconfig"] and v["apiserver"]:
        raise v.error("apiserver", "cannot be combined with kubeconfig")
    if v["in-cluster"] and (v["kubeconfig"] or v["apiserver"]):
        raise v.error("in-cluster", "cannot be combined with kubeconfig or apiserver")
    if v["in-cluster"]:
        return ApiSource(in_cluster=True)
    if v["apiserver"]:
        if not v["apiserver"].startswith(("http://", "https://")):
            raise v.error("apiserver", f"expected an http:// or https:// URL, got {v['apiserver']!r}")
        return ApiSource(apiserver=v["apiserver"])
    if v["kubeconfig"]:
        return ApiSource(kubeconfig=v["kubeconfig"])
    if v["manifests"]:
        return None
    if environ.get("KUBECONFIG"):
        return ApiSource(kubeconfig=environ["KUBECONFIG"])
    if environ.get("KUBERNETES_SERVICE_HOST"):
        return ApiSource(in_cluster=True)
    return None


def check_config_file(path: str, environ: Mapping[str, str]) -> list[ConfigError]:
    """`kdns check-config`: every problem of a config file, each with its key path and the file."""
    try:
        data = _read(path)
    except ConfigError as exc:
        return [exc]
    problems = file_problems(data)
    if isinstance(data, (dict, type(None))):
        # Now the values of the keys whose types are right. `build` stops at the first
        # problem: report it, put that option back to its default, and go on, so that every
        # bad option is named, whatever kind of problem it has.
        bad = {p.option for p in problems}
        data = {k: v for k, v in (data or {}).items() if k not in bad}
        for _ in range(len(OPTIONS)):
            try:
                build(merge(argparse.Namespace(), data), environ)
                break
            except ConfigError as exc:
                problems.append(exc)
                if data.pop(exc.option, None) is None:
                    break
    return [problem.in_file(path) for problem in problems]
