# kdns: Kubernetes cluster DNS. Build from the repository root:
#   docker build -t kdns:latest .
# The image runs `kdns serve --config /etc/kdns/kdns.yaml` as UID 65532 with nothing to write:
# it works with a read-only root filesystem. In a cluster the kdns ConfigMap is mounted over
# /etc/kdns (config/kubernetes/); alone (`docker run --rm -p 5353:5353/udp kdns:latest`) it
# serves the bundled demo cluster and forwards other names to the container's resolver.

# CPython 3.11 (the version the test suite runs on) on Debian bookworm, pinned.
FROM python:3.11.11-slim-bookworm

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONUNBUFFERED=1

# The dependencies first, read from pyproject.toml alone: this layer is rebuilt only when
# they change, not on every edit of kdns's code. pip compiles the .pyc files at install,
# so nothing needs writing at run time.
COPY pyproject.toml /tmp/kdns/pyproject.toml
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('/tmp/kdns/pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# kdns itself, from the working tree (no test extras). The C part of the UDP loop
# (kdns/_udpbatch.c) needs a compiler for the build only: gcc comes and goes in this one layer,
# and the build fails if the C part did not build (kdns would work, at two thirds the speed).
COPY README.md setup.py /tmp/kdns/
COPY kdns /tmp/kdns/kdns
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && pip install --no-deps /tmp/kdns \
    && python -c "import kdns._udpbatch" \
    && apt-get purge -y --auto-remove gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/* /tmp/kdns

COPY config/kdns.yaml /etc/kdns/kdns.yaml

ENV PYTHONDONTWRITEBYTECODE=1
USER 65532:65532

# DNS on 5353 (the kube-dns Service maps 53 to it, so no privilege is needed); /health on
# 8080, /ready on 8181, /metrics on 9153, as CoreDNS.
EXPOSE 5353/udp 5353/tcp 8080 8181 9153

# Kubernetes ignores HEALTHCHECK (the Deployment has its own probes); docker and podman use it.
# The slim image has no curl: Python's urllib fails (exit 1) on anything but a 2xx.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/health', timeout=4)"]

ENTRYPOINT ["kdns"]
CMD ["serve", "--config", "/etc/kdns/kdns.yaml"]
