"""The kdns under soak: `kdns serve --apiserver` as a process pinned to its core, its log
lines as they come (parsed, kept for the report), its memory and CPU from /proc and the sums
of its /metrics."""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from perf.bench import ROOT
from perf.bench import cpu_seconds as process_cpu_seconds
from perf.bench import status_kb as process_status_kb
from perf.soak import SERVER_CORE, SoakError

START_TIMEOUT = 30.0
# How the soak starts kdns (API server, upstream and ports are its own), as the report shows it.
KDNS_COMMAND = ("kdns serve --apiserver URL --listen 127.0.0.1:0 --upstream 127.0.0.1:U --stub-domain hostile.test=127.0.0.2:H "
                "--metrics 127.0.0.1:0 --lameduck 0")


@dataclass
class LogLine:
    t: float
    level: str
    logger: str
    message: str
    extra: list[str] = field(default_factory=list)  # traceback lines

    @property
    def kind(self) -> str:
        """The message with numbers, addresses and object names generalised."""
        text = re.sub(r"\d+(\.\d+)*", "N", self.message)
        return f"{self.level} {self.logger}: {text}"


class Kdns:
    def __init__(self, api_url: str, upstream_port: int, log_path: Path | None, hostile_port: int) -> None:
        self.argv = [sys.executable, "-m", "kdns", "serve", "--apiserver", api_url, "--listen", "127.0.0.1:0",
                     "--upstream", f"127.0.0.1:{upstream_port}", "--stub-domain", f"hostile.test=127.0.0.2:{hostile_port}",
                     "--metrics", "127.0.0.1:0", "--lameduck", "0", "--print-address"]
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None
        self.lines: list[LogLine] = []
        self.raw: list[str] = []
        self.port = 0
        self.metrics_port = 0
        self.synced = threading.Event()
        self.lock = threading.Lock()
        self._reader: threading.Thread | None = None

    def start(self) -> None:
        wrap = ["setpriv", "--pdeathsig", "TERM"] if shutil.which("setpriv") else []
        self.proc = subprocess.Popen([*wrap, "taskset", "-c", str(SERVER_CORE), *self.argv], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, errors="replace", cwd=ROOT)
        self._reader = threading.Thread(target=self._read, name="kdns-log", daemon=True)
        self._reader.start()
        threading.Thread(target=self._read_address, name="kdns-address", daemon=True).start()
        deadline = time.monotonic() + START_TIMEOUT
        while not (self.synced.is_set() and self.port and self.metrics_port):
            if self.proc.poll() is not None:
                time.sleep(0.2)
                raise SoakError(f"kdns exited with status {self.proc.returncode} at start:\n{self.tail()}")
            if time.monotonic() > deadline:
                raise SoakError(f"kdns did not sync within {START_TIMEOUT:.0f} s:\n{self.tail()}")
            time.sleep(0.05)

    def _read(self) -> None:
        stamp = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ (\w+) (\S+): (.*)$")
        for raw in self.proc.stderr:
            raw = raw.rstrip("\n")
            now = time.monotonic()
            with self.lock:
                self.raw.append(raw)
                m = stamp.match(raw)
                if m:
                    self.lines.append(LogLine(now, m.group(1), m.group(2), m.group(3)))
                elif self.lines:
                    self.lines[-1].extra.append(raw)
                else:
                    self.lines.append(LogLine(now, "UNSTRUCTURED", "-", raw))
            if m and not self.metrics_port and (p := re.search(r"listening on http 127\.0\.0\.1:(\d+)", raw)):
                self.metrics_port = int(p.group(1))
            if m and "synced with" in raw:
                self.synced.set()

    def _read_address(self) -> None:
        """The DNS port, from the address --print-address prints once kdns answers."""
        line = self.proc.stdout.readline()
        if m := re.fullmatch(r"127\.0\.0\.1:(\d+)\n", line):
            self.port = int(m.group(1))

    def tail(self, n: int = 20) -> str:
        with self.lock:
            return "\n".join(self.raw[-n:])

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def status_kb(self, field_name: str) -> int:
        return process_status_kb(self.proc.pid, field_name)

    def cpu_seconds(self) -> float:
        return process_cpu_seconds(self.proc.pid)

    def metrics_text(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as resp:
            return resp.read().decode()

    def metrics(self) -> dict[str, float]:
        """The sum of each metric family's samples (histogram: its _count)."""
        text = self.metrics_text()
        sums: dict[str, float] = {}
        for line in text.splitlines():
            if line.startswith("#") or not line.strip():
                continue
            m = re.match(r"^([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s+(\S+)$", line)
            if m:
                with contextlib.suppress(ValueError):
                    sums[m.group(1)] = sums.get(m.group(1), 0.0) + float(m.group(3))
        return sums

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self._reader is not None:
            self._reader.join(5)
        if self.log_path is not None:
            with self.lock:
                self.log_path.write_text("\n".join(self.raw) + "\n")
