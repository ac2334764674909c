# syntax=docker/dockerfile:1.7
# One image for every Rapport service. The first argument picks the process:
#   ingest | deriver | context | dialectic | allinone | migrate   (see deploy/docker-entrypoint.sh)
# Build:  docker build -t rapport:dev .
# Run:    docker run --rm -e RAPPORT_DATABASE_URL=... -e RAPPORT_NATS_URL=... rapport:dev ingest

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- build: resolve and install the dependencies into a self-contained virtualenv ----------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/rapport
WORKDIR /src
COPY pyproject.toml README.md ./
COPY libs ./libs
COPY services ./services
COPY allinone ./allinone
COPY migrations ./migrations
COPY scripts ./scripts
# Install the project (pulls every runtime dependency), then drop the project itself from
# site-packages: the runtime stage runs the code from /app, where alembic.ini and migrations/
# sit next to libs/ (libs.common.migrate finds them relative to the source tree).
RUN /opt/rapport/bin/pip install . \
 && /opt/rapport/bin/pip uninstall -y rapport-server \
 && /opt/rapport/bin/python -m compileall -q /opt/rapport/lib

# ---- runtime: the virtualenv, the source tree and an unprivileged user ---------------------
FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="rapport" \
      org.opencontainers.image.description="Rapport: memory for LLM agents (Honcho v3 compatible)" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 rapport \
 && useradd --system --uid 10001 --gid rapport --home-dir /app --no-create-home \
      --shell /usr/sbin/nologin rapport
COPY --from=build /opt/rapport /opt/rapport
WORKDIR /app
COPY --chown=root:root alembic.ini ./
COPY --chown=root:root libs ./libs
COPY --chown=root:root services ./services
COPY --chown=root:root allinone ./allinone
COPY --chown=root:root migrations ./migrations
COPY --chown=root:root scripts ./scripts
COPY --chown=root:root --chmod=0755 deploy/docker-entrypoint.sh /usr/local/bin/rapport-entrypoint
ENV PATH=/opt/rapport/bin:$PATH \
    PYTHONPATH=/app \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    RAPPORT_HOST=0.0.0.0 \
    RAPPORT_PORT=8000 \
    RAPPORT_LOG_JSON=true
USER 10001:10001
EXPOSE 8000
ENTRYPOINT ["rapport-entrypoint"]
CMD ["allinone"]
