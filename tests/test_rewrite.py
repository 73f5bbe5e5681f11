"""kdns.rewrite and kdns.templates on their own (pure, no sockets): a Corefile's `rewrite name`
rules and `template`s compiled as `kdns serve --corefile` compiles them, then asked for names.
`inner` stands for kdns's own tables: it answers the name it is given with records owned by
that name, so what the rules did to the question and to the answer shows in the records."""

from __future__ import annotations

import dns.message
import pytest
from dnslib import QTYPE, RR, DNSRecord

from kdns import codes, rewrite, upstream, wire
from kdns.corefile import parse_text
from kdns.corefile.translate import translate
from kdns.result import Answer, Record

HEAD = ".:53 {\n    kubernetes cluster.local {\n        endpoint http://127.0.0.1:6443\n    }\n"


def rules(body: str, tail: str = "") -> rewrite.Rules:
    t = translate(parse_text(HEAD + body + "\n}\n" + tail))
    assert t.ok, [str(p) for p in t.problems]
    compiled = rewrite.from_translation(t)
    assert compiled is not None
    return compiled


class Tables:
    """kdns's tables as `inner`: each name gets an A record, a CNAME to `www.<name>` and an
    SRV and MX with `srv.<name>` as target; `asked` records the names looked up."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def __call__(self, labels: tuple[str, ...]) -> Answer:
        name = ".".join(labels)
        self.asked.append(name)
        return Answer(codes.NOERROR, (Record(name, codes.CNAME, 5, "www." + name), Record("www." + name, codes.A, 5, "10.0.0.1"),
                                      Record(name, codes.SRV, 5, (0, 100, 80, "srv." + name)),
                                      Record(name, codes.MX, 5, (10, "srv." + name))),
                      additional=(Record("srv." + name, codes.A, 5, "10.0.0.2"),))


def ask(r: rewrite.Rules, name: str, qtype: int = codes.A, remote: str | None = None) -> tuple[Answer, list[str]]:
    tables = Tables()
    got = rewrite.answer(r, tuple(name.split(".")), qtype, remote, tables)
    return got, tables.asked


def owners(a: Answer) -> list[str]:
    return [r.name for r in a.answer + a.additional]


def values(a: Answer) -> list[object]:
    return [r.data if r.rtype != codes.SRV else r.data[3] for r in a.answer if r.rtype in (codes.CNAME, codes.SRV)] + \
        [r.data[1] for r in a.answer if r.rtype == codes.MX]


def test_exact_rewrites_the_question_and_maps_every_name_back():
    r = rules("    rewrite name exact api.example.com ingress.nginx.svc.cluster.local")
    got, asked = ask(r, "api.example.com")
    assert asked == ["ingress.nginx.svc.cluster.local"]
    assert owners(got) == ["api.example.com", "www.api.example.com", "api.example.com", "api.example.com", "srv.api.example.com"]
    assert values(got) == ["www.api.example.com", "srv.api.example.com", "srv.api.example.com"]
    assert got.via is not None and got.via.rewritten
    assert got.via.steps == ("rewritten by Corefile:5 from api.example.com. to ingress.nginx.svc.cluster.local.",)
    # Other names: untouched, and no trace of the rules.
    other, asked = ask(r, "www.example.com")
    assert asked == ["www.example.com"] and other.via is None and owners(other)[0] == "www.example.com"


def test_suffix_maps_back_only_with_answer_auto():
    auto = rules("    rewrite name suffix .corp.internal. .example.net. answer auto")
    got, asked = ask(auto, "db.corp.internal")
    assert asked == ["db.example.net"]
    assert owners(got)[:2] == ["db.corp.internal", "www.db.corp.internal"] and values(got)[0] == "www.db.corp.internal"
    plain = rules("    rewrite name suffix .corp.internal. .example.net.")
    got, asked = ask(plain, "db.corp.internal")
    assert asked == ["db.example.net"] and owners(got)[0] == "db.example.net"  # as CoreDNS: the client sees the new name


@pytest.mark.parametrize(("rule", "name", "looked_up"), [
    ("rewrite name prefix old new answer auto", "old.example.org", "new.example.org"),
    ("rewrite name substring .staging. .prod. answer auto", "db.staging.example.org", "db.prod.example.org"),
    ("rewrite name regex (.*)\\.legacy\\.example\\.org\\. {1}.default.svc.cluster.local answer auto", "web.legacy.example.org",
     "web.default.svc.cluster.local"),
    ("rewrite name regex ^([a-z]+)-([0-9]+)\\.pods\\. {2}.{1}.example. answer auto", "web-7.pods", "7.web.example"),
])
def test_prefix_substring_and_regex_with_auto(rule, name, looked_up):
    got, asked = ask(rules("    " + rule), name)
    assert asked == [looked_up]
    assert owners(got)[0] == name and values(got)[0] == "www." + name


def test_answer_name_and_value_regexes_as_gardener_writes_them():
    r = rules("    rewrite stop {\n"
              "        name regex (^(?:[^\\.]+\\.)+)svc\\.cluster\\.local\\.svc\\.cluster\\.local {1}svc.cluster.local\n"
              "        answer name (^(?:[^\\.]+\\.)+)svc\\.cluster\\.local {1}svc.cluster.local.svc.cluster.local\n"
              "        answer value (^(?:[^\\.]+\\.)+)svc\\.cluster\\.local {1}svc.cluster.local.svc.cluster.local\n    }")
    got, asked = ask(r, "web.shop.svc.cluster.local.svc.cluster.local", codes.SRV)
    assert asked == ["web.shop.svc.cluster.local"]
    long = "web.shop.svc.cluster.local.svc.cluster.local"
    assert owners(got) == [long, "www." + long, long, long, "srv." + long]
    assert values(got) == ["www." + long, "srv." + long, "srv." + long]


def test_stop_ends_the_list_continue_chains():
    both = ("    rewrite continue name exact a.example. b.example.\n"
            "    rewrite name exact b.example. c.example.\n")
    got, asked = ask(rules(both), "a.example")
    assert asked == ["c.example"]
    assert owners(got)[0] == "a.example"  # c -> b -> a, the last rule's reverse first
    assert len(got.via.steps) == 2
    stop = both.replace("rewrite continue", "rewrite stop")
    assert ask(rules(stop), "a.example")[1] == ["b.example"]
    # A continue rule that does not match lets the next one see the asked name.
    assert ask(rules("    rewrite continue name exact x.example. y.example.\n    rewrite name exact a.example. z.example."),
               "a.example")[1] == ["z.example"]


def test_a_name_too_long_after_the_rewrite_is_servfail():
    r = rules("    rewrite name regex ^(.*)$ {1}" + "x" * 70 + ".example.")
    got, asked = ask(r, "a.example")
    assert (got.rcode, asked, got.cacheable) == (codes.SERVFAIL, [], False)


def test_rules_see_only_the_names_of_their_server_block():
    r = rules("    rewrite name suffix .example. .example.net. answer auto",
              "corp.example:53 {\n    forward . 10.0.0.1\n}\n")
    assert ask(r, "db.example")[1] == ["db.example.net"]
    assert ask(r, "db.corp.example")[1] == ["db.corp.example"]  # the corp.example block's name
    assert r.may_see("svc.cluster.local.") is False
    assert rules("    rewrite name suffix .local. .example.").may_see("svc.cluster.local.") is True
    assert rules("    rewrite name exact a.b.svc.cluster.local. c.example.").may_see("svc.cluster.local.") is True
    assert rules("    rewrite name regex x y").may_see("svc.cluster.local.") is True


# -- templates -----------------------------------------------------------------------------------


AKS = ("    template ANY ANY internal.cloudapp.net {\n"
       "      match \"^(?:[^.]+\\.){4,}internal\\.cloudapp\\.net\\.$\"\n      rcode NXDOMAIN\n      fallthrough\n    }\n"
       "    template ANY ANY reddog.microsoft.com {\n      rcode NXDOMAIN\n    }")


def test_aks_templates_nxdomain_search_path_names_and_fall_through_the_rest():
    r = rules(AKS)
    got, asked = ask(r, "web.shop.svc.cluster.local.internal.cloudapp.net")
    assert (got.rcode, got.answer, got.soa_zone, asked) == (codes.NXDOMAIN, (), None, [])
    assert got.via is not None and got.via.steps == ("answered by the template at Corefile:5",)
    got, asked = ask(r, "vm1.internal.cloudapp.net", codes.AAAA)
    assert asked == ["vm1.internal.cloudapp.net"] and got.via is None  # fallthrough: kdns's tables
    got, asked = ask(r, "anything.reddog.microsoft.com", codes.TXT)
    assert (got.rcode, asked) == (codes.NXDOMAIN, [])
    assert ask(r, "example.com")[1] == ["example.com"]


def test_template_records_are_filled_in_and_read_as_zone_file_lines():
    r = rules("    template IN A ip.example {\n"
              "      match ^(?P<a>[0-9]+)-(?P<b>[0-9]+)-([0-9]+)-([0-9]+)\\.ip\\.example\\.$\n"
              "      answer \"{{ .Name }} 60 IN A {{ .Group.a }}.{{ .Group.b }}.{{ index .Match 3 }}.{{ index .Match 4 }}\"\n"
              "      answer \"{{ .Name }} IN TXT \\\"zone {{ .Zone }}\\\" {{ .Class }}-{{ .Type }}\"\n"
              "      additional \"ns.{{ .Zone }} 30 IN AAAA 2001:db8::1\"\n    }")
    got, asked = ask(r, "10-1-2-3.ip.example")
    assert asked == [] and got.rcode == codes.NOERROR and got.cacheable
    assert got.answer == (Record("10-1-2-3.ip.example", codes.A, 60, "10.1.2.3"),
                          Record("10-1-2-3.ip.example", codes.TXT, 3600, ("zone ip.example.", "IN-A")))
    assert got.additional == (Record("ns.ip.example", codes.AAAA, 30, "2001:db8::1"),)
    # Another type: not this template's; no match and no fallthrough: SERVFAIL.
    assert ask(r, "10-1-2-3.ip.example", codes.AAAA)[1] == ["10-1-2-3.ip.example"]
    got, asked = ask(r, "www.ip.example")
    assert (got.rcode, asked) == (codes.SERVFAIL, [])


def test_template_remote_answers_are_never_reused_and_bad_records_are_servfail():
    r = rules("    template IN TXT whoami.example {\n      answer \"{{ .Name }} 0 IN TXT {{ .Remote }}\"\n    }\n"
              "    template IN A broken.example {\n      answer \"{{ .Name }} 60 IN A {{ .Name }}\"\n    }")
    got, _ = ask(r, "whoami.example", codes.TXT, remote="127.0.0.9")
    assert got.answer == (Record("whoami.example", codes.TXT, 0, ("127.0.0.9",)),) and not got.cacheable
    got, _ = ask(r, "broken.example")
    assert got.rcode == codes.SERVFAIL


def test_template_authority_records_as_the_coredns_docs_write_them():
    r = rules("    template IN ANY example.org {\n      match \"(^|[.])ad[.]example[.]org[.]$\"\n      rcode NXDOMAIN\n"
              "      authority \"example.org. 60 {{ .Class }} SOA ns.example.org. hostmaster.example.org. (1 60 60 60 60)\"\n"
              "      fallthrough\n    }")
    got, asked = ask(r, "x.ad.example.org", codes.MX)
    assert (got.rcode, got.answer, asked) == (codes.NXDOMAIN, (), [])
    assert got.authority == (Record("example.org", codes.SOA, 60, ("ns.example.org", "hostmaster.example.org", 1, 60, 60, 60, 60)),)
    assert ask(r, "www.example.org")[1] == ["www.example.org"]


def test_rewrite_then_template_then_back():
    r = rules("    rewrite name exact old.example. new.example.\n"
              "    template IN A example {\n      match ^new\\.\n      answer \"{{ .Name }} 60 IN A 192.0.2.1\"\n      fallthrough\n    }")
    got, asked = ask(r, "old.example")
    assert asked == [] and got.answer == (Record("old.example", codes.A, 60, "192.0.2.1"),)
    assert got.via.steps[-1] == "answered by the template at Corefile:6"


# -- an upstream's reply, mapped back on the wire ---------------------------------------------------


def test_forwarded_records_are_renamed_back_with_their_ttl_offsets():
    """(TTLs capped at the answer's lifetime, 200 s, and counted down 10 s: the offsets moved with the names.)"""
    r = rules("    rewrite name suffix .corp.internal. .example.net. answer auto")
    got, _ = ask(r, "alias.corp.internal")
    via = got.via
    assert via is not None
    reply = DNSRecord.question("alias.example.net", "CNAME")
    reply = reply.reply()
    reply.add_answer(*RR.fromZone("alias.example.net. 300 IN CNAME www.example.net."))
    reply.add_answer(*RR.fromZone("www.example.net. 200 IN A 192.0.2.11"))
    reply.add_auth(*RR.fromZone("example.net. 100 IN NS ns.example.net."))
    data = reply.pack()
    question = data[12 : data.index(b"\x00", 12) + 5]
    parsed = upstream.parse_reply(data, reply.header.id, question, 3600)
    back = via.upstream(parsed)
    client = dns.message.make_query("Alias.Corp.Internal", "CNAME")
    query = wire.parse_query(client.to_wire())
    out = dns.message.from_wire(upstream.render(back, query, 10, 1232))
    assert [rrset.to_text() for rrset in out.answer] == ["alias.corp.internal. 190 IN CNAME www.corp.internal.",
                                                         "www.corp.internal. 190 IN A 192.0.2.11"]
    # (The zone's own name does not end in ".example.net.": CoreDNS's suffix swap leaves it.)
    assert [rrset.to_text() for rrset in out.authority] == ["example.net. 90 IN NS ns.corp.internal."]
    assert out.question[0].name.to_text() == "Alias.Corp.Internal."
    assert QTYPE.get(out.question[0].rdtype) == "CNAME"


# -- in the serving core: the memo, the quick NXDOMAIN ------------------------------------------


def core(body: str):
    from dataclasses import replace

    from kdns.config import DnsConfig
    from kdns.model import Port, Service, ServiceType, Upsert
    from kdns.state import DnsState

    state = DnsState(replace(DnsConfig(ns_addresses=("127.0.0.1",)), rules=rules(body)), now=1000)
    services = [Service("shop", f"s{i}", ServiceType.CLUSTER_IP, (f"10.96.1.{i}",), (Port("http", "tcp", 80),)) for i in range(30)]
    state.apply([Upsert(s) for s in services], now=1000)
    return state, Service, ServiceType, Port, Upsert


def ask_core(state, name: str, rdtype: str = "A") -> dns.message.Message:
    return dns.message.from_wire(state.responder.handle(dns.message.make_query(name, rdtype).to_wire()))


def test_a_rewritten_answer_in_the_memo_follows_a_change_of_the_name_it_came_from():
    state, Service, ServiceType, Port, Upsert = core("    rewrite name exact api.example.com s1.shop.svc.cluster.local")
    for i in range(30):  # a memo larger than the change, so that only the changed names are dropped
        ask_core(state, f"s{i}.shop.svc.cluster.local")
    assert [rrset.to_text() for rrset in ask_core(state, "API.example.com").answer] == ["API.example.com. 5 IN A 10.96.1.1"]
    assert b"\x03api\x07example\x03com\x00" in state.responder.memo
    change = state.apply([Upsert(Service("shop", "s1", ServiceType.CLUSTER_IP, ("10.96.2.1",), (Port("http", "tcp", 80),)))], now=2000)
    assert not change.everything and len(change.names) < 30
    assert [rrset.to_text() for rrset in ask_core(state, "api.example.com").answer] == ["api.example.com. 5 IN A 10.96.2.1"]
    assert b"\x02s2\x04shop\x03svc\x07cluster\x05local\x00" in state.responder.memo  # the others stay


def test_no_quick_nxdomain_under_svc_where_a_rule_may_act():
    regex = "    rewrite name regex ^(.*)\\.svc\\.cluster\\.local\\.svc\\.cluster\\.local\\.$ {1}.svc.cluster.local answer auto"
    state = core(regex)[0]
    assert state.responder._services_names == ()
    got = ask_core(state, "s3.shop.svc.cluster.local.svc.cluster.local")
    assert [rrset.to_text() for rrset in got.answer] == ["s3.shop.svc.cluster.local.svc.cluster.local. 5 IN A 10.96.1.3"]
    plain = core("    rewrite name exact api.example.com s1.shop.svc.cluster.local")[0]
    assert plain.responder._services_names != ()  # an exact rule elsewhere keeps it
