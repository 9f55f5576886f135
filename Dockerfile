# The application image of the example fleet: the project (dbos, dbos-worker,
# dbos-coordinator) plus examples/fleet_app.py. docker-compose.yml and k8s/ run it
# as workers (the default command) and as coordinators (command overridden).
# Build: docker build -t dbos-fleet-example:v1 .   (BuildKit, the default since
# Docker 23, for RUN --mount; docs/deploy.md)
#
# Your own app: keep the two stages, replace `COPY examples/` with your code and
# the CMD's app path with your module.

ARG PYTHON_IMAGE=python:3.11-slim

# -- build: a wheel of the project (no compiler needed: every dependency ships wheels)
FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY pyproject.toml README.md ./
COPY dbos/ dbos/
COPY worker/ worker/
COPY coordinator/ coordinator/
RUN pip wheel --wheel-dir /wheels .

# -- run: the wheels installed into a venv, a non-root user, the example app
FROM ${PYTHON_IMAGE}
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \
    PATH=/opt/venv/bin:$PATH
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    python -m venv /opt/venv && /opt/venv/bin/pip install --no-index --find-links /wheels dbos-fleet
# A fixed numeric UID, so Kubernetes' runAsNonRoot can check it (k8s/ sets 10001 too).
RUN groupadd --system --gid 10001 dbos && \
    useradd --system --uid 10001 --gid dbos --home-dir /app --shell /usr/sbin/nologin dbos
WORKDIR /app
COPY --chown=root:root examples/ examples/
USER 10001:10001
# 3001: the worker's admin server (/dbos-healthz, /readyz, /metrics);
# 8080: the coordinator's HTTP (/healthz, /metrics, /api/*).
EXPOSE 3001 8080
# Not loopback, so the admin server needs $DBOS_ADMIN_TOKEN (compose and k8s set it).
CMD ["dbos-worker", "examples/fleet_app.py", "--admin-host", "0.0.0.0", "--admin-port", "3001", "--drain-timeout", "25"]
