# kdns: Kubernetes cluster DNS. Build from the repository root with `make image` (docker or
# podman; docs/image.md), or `docker build -t kdns:latest .`. The image runs
# `kdns serve --config /etc/kdns/kdns.yaml` as UID 65532 with nothing to write: it works with a
# read-only root filesystem. In a cluster the kdns ConfigMap is mounted over /etc/kdns
# (config/kubernetes/); alone (`docker run --rm -p 5353:5353/udp kdns:latest`) it serves the
# bundled demo cluster and forwards other names to the container's resolver.
#
# It also replaces CoreDNS's image in CoreDNS's own Deployment (docs/deploying.md): given
# CoreDNS's arguments (`-conf /etc/coredns/Corefile`), the entrypoint serves that Corefile on
# port 53, as the same non-root user CoreDNS's image runs as, with the NET_BIND_SERVICE
# capability those Deployments add (kdns/caps.py).
#
# Two stages: the first installs the locked dependencies and builds kdns's C part into a
# virtual environment at /opt/kdns; the second is the bare base image plus that directory, so
# the compiler, the headers, pip's caches and the build tools never reach the image.

# CPython 3.11 (the version the test suite runs on) on Debian bookworm, pinned.
FROM python:3.11.11-slim-bookworm AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

# gcc for kdns/_udpbatch.c (the official image carries Python's headers).
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev

# The dependencies, exactly as locked (versions and hashes; docs/image.md says how to refresh
# the lock), wheels only, without their own dependency lists: the lock leaves out what kdns
# never imports (the kubernetes client's aiohttp and its kind, dnspython). This layer is rebuilt
# only when the lock changes. The venv has no pip: the base image's pip installs into it.
COPY requirements/image.lock /tmp/kdns/requirements/image.lock
RUN python -m venv --without-pip /opt/kdns \
    && pip --python /opt/kdns/bin/python install --no-deps --require-hashes --only-binary=:all: --no-compile \
        -r /tmp/kdns/requirements/image.lock

# kdns itself, from the working tree (no test extras), built with the locked setuptools, which
# then leaves. The build fails if the C part did not build (kdns would work, at two thirds the
# speed).
COPY README.md pyproject.toml setup.py /tmp/kdns/
COPY kdns /tmp/kdns/kdns
RUN pip --python /opt/kdns/bin/python install --no-deps --no-build-isolation --no-compile /tmp/kdns \
    && /opt/kdns/bin/python -c "import kdns._udpbatch" \
    && pip --python /opt/kdns/bin/python uninstall -y setuptools

# Leave out what kdns never imports (requirements/image-prune.txt; a pattern that matches
# nothing fails the build), then compile the rest once: hash-checked .pyc files that are never
# compared with the sources' timestamps, so a read-only root costs no start-up time.
COPY requirements/image-prune.txt /tmp/kdns/requirements/image-prune.txt
RUN site=$(/opt/kdns/bin/python -c "import sysconfig; print(sysconfig.get_path('purelib'))") \
    && cd "$site" \
    && for pattern in $(sed 's/#.*//' /tmp/kdns/requirements/image-prune.txt); do \
        set -- $pattern; \
        [ -e "$1" ] || { echo "requirements/image-prune.txt: $pattern matches nothing in $site"; exit 1; }; \
        rm -rf "$@"; \
    done \
    && /opt/kdns/bin/python -m compileall -q -j 0 --invalidation-mode unchecked-hash "$site" \
    && find /opt/kdns -name '*.dist-info' -prune -o -type f -name '*.so' -exec strip --strip-unneeded {} +


FROM python:3.11.11-slim-bookworm

COPY --from=build /opt/kdns /opt/kdns
COPY config/kdns.yaml /etc/kdns/kdns.yaml

ENV PATH=/opt/kdns/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1

# Port 53 without root: the interpreter may hold CAP_NET_BIND_SERVICE (permitted, not effective:
# `cap_net_bind_service=+p`), and kdns makes it effective when the container allows it (CoreDNS's
# manifests add it; kdns's own drop every capability and listen on 5353, which still works).
RUN ["/opt/kdns/bin/python", "-m", "kdns.caps", "grant", "/opt/kdns/bin/python"]
USER 65532:65532

# DNS on 5353 (the kube-dns Service maps 53 to it, so no privilege is needed); /health on
# 8080, /ready on 8181, /metrics on 9153, as CoreDNS.
EXPOSE 5353/udp 5353/tcp 8080 8181 9153

# Kubernetes ignores HEALTHCHECK (the Deployment has its own probes); docker uses it, and so
# does podman when the image is built with --format docker (`make image` does: the default OCI
# format has no place for it). The slim image has no curl: Python's urllib fails (exit 1) on
# anything but a 2xx.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/health', timeout=4)"]

# `kdns serve ...`, or CoreDNS's command line (`-conf PATH`, `-dns.port N`, ...): both work.
ENTRYPOINT ["kdns"]
CMD ["serve", "--config", "/etc/kdns/kdns.yaml"]
