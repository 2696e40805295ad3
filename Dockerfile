# The filter's image: `eligibility worker` by default; the same image runs the other
# commands (`topics create`, `replay LOG --rate N`, `view`, `state rebuild`).
# Build: docker build -t eligibility-filter:local .   (docker-compose.yml builds it too)

# Stage 1: the package as a wheel, so the runtime image holds no source tree that could
# shadow the installed package (python -m / python -c put the working directory first).
FROM python:3.11.7-slim-bookworm AS wheel
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY stream ./stream
RUN pip wheel --no-deps --wheel-dir /wheels .

# Stage 2: the runtime.
FROM python:3.11.7-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    # Faust keeps a data directory (no tables here, but it creates one): outside /app,
    # which stays read-only to the worker.
    FAUST_DATADIR=/var/lib/eligibility/faust

WORKDIR /app
# The package and its runtime dependencies only (`pip install .`, without the [test] extra).
COPY --from=wheel /wheels /wheels
RUN pip install /wheels/*.whl && rm -rf /wheels

# The contract: stream/kafka/topics.py reads topics/*.yaml from TOPICS_DIR, derived from
# its own location (the repository layout); installed, that is site-packages/topics.
# Put the YAMLs there and prove at build time that all of them load.
COPY topics/*.yaml /tmp/topics/
RUN topics_dir="$(python -c 'from stream.kafka.topics import TOPICS_DIR; print(TOPICS_DIR)')" \
    && mkdir -p "$topics_dir" \
    && mv /tmp/topics/*.yaml "$topics_dir"/ \
    && rmdir /tmp/topics \
    && python -c 'from stream.kafka.topics import load_specs; print(len(load_specs()), "topics")'

# Sample logs: `eligibility replay examples/sample.jsonl` (relative to /app).
COPY examples ./examples

RUN groupadd --system --gid 10001 filter \
    && useradd --system --uid 10001 --gid filter --no-create-home \
        --home-dir /var/lib/eligibility --shell /usr/sbin/nologin filter \
    && install -d -o filter -g filter -m 0750 /var/lib/eligibility
USER 10001:10001

# Faust's web server: /metrics for Prometheus (ELIGIBILITY_WEB_PORT, ELIGIBILITY_WEB_HOST).
EXPOSE 6066
# Healthy = /metrics answers 200. python-slim has no curl; urllib raises on anything else.
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/metrics' % os.environ.get('ELIGIBILITY_WEB_PORT', '6066'), timeout=4).close()"]

ENTRYPOINT ["eligibility"]
CMD ["worker"]
