# A slim image running the gateway as a non-root user. Mount your keys file:
#   docker build -t llm-gateway .
#   docker run -p 8080:8080 -v $PWD/keys.json:/app/keys.json:ro -v gateway-data:/data llm-gateway
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    SERVER_HOST=0.0.0.0 \
    SERVER_PORT=8080 \
    KEYS_FILE_PATH=/app/keys.json \
    DATABASE_PATH=/data/gateway.db

WORKDIR /app
COPY pyproject.toml README.md ./
COPY gateway ./gateway
COPY migrations ./migrations
COPY templates ./templates
COPY static ./static
RUN pip install --no-cache-dir -e . \
    && useradd --system --uid 10001 --home /app gateway \
    && mkdir -p /data && chown gateway /data

USER gateway
VOLUME ["/data"]
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=3s CMD python -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:8080/health', timeout=2)" || exit 1
CMD ["python", "-m", "gateway"]
