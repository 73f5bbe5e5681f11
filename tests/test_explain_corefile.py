"""`kdns explain` and a Corefile (issue 17): run locally with `--corefile PATH` (the same
source options as `kdns serve`), a Corefile's rewrites, templates, hosts and except zones show
without a running server; through `--server` against kdns serving the Corefile, an except zone
nobody takes is explained as the SERVFAIL a query gets, naming its except line.

The local runs are the `kdns explain` command as a process; the served one is kdns in the
test's trio loop, asked over UDP with dnspython and through `kdns explain --server`."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
from pathlib import Path

import dns.rcode
import pytest
import trio

from kdns import cli
from testkit.corefile import serve_corefile, synced
from testkit.kubeapi import KubeAPI
from testkit.repo import DEMO, ROOT
from testkit.stubdns import StubDNS

COREFILE = """\
.:53 {
    kubernetes cluster.local {
        endpoint API
    }
    rewrite name exact db.example.org db.shop.svc.cluster.local
    template IN A blocked.example {
        rcode NXDOMAIN
    }
    hosts {
        192.0.2.7 gw.example.net
        fallthrough
    }
    forward corp.example UPSTREAM {
        except open.corp.example
    }
    forward . UPSTREAM {
        except internal.example
    }
}
"""


def write(tmp_path: Path, api: str = "http://127.0.0.1:1", upstream: str = "127.0.0.1:1") -> Path:
    path = tmp_path / "Corefile"
    path.write_text(COREFILE.replace("API", api).replace("UPSTREAM", upstream))
    return path


def explain_locally(*argv: str) -> tuple[int, str, str]:
    done = subprocess.run([sys.executable, "-m", "kdns", "explain", *argv], capture_output=True, text=True, cwd=ROOT,
                          timeout=60, check=False)
    return done.returncode, done.stdout, done.stderr


def test_local_explain_reads_the_corefile(tmp_path):
    """The Corefile's kubernetes names its API server; --manifests replaces that source, as
    with kdns serve, and the rest of the Corefile holds."""
    path = write(tmp_path)
    rc, out, err = explain_locally("db.example.org", "--corefile", str(path), "--manifests", str(DEMO), "--json")
    got = json.loads(out)
    assert rc == 0, err
    assert got["reasons"][0] == f"rewritten by {path}:5 from db.example.org. to db.shop.svc.cluster.local."
    assert got["rcode"] == "NOERROR" and {line["record"] for line in got["records"]} == {
        "db.example.org. 5 IN A 10.244.1.30", "db.example.org. 5 IN A 10.244.2.31"}
    rc, out, _ = explain_locally("x.blocked.example", "--corefile", str(path), "--manifests", str(DEMO), "--json")
    got = json.loads(out)
    assert (got["rcode"], got["answered_by"], got["reasons"]) == ("NXDOMAIN", "template", [f"answered by the template at {path}:6"])
    rc, out, _ = explain_locally("gw.example.net", "--corefile", str(path), "--manifests", str(DEMO), "--json")
    got = json.loads(out)
    assert (got["rcode"], got["answered_by"], [line["record"] for line in got["records"]]) == (
        "NOERROR", "hosts file", ["gw.example.net. 3600 IN A 192.0.2.7"])
    rc, out, _ = explain_locally("a.internal.example", "--corefile", str(path), "--manifests", str(DEMO))
    assert rc == 0 and out.startswith("a.internal.example. A: SERVFAIL, forwarding\n")
    assert f"(the except line at {path}:17): SERVFAIL" in out
    rc, out, _ = explain_locally("x.open.corp.example", "--corefile", str(path), "--manifests", str(DEMO), "--json")
    got = json.loads(out)
    assert got["forward"]["upstreams"] == ["127.0.0.1:1"] and "--upstream-default open.corp.example" in got["reasons"][-1]


def test_local_explain_with_a_broken_corefile_says_where(tmp_path):
    path = tmp_path / "Corefile"
    path.write_text(".:53 {\n    kubernetes cluster.local\n    etcd example.org\n}\n")
    rc, out, err = explain_locally("example.org", "--corefile", str(path), "--manifests", str(DEMO))
    assert rc == 1 and out == "" and f"kdns explain: error: {path}:3: etcd" in err
    rc, _, err = explain_locally("example.org", "--corefile", str(path), "--config", "config/kdns.yaml")
    assert rc == 2 and "--corefile and --config cannot be combined" in err


@pytest.fixture
def api():
    server = KubeAPI().start()
    yield server
    server.stop()


async def test_except_zone_explained_as_the_servfail_it_gets(nursery, tmp_path, api):
    upstream = StubDNS("a.internal.example. 300 IN A 192.0.2.1", "x.example.org. 300 IN A 192.0.2.2")
    await nursery.start(upstream.serve)
    path = write(tmp_path, api.url, upstream.address)
    running = await synced(await serve_corefile(nursery, path, "--listen", "127.0.0.1:0", "--explain", "127.0.0.1:0"))
    url = f"http://127.0.0.1:{running.server.http_bound['/explain'].port}"

    def explain(*args: str) -> dict:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            assert cli.main(["explain", "--server", url, *args, "--json"]) == 0
        return json.loads(out.getvalue())

    assert (await running.query("a.internal.example")).rcode() == dns.rcode.SERVFAIL
    got = await trio.to_thread.run_sync(explain, "a.internal.example", "A")
    assert got["rcode"] == "SERVFAIL" and got["forward"]["upstreams"] == []
    assert got["negative"] == (f"a.internal.example. lies under internal.example., which no upstream takes (the except line "
                               f"at {path}:17): SERVFAIL, as CoreDNS's forward except when no plugin after forward takes the name")
    assert (await running.query("x.example.org")).rcode() == dns.rcode.NOERROR
    got = await trio.to_thread.run_sync(explain, "x.example.org", "A")
    assert got["rcode"] == "NOERROR" and got["negative"] == ""
    assert upstream.count("a.internal.example") == 0


def test_upstream_except_flag_is_explained_as_servfail():
    rc, out, _ = explain_locally("a.internal.example", "--manifests", str(DEMO), "--upstream", "127.0.0.1:1",
                                 "--upstream-except", "internal.example", "--json")
    got = json.loads(out)
    assert rc == 0 and got["rcode"] == "SERVFAIL"
    assert "which no upstream takes (--upstream-except internal.example): SERVFAIL" in got["negative"]
