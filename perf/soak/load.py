"""The steady load: dnsperf at a fixed rate in runs back to back, each run's per-query
output summarised by perf/soak/parse.py (at nice 19) while the next one goes."""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from perf.bench import ROOT
from perf.soak import CLIENT_CORE, SoakError

DNSPERF_OPTIONS = ["-T", "2", "-c", "2", "-q", "500", "-t", "2", "-v"]


@dataclass
class Chunk:
    start: float  # seconds from the start of the load
    seconds: float
    sent: int
    completed: int
    lost: int
    rcodes: Counter
    p50: float  # µs
    p99: float
    p999: float
    max: float
    windows: list[tuple[float, float, float]]  # (start s, p99 µs, max µs) of each second's worth of queries


class Load(threading.Thread):
    """dnsperf in `chunk`-second runs back to back until `seconds` have passed; each run's
    output is parsed while the next one runs."""

    def __init__(self, port: int, queries: Path, work: Path, rate: int, seconds: float, chunk: float, t0: float, stop: threading.Event):
        super().__init__(name="dnsperf", daemon=True)
        self.port, self.queries, self.work, self.rate = port, queries, work, rate
        self.seconds, self.chunk, self.t0, self.stop_event = seconds, chunk, t0, stop
        self.chunks: list[Chunk] = []
        self.error: str | None = None
        self.proc: subprocess.Popen | None = None

    def argv(self, seconds: float) -> list[str]:
        wrap = ["setpriv", "--pdeathsig", "KILL"] if shutil.which("setpriv") else []
        return [*wrap, "taskset", "-c", str(CLIENT_CORE), "dnsperf", "-s", "127.0.0.1", "-p", str(self.port), "-d", str(self.queries),
                "-l", f"{seconds:g}", "-Q", str(self.rate), *DNSPERF_OPTIONS]

    def run(self) -> None:
        try:
            self._run()
        except Exception as exc:  # noqa: BLE001 - reported by the main thread
            self.error = f"{type(exc).__name__}: {exc}"

    def _run(self) -> None:
        pending = None
        i = 0
        while not self.stop_event.is_set():
            start = time.monotonic() - self.t0
            remaining = self.seconds - start
            if remaining < 1:
                break
            seconds = round(min(self.chunk, remaining), 1)
            out = self.work / f"dnsperf-{i % 2}.out"
            with out.open("w") as f:
                self.proc = subprocess.Popen(self.argv(seconds), stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            if pending is not None:
                self.chunks.append(parse_chunk(*pending, self.rate))
            deadline = time.monotonic() + seconds + 30
            while self.proc.poll() is None:
                if self.stop_event.is_set() or time.monotonic() > deadline:
                    self.proc.terminate()
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        self.proc.wait(5)
                    if self.proc.poll() is None:
                        self.proc.kill()
                        self.proc.wait(5)
                    if not self.stop_event.is_set():
                        raise SoakError(f"dnsperf did not finish within {seconds + 30:.0f} s")
                    return
                time.sleep(0.1)
            if self.proc.returncode != 0:
                raise SoakError(f"dnsperf failed ({self.proc.returncode}):\n{out.read_text()[-2000:]}")
            pending = (out, start, seconds)
            i += 1
        if pending is not None:
            self.chunks.append(parse_chunk(*pending, self.rate))

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(5)


def parse_chunk(path: Path, start: float, seconds: float, rate: int) -> Chunk:
    """dnsperf's summary and per-query latencies (perf/soak/parse.py, run at nice 19 on core 0)."""
    argv = ["nice", "-n", "19", "taskset", "-c", str(CLIENT_CORE), sys.executable, "-m", "perf.soak.parse", str(path), str(rate)]
    done = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=300, cwd=ROOT)
    if done.returncode != 0:
        raise SoakError(f"cannot parse dnsperf's output: {done.stderr[-2000:]}")
    out = json.loads(done.stdout)
    if out["sent"] is None or out["completed"] is None or out["lost"] is None:
        raise SoakError(f"no summary in dnsperf's output:\n{out['tail']}")

    def num(x) -> float:
        return math.nan if x is None else x

    return Chunk(start, seconds, out["sent"], out["completed"], out["lost"], Counter(out["rcodes"]), num(out["p50"]), num(out["p99"]),
                 num(out["p999"]), num(out["max"]), [(start + t, num(p), num(m)) for t, p, m in out["windows"]])
