# The receiver as a container: runtime dependencies only, a non-root user, state in /data.
#   docker build -t ai-devops-monitor .
#   docker run -p 127.0.0.1:8000:8000 -e WEBHOOK_TOKEN=... -v monitor-data:/data ai-devops-monitor
# With MONGO_URI unset it runs the embedded store under /data/store; compose.yaml uses MongoDB.

FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY receiver ./receiver
# the same install CI runs, without the dev extra: wheels for the package and its dependencies
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --system --uid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin monitor \
    && mkdir /data && chown monitor /data
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index /wheels/*.whl && rm -rf /wheels
WORKDIR /app
# rules/generated (alert expressions for the evidence) and rules/specs (the poller's series)
COPY rules ./rules
ENV RECEIVER_HOST=0.0.0.0 \
    RECEIVER_PORT=8000 \
    DATA_DIR=/data \
    PYTHONUNBUFFERED=1
USER monitor
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]
CMD ["receiver", "serve"]
