# session-pool-exporter container image.
# Build:  docker build -t session-pool-exporter .
# Run:    see README.md, section "Docker".
# No hadolint rule is ignored in this file.

# ---- builder: turns the project and its dependencies into a self-contained virtualenv ----
FROM python:3.11.14-slim-bookworm AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src

# README.md is part of the package metadata (pyproject `readme`), so the build needs it.
COPY pyproject.toml README.md ./
COPY requirements/runtime.txt ./requirements/
COPY exporter ./exporter

# The dependencies come from the lock file, exact versions checked against their hashes (nothing
# is resolved at build time); then one wheel for the project, installed without dependencies into
# the venv the final stage copies whole. Every dependency ships binary wheels for CPython 3.11 on
# linux, so no compiler is needed here either.
RUN python -m venv /opt/venv \
    && /opt/venv/bin/python -m pip install --no-cache-dir --require-hashes -r requirements/runtime.txt \
    && python -m pip wheel --no-cache-dir --no-deps --wheel-dir /wheels . \
    && /opt/venv/bin/python -m pip install --no-cache-dir --no-deps /wheels/session_pool_exporter-*.whl

# ---- runtime: the same slim base, no compilers, no build tree, a numeric non-root user ----
FROM python:3.11.14-slim-bookworm

LABEL org.opencontainers.image.title="session-pool-exporter" \
      org.opencontainers.image.description="Prometheus exporter and admin API for MongoDB-backed session pools" \
      org.opencontainers.image.licenses="MIT"

ENV PATH="/opt/venv/bin:${PATH}" \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HEALTHCHECK_URL="http://127.0.0.1:9810/healthz"

RUN groupadd --system --gid 10001 exporter \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin exporter \
    && mkdir -p /etc/session-pool-exporter

COPY --from=builder /opt/venv /opt/venv

USER 10001:10001

EXPOSE 9810

# The slim base has no curl: probe with the interpreter that is already there. HEALTHCHECK_URL
# lets a TLS deployment point it at https (the certificate is not verified: this is a liveness
# check of the local process, not an identity check).
HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 \
    CMD ["python", "-c", "import os, ssl, sys, urllib.request; u = os.environ.get('HEALTHCHECK_URL', 'http://127.0.0.1:9810/healthz'); r = urllib.request.urlopen(u, timeout=4, context=ssl._create_unverified_context()); sys.exit(0 if r.status == 200 else 1)"]

ENTRYPOINT ["session-pool-exporter"]
CMD ["run", "--config", "/etc/session-pool-exporter/config.yaml"]
