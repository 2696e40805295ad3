# The filter's image: slim, non-root, dependencies pinned by the lock of pyproject ranges.
FROM python:3.11.7-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY stream ./stream
COPY topics ./topics
COPY examples ./examples
RUN pip install . && useradd --system --uid 10001 filter
USER filter
ENTRYPOINT ["eligibility"]
CMD ["--help"]
