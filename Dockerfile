# syntax=docker/dockerfile:1
# The worker image (spec §6): small, non-root, with a health check. No secrets are baked
# in: credentials come from TRIGGER_CONSUMER_* variables or *_FILE secrets at run time.

# -- builder: our wheel and the wheels of every dependency ------------------------------------
FROM python:3.11-slim AS builder
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY consumer ./consumer
RUN pip wheel --wheel-dir /wheels .

# -- runtime: the installed package only, no compilers, no build context ----------------------
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# the wheels are bind-mounted from the builder, so they never land in a layer of this image
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels airflow-trigger-consumer
RUN groupadd --system --gid 10001 trigger-consumer \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
       --home-dir /var/lib/trigger-consumer --shell /usr/sbin/nologin trigger-consumer \
    && install -d -o 10001 -g 10001 /var/lib/trigger-consumer
WORKDIR /var/lib/trigger-consumer
# the idempotency store lives here; mount a volume so it survives restarts (spec §3)
ENV TRIGGER_CONSUMER_STORE_URL=sqlite:////var/lib/trigger-consumer/trigger-consumer.db \
    TRIGGER_CONSUMER_LOG_FORMAT=json \
    TRIGGER_CONSUMER_HTTP_PORT=9464 \
    TRIGGER_CONSUMER_HTTP_HOST=0.0.0.0
# numeric, so orchestrators can verify runAsNonRoot
USER 10001:10001
EXPOSE 9464
# slim has no curl; urlopen raises (exit 1) on a refused connection or a 503
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('TRIGGER_CONSUMER_HTTP_PORT', '9464') + '/healthz', timeout=4)"]
ENTRYPOINT ["trigger-consumer"]
CMD ["run"]
