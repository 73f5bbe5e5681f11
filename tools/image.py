"""Build kdns's container image and check it the way a cluster runs it (`make image`, `make image-check`).

    python tools/image.py build [--tag kdns:latest]
    python tools/image.py check [--tag kdns:latest]

The engine is docker or podman, whichever answers `info` (ENGINE=podman chooses). podman builds
with `--format docker`, without which it drops the HEALTHCHECK.

build: builds the Dockerfile, then fails if the image has no HEALTHCHECK or is larger than
SIZE_LIMIT (docs/image.md states both). With no engine, or a base image that can be neither
found nor pulled, it fails with one line saying so.

check: builds, then runs the image as config/kubernetes/deployment.yaml does (read-only root,
UID 65532, every capability dropped, a 170 MiB memory limit) next to a fake API server
(testkit/kubeapi/, holding the demo cluster, in a second container sharing its network
namespace, as a pod's containers do), so kdns lists and watches through the kubernetes client
inside the image. Its resolv.conf names only 127.0.0.1: a forwarded name cannot leave the
machine. It checks, failing with a message on the first difference:

- the process: UID 65532, no capabilities, the root read-only, the memory limit in its
  cgroup, the C UDP loop in use;
- /health and /ready (200 once synced);
- every query of config/demo-queries.txt, over UDP (and TCP where it says +tcp; one more over
  TCP), answered as `kdns serve --manifests config/demo-cluster.yaml` answers it on the host
  (TTLs aside), and none empty; a name outside the cluster gets SERVFAIL, not an answer;
- the image's own HEALTHCHECK (podman runs it on request; docker on its own schedule);
- SIGTERM: exit status 0 after the lameduck period.

It prints the image's size and kdns's resident memory. Where no engine runs, or the base
image cannot be had, it prints one line saying so and exits 0. It needs dig (bind9-dnsutils)
and runs with the project's .venv (PyYAML; the host-side kdns).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
SIZE_LIMIT = 200_000_000  # bytes: "200 MB" as docker and podman print sizes (docs/image.md)
TAG = "kdns:latest"
UID = 65532
MEMORY = "170m"  # the Deployment's memory limit (170Mi; the engines' m is MiB)
MEMORY_BYTES = 170 * 2**20
API_PORT = 8001  # the fake API server, on the pod's loopback
WAIT = 90.0  # seconds: the longest wait for any one thing
QUERY_PREFIX = "dig @127.0.0.1 -p 5353 "
PUBLISHED = ("5353/udp", "5353/tcp", "8080/tcp", "8181/tcp", "53/udp", "53/tcp", "9153/tcp")
# kubeadm's Corefile (tests/corefiles/kubeadm.Corefile) with two lines changed for a container
# without a cluster or an upstream: the API server is the fake one on the pod's loopback, and
# the forward goes to a loopback port nothing listens on (the container's resolv.conf would
# point kdns at itself: a loop, which kdns refuses as CoreDNS's loop plugin does).
SWAP_COREFILE = ROOT / "tests" / "corefiles" / "kubeadm.Corefile"
SWAP_CHANGES = (("       ttl 30\n", f"       ttl 30\n       endpoint http://127.0.0.1:{API_PORT}\n"),
                ("forward . /etc/resolv.conf {", "forward . 127.0.0.1:5399 {"))


class Skip(Exception):
    """The check cannot run here (no engine, no base image): one line, exit 0."""


class Failed(Exception):
    """The image does not do what it must."""


def run(argv: list[str], check: bool = True, timeout: float = WAIT, **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False, **kwargs)
    if check and done.returncode != 0:
        raise Failed(f"{' '.join(argv)}: exit {done.returncode}: {(done.stderr or done.stdout).strip()[-2000:]}")
    return done


def say(text: str) -> None:
    print(f"image: {text}", flush=True)


# -- the engine and the build -------------------------------------------------------------------


def find_engine() -> str:
    """docker or podman: the first that answers `info` (ENGINE=... chooses)."""
    wanted = os.environ.get("ENGINE")
    tried = []
    for name in [wanted] if wanted else ["docker", "podman"]:
        if shutil.which(name) is None:
            tried.append(f"{name}: not installed")
            continue
        try:
            done = run([name, "info"], check=False, timeout=30)
        except subprocess.TimeoutExpired:
            tried.append(f"{name}: `{name} info` timed out")
            continue
        if done.returncode == 0:
            return name
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        tried.append(f"{name}: {last}")
    raise Skip("no container engine runs here (" + "; ".join(tried) + ")")


def base_images() -> list[str]:
    """The images the Dockerfile starts from (not its own stages)."""
    bases, stages = [], set()
    for line in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        words = line.split()
        if words[:1] == ["FROM"]:
            image = words[1]
            if image not in stages and image not in bases:
                bases.append(image)
            if len(words) >= 4 and words[2].upper() == "AS":
                stages.add(words[3])
    return bases


def ensure_bases(engine: str) -> None:
    for image in base_images():
        if run([engine, "image", "inspect", image], check=False).returncode == 0:
            continue
        done = run([engine, "pull", image], check=False, timeout=600)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise Skip(f"the base image {image} is not here and cannot be pulled ({last.strip()[:200]})")


def build_command(engine: str, tag: str) -> list[str]:
    argv = [engine, "build", "-t", tag]
    if engine == "podman":
        argv += ["--format", "docker"]  # the OCI format has no HEALTHCHECK
    return argv + ["."]


def build(engine: str, tag: str) -> int:
    """Build the image; return its size in bytes. Fails over SIZE_LIMIT or without HEALTHCHECK."""
    ensure_bases(engine)
    argv = build_command(engine, tag)
    say(" ".join(argv))
    done = subprocess.run(argv, cwd=ROOT, check=False, timeout=1800)
    if done.returncode != 0:
        raise Failed(f"{' '.join(argv)} failed (exit {done.returncode})")
    info = json.loads(run([engine, "image", "inspect", tag]).stdout)[0]
    size = int(info["Size"])
    config = info.get("Config") or {}
    healthcheck = config.get("Healthcheck") or info.get("Healthcheck") or {}  # docker / podman
    if not healthcheck.get("Test"):
        raise Failed(f"{tag} has no HEALTHCHECK (podman keeps it only with --format docker)")
    verdict = "within" if size <= SIZE_LIMIT else "OVER"
    say(f"{tag}: {size / 1e6:.0f} MB ({size} bytes), {verdict} the {SIZE_LIMIT / 1e6:.0f} MB limit")
    if size > SIZE_LIMIT:
        raise Failed(f"{tag} is {size / 1e6:.0f} MB, over the {SIZE_LIMIT / 1e6:.0f} MB limit of docs/image.md")
    return size


# -- the smoke test -------------------------------------------------------------------------------

API_SERVER = f"""
import sys, time, yaml
sys.path.insert(0, "/check")
from testkit.kubeapi import KubeAPI
api = KubeAPI(port={API_PORT}).start()
with open("/check/demo-cluster.yaml", encoding="utf-8") as f:
    for doc in yaml.safe_load_all(f):
        if doc:
            api.apply(doc)
print("serving", api.url, flush=True)
time.sleep(900)
"""


def host_port(engine: str, container: str, port: str) -> int:
    out = run([engine, "port", container, port]).stdout.strip().splitlines()
    if not out:
        raise Failed(f"{container}: {port} is not published")
    return int(out[0].rpartition(":")[2])


def http_status(port: int, path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, OSError):
        return 0


def wait_for(what: str, probe, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if probe():
            return
        time.sleep(0.5)
    raise Failed(f"gave up waiting for {what} after {timeout:.0f}s")


def dig(ports: tuple[int, int], args: list[str]) -> tuple[str, list[str]]:
    """(status, answer records without TTLs) of one dig, to ports (UDP, TCP)."""
    port = ports[1] if "+tcp" in args else ports[0]
    done = run(["dig", "@127.0.0.1", "-p", str(port), "+time=3", "+tries=1", "+noall", "+comments", "+answer", *args], check=False)
    status = re.search(r"status: (\w+)", done.stdout)
    if done.returncode != 0 or not status:
        return f"no answer (dig exit {done.returncode})", []
    records = []
    for line in done.stdout.splitlines():
        if line.strip() and not line.startswith(";"):
            name, _ttl, *rest = line.split()
            records.append(" ".join([name, *rest]))
    return status.group(1), sorted(records)


def demo_queries() -> list[list[str]]:
    queries = []
    for line in (ROOT / "config" / "demo-queries.txt").read_text(encoding="utf-8").splitlines():
        if line.startswith(QUERY_PREFIX):
            queries.append(line[len(QUERY_PREFIX):].split())
    if not queries:
        raise Failed("config/demo-queries.txt has no queries")
    return queries + [["+tcp", "_http._tcp.api.shop.svc.cluster.local", "SRV"]]


@contextlib.contextmanager
def kdns_on_host():
    """`kdns serve` on loopback with the demo cluster, for the answers the image must give."""
    argv = [sys.executable, "-m", "kdns", "serve", "--manifests", str(ROOT / "config" / "demo-cluster.yaml"),
            "--listen", "127.0.0.1:0", "--print-address", "--health", "127.0.0.1:0", "--ready", "127.0.0.1:0",
            "--metrics", "127.0.0.1:0", "--lameduck", "0", "--log-level", "warning"]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, cwd=tempfile.gettempdir())
    try:
        address = process.stdout.readline().strip()
        if not address:
            raise Failed(f"kdns on the host did not start: {' '.join(argv)}")
        yield int(address.rpartition(":")[2])
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def process_status(engine: str, container: str) -> dict[str, str]:
    text = run([engine, "exec", container, "cat", "/proc/1/status"]).stdout
    return {key: value.strip() for key, _, value in (line.partition(":") for line in text.splitlines())}


def check(engine: str, tag: str) -> None:
    size = build(engine, tag)
    suffix = f"{os.getpid()}-{int(time.time())}"
    pod, kdns, coredns = f"kdns-check-api-{suffix}", f"kdns-check-{suffix}", f"kdns-check-coredns-{suffix}"
    # Like a pod: read-only root (podman would add tmpfs mounts on /tmp and /run without the
    # second flag; a pod has none), a fixed non-root UID, no capabilities, a memory limit.
    confined = ["--read-only", "--user", f"{UID}:{UID}", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
                "--memory", MEMORY]
    if engine == "podman":
        confined.append("--read-only-tmpfs=false")
    with tempfile.TemporaryDirectory(prefix="kdns-image-check-") as tmp:
        resolv = Path(tmp) / "resolv.conf"
        resolv.write_text("# image-check: nothing to forward to but this container's own loopback\nnameserver 127.0.0.1\n")
        resolv.chmod(0o644)
        try:
            # The pod's network namespace belongs to the API server's container; only loopback
            # ports are published.
            run([engine, "run", "-d", "--name", pod, *confined, "-v", f"{resolv}:/etc/resolv.conf:ro",
                 "-v", f"{ROOT / 'testkit'}:/check/testkit:ro",
                 "-v", f"{ROOT / 'config' / 'demo-cluster.yaml'}:/check/demo-cluster.yaml:ro",
                 *[arg for port in PUBLISHED for arg in ("-p", f"127.0.0.1::{port}")],
                 "--no-healthcheck", "--entrypoint", "python", tag, "-c", API_SERVER])
            wait_for("the fake API server", lambda: "serving" in run([engine, "logs", pod], check=False).stdout)
            run([engine, "run", "-d", "--name", kdns, *confined, "--network", f"container:{pod}",
                 "-v", f"{resolv}:/etc/resolv.conf:ro",
                 tag, "serve", "--config", "/etc/kdns/kdns.yaml", "--apiserver", f"http://127.0.0.1:{API_PORT}"])
            dns_udp, dns_tcp = host_port(engine, pod, "5353/udp"), host_port(engine, pod, "5353/tcp")
            health, ready = host_port(engine, pod, "8080/tcp"), host_port(engine, pod, "8181/tcp")

            wait_for("/ready to answer 200", lambda: http_status(ready, "/ready") == 200)
            if (status := http_status(health, "/health")) != 200:
                raise Failed(f"/health answered {status}")
            say("/health 200, /ready 200 (synced with the API server through the kubernetes client)")

            proc = process_status(engine, kdns)
            uid = proc["Uid"].split()
            if set(uid) != {str(UID)} or int(proc["CapEff"], 16) or int(proc["CapPrm"], 16):
                raise Failed(f"kdns runs as {proc['Uid']} with CapEff {proc['CapEff']}, CapPrm {proc['CapPrm']}")
            writable = run([engine, "exec", kdns, "python", "-c", "open('/tmp/kdns-check', 'w')"], check=False)
            if writable.returncode == 0 or "Read-only file system" not in writable.stderr:
                raise Failed(f"the root file system is writable: {writable.stderr.strip()[-300:]}")
            done = run([engine, "logs", kdns])
            logs = done.stdout + done.stderr
            if "udp loop: C" not in logs:
                raise Failed("kdns does not use the C UDP loop in the image:\n" + logs)
            limit = run([engine, "exec", kdns, "sh", "-c",
                         "cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes"], check=False)
            if limit.stdout.strip() != str(MEMORY_BYTES):
                raise Failed(f"the container's memory limit is {limit.stdout.strip() or limit.stderr.strip()}, not {MEMORY_BYTES}")
            say(f"kdns runs as UID {UID}, no capabilities, read-only root, a {MEMORY_BYTES // 2**20} MiB memory limit, C UDP loop")

            with kdns_on_host() as reference:
                for args in demo_queries():
                    want, got = dig((reference, reference), args), dig((dns_udp, dns_tcp), args)
                    if got != want or not got[1]:
                        raise Failed(f"dig {' '.join(args)}: the image said {got}, kdns on the host {want}")
                    say(f"dig {' '.join(args)}: {got[0]}, {len(got[1])} record(s) as on the host")
            status, records = dig((dns_udp, dns_tcp), ["kdns-image-check.example", "A"])
            if status != "SERVFAIL" or records:
                raise Failed(f"a name outside the cluster got {status} {records}: it cannot have been forwarded")
            say("a name outside the cluster: SERVFAIL (its only upstream is the container's loopback)")

            check_healthcheck(engine, kdns)
            proc = process_status(engine, kdns)
            say(f"kdns's memory: VmRSS {proc['VmRSS']}, peak VmHWM {proc['VmHWM']} (limit {MEMORY})")

            started = time.monotonic()
            run([engine, "kill", "--signal", "TERM", kdns])
            code = run([engine, "wait", kdns], timeout=60).stdout.strip().splitlines()[-1]
            if code != "0":
                raise Failed(f"kdns exited {code} after SIGTERM:\n" + run([engine, "logs", kdns], check=False).stderr[-3000:])
            say(f"SIGTERM: exit 0 after {time.monotonic() - started:.1f}s (the lameduck period is 5 s)")
            check_coredns_swap(engine, tag, pod, coredns, Path(tmp))
        except Failed:
            for name in (kdns, coredns, pod):
                done = run([engine, "logs", "--tail", "30", name], check=False)
                print(f"--- {name} logs ---\n{done.stdout}{done.stderr}", file=sys.stderr)
            raise
        finally:
            for name in (kdns, coredns, pod):  # kdns first: the API server's container holds its network namespace
                done = run([engine, "rm", "-f", "-t", "0", name], check=False)
                if done.returncode != 0 and "no such container" not in done.stderr.lower():
                    print(f"image: could not remove container {name}: {done.stderr.strip()}", file=sys.stderr)
    say(f"image-check passed: {tag}, {size / 1e6:.0f} MB")


def check_coredns_swap(engine: str, tag: str, pod: str, name: str, tmp: Path) -> None:
    """The image in CoreDNS's place, as kubeadm's Deployment runs CoreDNS (tests/coredns/
    kubeadm.yaml): `-conf /etc/coredns/Corefile` with the ConfigMap mounted there, every
    capability dropped but NET_BIND_SERVICE, no privilege escalation, read-only root, the
    image's own user; DNS on 53, /health on 8080, /ready on 8181, metrics on 9153."""
    text = SWAP_COREFILE.read_text(encoding="utf-8")
    for old, new in SWAP_CHANGES:
        if old not in text:
            raise Failed(f"{SWAP_COREFILE} no longer has {old.strip()!r}")
        text = text.replace(old, new)
    (tmp / "coredns").mkdir()
    (tmp / "coredns" / "Corefile").write_text(text, encoding="utf-8")
    (tmp / "coredns").chmod(0o755)
    (tmp / "coredns" / "Corefile").chmod(0o644)
    swap = ["--read-only", "--cap-drop", "ALL", "--cap-add", "NET_BIND_SERVICE", "--security-opt", "no-new-privileges",
            "--memory", MEMORY]
    if engine == "podman":
        swap.append("--read-only-tmpfs=false")
    run([engine, "run", "-d", "--name", name, *swap, "--network", f"container:{pod}",
         "-v", f"{tmp / 'coredns'}:/etc/coredns:ro", tag, "-conf", "/etc/coredns/Corefile"])
    health, ready, metrics = host_port(engine, pod, "8080/tcp"), host_port(engine, pod, "8181/tcp"), host_port(engine, pod, "9153/tcp")
    dns_udp, dns_tcp = host_port(engine, pod, "53/udp"), host_port(engine, pod, "53/tcp")
    wait_for("/ready on 8181 to answer 200 (kdns from kubeadm's Corefile)", lambda: http_status(ready, "/ready") == 200)
    if (status := http_status(health, "/health")) != 200 or (status := http_status(metrics, "/metrics")) != 200:
        raise Failed(f"/health or /metrics answered {status}")
    proc = process_status(engine, name)
    if set(proc["Uid"].split()) != {str(UID)}:
        raise Failed(f"kdns runs as {proc['Uid']}, not the image's user {UID}")
    with kdns_on_host() as reference:
        for args in (["web.shop.svc.cluster.local", "A"], ["+tcp", "_http._tcp.api.shop.svc.cluster.local", "SRV"],
                     ["-x", "10.96.100.10"]):
            want, got = dig((reference, reference), args), dig((dns_udp, dns_tcp), args)
            if got != want or not got[1]:
                raise Failed(f"dig {' '.join(args)} on port 53: the image said {got}, kdns on the host {want}")
    say(f"CoreDNS swap: -conf /etc/coredns/Corefile (kubeadm's), UID {UID} with only NET_BIND_SERVICE and no privilege "
        "escalation: port 53 answers as on the host, /health 8080, /ready 8181, /metrics 9153")
    started = time.monotonic()
    run([engine, "kill", "--signal", "TERM", name])
    code = run([engine, "wait", name], timeout=60).stdout.strip().splitlines()[-1]
    if code != "0":
        raise Failed(f"kdns (-conf) exited {code} after SIGTERM")
    say(f"CoreDNS swap: SIGTERM: exit 0 after {time.monotonic() - started:.1f}s (the Corefile's lameduck 5s)")


def check_healthcheck(engine: str, container: str) -> None:
    if engine == "podman":
        done = run(["podman", "healthcheck", "run", container], check=False)
        if done.returncode != 0:
            raise Failed(f"the HEALTHCHECK failed: {(done.stdout + done.stderr).strip()}")
        say("HEALTHCHECK: healthy (podman healthcheck run)")
        return

    def healthy() -> bool:
        state = json.loads(run([engine, "inspect", container]).stdout)[0]["State"]
        status = (state.get("Health") or {}).get("Status")
        if status == "unhealthy":
            raise Failed(f"the HEALTHCHECK says unhealthy: {state['Health']}")
        return status == "healthy"

    wait_for("the HEALTHCHECK to report healthy", healthy, timeout=120)  # the first check runs after 30 s
    say("HEALTHCHECK: healthy")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["build", "check"])
    parser.add_argument("--tag", default=TAG)
    args = parser.parse_args(argv)
    try:
        engine = find_engine()
        if args.command == "build":
            build(engine, args.tag)
        else:
            if shutil.which("dig") is None:
                raise Skip("dig is not installed (apt-get install bind9-dnsutils)")
            check(engine, args.tag)
    except Skip as exc:
        if args.command == "build":
            print(f"make image: {exc}", file=sys.stderr)
            return 1
        print(f"image-check skipped: {exc}")
        return 0
    except Failed as exc:
        print(f"image {args.command} FAILED: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
