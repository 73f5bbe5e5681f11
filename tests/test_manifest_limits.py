"""Hostile manifest files against a `kdns serve` process (issue 13, inputs 3 to 6).

Each test starts kdns on loopback port 0 with `--manifests` files in a temporary directory,
does to the files what an attacker (or an unlucky tool) would, and asserts through DNS
queries, the log and /proc/PID that kdns reports the file, keeps the objects it had, goes on
answering and following its other files, and exits on SIGTERM after its lameduck period.

Bounds (each about 10 times what kdns needs, and far below what it took before):
- MEMORY_BOUND: peak resident memory may grow by 100 MB over what the process had before
  the hostile file (it needs under 10 MB). A watchdog kills a process that passes it, so a
  broken kdns cannot eat the machine's memory (/dev/zero was read at 290 MB/s).
- CPU_BOUND: refusing a hostile file takes at most 3 s of CPU (it needs ~0.1 s; the alias
  bomb took 90 s).
- IDLE_CPU_SHARE: with 5,000 files and --reload-interval 2, an idle kdns uses at most 25% of
  a core (~2.5% needed: one stat a file a pass; the quadratic rescan took 4 s a pass, all
  the CPU it could get).
- EXIT_GRACE: after SIGTERM, kdns exits within --lameduck plus 3 s.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import dns.rcode
import pytest

from testkit.process import KdnsProcess, kdns_serve, lookup
from testkit.repo import write

MB = 1 << 20
MEMORY_BOUND = 100 * MB
CPU_BOUND = 3.0
IDLE_CPU_SHARE = 0.25
LAMEDUCK = 0.5
EXIT_GRACE = 3.0
REPORT_WAIT = 20.0  # for kdns to report a hostile file
WAIT = 10.0  # for a reload to show in answers
CLK_TCK = os.sysconf("SC_CLK_TCK")
KDNS = [sys.executable, "-m", "kdns"]


def service(name: str, ip: str) -> str:
    return f"""
    apiVersion: v1
    kind: Service
    metadata: {{name: {name}, namespace: shop}}
    spec: {{clusterIP: {ip}}}
    """


def replace(path: Path, text: str) -> None:
    """Rewrite a file atomically (temp file + rename)."""
    tmp = path.with_name(path.name + ".tmp")
    write(tmp, text)
    os.replace(tmp, path)


def address(k: KdnsProcess, name: str) -> set[str]:
    reply = lookup(k.port, f"{name}.shop.svc.cluster.local")
    assert reply.rcode() == dns.rcode.NOERROR, f"{name}: {dns.rcode.to_text(reply.rcode())}"
    return {rd.to_text() for rrset in reply.answer for rd in rrset}


def eventually_address(k: KdnsProcess, name: str, ip: str) -> None:
    deadline = time.monotonic() + WAIT
    while (got := address(k, name)) != {ip}:
        assert time.monotonic() < deadline, f"{name}: still {got} after {WAIT}s, expected {ip}"
        time.sleep(0.05)


def still_following(k: KdnsProcess, path: Path, name: str, ip: str) -> None:
    """kdns answers and picks up an edit of another file (its rescans go on)."""
    replace(path, service(name, ip))
    eventually_address(k, name, ip)


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak) of a process, in bytes."""
    values = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0]) * 1024
    return values


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime


class Guard:
    """Watches a kdns process from now on: its peak memory growth and CPU time since, and a
    watchdog thread that kills it if its memory grows by more than MEMORY_BOUND."""

    def __init__(self, k: KdnsProcess):
        self.k = k
        self.rss = proc_status(k.proc.pid)["VmRSS"]
        self.cpu = cpu_seconds(k.proc.pid)
        self.killed: int | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.wait(0.02):
            try:
                rss = proc_status(self.k.proc.pid)["VmRSS"]
            except (OSError, KeyError):
                return  # exited
            if rss - self.rss > MEMORY_BOUND:
                self.killed = rss - self.rss
                self.k.proc.kill()
                return

    def check(self) -> None:
        """Memory and CPU stayed within their bounds (the process must still run)."""
        assert self.killed is None, f"killed: memory grew by {self.killed / MB:.0f} MB (bound {MEMORY_BOUND / MB:.0f})"
        grown = proc_status(self.k.proc.pid)["VmHWM"] - self.rss
        assert grown <= MEMORY_BOUND, f"peak memory grew by {grown / MB:.0f} MB (bound {MEMORY_BOUND / MB:.0f})"
        used = cpu_seconds(self.k.proc.pid) - self.cpu
        assert used <= CPU_BOUND, f"{used:.1f} s of CPU (bound {CPU_BOUND})"

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=1.0)


def wait_report(k: KdnsProcess, pattern: str, guard: Guard | None = None) -> str:
    """The ERROR line matching `pattern` (saying so if the watchdog killed kdns meanwhile)."""
    try:
        return k.wait_for(rf" ERROR .*{pattern}", REPORT_WAIT).string
    except AssertionError:
        if guard is not None:
            guard.check()
        raise


def sigterm_exits(k: KdnsProcess) -> None:
    k.proc.send_signal(signal.SIGTERM)
    try:
        status = k.wait_exit(timeout=LAMEDUCK + EXIT_GRACE)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"still running {LAMEDUCK + EXIT_GRACE}s after SIGTERM; log: {k.lines[-5:]}") from None
    assert status == 0, k.lines[-5:]


def serve(*args: str | Path):
    return kdns_serve("--reload-interval", "0.1", "--lameduck", str(LAMEDUCK), *map(str, args), http=())


def alias_bomb(levels: int = 8, fanout: int = 9) -> str:
    """~800 bytes: a `kind: List` whose items are Lists of aliases of the level below, fanout
    ** levels ConfigMaps in all (43 million with the defaults)."""
    lines = ["apiVersion: v1", "kind: List", "items:",
             "- &l0 {apiVersion: v1, kind: ConfigMap, metadata: {name: c, namespace: bomb}}"]
    for level in range(1, levels + 1):
        refs = ", ".join([f"*l{level - 1}"] * fanout)
        lines.append(f"- &l{level} {{apiVersion: v1, kind: List, items: [{refs}]}}")
    return "\n".join(lines) + "\n"


# -- input 3: a YAML alias bomb ----------------------------------------------------------------


def test_alias_bomb_is_refused_at_once_and_the_file_keeps_its_objects(tmp_path):
    """An 800-byte alias bomb replacing a manifest in a watched directory: reported (naming
    the file and the node limit) within the memory and CPU bounds; the file's Service keeps
    answering, the other file's edits are followed, and SIGTERM still stops kdns."""
    d = tmp_path / "cluster"
    a = write(d / "a.yaml", service("web", "10.96.0.50"))
    b = write(d / "b.yaml", service("api", "10.96.0.60"))
    bomb = alias_bomb()
    assert len(bomb) < 1000
    with serve("--manifests", d) as k:
        assert address(k, "api") == {"10.96.0.60"}
        guard = Guard(k)
        try:
            replace(b, bomb)
            line = wait_report(k, r"b\.yaml: line \d+: too big: more than 1,048,576 nodes", guard)
            assert "keeping its previous contents" in line
            still_following(k, a, "web", "10.96.0.51")
            assert address(k, "api") == {"10.96.0.60"}
            guard.check()
        finally:
            guard.stop()
        sigterm_exits(k)


# -- input 4: a FIFO where a directly named manifest was -------------------------------------


def test_fifo_in_place_of_a_named_manifest_is_reported_once_and_kdns_stops_on_sigterm(tmp_path):
    """`--manifests a.yaml --manifests b.yaml`, then `rm b.yaml; mkfifo b.yaml`: reported once
    as a FIFO (never opened for reading: nobody writes to it), b.yaml's Service is kept, edits
    of a.yaml are still seen, and SIGTERM stops kdns after its lameduck period."""
    a = write(tmp_path / "a.yaml", service("web", "10.96.0.50"))
    b = write(tmp_path / "b.yaml", service("api", "10.96.0.60"))
    with serve("--manifests", a, "--manifests", b) as k:
        guard = Guard(k)
        try:
            b.unlink()
            os.mkfifo(b)
            wait_report(k, r"b\.yaml: not a regular file \(a FIFO\)", guard)
            still_following(k, a, "web", "10.96.0.51")
            still_following(k, a, "web", "10.96.0.52")
            assert address(k, "api") == {"10.96.0.60"}
            assert len(k.matching(r"b\.yaml: not a regular file")) == 1, k.lines
            guard.check()
        finally:
            guard.stop()
        # Back to a file: read again.
        b.unlink()
        write(b, service("api", "10.96.0.61"))
        eventually_address(k, "api", "10.96.0.61")
        os.replace(a, tmp_path / "gone")
        os.mkfifo(a)
        wait_report(k, r"a\.yaml: not a regular file \(a FIFO\)")
        sigterm_exits(k)


# -- input 5: /dev/zero behind a swapped symlink -----------------------------------------------


def test_dev_zero_swapped_in_behind_a_symlink_is_not_read(tmp_path):
    """b.yaml is a symlink to a manifest; a new symlink to /dev/zero is renamed over it. kdns
    reports a character device, reads nothing from it (memory bound), keeps b's Service and
    follows a.yaml."""
    a = write(tmp_path / "a.yaml", service("web", "10.96.0.50"))
    real = write(tmp_path / "real" / "b.yaml", service("api", "10.96.0.60"))
    b = tmp_path / "b.yaml"
    b.symlink_to(real)
    with serve("--manifests", a, "--manifests", b) as k:
        assert address(k, "api") == {"10.96.0.60"}
        guard = Guard(k)
        try:
            swap = tmp_path / "swap"
            swap.symlink_to("/dev/zero")
            os.replace(swap, b)
            wait_report(k, r"b\.yaml: not a regular file \(a character device\)", guard)
            still_following(k, a, "web", "10.96.0.51")
            assert address(k, "api") == {"10.96.0.60"}
            guard.check()
        finally:
            guard.stop()
        sigterm_exits(k)


# -- the size limit ------------------------------------------------------------------------------


def test_sparse_file_over_the_size_limit_is_not_read(tmp_path):
    """A 512 MB sparse file (zeros) replaces a manifest: refused from its size alone, naming
    the limit and --manifest-max-bytes, within the memory bound (it once peaked at +690 MB);
    the file keeps its Service until it is a manifest again."""
    d = tmp_path / "cluster"
    a = write(d / "a.yaml", service("web", "10.96.0.50"))
    b = write(d / "b.yaml", service("api", "10.96.0.60"))
    with serve("--manifests", d) as k:
        guard = Guard(k)
        try:
            sparse = d / "b.tmp"
            with open(sparse, "wb") as f:
                f.truncate(512 * MB)
            os.replace(sparse, b)
            wait_report(k, r"b\.yaml: 536,870,912 bytes, more than the limit of 16,777,216 \(manifest-max-bytes\)", guard)
            still_following(k, a, "web", "10.96.0.51")
            assert address(k, "api") == {"10.96.0.60"}
            guard.check()
        finally:
            guard.stop()
        replace(b, service("api", "10.96.0.61"))
        eventually_address(k, "api", "10.96.0.61")
        sigterm_exits(k)


def test_manifest_max_bytes_option_sets_the_limit(tmp_path):
    """--manifest-max-bytes 400: a 400-byte manifest loads; grown to 401 bytes it is reported
    and keeps its Service; at start, a file over the limit stops kdns with one line."""
    text = textwrap.dedent(service("api", "10.96.0.60")).lstrip()
    padded = text + "#" * (400 - len(text) - 1) + "\n"
    b = tmp_path / "b.yaml"
    b.write_text(padded)
    assert b.stat().st_size == 400
    with serve("--manifests", b, "--manifest-max-bytes", "400") as k:
        assert address(k, "api") == {"10.96.0.60"}
        replace(b, padded.replace("10.96.0.60", "10.96.0.61") + "\n")
        wait_report(k, r"b\.yaml: 401 bytes, more than the limit of 400 \(manifest-max-bytes\)")
        assert address(k, "api") == {"10.96.0.60"}
    done = subprocess.run([*KDNS, "serve", "--manifests", str(b), "--manifest-max-bytes", "400", "--listen", "127.0.0.1:0"],
                          capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 1
    assert done.stderr == f"kdns: error: {b}: 401 bytes, more than the limit of 400 (manifest-max-bytes)\n"


def test_manifest_max_bytes_changes_with_a_config_reload(tmp_path):
    """manifest-max-bytes is not restart-only: lowered in the --config file, the next change of
    a manifest is measured against the new limit."""
    b = write(tmp_path / "b.yaml", service("api", "10.96.0.60"))
    config = tmp_path / "kdns.yaml"
    config.write_text(f"manifests: [{b}]\nmanifest-max-bytes: 1000\nreload-interval: 0.1\n")
    with kdns_serve("--config", config, "--lameduck", str(LAMEDUCK), http=()) as k:
        assert address(k, "api") == {"10.96.0.60"}
        config.write_text(f"manifests: [{b}]\nmanifest-max-bytes: 50\nreload-interval: 0.1\n")
        k.wait_for("configuration reloaded", WAIT)
        replace(b, service("api", "10.96.0.61"))
        wait_report(k, r"b\.yaml: \d+ bytes, more than the limit of 50 \(manifest-max-bytes\)")
        assert address(k, "api") == {"10.96.0.60"}
        assert not k.matching("only change.* at start")


# -- input 6: 5,000 files ------------------------------------------------------------------------


def test_five_thousand_files_cost_little_while_idle(tmp_path):
    """5,000 manifests in a directory, --reload-interval 2: over 6 s with no change kdns uses at
    most IDLE_CPU_SHARE of a core (each pass is one stat a file), answers throughout, and
    picks up an edit of one of the files."""
    d = tmp_path / "many"
    d.mkdir()
    for i in range(5000):
        (d / f"svc-{i:04d}.yaml").write_text(
            f"apiVersion: v1\nkind: Service\nmetadata: {{name: s{i}, namespace: shop}}\n"
            f"spec: {{clusterIP: 10.97.{i // 250}.{i % 250 + 1}}}\n"
        )
    with kdns_serve("--manifests", d, "--reload-interval", "2", "--lameduck", str(LAMEDUCK), http=()) as k:
        assert address(k, "s4999") == {"10.97.19.250"}
        started, cpu = time.monotonic(), cpu_seconds(k.proc.pid)
        while time.monotonic() - started < 6.0:
            assert address(k, "s1234") == {"10.97.4.235"}
            time.sleep(0.2)
        share = (cpu_seconds(k.proc.pid) - cpu) / (time.monotonic() - started)
        assert share <= IDLE_CPU_SHARE, f"idle kdns used {share:.0%} of a core (bound {IDLE_CPU_SHARE:.0%})"
        replace(d / "svc-1234.yaml", service("s1234", "10.97.200.1"))
        eventually_address(k, "s1234", "10.97.200.1")
        sigterm_exits(k)


# -- a shutdown does not wait for a read ----------------------------------------------------------


def test_sigterm_during_a_long_parse_exits_after_the_lameduck_period(tmp_path):
    """A large manifest (600,000 YAML nodes, seconds of parsing) arrives, and SIGTERM comes
    while kdns parses it: kdns exits within --lameduck + EXIT_GRACE, before the parse ends
    (the broken document at the end of the file, which it would report, is never reached)."""
    d = tmp_path / "cluster"
    write(d / "a.yaml", service("web", "10.96.0.50"))
    big = ("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: big, namespace: shop}\ndata:\n  x: [" + "0," * 600_000
           + "0]\n---\nkind: [unclosed\n")
    with serve("--manifests", d) as k:
        cpu = cpu_seconds(k.proc.pid)
        (d / "big.tmp").write_text(big)
        os.replace(d / "big.tmp", d / "big.yaml")
        deadline = time.monotonic() + WAIT
        while cpu_seconds(k.proc.pid) - cpu < 0.5:  # parsing has begun
            assert time.monotonic() < deadline, "kdns never started reading the file"
            time.sleep(0.05)
        assert not k.matching("big.yaml"), "parsed already: the test proves nothing on this machine"
        sigterm_exits(k)
        assert not k.matching("big.yaml"), "the exit waited for the parse to end"


# -- the --config file ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["fifo", "too-big", "alias-bomb"])
def test_hostile_config_file_is_one_line_and_no_hang(tmp_path, kind):
    """`kdns check-config` and `kdns serve --config` on a FIFO, a file over 1 MiB or an alias
    bomb: one line naming the file and the problem, exit status 1, at once."""
    path = tmp_path / "kdns.yaml"
    if kind == "fifo":
        os.mkfifo(path)
        expected = "not a regular file (a FIFO)"
    elif kind == "too-big":
        path.write_text("ttl: 30\n" + "#" * MB + "\n")
        expected = f"{path.stat().st_size:,} bytes, more than the limit of 1,048,576 (config files)"
    else:
        path.write_text("ttl: 30\nx:\n" + textwrap.indent(alias_bomb(), "  "))
        expected = "too big: more than 65,536 nodes"
    done = subprocess.run([*KDNS, "check-config", str(path)], capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 1 and done.stdout.startswith(f"{path}: ") and expected in done.stdout, done
    assert len(done.stdout.splitlines()) == 1, done.stdout
    assert stat.S_ISFIFO(path.stat().st_mode) == (kind == "fifo")
    done = subprocess.run([*KDNS, "serve", "--config", str(path), "--listen", "127.0.0.1:0"],
                          capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 1 and done.stderr.startswith(f"kdns: error: {path}: ") and expected in done.stderr, done
