"""Every option of `kdns serve`, from the command line and from a YAML config file.

One table (`OPTIONS`) defines each option once: its name (the long flag without `--`, and the
key in the config file), its type, whether it repeats (a list in the file), its default and
its help. `parse` builds the argparse flags from it, `load_file` reads and type-checks a file
against it (unknown keys are errors), and flags given on the command line override the file.
`build` then checks every value and makes the frozen `ServeConfig`. Every problem is a
`ConfigError` naming where the value came from: `--upstream` for a flag, `upstream[1]` for
the second entry of the file's `upstream` list.
"""

from __future__ import annotations

import argparse
import ipaddress
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from kdns import config, files, names, upstream
from kdns.config import ApiSource, ConfigError, DnsConfig, HttpAddresses, ListenAddress, PodsMode, ServeConfig

# The longest zone: 196 characters of Kubernetes names (three 63-character labels, "svc",
# four dots) before it leave 57 of the 253 a DNS name may have.
MAX_ZONE = 253 - (3 * 63 + 3 + 4)

MAX_WORKERS = 256
CONFIG_MAX_BYTES = files.MIB  # the largest config file read (config/kdns.yaml is 4 KB)

SOURCE, ANSWERS, FORWARDING, OPERATION = "source", "answers", "forwarding", "operation"


@dataclass(frozen=True)
class Option:
    name: str
    kind: type  # str, int, float or bool
    default: Any
    help: str
    group: str
    repeat: bool = False
    metavar: str | None = None
    choices: tuple[str, ...] | None = None


OPTIONS: tuple[Option, ...] = (
    Option("manifests", str, [], "a .yaml/.yml/.json file, or a directory of them (read one level deep); repeatable. "
           "Namespaces, Services, EndpointSlices and Pods are used; changes are picked up while serving", SOURCE, True, "PATH"),
    Option("manifest-max-bytes", int, 16 << 20, "the largest manifest file read, in bytes; a YAML file may also hold at most "
           "one node per 16 bytes of it, counting each alias as a copy of what it names. A file over either is reported "
           "and keeps its previous objects", SOURCE, metavar="BYTES"),
    Option("kubeconfig", str, None, "follow the cluster of this kubeconfig file", SOURCE, metavar="PATH"),
    Option("apiserver", str, None, "follow the API server at URL, unauthenticated (test servers)", SOURCE, metavar="URL"),
    Option("listen", str, [str(config.DEFAULT_LISTEN)], "address to serve UDP and TCP on; repeatable; [::1]:5353 for IPv6; "
           "port 0 picks a free port", ANSWERS, True, "HOST:PORT"),
    Option("zone", str, [config.DEFAULT_ZONE], "cluster domain; repeatable, the first is used in PTR answers. "
           "in-addr.arpa and ip6.arpa are always served", ANSWERS, True, "ZONE"),
    Option("ttl", int, config.DEFAULT_TTL, f"TTL of the records, 0-{config.MAX_TTL}", ANSWERS, metavar="SECONDS"),
    Option("pods", str, PodsMode.INSECURE.value, "answer a-b-c-d.<ns>.pod.<zone> for any address in an existing namespace "
           "(insecure), only for addresses of Pods that exist there (verified: watches Pods), or never (disabled)",
           ANSWERS, choices=tuple(m.value for m in PodsMode)),
    Option("namespaces", str, [], "expose only these namespaces (comma-separated or repeated); names elsewhere are NXDOMAIN",
           ANSWERS, True, "NS[,NS...]"),
    Option("labels", str, None, "serve only Services (and their EndpointSlices) matching this label selector, "
           "e.g. 'dns!=off,tier in (web,api)'", ANSWERS, metavar="SELECTOR"),
    Option("startup-timeout", float, 5.0, "warn when the first sync with the API takes longer; cluster names that kdns "
           "does not know yet get SERVFAIL until it completes", ANSWERS, metavar="SECONDS"),
    Option("upstream", str, [], "resolver for names outside the zones and unknown reverse names; repeatable",
           FORWARDING, True, "HOST[:PORT]"),
    Option("resolv-conf", str, None, "use the nameservers of this resolv.conf as upstreams (in a pod: /etc/resolv.conf, "
           "the default when kdns runs in-cluster)", FORWARDING, metavar="PATH"),
    Option("stub-domain", str, [], "send names under DOMAIN to this resolver only (kube-dns stubDomains); repeatable",
           FORWARDING, True, "DOMAIN=HOST[:PORT]"),
    Option("upstream-timeout", float, 1.5, "timeout of one try", FORWARDING, metavar="SECONDS"),
    Option("cache-ttl", int, 30, "cache forwarded answers at most this long", FORWARDING, metavar="SECONDS"),
    Option("cache-size", int, 10_000, "forwarded answers kept in the cache", FORWARDING, metavar="N"),
    Option("serve-stale", float, 3600.0, "when every upstream fails, serve answers expired for up to this long, "
           "with a 30 s TTL; 0 disables", FORWARDING, metavar="SECONDS"),
    Option("autopath", bool, False, "answer a pod's whole search path in one round trip (watches Pods to know who asks)",
           FORWARDING),
    Option("health", str, None, "serve liveness on http://ADDRESS/health (CoreDNS: :8080)", OPERATION, metavar="[HOST]:PORT"),
    Option("ready", str, None, "serve readiness on http://ADDRESS/ready: 503 until synced and while shutting down "
           "(CoreDNS: :8181)", OPERATION, metavar="[HOST]:PORT"),
    Option("metrics", str, None, "serve Prometheus metrics on http://ADDRESS/metrics (CoreDNS: :9153)", OPERATION,
           metavar="[HOST]:PORT"),
    Option("allow-recursion", str, ["127.0.0.0/8", "::1/128", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16",
           "100.64.0.0/10", "169.254.0.0/16", "fc00::/7", "fe80::/10"],
           "clients that may have names forwarded (CIDR, repeatable); others get REFUSED for them. Default: loopback, "
           "private, shared and link-local ranges", FORWARDING, True, "CIDR"),
    Option("rrl-rate", float, 0.0, "answer each client (IPv4 /24, IPv6 /56) at most this many times a second over "
           "UDP, in the spirit of BIND's response rate limiting; 0 disables", OPERATION, metavar="PER_SECOND"),
    Option("rrl-slip", int, 2, "of the answers held back by --rrl-rate, send every Nth truncated (TC), so that real "
           "clients retry over TCP; 0: send none", OPERATION, metavar="N"),
    Option("tcp-max-connections", int, 1000, "open TCP connections at most; beyond, the longest idle one is closed, "
           "or the new one if none is idle", OPERATION, metavar="N"),
    Option("tcp-message-timeout", float, 5.0, "a TCP query must arrive whole within this long once it has begun",
           OPERATION, metavar="SECONDS"),
    Option("tcp-max-queries", int, 10_000, "queries answered on one TCP connection before kdns closes it", OPERATION,
           metavar="N"),
    Option("workers", int, 1, "answer with this many processes (one per core), sharing the listen ports "
           "(SO_REUSEPORT); each keeps its own copy of the cluster; health, readiness and metrics are the first's",
           OPERATION, metavar="N"),
    Option("lameduck", float, 5.0, "after SIGTERM, go on answering for this long (readiness 503), then drain TCP and exit",
           OPERATION, metavar="SECONDS"),
    Option("tcp-idle-timeout", float, 10.0, "close TCP connections idle for this long", OPERATION, metavar="SECONDS"),
    Option("reload-interval", float, 1.0, "how often to look for changed manifest and config files", OPERATION,
           metavar="SECONDS"),
    Option("log-level", str, "info", "least severe log messages shown", OPERATION, choices=("debug", "info", "warning", "error")),
    Option("log-format", str, "text", "text lines, or one JSON object per line", OPERATION, choices=("text", "json")),
    Option("log-queries", bool, False, "log every query (client, name, type, rcode)", OPERATION),
)
BY_NAME = {option.name: option for option in OPTIONS}

# Options that take effect only at start: a reload that changes them keeps the old values.
RESTART_ONLY = ("manifests", "kubeconfig", "apiserver", "listen", "namespaces", "labels", "pods", "autopath",
                "health", "ready", "metrics", "workers")

_GROUPS = {
    SOURCE: "source (one of them; with none, KUBECONFIG, then in-cluster config, then the bundled demo cluster)",
    ANSWERS: "answers",
    FORWARDING: "forwarding (names outside the zones; without an upstream they get REFUSED)",
    OPERATION: "operation",
}


class Values:
    """Option values with where each came from, for messages."""

    def __init__(self, values: dict[str, Any], from_file: set[str]):
        self.values = values
        self.from_file = from_file

    def __getitem__(self, name: str) -> Any:
        return self.values[name]

    def where(self, name: str, index: int | None = None) -> str:
        if name in self.from_file:
            return name if index is None or not BY_NAME[name].repeat else f"{name}[{index}]"
        return f"--{name}"


# -- the command line ------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of `kdns serve`, one per option, defaults left out (so that the ones given
    can be told apart from the file's)."""
    parser.add_argument("--config", metavar="PATH", help="read options from this YAML file (config/kdns.yaml "
                        "documents every key); flags given here override it; reloaded on SIGHUP and when it changes")
    groups = {name: parser.add_argument_group(title) for name, title in _GROUPS.items()}
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
            default = option.default
            values[option.name] = list(default) if isinstance(default, list) else default
    return Values(values, from_file)


# -- the config file --------------------------------------------------------------------------


def load_file(path: str) -> dict[str, Any]:
    """Read and type-check a config file; a ConfigError names the file and the key."""
    return check_file(_read(path), path)


def _read(path: str) -> Any:
    """The parsed YAML of a config file; ConfigError (naming the file) when it cannot be read."""
    try:
        text = files.decode(files.read_regular(path, CONFIG_MAX_BYTES, "config files")[0])
        return files.load_yaml(text, files.node_limit(CONFIG_MAX_BYTES))
    except files.FileError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: {files.yaml_problem(exc, text)}") from None
    except Exception as exc:  # noqa: BLE001 - PyYAML's constructors raise all sorts for values they refuse (`!!float 5z`)
        raise ConfigError(f"{path}: invalid YAML value: {type(exc).__name__}: {exc}") from None


def check_file(data: Any, path: str = "config") -> dict[str, Any]:
    problems = file_problems(data)
    if problems:
        raise ConfigError(f"{path}: {problems[0]}")
    return dict(data or {})


def file_problems(data: Any) -> list[str]:
    """Every problem of a parsed config file, each naming its key path."""
    if data is None:
        return []
    if not isinstance(data, dict):
        return ["expected a mapping of option names to values"]
    problems = []
    for key, value in data.items():
        option = BY_NAME.get(key) if isinstance(key, str) else None
        if option is None:
            close = [o.name for o in OPTIONS if isinstance(key, str) and (key.replace("_", "-") == o.name or o.name.startswith(key))]
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            problems.append(f"{key}: unknown option{hint}")
            continue
        if value is None:
            continue
        items = value if option.repeat else [value]
        if option.repeat and not isinstance(value, list):
            if isinstance(value, str):
                items = [value]
            else:
                problems.append(f"{key}: expected a list of {option.kind.__name__}, got {_show(value)}")
                continue
        for i, item in enumerate(items):
            where = f"{key}[{i}]" if option.repeat else key
            if not _is(item, option.kind):
                problems.append(f"{where}: expected {_article(option.kind)}, got {_show(item)}")
            elif option.choices and item not in option.choices:
                problems.append(f"{where}: must be one of {', '.join(option.choices)}, got {_show(item)}")
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
    listen = []
    for i, text in enumerate(v["listen"]):
        listen.append(_listen(text, v.where("listen", i)))
    if not listen:
        raise ConfigError(f"{v.where('listen')}: at least one address is needed")
    zones = config.check_zones([_zone(text, v.where("zone", i)) for i, text in enumerate(v["zone"])], v.where("zone"))
    api = _api_source(v, environ)
    upstreams, stubs = _forwarding(v, zones, in_cluster=api is not None and api.in_cluster)
    for option in OPTIONS:
        if option.kind is float and not math.isfinite(v[option.name]):
            raise ConfigError(f"{v.where(option.name)}: must be a finite number, got {v[option.name]}")
    ttl = v["ttl"]
    if not 0 <= ttl <= config.MAX_TTL:
        raise ConfigError(f"{v.where('ttl')}: must be between 0 and {config.MAX_TTL} seconds, got {ttl}")
    for name in ("cache-ttl", "cache-size", "upstream-timeout", "tcp-idle-timeout", "reload-interval",
                 "tcp-max-connections", "tcp-message-timeout", "tcp-max-queries", "manifest-max-bytes"):
        if v[name] <= 0 and not (name == "cache-ttl" and v[name] == 0):
            raise ConfigError(f"{v.where(name)}: must be more than 0, got {v[name]}")
    if not 1 <= v["workers"] <= MAX_WORKERS:
        raise ConfigError(f"{v.where('workers')}: must be between 1 and {MAX_WORKERS}, got {v['workers']}")
    for name in ("serve-stale", "startup-timeout", "lameduck", "rrl-rate", "rrl-slip"):
        if v[name] < 0:
            raise ConfigError(f"{v.where(name)}: must not be negative, got {v[name]}")
    namespaces = None
    if v["namespaces"]:
        namespaces = frozenset(ns.strip() for text in v["namespaces"] for ns in text.split(",") if ns.strip())
        bad = sorted(ns for ns in namespaces if not names.is_label(ns))
        if not namespaces or bad:
            raise ConfigError(f"{v.where('namespaces')}: not namespace names: {', '.join(bad) or v['namespaces']!r}")
    recursion = []
    for i, text in enumerate(v["allow-recursion"]):
        try:
            recursion.append(ipaddress.ip_network(text.strip(), strict=False))
        except ValueError:
            raise ConfigError(f"{v.where('allow-recursion', i)}: not an address range (CIDR): {text!r}") from None
    dns = DnsConfig(
        zones=zones,
        ttl=ttl,
        pods=PodsMode(v["pods"]),
        ns_addresses=config.ns_addresses(tuple(listen)),
        forwarding=bool(upstreams),
        stub_domains=tuple(domain for domain, _ in stubs),
        autopath=v["autopath"],
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
        stub_domains=stubs,
        upstream_timeout=v["upstream-timeout"],
        cache_ttl=v["cache-ttl"],
        cache_size=v["cache-size"],
        serve_stale=v["serve-stale"],
        lameduck=v["lameduck"],
        http=HttpAddresses(
            health=_http(v, "health"),
            ready=_http(v, "ready"),
            metrics=_http(v, "metrics"),
        ),
        allow_recursion=tuple(recursion),
        rrl_rate=v["rrl-rate"],
        rrl_slip=v["rrl-slip"],
        tcp_max_connections=v["tcp-max-connections"],
        tcp_message_timeout=v["tcp-message-timeout"],
        tcp_max_queries=v["tcp-max-queries"],
        workers=v["workers"],
        log_level=v["log-level"],
        log_format=v["log-format"],
        log_queries=v["log-queries"],
    )


def _listen(text: str, where: str) -> ListenAddress:
    """`127.0.0.1:5353`, `[::1]:5353`, `0.0.0.0:0` (port 0 picks a free port)."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not host:
        raise ConfigError(f"{where}: expected HOST:PORT, got {text!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ConfigError(f"{where}: write an IPv6 address in brackets, as [{host}]:{port_text}")
    ip = names.canonical_ip(host)
    if ip is None:
        raise ConfigError(f"{where}: not an IP address: {host!r} in {text!r}")
    if not port_text.isdigit() or int(port_text) > 65535:
        raise ConfigError(f"{where}: not a port number: {port_text!r} in {text!r}")
    return ListenAddress(ip, int(port_text))


def _http(v: Values, name: str) -> ListenAddress | None:
    """`:8080` (every address), `127.0.0.1:8080`, `[::1]:8080`; none or "off" for no endpoint."""
    text = v[name]
    if text in (None, "", "off"):
        return None
    if text.startswith(":"):
        text = "0.0.0.0" + text
    return _listen(text, v.where(name))


def _zone(text: str, where: str) -> str:
    zone = text.strip().rstrip(".").lower()
    if not names.is_subdomain(zone):
        raise ConfigError(f"{where}: not a domain name: {text!r}")
    if len(zone) > MAX_ZONE:
        raise ConfigError(f"{where}: {len(zone)} characters, more than {MAX_ZONE}: the longest names Kubernetes "
                          f"allows below a zone (hostname.service.namespace.svc.ZONE) would not fit in a DNS name")
    if zone in names.REVERSE_ZONES or zone.endswith(("." + names.IN_ADDR_ARPA, "." + names.IP6_ARPA)):
        raise ConfigError(f"{where}: {text!r}: the reverse zones are always served")
    return zone


def _forwarding(v: Values, zones: tuple[str, ...], *, in_cluster: bool):
    """(default upstreams, stub domains) from upstream, resolv-conf and stub-domain."""
    upstreams: list[tuple[str, int]] = []
    for i, text in enumerate(v["upstream"]):
        try:
            upstreams.append(upstream.parse_upstream(text, what=v.where("upstream", i)))
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    resolv_conf = v["resolv-conf"] or ("/etc/resolv.conf" if in_cluster and not upstreams else None)
    if resolv_conf:
        try:
            with open(resolv_conf, encoding="utf-8") as f:
                servers = upstream.parse_resolv_conf(f.read())
        except OSError as exc:
            raise ConfigError(f"{v.where('resolv-conf')}: {resolv_conf}: {exc.strerror}") from None
        if not servers:
            raise ConfigError(f"{v.where('resolv-conf')}: {resolv_conf}: no nameserver lines")
        upstreams += [(ip, upstream.DEFAULT_PORT) for ip in servers]
    stubs: dict[str, list[tuple[str, int]]] = {}
    for i, text in enumerate(v["stub-domain"]):
        where = v.where("stub-domain", i)
        domain, sep, server = text.partition("=")
        domain = domain.strip().rstrip(".").lower()
        if not sep or not names.is_subdomain(domain):
            raise ConfigError(f"{where}: expected DOMAIN=HOST[:PORT], got {text!r}")
        if any(domain == z or domain.endswith("." + z) for z in zones + names.REVERSE_ZONES):
            raise ConfigError(f"{where}: {domain!r} lies inside a zone kdns serves itself")
        try:
            stubs.setdefault(domain, []).append(upstream.parse_upstream(server, what=where))
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    return tuple(dict.fromkeys(upstreams)), tuple((d, tuple(s)) for d, s in stubs.items())


def _api_source(v: Values, environ: Mapping[str, str]) -> ApiSource | None:
    """The API source asked for; None means manifests (or the demo)."""
    if v["manifests"] and (v["kubeconfig"] or v["apiserver"]):
        raise ConfigError(f"{v.where('manifests')}: cannot be combined with kubeconfig or apiserver")
    if v["kubeconfig"] and v["apiserver"]:
        raise ConfigError(f"{v.where('apiserver')}: cannot be combined with kubeconfig")
    if v["apiserver"]:
        if not v["apiserver"].startswith(("http://", "https://")):
            raise ConfigError(f"{v.where('apiserver')}: expected an http:// or https:// URL, got {v['apiserver']!r}")
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


def check_config_file(path: str, environ: Mapping[str, str]) -> list[str]:
    """`kdns check-config`: every problem of a config file, each naming its key path."""
    try:
        data = _read(path)
    except ConfigError as exc:
        return [str(exc)]
    problems = file_problems(data)
    if not isinstance(data, (dict, type(None))):
        return problems
    # Now the values of the keys whose types are right. `build` stops at the first problem:
    # report it, put that option back to its default, and go on, so that every bad option is
    # named, whatever kind of problem it has.
    bad = {p.split(":", 1)[0].split("[", 1)[0] for p in problems}
    data = {k: v for k, v in (data or {}).items() if k not in bad}
    for _ in range(len(OPTIONS)):
        try:
            build(merge(argparse.Namespace(), data), environ)
            break
        except ConfigError as exc:
            problems.append(str(exc))
            name = str(exc).split(":", 1)[0].split("[", 1)[0]
            if data.pop(name, None) is None:
                break
    return problems
