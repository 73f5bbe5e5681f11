"""Reading the image's Dockerfile and the cluster manifests, for the static deployment tests
(tests/test_deploy.py for kdns's own manifests, tests/test_corefile_deploy.py for CoreDNS's
with only the image changed)."""

from __future__ import annotations

import inspect
import json

from kubernetes import client

from testkit.repo import ROOT

DOCKERFILE = ROOT / "Dockerfile"


def deserialize(obj: dict, model: str):
    """The object as the client's model, through ApiClient.deserialize, the way the client
    reads API responses (its signature changed when the models moved to pydantic)."""
    api = client.ApiClient()
    text = json.dumps(obj)
    if "response_text" in inspect.signature(api.deserialize).parameters:  # the pydantic-based client (37 here)
        return api.deserialize(text, model, "application/json")

    class Response:  # older clients read `.data` of a urllib3 response
        data = text

    return api.deserialize(Response(), model)


def differences(want, got, path="") -> list[str]:
    """Where `got` (the model serialized back) differs from `want` (the manifest)."""
    if isinstance(want, dict) and isinstance(got, dict):
        out = []
        for key in sorted(want.keys() | got.keys()):
            if key not in got:
                out.append(f"{path}.{key}: not a field of the model (misspelt or misplaced?)")
            elif key not in want:
                out.append(f"{path}.{key}: added by the model")
            else:
                out += differences(want[key], got[key], f"{path}.{key}")
        return out
    if isinstance(want, list) and isinstance(got, list) and len(want) == len(got):
        return [d for i, (w, g) in enumerate(zip(want, got)) for d in differences(w, g, f"{path}[{i}]")]
    return [] if want == got and type(want) is type(got) else [f"{path}: {want!r} became {got!r}"]


def port_number(text: str) -> int:
    """The port of a kdns.yaml address: ":8080", "0.0.0.0:5353", "[::]:5353"."""
    return int(str(text).rpartition(":")[2])


def resolve_port(port: int | str, protocol: str, container: dict) -> int:
    """A target or probe port (a number or a container port's name) as a container port number."""
    for p in container["ports"]:
        if (port == p.get("name") or port == p["containerPort"]) and p.get("protocol", "TCP") == protocol:
            return p["containerPort"]
    raise AssertionError(f"port {port!r}/{protocol} is not a port of container {container['name']}")


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per logical line: comments dropped, `\\` continuations joined."""
    out, current = [], ""
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#") or (not stripped and not current):
            continue  # comments (and parser directives) are dropped, even inside a continuation
        if stripped.endswith("\\"):
            current += stripped[:-1].rstrip() + " "
            continue
        current += stripped
        if current.strip():
            word, _, rest = current.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
        current = ""
    assert not current, "the Dockerfile ends inside a continuation"
    return out


def exec_form(args: str) -> list[str]:
    assert args.startswith("["), f"use the exec form (JSON array), got {args!r}"
    argv = json.loads(args)
    assert all(isinstance(a, str) for a in argv)
    return argv


def final_stage(instructions):
    start = max(i for i, (word, _) in enumerate(instructions) if word == "FROM")
    return instructions[start:]


def only(instructions, word) -> str:
    found = [args for w, args in instructions if w == word]
    assert len(found) == 1, f"one {word}, found {found}"
    return found[0]
