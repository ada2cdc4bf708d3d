#!/usr/bin/env bash
# Set up (if needed) and run Tailor on the embedded default: SQLite + in-process FAISS +
# the packaged all-MiniLM-L6-v2, data under ./data. Settings come from TAILOR_* env vars;
# TAILOR_WORKERS=N serves with N worker processes (replicas of one service, one port).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
exec .venv/bin/tailor serve
