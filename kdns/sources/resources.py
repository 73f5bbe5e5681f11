"""What kdns reads from the Kubernetes API: one collection per kind of object, listed and
watched cluster-wide (kdns.sources.kubernetes). config/rbac.yaml grants `list` and `watch` on
exactly these (tests/test_deploy.py checks it). Pure.
"""

from __future__ import annotations

from dataclasses import dataclass

from kdns.model import Kind


@dataclass(frozen=True, slots=True)
class Resource:
    kind: Kind
    api_version: str
    path: str  # the cluster-wide collection
    optional: bool = False  # a CRD: the API server may not serve it

    @property
    def label(self) -> str:
        return self.path.rsplit("/", 1)[-1]


RESOURCES = {
    Kind.NAMESPACE: Resource(Kind.NAMESPACE, "v1", "/api/v1/namespaces"),
    Kind.SERVICE: Resource(Kind.SERVICE, "v1", "/api/v1/services"),
    Kind.ENDPOINT_SLICE: Resource(Kind.ENDPOINT_SLICE, "discovery.k8s.io/v1", "/apis/discovery.k8s.io/v1/endpointslices"),
    Kind.POD: Resource(Kind.POD, "v1", "/api/v1/pods"),
    Kind.INGRESS: Resource(Kind.INGRESS, "networking.k8s.io/v1", "/apis/networking.k8s.io/v1/ingresses"),
    Kind.INGRESS_CLASS: Resource(Kind.INGRESS_CLASS, "networking.k8s.io/v1", "/apis/networking.k8s.io/v1/ingressclasses"),
    **{kind: Resource(kind, "gateway.networking.k8s.io/v1", f"/apis/gateway.networking.k8s.io/v1/{plural}", optional=True)
       for kind, plural in ((Kind.GATEWAY, "gateways"), (Kind.HTTP_ROUTE, "httproutes"), (Kind.GRPC_ROUTE, "grpcroutes"),
                            (Kind.TLS_ROUTE, "tlsroutes"))},
}
