#!/usr/bin/env bash
# Create .venv and install Tailor with its test tools. Idempotent: re-runs only when
# pyproject.toml changed. torch is installed first, pinned, so the CPU wheel is used
# (any other spec pulls gigabytes of CUDA packages).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
STAMP=.venv/.tailor-installed
if [[ -f "$STAMP" && "$STAMP" -nt pyproject.toml ]]; then
  exit 0
fi
[[ -x .venv/bin/python ]] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet "torch==2.13.0"
# llama-cpp-python compiles llama.cpp; without GGML_NATIVE=OFF the result would use
# this CPU's newest instructions and crash on older ones (and in the Docker image).
CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF}" .venv/bin/python -m pip install --quiet -e ".[dev]"
touch "$STAMP"
echo "setup: .venv ready"
